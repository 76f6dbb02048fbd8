#!/usr/bin/env bash
# Builds (or finds cached) the control plane and the node the end-to-end tests
# run against and prints the directory that holds their binaries:
#   etcd  kube-apiserver  kube-controller-manager  kubectl   (control plane)
#   kubelet  kube-scheduler  pause                           (the real node)
# pause is the sandbox process of every Pod, compiled from the same Kubernetes
# module's build/pause/linux/pause.c (static, so its image needs nothing else).
#
# The binaries are cached outside the repository, keyed by the Kubernetes
# version and a hash of this module's go.mod, go.sum and sources, so a warm
# machine skips the build and any change here rebuilds. KUBEBUILDER_ASSETS
# (the envtest convention) wins when it points at a directory that has them all.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binaries=(etcd kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler pause)

has_all() {
  local dir="$1"
  for b in "${binaries[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

version="$(cd "$here" && GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' k8s.io/kubernetes)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/etcd/main.go" "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${CRATE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crate-operator}"
out="$cache/control-plane/$version-$key"

if has_all "$out"; then
  echo "$out"
  exit 0
fi

# Go 1.27 turns encoding/json v2 on by default, which breaks the apiserver's
# OpenAPI endpoint (and with it `kubectl apply`) in Kubernetes releases that
# predate it. Opt out where the toolchain has the experiment.
goexperiment="${GOEXPERIMENT:-}"
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if [[ "$go_minor" =~ ^[0-9]+$ ]] && (( go_minor >= 27 )); then
  goexperiment="${goexperiment:+$goexperiment,}nojsonv2"
fi

echo "building the control plane $version into $out (takes a while on a cold machine)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
(
  cd "$here"
  export GOFLAGS="-mod=readonly -trimpath" GOTOOLCHAIN=local CGO_ENABLED=0 GOEXPERIMENT="$goexperiment"
  # -s -w: no symbol tables; these are test fixtures, not things we debug. The -X flags stamp
  # the version the way Kubernetes' own build does, so `kubectl version` and discovery report
  # the real release instead of v0.0.0-master.
  minor="$(echo "$version" | cut -d. -f2)"
  stamp=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  go build -ldflags="-s -w$stamp" -o "$tmp/" \
    ./etcd \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-scheduler
  src="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux"
  cc -Os -static -o "$tmp/pause" -DVERSION="$version" "$src/pause.c"
) >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
