# A cloud host in a namespace: a bridge, the metadata sidecar (as nobody) reading a fake
# OpenNebula datastore, vmctx's nftables rules, and VM namespaces on the bridge configured with
# their contexts' addresses. VARIANT=gateway: the host is the VMs' gateway (10.0.0.1 on the
# bridge). VARIANT=l2: the bridge carries the host's own 198.51.100.1/24 only, the VMs' gateway
# is a router namespace, and the host has no route to the VMs. Prints one line per check.
# tools: ip curl nft setpriv
set -euf
h=ih$TAG a=ia$TAG b=ib$TAG c=ic$TAG r=ir$TAG pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    for ns in $h $a $b $c $r; do ip netns del "$ns" 2>/dev/null; done
    return 0
}
trap cleanup EXIT
for ns in $h $a $b $c $r; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $h link add br0 type bridge
ip -n $h link set br0 address 02:00:00:00:fe:01
ip -n $h link set br0 up
# port NS NAME MAC: a veth from the bridge (NAME, as OpenNebula names its taps) to eth0 in NS
port() {
    ip link add "$2" netns $h type veth peer name eth0 netns "$1"
    ip -n $h link set "$2" master br0 up
    ip -n "$1" link set eth0 address "$3" up
}
# vm NS VMID ADDR: a VM namespace with its context's address, its gateway 10.0.0.1
vm() {
    port "$1" "one-$2-0" "02:00:0a:00:00:0$2"
    ip -n "$1" addr add "$3/24" dev eth0
    ip -n "$1" route add default via 10.0.0.1
}
if [ "$VARIANT" = gateway ]; then
    ip -n $h addr add 10.0.0.1/24 dev br0
    rules="--bridge br0"
    device=
else
    ip -n $h addr add 198.51.100.1/24 dev br0
    port $r "rt$TAG" 02:00:0a:00:00:01
    ip -n $r addr add 10.0.0.1/24 dev eth0
    rules="--bridge br0 --l2 --ports one-*"
    device="--device br0"
fi
vm $a 5 10.0.0.5
vm $b 6 10.0.0.6
vm $c 7 10.0.0.7
# context VMID TEXT…: a context CD as OpenNebula leaves it, disk.1 beside a disk image disk.0
context() {
    id=$1
    shift
    mkdir -p "$T/ctx/$id" "$T/ds/0/$id.new"
    printf "%s\n" "VMID='$id'" "ETH0_MAC='02:00:0a:00:00:0$id'" "ETH0_MASK='255.255.255.0'" \
        "ETH0_GATEWAY='10.0.0.1'" "$@" >"$T/ctx/$id/context.sh"
    head -c 65536 /dev/zero >"$T/ds/0/$id.new/disk.0"
    "$ISO" "$T/ctx/$id" "$T/ds/0/$id.new/disk.1"
    mv "$T/ds/0/$id.new" "$T/ds/0/$id"
}
chmod 755 "$T"
mkdir -p "$T/ds/0" "$T/run"
chown 65534:65534 "$T/run"
context 5 # no ETH0_IP: the MAC rule gives 10.0.0.5
context 6 "ETH0_IP='10.0.0.6'" "EC2_IMDS_TOKENS='required'"
ip netns exec $h setpriv --reuid 65534 --regid 65534 --clear-groups \
    "$VMCTX" imds serve --host-map "opennebula:$T/ds" --listen 0.0.0.0:8775 $device \
    --status-socket "$T/run/status.sock" >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$T/out" && break; sleep 0.05; done
echo "rules $(ip netns exec $h "$VMCTX" imds host-rules $rules --apply)"
echo "rules again $(ip netns exec $h "$VMCTX" imds host-rules $rules --apply)"
url=http://169.254.169.254/latest
# get NS [CURL ARGS…]: the status of a GET of instance-id; its body in $T/body
get() {
    ns=$1
    shift
    rm -f "$T/body"
    ip netns exec "$ns" curl -s -m 2 -o "$T/body" -w '%{http_code}' "$@" \
        "$url/meta-data/instance-id" || true
}
token() {
    ip netns exec "$1" curl -s -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
        "$url/api/token" || true
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# until NS WANT SECS: polls GET until its status is WANT; prints how long it took, in ms
until_status() {
    start=$(now_ms)
    while [ "$(get "$1")" != "$2" ]; do
        [ $(($(now_ms) - start)) -gt $(($3 * 1000)) ] && { echo timeout; return 0; }
        sleep 0.1
    done
    echo $(($(now_ms) - start))
}
body() { cat "$T/body" 2>/dev/null || true; }
until_status $a 200 10 >/dev/null
until_status $b 401 10 >/dev/null
echo "A get=$(get $a) id=$(body)"
echo "B v1=$(get $b)"
tb=$(token $b)
ta=$(token $a)
echo "B token=$(get $b -H "X-aws-ec2-metadata-token: $tb") id=$(body)"
echo "B with A's token=$(get $b -H "X-aws-ec2-metadata-token: $ta")"
context 7 "ETH0_IP='10.0.0.7'"
echo "C appeared answered_ms=$(until_status $c 200 5) id=$(body)"
rm -rf "$T/ds/0/6"
echo "B removed gone_ms=$(until_status $b 000 5)"
context 9 "ETH0_IP='10.0.0.5'" # a stale folder claiming A's address
echo "A claimed twice gone_ms=$(until_status $a 000 5)"
rm -rf "$T/ds/0/9"
echo "A claimed once again back_ms=$(until_status $a 200 5) id=$(body)"
ip netns exec $h "$VMCTX" imds host-status --socket "$T/run/status.sock" | sed 's/^/status: /'
kill -USR1 "$pid"
sleep 0.3
echo "rules removed $(ip netns exec $h "$VMCTX" imds host-rules --remove)"
echo "after removal A=$(get $a)"
echo "rules removed again $(ip netns exec $h "$VMCTX" imds host-rules --remove)"
kill "$pid"
wait "$pid" || true
pid=
echo "== log"
cat "$T/err"
