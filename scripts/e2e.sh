#!/usr/bin/env bash
# End to end: pycrane's main job on its embedded registry, with nothing but pycrane.
#
# Starts `pycrane registry serve` on a free loopback port, builds an image (`append`
# of a generated tar onto scratch), pushes it, copies it, pulls it as oci, tarball
# and legacy, validates each, lists, tags and deletes, then stops the server.
# Prints one line per step and a summary; exits non-zero on the first failure.
#
#   scripts/e2e.sh              # sets up ./.venv (scripts/setup.sh), then uses it
#   PYCRANE=pycrane scripts/e2e.sh   # an installed pycrane instead (no setup)
set -euo pipefail

if [[ -z "${PYCRANE:-}" ]]; then
    root=$(cd "$(dirname "$0")/.." && pwd)
    bash "$root/scripts/setup.sh"
    PYCRANE="$root/.venv/bin/python -m pycrane"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pycrane-e2e.XXXXXX")
server_pid=""
steps=0
started=$(date +%s)

cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "e2e: FAIL: $*" >&2
    if [[ -s "$work/server.log" ]]; then
        echo "e2e: server log:" >&2
        sed 's/^/    /' "$work/server.log" >&2
    fi
    exit 1
}

step() {  # step "description" command...
    local what=$1
    shift
    if ! "$@" >"$work/out" 2>"$work/err"; then
        echo "e2e: step failed: $what" >&2
        sed 's/^/    /' "$work/err" >&2
        fail "$what"
    fi
    steps=$((steps + 1))
    printf 'e2e: ok  %s\n' "$what"
}

pc() { $PYCRANE "$@"; }

sha256() {  # portable: GNU coreutils or macOS
    if command -v sha256sum >/dev/null; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi
}

# -- the registry -----------------------------------------------------------------
$PYCRANE registry serve --address 127.0.0.1:0 --disk "$work/registry" 2>"$work/server.log" &
server_pid=$!
host=""
for _ in $(seq 1 200); do
    if host=$(sed -En 's#.*serving on https?://([^/ ]+).*#\1#p' "$work/server.log" | head -n1) \
        && [[ -n "$host" ]]; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "registry server exited early"
    sleep 0.1
done
[[ -n "$host" ]] || fail "registry server did not report its address"
printf 'e2e: registry on %s (pid %s)\n' "$host" "$server_pid"
repo="$host/e2e/app"

# -- build and push ---------------------------------------------------------------
mkdir -p "$work/rootfs/etc" "$work/rootfs/bin"
echo "hello from pycrane e2e" >"$work/rootfs/etc/motd"
head -c 1048576 /dev/urandom >"$work/rootfs/bin/blob"
tar -C "$work/rootfs" -cf "$work/layer.tar" .

step "append a layer onto scratch and push $repo:v1" pc append -f "$work/layer.tar" -t "$repo:v1"
pushed=$(cat "$work/out")
digest=${pushed##*@}
[[ "$pushed" == "$repo@sha256:"* ]] || fail "append printed '$pushed', expected $repo@sha256:..."

step "digest of $repo:v1" pc digest "$repo:v1"
[[ "$(cat "$work/out")" == "$digest" ]] || fail "digest $(cat "$work/out") != pushed $digest"

step "manifest of $repo:v1" pc manifest "$repo:v1"
[[ "$(sha256 <"$work/out")" == "${digest#sha256:}" ]] \
    || fail "the raw manifest does not hash to $digest"

step "config of $repo:v1" pc config "$repo:v1"
grep -q '"rootfs"' "$work/out" || fail "config has no rootfs"

step "validate --remote $repo:v1" pc validate --remote "$repo:v1"

# -- copy -------------------------------------------------------------------------
step "copy to $host/e2e/copy:v1" pc copy "$repo:v1" "$host/e2e/copy:v1"
step "digest of the copy" pc digest "$host/e2e/copy:v1"
[[ "$(cat "$work/out")" == "$digest" ]] || fail "the copy has digest $(cat "$work/out"), expected $digest"

# -- pull in every format, and validate ------------------------------------------
step "pull --format oci" pc pull --format oci --annotate-ref "$repo:v1" "$work/oci"
step "validate --layout" pc validate --layout "$work/oci"
grep -q "$digest" "$work/oci/index.json" || fail "index.json does not name $digest"

step "pull --format tarball" pc pull "$repo:v1" "$work/image.tar"
step "validate --tarball" pc validate --tarball "$work/image.tar"
step "digest --tarball" pc digest --tarball "$work/image.tar"
[[ "$(cat "$work/out")" == "$digest" ]] || fail "the tarball holds $(cat "$work/out"), expected $digest"

step "pull --format legacy" pc pull --format legacy "$repo:v1" "$work/legacy.tar"
# (Listings go to files first: `grep -q` closing a pipe early would fail the pipeline.)
tar -tf "$work/legacy.tar" >"$work/legacy.list"
grep -q '/layer.tar$' "$work/legacy.list" || fail "legacy tarball has no <id>/layer.tar"
grep -q '^repositories$' "$work/legacy.list" || fail "legacy tarball has no repositories file"

step "push the OCI layout back as $host/e2e/pushed:v1" pc push "$work/oci" "$host/e2e/pushed:v1"
[[ "$(cat "$work/out")" == "$host/e2e/pushed@$digest" ]] || fail "push printed $(cat "$work/out")"

step "export the filesystem" pc export "$repo:v1" "$work/fs.tar"
tar -xOf "$work/fs.tar" ./etc/motd >"$work/motd" 2>/dev/null \
    || tar -xOf "$work/fs.tar" etc/motd >"$work/motd" \
    || fail "exported filesystem lacks etc/motd"
grep -q "hello from pycrane e2e" "$work/motd" || fail "etc/motd has the wrong content"

# -- tags, catalog, delete --------------------------------------------------------
step "tag v1 as v2" pc tag "$repo:v1" v2
step "ls $repo" pc ls "$repo"
[[ "$(sort "$work/out" | tr '\n' ' ')" == "v1 v2 " ]] || fail "tags are '$(tr '\n' ' ' <"$work/out")', expected v1 v2"

step "catalog $host" pc catalog "$host"
for r in e2e/app e2e/copy e2e/pushed; do
    grep -qx "$r" "$work/out" || fail "catalog lacks $r"
done

step "delete $host/e2e/copy:v1" pc delete "$host/e2e/copy:v1"
if pc digest "$host/e2e/copy:v1" >/dev/null 2>"$work/err"; then
    fail "the deleted image is still there"
fi
grep -q "Traceback" "$work/err" && fail "a traceback on a missing image"
steps=$((steps + 1))
echo "e2e: ok  the deleted image is gone (one-line error: $(head -n1 "$work/err"))"

# -- stop -------------------------------------------------------------------------
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
echo "e2e: PASS: $steps steps in $(($(date +%s) - started)) s (image $digest)"
