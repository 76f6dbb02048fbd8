#!/usr/bin/env bash
# Benchmark (not a test): crate-loader against the git command line on the same repository over
# the same transport (git daemon on loopback).
#
#   loader/bench/compare-git.sh [SIZE_MB]      (default 300; needs git, hyperfine, GNU time)
#
# 1. full load, server without filters (crate-loader fetches every object of the tip):
#       crate-loader preview  vs  git clone --depth 1 --single-branch --no-checkout
#                                 + git show <branch>:<metadata path>
# 2. partial load, server with uploadpack.allowFilter (crate-loader fetches the commit, the
#    trees and the one blob):
#       crate-loader preview  vs  git clone --filter=blob:none --depth 1 ... + git show
#                                 (git fetches the blob lazily)
# 3. no-op check: crate-loader preview --last-commit <head>  vs  git ls-remote <url> <branch>
# 4. peak memory (max RSS) of each, via /usr/bin/time.
set -euo pipefail
size_mb=${1:-300}
root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in git hyperfine /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: git hyperfine time)" >&2; exit 1; }
done

cargo build --release -q -p crate-loader --manifest-path "$root/Cargo.toml"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')
loader="$target/release/crate-loader"

work=$(mktemp -d)
daemon_pid=""
cleanup() { [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export HOME="$work" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

# A crate repository with SIZE_MB of incompressible data files beside the metadata, and some
# history so that depth matters.
src="$work/src"
git init -q -b main "$src"
mkdir -p "$src/bagit/data/files"
cp "$root/examples/demo-crate/bagit/data/ro-crate-metadata.json" "$src/bagit/data/"
git -C "$src" add -A && git -C "$src" -c user.name=b -c user.email=b@b commit -qm base
files=$(( size_mb / 10 ))
for i in $(seq 1 "$files"); do
  head -c 10M /dev/urandom > "$src/bagit/data/files/part-$i.bin"
done
git -C "$src" add -A && git -C "$src" -c user.name=b -c user.email=b@b commit -qm data
mkdir -p "$work/srv"
git clone -q --bare "$src" "$work/srv/crate.git"
# Like a hosting service, serve large blobs from the pack as they are instead of searching for
# deltas between random data on every request (which would make the server the bottleneck).
git -C "$work/srv/crate.git" config core.bigFileThreshold 1m
git -C "$work/srv/crate.git" repack -adq
head=$(git -C "$work/srv/crate.git" rev-parse main)
# The same repository from a server that filters objects (as GitHub, GitLab and Gitea do).
cp -a "$work/srv/crate.git" "$work/srv/filtered.git"
git -C "$work/srv/filtered.git" config uploadpack.allowFilter true

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$work/srv" --export-all "$work/srv" &
daemon_pid=$!
url="git://127.0.0.1:$port/crate.git"
until git ls-remote "$url" >/dev/null 2>&1; do sleep 0.1; done

meta=bagit/data/ro-crate-metadata.json
git_full="rm -rf $work/clone && git clone -q --depth 1 --single-branch --branch main --no-checkout $url $work/clone && git -C $work/clone show main:$meta >/dev/null"
loader_full="$loader preview --allow-insecure-transport --repo $url --path /$meta --work-dir $work >/dev/null 2>&1"
git_noop="git ls-remote $url refs/heads/main >/dev/null"
loader_noop="$loader preview --allow-insecure-transport --repo $url --path /$meta --last-commit $head >/dev/null 2>&1"
filtered="git://127.0.0.1:$port/filtered.git"
git_partial="rm -rf $work/clone && git clone -q --filter=blob:none --depth 1 --single-branch --branch main --no-checkout $filtered $work/clone && git -C $work/clone show main:$meta >/dev/null"
loader_partial="$loader preview --allow-insecure-transport --repo $filtered --path /$meta --work-dir $work >/dev/null 2>&1"

echo "repository: $(du -sh "$work/srv/crate.git" | cut -f1) bare, ${size_mb} MB of data at the tip; $(nproc) cores"
hyperfine --warmup 1 --runs 5 -N --export-markdown "$work/full.md" \
  -n "git clone --depth 1 --no-checkout + git show" "bash -c '$git_full'" \
  -n "crate-loader preview" "bash -c '$loader_full'"
hyperfine --warmup 1 --runs 10 -N --export-markdown "$work/partial.md" \
  -n "git clone --filter=blob:none --depth 1 --no-checkout + git show" "bash -c '$git_partial'" \
  -n "crate-loader preview (partial)" "bash -c '$loader_partial'"
hyperfine --warmup 3 --runs 30 -N --export-markdown "$work/noop.md" \
  -n "git ls-remote" "bash -c '$git_noop'" \
  -n "crate-loader preview --last-commit (no-op)" "bash -c '$loader_noop'"

peak() { /usr/bin/time -f %M bash -c "$1" 2>&1 >/dev/null | tail -n 1; }
# bash -c adds its own small RSS; both sides pay it. Each peak is the max over the processes
# (git's helpers; the loader and its fetch worker).
echo
echo "| command | peak RSS (MiB) |"
echo "| --- | --- |"
rm -rf "$work/clone"
git_clone_kb=$( { /usr/bin/time -f %M git clone -q --depth 1 --single-branch --branch main --no-checkout "$url" "$work/clone"; } 2>&1 | tail -n 1)
echo "| git clone --depth 1 --no-checkout (largest of its processes) | $(( git_clone_kb / 1024 )) |"
echo "| crate-loader preview | $(( $(peak "$loader_full") / 1024 )) |"
echo "| git clone --filter=blob:none --depth 1 + git show (largest of its processes) | $(( $(peak "$git_partial") / 1024 )) |"
echo "| crate-loader preview (partial) | $(( $(peak "$loader_partial") / 1024 )) |"
echo "| git ls-remote | $(( $(peak "$git_noop") / 1024 )) |"
echo "| crate-loader preview --last-commit (no-op) | $(( $(peak "$loader_noop") / 1024 )) |"
echo
cat "$work/full.md" "$work/partial.md" "$work/noop.md"
