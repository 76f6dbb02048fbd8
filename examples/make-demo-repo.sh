#!/usr/bin/env bash
# Rebuilds examples/demo-crate.git, the bare repository the README previews, from the files in
# examples/demo-crate/. The commit is deterministic (fixed author, committer and dates), so
# rebuilding without changing the files yields the same commit id.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/demo-crate.git"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export HOME="$work" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="SDE Data Team" GIT_AUTHOR_EMAIL="data-team@example.org"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
export GIT_AUTHOR_DATE="2025-03-14T10:42:07Z" GIT_COMMITTER_DATE="2025-03-14T10:42:07Z"

git init -q -b main "$work/src"
cp -R "$here/demo-crate/." "$work/src/"
git -C "$work/src" add -A
git -C "$work/src" commit -q -m "Publish the antimicrobial prescribing crate"
sha=$(git -C "$work/src" rev-parse HEAD)

# A minimal bare repository: one pack, one loose ref, no hooks or samples. Nothing in it may be
# an empty directory, since the outer repository cannot track those.
rm -rf "$out"
git init -q --bare -b main "$out"
git -C "$work/src" push -q "$out" main
git -C "$out" -c repack.writeBitmaps=false repack -adq
rm -rf "$out/hooks" "$out/info" "$out/description" "$out/logs" "$out/objects/info" "$out/packed-refs"
printf '%s\n' "$sha" > "$out/refs/heads/main"
printf '[core]\n\trepositoryformatversion = 0\n\tbare = true\n' > "$out/config"
echo "built $out at $sha"
