#!/usr/bin/env bash
# Benchmark: whole-process wall time of `vmctx apply --stage local --root SCRATCH` for the
# hol02-vpn fixture read from its ISO, inside a network namespace of its own:
#   1. first apply: fresh state, fresh links and a fresh scratch tree before every run
#      (so it adds addresses and routes, writes every file, and creates the user with useradd);
#   2. the same with the user already in the image (no useradd: vmctx's own work);
#   3. the no-op re-apply (everything already in place).
# Goals (issue 4): first apply <= 15 ms, re-apply <= 5 ms. Needs root, xorriso and hyperfine.
# Not a test; not run by CI. Usage: tests/bench/apply.sh   (VMCTX=path to use a prebuilt binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "apply.sh: needs root (network namespaces)" >&2; exit 1; }
for t in xorriso hyperfine ip unshare useradd; do
    command -v "$t" >/dev/null || { echo "apply.sh: $t is missing (apt-get install xorriso hyperfine iproute2)" >&2; exit 1; }
done
if [ -z "${VMCTX:-}" ]; then
    cargo build -q --release -p vmctx
    VMCTX=$PWD/target/x86_64-unknown-linux-gnu/release/vmctx
fi
RUNS=${RUNS:-100}
work=$(mktemp -d)
ns=vmctx-bench-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
vm-fixtures/build-context-iso vm-fixtures/contexts/hol02-vpn "$work/vpn.iso" 2>/dev/null
ip netns add "$ns"

# The image: the files useradd --prefix needs, as on a fresh cloud image.
mkdir -p "$work/image/etc" "$work/image/root"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$work/image/etc/passwd"
printf 'root:x:0:\n' >"$work/image/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$work/image/etc/shadow"
printf 'root:*::\n' >"$work/image/etc/gshadow"
cp /etc/login.defs "$work/image/etc/"
cp -a "$work/image" "$work/image-with-user"
printf 'ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n' >>"$work/image-with-user/etc/passwd"
printf 'ubuntu:x:1000:\n' >>"$work/image-with-user/etc/group"
printf 'ubuntu:*:19000:0:99999:7:::\n' >>"$work/image-with-user/etc/shadow"
mkdir -p "$work/image-with-user/home/ubuntu"

cat >"$work/reset" <<SH
#!/bin/sh
# Fresh links, fresh tree (fresh state): run inside the namespace before each first apply.
ip link del dmz0 2>/dev/null
ip link add dmz0 address 02:00:0a:00:01:0a type veth peer name res0 address 02:00:0a:00:03:05
rm -rf "$work/root" && cp -a "$work/\$1" "$work/root"
SH
chmod +x "$work/reset"
cmd="$VMCTX apply --stage local --source opennebula:$work/vpn.iso --root $work/root"

median() { python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"; }
inns() { ip netns exec "$ns" unshare --uts "$@"; }

inns hyperfine -N --style none --runs "$RUNS" --prepare "$work/reset image" --export-json "$work/first.json" "$cmd" >/dev/null
inns hyperfine -N --style none --runs "$RUNS" --prepare "$work/reset image-with-user" --export-json "$work/first-nouseradd.json" "$cmd" >/dev/null
inns sh -c "$work/reset image && $cmd >/dev/null && hyperfine -N --style none --warmup 3 --runs $((RUNS * 2)) --export-json $work/again.json '$cmd' >/dev/null"
# Confirm the re-apply really is a no-op.
changed=$(inns sh -c "$work/reset image && $cmd >/dev/null && $cmd --json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["changed"])')

first=$(median "$work/first.json"); first_nu=$(median "$work/first-nouseradd.json"); again=$(median "$work/again.json")
verdict() { python3 -c "import sys; print('PASS' if float(sys.argv[1]) <= float(sys.argv[2]) else 'MISS')" "$1" "$2"; }
echo "vmctx apply --stage local, hol02-vpn from its ISO, in a network namespace ($RUNS runs each)"
echo "  first apply (useradd creates the user):  median $first ms"
echo "  first apply (user already in the image): median $first_nu ms   goal <= 15 ms: $(verdict "$first_nu" 15)"
echo "  re-apply (changed=$changed):               median $again ms   goal <= 5 ms:  $(verdict "$again" 5)"
