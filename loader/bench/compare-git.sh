#!/usr/bin/env bash
# Benchmark (not a test): crate-loader against the git command line on the same repositories over
# the same transport (git daemon on loopback), for repositories of several sizes.
#
#   loader/bench/compare-git.sh [SIZE_MB ...]   (default: 1 300 1024; needs git, hyperfine,
#                                                GNU time, python3)
#
# For each size, a crate repository with SIZE_MB of incompressible data beside the metadata file,
# served as is and with uploadpack.allowFilter (as GitHub, GitLab and Gitea serve):
# 1. partial load, server with filters (crate-loader fetches the commit, the trees and the one
#    blob):
#       crate-loader preview  vs  git clone --filter=blob:none --depth 1 --no-checkout
#                                 + git show <branch>:<metadata path> (the blob fetched lazily)
# 2. full load, server without filters (every object of the tip):
#       crate-loader preview  vs  git clone --depth 1 --single-branch --no-checkout + git show
# 3. bytes received by the client, counted by a loopback proxy between client and daemon;
# 4. peak memory (max RSS) of each, via /usr/bin/time.
# Then, once: the no-op check, crate-loader preview --last-commit <head> vs git ls-remote.
set -euo pipefail
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 300 1024)
root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in git hyperfine /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: git hyperfine time python3)" >&2; exit 1; }
done

cargo build --release -q -p crate-loader --manifest-path "$root/Cargo.toml"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')
loader="$target/release/crate-loader"

work=$(mktemp -d)
pids=()
cleanup() { for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
# Waits (at most 10 s) until the command "$@" succeeds.
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "gave up waiting for: $*" >&2; exit 1; }
trap cleanup EXIT
export HOME="$work" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
commit() { git -C "$1" -c user.name=b -c user.email=b@b commit -qm "$2"; }
meta=bagit/data/ro-crate-metadata.json

# A crate repository with SIZE_MB of incompressible data files (at most 10 MB each) beside the
# metadata, and some history so that depth matters; served as crate-SIZE.git and, filtering,
# filtered-SIZE.git.
make_repo() {
  local size_mb=$1 src="$work/src-$1"
  git init -q -b main "$src"
  mkdir -p "$src/bagit/data/files"
  cp "$root/examples/demo-crate/bagit/data/ro-crate-metadata.json" "$src/bagit/data/"
  git -C "$src" add -A && commit "$src" base
  local left=$size_mb i=0
  while [ "$left" -gt 0 ]; do
    local chunk=$(( left < 10 ? left : 10 ))
    i=$((i + 1)); left=$((left - chunk))
    head -c "${chunk}M" /dev/urandom > "$src/bagit/data/files/part-$i.bin"
  done
  git -C "$src" add -A && commit "$src" data
  local bare="$work/srv/crate-$size_mb.git"
  git clone -q --bare "$src" "$bare"
  rm -rf "$src"
  # Like a hosting service, serve large blobs from the pack as they are instead of searching for
  # deltas between random data on every request (which would make the server the bottleneck).
  git -C "$bare" config core.bigFileThreshold 1m
  git -C "$bare" repack -adq
  # The same objects (hard links) from a server that filters, as GitHub, GitLab and Gitea do.
  cp -al "$bare" "$work/srv/filtered-$size_mb.git"
  git -C "$work/srv/filtered-$size_mb.git" config uploadpack.allowFilter true
}

mkdir -p "$work/srv"
for size in "${sizes[@]}"; do make_repo "$size"; done

daemon_port=$(free_port)
git daemon --reuseaddr --listen=127.0.0.1 --port="$daemon_port" --base-path="$work/srv" --export-all "$work/srv" &
pids+=($!)
wait_for git ls-remote "git://127.0.0.1:$daemon_port/crate-${sizes[0]}.git"

# A loopback proxy in front of the daemon that counts the bytes sent to clients. A connection to
# its report port answers the total once no proxied connection is open, and resets it.
proxy_port=$(free_port)
report_port=$(free_port)
cat > "$work/proxy.py" <<'EOF'
import socket, sys, threading
listen, target, report = (int(p) for p in sys.argv[1:4])
lock = threading.Condition()
state = {"bytes": 0, "open": 0}
def pump(src, dst, count):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
            if count:
                with lock:
                    state["bytes"] += len(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(client):
    try:
        server = socket.create_connection(("127.0.0.1", target))
        up = threading.Thread(target=pump, args=(client, server, False))
        up.start()
        pump(server, client, True)
        up.join()
        server.close()
    finally:
        client.close()
        with lock:
            state["open"] -= 1
            lock.notify_all()
def accept(port, handler):
    s = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()
def proxied(conn):
    with lock:
        state["open"] += 1
    serve(conn)
def answer(conn):
    with lock:
        lock.wait_for(lambda: state["open"] == 0)
        total, state["bytes"] = state["bytes"], 0
    conn.sendall(b"%d\n" % total); conn.close()
threading.Thread(target=accept, args=(report, answer), daemon=True).start()
accept(listen, proxied)
EOF
python3 "$work/proxy.py" "$proxy_port" "$daemon_port" "$report_port" &
pids+=($!)
wait_for python3 -c "import socket; socket.create_connection(('127.0.0.1', $proxy_port)).close()"
received() { python3 -c "import socket; print(socket.create_connection(('127.0.0.1', $report_port)).makefile().readline().strip())"; }

git_clone() { # url, extra clone flags
  echo "rm -rf $work/clone && git clone -q ${2:-} --depth 1 --single-branch --branch main --no-checkout $1 $work/clone && git -C $work/clone show main:$meta >/dev/null"
}
# The default transfer budget (512 MiB) would end a full load of the largest repository; the
# benchmark lifts it to 4 GiB to measure the fetch itself.
loader_preview() { # url, extra flags
  echo "$loader preview --allow-insecure-transport --repo $1 --path /$meta --work-dir $work --max-transfer-bytes 4294967296 ${2:-} >/dev/null 2>&1"
}
peak_mib() { echo $(( $(/usr/bin/time -f %M bash -c "$1" 2>&1 >/dev/null | tail -n 1) / 1024 )); }
# Bytes received by `command` when pointed at the proxy (URL through the proxy as $2).
bytes_through_proxy() { received >/dev/null; bash -c "$1" || echo "failed: $1" >&2; received; }
time_of() { python3 -c "import json; r=json.load(open('$1'))['results'][$2]; print(f\"{r['mean']*1000:.0f} ms ± {r['stddev']*1000:.0f}\")"; }
mb() { python3 -c "n=$1; print(f'{n / 1e3:.1f} kB' if n < 1e6 else f'{n / 1e6:.1f} MB')"; }

results="$work/results.md"
echo "| repository | what | git command line | crate-loader |" > "$results"
echo "| --- | --- | --- | --- |" >> "$results"
echo "$(nproc) cores, $(git --version)"
for size in "${sizes[@]}"; do
  direct="git://127.0.0.1:$daemon_port"
  proxied="git://127.0.0.1:$proxy_port"
  echo "== ${size} MB of data: $(du -sh "$work/srv/crate-$size.git" | cut -f1) bare"
  runs=$(( size > 300 ? 3 : 5 ))
  hyperfine --warmup 1 --runs 10 -N --export-json "$work/partial-$size.json" \
    -n "git partial clone + git show" "bash -c '$(git_clone "$direct/filtered-$size.git" --filter=blob:none)'" \
    -n "crate-loader preview (partial)" "bash -c '$(loader_preview "$direct/filtered-$size.git")'"
  hyperfine --warmup 1 --runs "$runs" -N --export-json "$work/full-$size.json" \
    -n "git clone --depth 1 + git show" "bash -c '$(git_clone "$direct/crate-$size.git")'" \
    -n "crate-loader preview (full)" "bash -c '$(loader_preview "$direct/crate-$size.git")'"
  git_partial_bytes=$(bytes_through_proxy "$(git_clone "$proxied/filtered-$size.git" --filter=blob:none)")
  loader_partial_bytes=$(bytes_through_proxy "$(loader_preview "$proxied/filtered-$size.git")")
  git_full_bytes=$(bytes_through_proxy "$(git_clone "$proxied/crate-$size.git")")
  loader_full_bytes=$(bytes_through_proxy "$(loader_preview "$proxied/crate-$size.git")")
  {
    echo "| $size MB | partial load: time | $(time_of "$work/partial-$size.json" 0) | $(time_of "$work/partial-$size.json" 1) |"
    echo "| $size MB | partial load: bytes received | $(mb "$git_partial_bytes") | $(mb "$loader_partial_bytes") |"
    echo "| $size MB | partial load: peak memory | $(peak_mib "$(git_clone "$direct/filtered-$size.git" --filter=blob:none)") MiB | $(peak_mib "$(loader_preview "$direct/filtered-$size.git")") MiB |"
    echo "| $size MB | full load: time | $(time_of "$work/full-$size.json" 0) | $(time_of "$work/full-$size.json" 1) |"
    echo "| $size MB | full load: bytes received | $(mb "$git_full_bytes") | $(mb "$loader_full_bytes") |"
    echo "| $size MB | full load: peak memory | $(peak_mib "$(git_clone "$direct/crate-$size.git")") MiB | $(peak_mib "$(loader_preview "$direct/crate-$size.git")") MiB |"
  } >> "$results"
done

# The no-op check does not depend on the repository's size: measured on the last one.
size=${sizes[-1]}
url="git://127.0.0.1:$daemon_port/crate-$size.git"
head=$(git -C "$work/srv/crate-$size.git" rev-parse main)
git_noop="git ls-remote $url refs/heads/main >/dev/null"
loader_noop="$(loader_preview "$url" "--last-commit $head")"
hyperfine --warmup 3 --runs 30 -N --export-json "$work/noop.json" \
  -n "git ls-remote" "bash -c '$git_noop'" \
  -n "crate-loader preview --last-commit (no-op)" "bash -c '$loader_noop'"
echo "| any | no-op check: time | $(time_of "$work/noop.json" 0) | $(time_of "$work/noop.json" 1) |" >> "$results"
echo "| any | no-op check: peak memory | $(peak_mib "$git_noop") MiB | $(peak_mib "$loader_noop") MiB |" >> "$results"
echo
echo "Peak memory is the largest of each side's processes (git's helpers; the loader and its fetch"
echo "worker), each run under bash -c, which both sides pay."
echo
cat "$results"
