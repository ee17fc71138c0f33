#!/usr/bin/env bash
# Notebook sync benchmark: initial pull and no-op re-sync of one seeded bucket (200 notebooks of
# 4–60 KiB, some with spaces/unicode/`+%&#` names, plus one 20 MiB file) from moto on 127.0.0.1,
# for `vmctx sync --once` (release build), Debian's `aws s3 sync` and `rclone sync` (defaults,
# and with --use-server-modtime). Medians of RUNS runs (default 3); requests counted in moto's
# log. Not run by CI. Needs: .ci/install-sync-deps --bench (moto, awscli, rclone).
#
#   tests/bench/sync.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
cache=${VMCTX_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmctx-ci}
moto=${VMCTX_MOTO_SERVER:-$cache/venv/bin/moto_server}
py=$cache/venv/bin/python
aws=/usr/bin/aws        # Debian's awscli, not a pip one earlier in PATH
rclone=/usr/bin/rclone
for t in "$moto" "$py" "$aws" "$rclone"; do
    [ -x "$t" ] || { echo "missing $t: run .ci/install-sync-deps --bench" >&2; exit 1; }
done

cargo build -q --release -p vmctx
vmctx=target/x86_64-unknown-linux-gnu/release/vmctx


work=$(mktemp -d)
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -sf "$url/" >/dev/null 2>&1 && break
    sleep 0.2
done

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE # rclone 1.60 fails on it ("unsupported transport"); the endpoint is http
"$py" - "$url" <<'EOF'
import random, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.create_bucket(Bucket="bench")
rnd = random.Random(7)
odd = ["with space", "unicode é 日本 📓", "plus+pct%amp&hash#"]
for i in range(200):
    name = f"nb/{odd[i % 3]} {i:03}.ipynb" if i % 10 == 0 else f"nb/dir{i % 7}/notebook-{i:03}.ipynb"
    body = ('{"cells": [%s]}' % ",".join(['"x%d"' % rnd.randrange(10**6)] * rnd.randrange(500, 7000))).encode()
    s3.put_object(Bucket="bench", Key=name, Body=body)
s3.put_object(Bucket="bench", Key="nb/data/big file 20MiB.bin", Body=rnd.randbytes(20 << 20))
EOF

requests() { wc -l <"$work/moto.log"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

# run NAME CLEAN_CMD SYNC_CMD...: prints "NAME pull noop noop_requests"
run() {
    local name=$1 clean=$2; shift 2
    local pulls=() noops=() reqs=()
    for _ in $(seq "$runs"); do
        eval "$clean"
        local t0 t1 t2 r0
        t0=$(now)
        "$@" >/dev/null
        t1=$(now)
        r0=$(requests)
        "$@" >/dev/null
        t2=$(now)
        reqs+=($(( $(requests) - r0 )))
        pulls+=("$(echo "$t1 - $t0" | bc)")
        noops+=("$(echo "$t2 - $t1" | bc)")
    done
    local count
    count=$(find "$work/dest" -type f ! -name '.*' 2>/dev/null | wc -l)
    [ "$count" = 201 ] || name="$name (FAILED: $count files)"
    printf '%s|%.2f|%.2f|%s|%s\n' "$name" \
        "$(printf '%s\n' "${pulls[@]}" | median)" "$(printf '%s\n' "${noops[@]}" | median)" \
        "$(printf '%s\n' "${reqs[@]}" | median)" "$count"
}

results=()
results+=("$(run "vmctx sync --once" 'rm -rf "$work/dest" "$work/state"' \
    "$vmctx" sync --once --dir "$work/dest" --bucket bench --prefix nb/ --endpoint "$url" \
    --state-dir "$work/state")")
results+=("$(run "aws s3 sync ($($aws --version 2>&1 | cut -d' ' -f1))" 'rm -rf "$work/dest"' \
    "$aws" s3 sync s3://bench/nb/ "$work/dest" --endpoint-url "$url" --only-show-errors --no-progress)")
export RCLONE_S3_PROVIDER=Other RCLONE_S3_ENDPOINT=$url RCLONE_S3_REGION=us-east-1 \
    RCLONE_S3_ACCESS_KEY_ID=testing RCLONE_S3_SECRET_ACCESS_KEY=testing RCLONE_S3_FORCE_PATH_STYLE=true
rv=$($rclone version 2>/dev/null | head -1 | cut -d' ' -f2)
results+=("$(run "rclone sync ($rv)" 'rm -rf "$work/dest"' \
    "$rclone" sync :s3:bench/nb "$work/dest" --config /dev/null)")
results+=("$(run "rclone sync --use-server-modtime" 'rm -rf "$work/dest"' \
    "$rclone" sync :s3:bench/nb "$work/dest" --config /dev/null --use-server-modtime)")

echo
echo "201 objects (200 notebooks + 20 MiB), moto on loopback, median of $runs runs, $(nproc) cores"
echo
echo "| tool | initial pull (s) | no-op re-sync (s) | requests in the no-op | files |"
echo "| --- | --- | --- | --- | --- |"
for r in "${results[@]}"; do
    IFS='|' read -r n p o q c <<<"$r"
    echo "| $n | $p | $o | $q | $c |"
done
