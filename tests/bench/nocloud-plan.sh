#!/usr/bin/env bash
# `vmctx plan --json` on the Proxmox NoCloud seed next to the OpenNebula context it stands
# beside (hol02-jupyter), both as ISO images, whole-process wall time by `hyperfine -N`.
# Goal: the NoCloud plan within the same few milliseconds as the OpenNebula one (its YAML
# parsing adds no noticeable time). Not run by CI.
# Usage: [VMCTX=path/to/vmctx] [RUNS=200] tests/bench/nocloud-plan.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-200}
if [ -z "${VMCTX:-}" ]; then
    cargo build -q --release -p vmctx
    VMCTX=target/x86_64-unknown-linux-gnu/release/vmctx
fi
for t in hyperfine genisoimage xorriso; do
    command -v $t >/dev/null || { echo "$0: $t is not installed" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
vm-fixtures/build-nocloud-seed vm-fixtures/nocloud/proxmox-web01 "$work/seed.iso"
vm-fixtures/build-context-iso vm-fixtures/contexts/hol02-jupyter "$work/context.iso" >/dev/null 2>&1
printf 'bc:24:11:5a:0e:01=eth0\nbc:24:11:5a:0e:02=eth1\n' >"$work/seed.links"
nocloud=("$VMCTX" plan --json --source "nocloud:$work/seed.iso" --links-file "$work/seed.links")
one=("$VMCTX" plan --json --source "opennebula:$work/context.iso" --links-file vm-fixtures/links/hol02-jupyter.links)
# Each must plan its network before it is timed.
"${nocloud[@]}" | grep -q '192.0.2.10/24' || { echo "$0: the NoCloud plan lacks its address" >&2; exit 1; }
"${one[@]}" >/dev/null
hyperfine -N -w 20 -r "$runs" --export-json "$work/h.json" \
    -n nocloud "${nocloud[*]}" -n opennebula "${one[*]}" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
nc, on = r["nocloud"]["median"] * 1e3, r["opennebula"]["median"] * 1e3
print(f"vmctx plan, median of {len(r['nocloud']['times'])} runs:")
print(f"  nocloud (Proxmox seed, ISO)         {nc:6.2f} ms")
print(f"  opennebula (hol02-jupyter, ISO)     {on:6.2f} ms")
print(f"  difference                          {nc - on:+6.2f} ms")
PY
