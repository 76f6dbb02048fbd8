#!/usr/bin/env bash
# Builds (or finds cached) the helm binary the chart tests and the end-to-end
# install through the chart use, and prints the directory that holds it.
#
# helm is built from its Go module, pinned in this directory's go.mod (its own
# module: helm's Kubernetes client libraries are not the control plane's). Like
# hack/control-plane/build.sh, the binary is cached outside the repository,
# keyed by helm's version and a hash of go.mod, go.sum and this script, so a
# warm machine skips the build and any change here rebuilds. HELM_BIN_DIR wins
# when it points at a directory that has a helm binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -n "${HELM_BIN_DIR:-}" && -x "${HELM_BIN_DIR}/helm" ]]; then
  echo "$HELM_BIN_DIR"
  exit 0
fi

version="$(cd "$here" && GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' helm.sh/helm/v3)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${CRATE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crate-operator}"
out="$cache/helm/$version-$key"

if [[ -x "$out/helm" ]]; then
  echo "$out"
  exit 0
fi

echo "building helm $version into $out" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
(
  cd "$here"
  export GOFLAGS="-mod=readonly -trimpath" GOTOOLCHAIN=local CGO_ENABLED=0
  # The flags helm's own Makefile sets: its version, and the Kubernetes version
  # its client libraries speak (client-go v0.X.Y is Kubernetes 1.X), which
  # `helm lint` and `helm template` report as .Capabilities.KubeVersion.
  k8s_minor="$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  go build -ldflags="$ldflags" -o "$tmp/" helm.sh/helm/v3/cmd/helm
) >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
