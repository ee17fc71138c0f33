#!/usr/bin/env bash
# Benchmark of the metadata sidecar on a host, `vmctx imds serve --host-map opennebula:DIR`, on
# loopback with wrk; not run by CI. A fake OpenNebula datastore of N VM folders (default 1,000),
# each with its context CD as disk.1 (vm-fixtures/build-context-iso) beside a disk image disk.0.
# The VM measured has the address 127.0.0.1 (wrk's source); the others 10.x.y.z. Prints:
#   - time to ready: from start until host-status shows every VM ready;
#   - req/s (v1 GET) against that VM with all N loaded, and with it alone (goal: >= 0.8x);
#   - the sidecar's peak RSS with N loaded;
#   - the VM's context CD rewritten under load (a new image renamed in place, then one copied
#     over the old): failed requests during the run (goal: 0), and whether the change was seen.
# Usage: [N=1000] [CONNS=15] [VMCTX=BIN] tests/bench/imds-host-bench.sh [SECONDS_PER_CASE]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
n=${N:-1000}
# A VM may hold at most 16 connections (more are closed): wrk takes 15, curl the last one.
conns=${CONNS:-15}
for t in wrk xorriso curl; do
    command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
if [ -z "${VMCTX:-}" ]; then
    cargo build -q --release -p vmctx
fi
bin=${VMCTX:-$PWD/target/x86_64-unknown-linux-gnu/release/vmctx}
iso=$PWD/vm-fixtures/build-context-iso
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
leaf=/latest/meta-data/instance-id

# context DS VMID ADDR [TYPE]: VM VMID's folder in datastore DS, its CD from a context.sh
context() {
    local ds=$1 id=$2 addr=$3 type=${4:-t3.micro}
    mkdir -p "$work/ctx/$id" "$ds/$id"
    cat >"$work/ctx/$id/context.sh" <<EOF
VMID='$id'
ETH0_MAC='02:00:0a:00:00:01'
ETH0_IP='$addr'
ETH0_MASK='255.0.0.0'
EC2_INSTANCE_TYPE='$type'
SSH_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmC9kYDWfOZm0oCdSUZ8DmvNiVOLIg1VlQaKAbTdXOr vm$id'
EOF
    [ -e "$ds/$id/disk.0" ] || head -c 1048576 /dev/zero >"$ds/$id/disk.0"
    "$iso" "$work/ctx/$id" "$ds/$id/disk.1" 2>/dev/null
}
addr_of() { # VMID → 10.x.y.z
    echo "10.$(($1 / 65536 % 256)).$(($1 / 256 % 256)).$(($1 % 256))"
}

echo "== building $n context CDs"
t0=$(date +%s.%N)
mkdir -p "$work/all/0" "$work/one/0"
context "$work/all/0" 1 127.0.0.1
context "$work/one/0" 1 127.0.0.1
export -f context addr_of
export work iso
seq 2 "$n" | xargs -P "$(nproc)" -I{} bash -c 'context "$work/all/0" {} "$(addr_of {})"'
echo "built in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"

start_sidecar() { # DS → sets $addr $pid $ready_ms
    local ds=$1 want=$2 sock=$work/status-$RANDOM.sock
    local t0 t1
    t0=$(date +%s%N)
    "$bin" imds serve --host-map "opennebula:$ds" --listen 127.0.0.1:0 --status-socket "$sock" \
        >"$work/out" 2>"$work/err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
    addr=$(sed -n 's/^listening on //p' "$work/out")
    for _ in $(seq 1200); do
        ready=$("$bin" imds host-status --socket "$sock" 2>/dev/null | grep -c ' ready ' || true)
        [ "$ready" -ge "$want" ] && break
        sleep 0.05
    done
    t1=$(date +%s%N)
    ready_ms=$(((t1 - t0) / 1000000))
    status_sock=$sock
}

. tests/bench/wrk.sh

echo "== vmctx imds serve --host-map opennebula:DIR (release), wrk -t2 -c$conns, ${secs}s per case, $(nproc) cores"
start_sidecar "$work/all" "$n"
echo "ready: $ready / $n VMs in $ready_ms ms"
[ "$(curl -s "http://$addr$leaf" || true)" = i-00000000000000001 ] || { echo "VM 1 not served" >&2; exit 1; }
run_wrk "one-vm-of-$n" "http://$addr$leaf"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

# The rewrite under load: a new image renamed over the old, then one copied over it in place.
run_wrk rewrite-under-load "http://$addr$leaf" &
wrk_pid=$!
sleep $((secs / 4 + 1))
context "$work/new/0" 1 127.0.0.1 m5.large
mv "$work/new/0/1/disk.1" "$work/all/0/1/disk.1"
sleep $((secs / 4 + 1))
context "$work/new/0" 1 127.0.0.1 c5.xlarge
cp "$work/new/0/1/disk.1" "$work/all/0/1/disk.1"
seen=
for _ in $(seq 50); do
    seen=$(curl -s "http://$addr/latest/meta-data/instance-type" || true)
    [ "$seen" = c5.xlarge ] && break
    sleep 0.1
done
wait "$wrk_pid"
kill -USR1 "$pid"
sleep 0.2
kill "$pid"
wait "$pid" 2>/dev/null || true

start_sidecar "$work/one" 1
echo "ready: $ready / 1 VM in $ready_ms ms"
run_wrk one-vm-alone "http://$addr$leaf"
kill "$pid"
wait "$pid" 2>/dev/null || true

ratio=$(awk -v a="$(cat "$work/rps-one-vm-of-$n")" -v b="$(cat "$work/rps-one-vm-alone")" 'BEGIN {printf "%.2f", a / b}')
echo "peak RSS with $n VMs: $((rss / 1024)) MiB"
echo "one VM with $n loaded vs alone: ${ratio}x"
echo "context CD rewritten twice under load: $(cat "$work/errs-rewrite-under-load") errors (failed requests); instance-type now served: $seen"
echo "goals: ratio >= 0.8, 0 failed requests, the change seen (c5.xlarge)"
