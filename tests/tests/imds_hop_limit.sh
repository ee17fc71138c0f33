# Client and server namespaces joined through a router namespace (one forwarding hop), on
# documentation addresses that exist only inside these namespaces. Prints, per hop limit,
# the status of a GET and of the token PUT ("000": the response never arrived).
set -eu
c=imdsc$TAG r=imdsr$TAG s=imdss$TAG pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    for n in $c $r $s; do ip netns del "$n" 2>/dev/null; done
    return 0
}
trap cleanup EXIT
for n in $c $r $s; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add "vc$TAG" netns "$c" type veth peer name "vrc$TAG" netns "$r"
ip link add "vs$TAG" netns "$s" type veth peer name "vrs$TAG" netns "$r"
ip -n "$c" addr add 192.0.2.2/24 dev "vc$TAG"
ip -n "$r" addr add 192.0.2.1/24 dev "vrc$TAG"
ip -n "$r" addr add 198.51.100.1/24 dev "vrs$TAG"
ip -n "$s" addr add 198.51.100.2/24 dev "vs$TAG"
for l in "$c vc$TAG" "$r vrc$TAG" "$r vrs$TAG" "$s vs$TAG"; do
    set -- $l
    ip -n "$1" link set "$2" up
done
ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
ip -n "$c" route add default via 192.0.2.1
ip -n "$s" route add default via 198.51.100.1
url=http://198.51.100.2
for hop in 1 2; do
    ip netns exec "$s" "$VMCTX" imds serve --source "$SRC" --listen 198.51.100.2:80 \
        --hop-limit "$hop" >"$T/out$hop" 2>"$T/err$hop" &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$T/out$hop" && break; sleep 0.05; done
    get=$(ip netns exec "$c" curl -s -o /dev/null -w '%{http_code}' -m 3 "$url/latest/meta-data/instance-id" || true)
    put=$(ip netns exec "$c" curl -s -o /dev/null -w '%{http_code}' -m 2 -X PUT \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$url/latest/api/token" || true)
    echo "hop$hop get=$get put=$put"
    kill "$pid"
    wait "$pid" || true
    pid=
done
