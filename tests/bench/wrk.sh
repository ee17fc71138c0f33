# Sourced by the emulator's benchmarks: run_wrk, with $work, $conns and $secs set.
# run_wrk NAME URL [WRK ARGS…]: one wrk run; prints "req/s p99 requests errors" (and wrk's own
# error lines when there were any), and keeps req/s in $work/rps-NAME, errors in $work/errs-NAME.
run_wrk() {
    local name=$1 url=$2
    shift 2
    wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url" >"$work/wrk-$name" 2>&1 ||
        echo "$name: wrk failed ($?): $(tail -1 "$work/wrk-$name")"
    local rps p99 total errs
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk-$name")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk-$name")
    total=$(awk '/requests in/ {print $1}' "$work/wrk-$name")
    errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$work/wrk-$name")
    printf '%-28s %10s req/s  p99 %8s  %9s requests  %s errors\n' "$name" "$rps" "$p99" "$total" "$errs"
    [ "$errs" = 0 ] || grep -E "Socket errors|Non-2xx" "$work/wrk-$name" | sed 's/^ */    /' || true
    echo "$rps" >"$work/rps-$name"
    echo "$errs" >"$work/errs-$name"
}
