#!/usr/bin/env bash
# Benchmark of `vmctx imds serve` on loopback with wrk (Debian's; `.ci/install-imds-clients`
# installs it), not run by CI. In one run:
#   - a leaf GET without a token (IMDSv1), long enough for about a million requests;
#   - a leaf GET with a token, tokens required;
#   - the token PUT (each response closes its connection, as the hop-limit rule wants);
#   - Python's http.server serving the same tree written out as files (the 2011 way).
# Prints requests/s, p99 latency, errors, and the emulator's peak RSS.
# Usage: [CONNS=64] tests/bench/imds-bench.sh [SECONDS_PER_CASE]   (default 10; the v1 case runs 2x)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${CONNS:-64}
command -v wrk >/dev/null || { echo "wrk is missing: run .ci/install-imds-clients" >&2; exit 1; }
cargo build -q --release -p vmctx
bin=target/x86_64-unknown-linux-gnu/release/vmctx
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
src=dir:vm-fixtures/contexts/imported-ami
leaf=/latest/meta-data/instance-id

start_imds() { # args… → sets $addr $pid
    "$bin" imds serve --source "$src" --listen 127.0.0.1:0 "$@" >"$work/out" 2>"$work/err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
    addr=$(sed -n 's/^listening on //p' "$work/out")
}

. tests/bench/wrk.sh

echo "== vmctx imds serve (release), wrk -t2 -c$conns, ${secs}s per case, $(nproc) cores"
start_imds
secs=$((secs * 2)) run_wrk imds-get-v1 "http://$addr$leaf"
cat >"$work/put.lua" <<'EOF'
wrk.method = "PUT"
wrk.headers["X-aws-ec2-metadata-token-ttl-seconds"] = "21600"
EOF
run_wrk imds-token-put "http://$addr/latest/api/token" -s "$work/put.lua"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid"
wait "$pid" 2>/dev/null || true

start_imds --require-token
token=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' "http://$addr/latest/api/token")
run_wrk imds-get-v2-required "http://$addr$leaf" -H "X-aws-ec2-metadata-token: $token"
rss2=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid"
wait "$pid" 2>/dev/null || true

# The same tree as files under latest/ for Python's http.server.
"$bin" imds tree --source "$src" >"$work/tree.json"
python3 - "$work/tree.json" "$work/files/latest" <<'EOF'
import json, os, sys
def write(node, path):
    os.makedirs(path, exist_ok=True)
    for name, child in node.items():
        p = os.path.join(path, name.split("=")[0])
        if isinstance(child, dict):
            write(child, p)
        else:
            with open(p, "w") as f:
                f.write(child)
write(json.load(open(sys.argv[1])), sys.argv[2])
EOF
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/files" "$port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port$leaf" >/dev/null && break; sleep 0.05; done
run_wrk python-http.server "http://127.0.0.1:$port$leaf"

ratio=$(awk -v a="$(cat "$work/rps-imds-get-v1")" -v b="$(cat "$work/rps-python-http.server")" 'BEGIN {printf "%.0f", a / b}')
echo "peak RSS: $((rss / 1024)) MiB (v1 + token PUT run), $((rss2 / 1024)) MiB (v2 run)"
echo "imds v1 GET vs python http.server: ${ratio}x"
echo "goals: >= 40k req/s, p99 < 2 ms, >= 10x python, RSS <= 16 MiB"
