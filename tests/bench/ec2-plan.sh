#!/usr/bin/env bash
# Time from start to a complete plan (`vmctx plan --source ec2:URL --json`) against a local
# IMDS that adds 2 ms to every response, for the imported-ami tree: the parallel crawl (the
# default, 8 requests in flight) next to a serial one (VMCTX_IMDS_CONCURRENCY=1). Goal: the
# parallel figure ≤ 50 ms. Not run by CI.
# Usage: [VMCTX=path/to/vmctx] [DELAY_MS=2] [RUNS=30] tests/bench/ec2-plan.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
delay_ms=${DELAY_MS:-2}
runs=${RUNS:-30}
if [ -z "${VMCTX:-}" ]; then
    cargo build -q --release -p vmctx
    VMCTX=target/x86_64-unknown-linux-gnu/release/vmctx
fi
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The emulator's tree for the fixture, served by a threaded Python server that sleeps
# DELAY_MS before every answer (EC2's own IMDS answers in about 1-2 ms).
"$VMCTX" imds tree --source dir:vm-fixtures/contexts/imported-ami >"$work/tree.json"
cat >"$work/slow_imds.py" <<'EOF'
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

tree = json.load(open(sys.argv[1]))
delay = float(sys.argv[2]) / 1000.0

class H(BaseHTTPRequestHandler):
    def answer(self, status, body):
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        if self.path == "/latest/api/token":
            return self.answer(200, b"bench-token")
        self.answer(403, b"")

    def do_GET(self):
        node = tree
        parts = [p for p in self.path.split("/")[2:] if p]
        for p in parts:
            # public-keys: `0/` is the entry listed as `0=name` (spec §1).
            key = p if isinstance(node, dict) and p in node else next(
                (k for k in (node if isinstance(node, dict) else {}) if k.startswith(p + "=")), None)
            if key is None:
                return self.answer(404, b"404 - Not Found")
            node = node[key]
        if isinstance(node, dict):
            body = "\n".join(k + "/" if isinstance(v, dict) else k for k, v in node.items())
        else:
            body = node
        self.answer(200, body.encode())

    def log_message(self, *a):
        pass

# The default listen backlog (5) drops a burst of parallel connects: a 1 s SYN retry each.
ThreadingHTTPServer.request_queue_size = 128
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
python3 "$work/slow_imds.py" "$work/tree.json" "$delay_ms" >"$work/port" &
pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$work/port")"
links=vm-fixtures/links/imported-ami.links
plan=("$VMCTX" plan --json --source "ec2:$url" --links-file "$links")

# Check once: the plan has the fixture's NIC and key.
"${plan[@]}" >"$work/plan.json"
grep -q '"ens3"' "$work/plan.json" && grep -q 'gsg-keypair' "$work/plan.json" || {
    echo "the plan is incomplete:" >&2
    cat "$work/plan.json" >&2
    exit 1
}

median_ms() { # env… → median wall time of $runs plans, in ms
    local t=()
    for _ in $(seq "$runs"); do
        local s e
        s=$(date +%s%N)
        env "$@" "${plan[@]}" >/dev/null
        e=$(date +%s%N)
        t+=($(((e - s) / 1000)))
    done
    printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f", m/1000}'
}

echo "== vmctx plan --source ec2 (imported-ami tree), IMDS +${delay_ms} ms per response, median of $runs, $(nproc) cores"
par=$(median_ms VMCTX_IMDS_CONCURRENCY=8)
ser=$(median_ms VMCTX_IMDS_CONCURRENCY=1)
printf '%-22s %8s ms\n' "parallel crawl (8)" "$par" "serial crawl (1)" "$ser"
verdict=$(awk -v p="$par" 'BEGIN {print (p <= 50) ? "PASS" : "MISS"}')
echo "goal: parallel ≤ 50 ms: $verdict"
