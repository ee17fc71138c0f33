# A guest namespace running `vmctx imds serve --guest` (tokens required, hop limit 1) and a
# neighbour namespace on the same segment (a veth pair) that routes 169.254.169.254 via the
# guest's address: zero routed hops away, so neither the hop limit nor the token stops it. Prints
# one line per client: the status of the token PUT, of a GET of the role's credentials with
# that token, and of a v1 GET ("000": no answer), and whether the secret came back.
set -eu
g=imdsg$TAG n=imdsn$TAG pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    for ns in $g $n; do ip netns del "$ns" 2>/dev/null; done
    return 0
}
trap cleanup EXIT
for ns in $g $n; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add "vg$TAG" netns "$g" type veth peer name "vn$TAG" netns "$n"
ip -n "$g" addr add 192.0.2.2/24 dev "vg$TAG"
ip -n "$n" addr add 192.0.2.1/24 dev "vn$TAG"
ip -n "$g" link set "vg$TAG" up
ip -n "$n" link set "vn$TAG" up
ip -n "$n" route add 169.254.169.254/32 via 192.0.2.2
ip netns exec "$g" "$VMCTX" imds serve --guest --require-token --hop-limit 1 --source "$SRC" \
    >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$T/out" && break; sleep 0.05; done
url=http://169.254.169.254
creds=/latest/meta-data/iam/security-credentials/$ROLE
# who: name, namespace, then curl's extra arguments (a source address)
probe() {
    who=$1 ns=$2
    shift 2
    rm -f "$T/body-$who"
    token=$(ip netns exec "$ns" curl -s -m 2 "$@" -X PUT \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$url/latest/api/token" || true)
    put=$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' -m 2 "$@" -X PUT \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$url/latest/api/token" || true)
    get=$(ip netns exec "$ns" curl -s -o "$T/body-$who" -w '%{http_code}' -m 2 "$@" \
        -H "X-aws-ec2-metadata-token: $token" "$url$creds" || true)
    v1=$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' -m 2 "$@" "$url$creds" || true)
    secret=no
    grep -q "$SECRET" "$T/body-$who" 2>/dev/null && secret=yes
    echo "$who put=$put get=$get v1=$v1 secret=$secret"
}
probe neighbour "$n"
probe guest "$g"
probe guest-own-address "$g" --interface 192.0.2.2
kill "$pid"
wait "$pid" || true
pid=
echo "== log"
cat "$T/err"
