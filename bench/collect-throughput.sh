#!/usr/bin/env bash
# How many packets per second `natcheck collect` writes from two interfaces, and how
# many the kernel drops, while a generator floods a forwarding namespace.
#
# Builds three namespaces: a sender (10.233.0.2), a router forwarding between in0
# and out0, and a sink (198.51.100.2) that drops what it receives. bench/udpflood.c
# (compiled with cc) sends small UDP datagrams as fast as it can for SECONDS
# through the router, first alone (the baseline), then while two `tcpdump -w` run
# on in0 and out0 (when tcpdump is installed), then while `natcheck collect -i in0
# -i out0` runs in the router: every datagram is captured twice. Prints what the generator sent and, per
# interface, the packets written and the kernel's drops (from the bundle's
# manifest), and the CPU time natcheck used meanwhile; KEEP=1 keeps the bundle.
#
# Usage: sudo bench/collect-throughput.sh [--seconds N] [--payload BYTES]
#        [--natcheck PATH] [--buffer-size SIZE]
# Default natcheck: target/debug/natcheck (or $CARGO_TARGET_DIR/debug/natcheck).
# Namespaces are named nctp-*-PID and deleted on exit; the traffic never leaves them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECONDS_=10
PAYLOAD=18
BUFFER=32MiB
NATCHECK="${CARGO_TARGET_DIR:-$HERE/../target}/debug/natcheck"
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECONDS_=$2; shift 2 ;;
    --payload) PAYLOAD=$2; shift 2 ;;
    --natcheck) NATCHECK=$2; shift 2 ;;
    --buffer-size) BUFFER=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $EUID -eq 0 ]] || { echo "run as root (namespaces, packet sockets)" >&2; exit 1; }
[[ -x $NATCHECK ]] || { echo "no natcheck at $NATCHECK (cargo build first, or --natcheck)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/natcheck-throughput.XXXXXX)
S=nctp-s-$$ R=nctp-r-$$ K=nctp-k-$$
cleanup() {
  for ns in $S $R $K; do ip netns del "$ns" 2>/dev/null || true; done
  [[ ${KEEP:-0} == 1 ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

cc -O2 -o "$WORK/udpflood" "$HERE/udpflood.c"
for ns in $S $R $K; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $R link add in0 type veth peer name eth0 netns $S
ip -n $R link add out0 type veth peer name eth0 netns $K
ip -n $S addr add 10.233.0.2/24 dev eth0
ip -n $R addr add 10.233.0.1/24 dev in0
ip -n $R addr add 198.51.100.1/24 dev out0
ip -n $K addr add 198.51.100.2/24 dev eth0
for pair in "$S eth0" "$R in0" "$R out0" "$K eth0"; do
  set -- $pair; ip -n "$1" link set "$2" up
done
ip -n $S route add default via 10.233.0.1
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip netns exec $K iptables -t raw -A PREROUTING -p udp --dport 9 -j DROP
# Resolve the neighbours before the clock starts; then what the generator does
# alone, as the baseline.
ip netns exec $S "$WORK/udpflood" 198.51.100.2 9 0.2 "$PAYLOAD" >/dev/null
echo "generator alone: $(ip netns exec $S "$WORK/udpflood" 198.51.100.2 9 "$SECONDS_" "$PAYLOAD")"

# The same with two tcpdump processes writing files, for comparison.
# CPU seconds (user + system) a process has used so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
if command -v tcpdump >/dev/null; then
  PIDS=()
  for i in in0 out0; do
    ip netns exec $R tcpdump -i $i -B 32768 -w "$WORK/$i.pcap" 2>"$WORK/tcpdump-$i.log" &
    PIDS+=($!)
  done
  until [[ $(grep -l listening "$WORK"/tcpdump-*.log 2>/dev/null | wc -l) == 2 ]]; do sleep 0.1; done
  c0=$(cpu "${PIDS[0]}") c1=$(cpu "${PIDS[1]}")
  echo "generator while two tcpdump -w run: $(ip netns exec $S "$WORK/udpflood" 198.51.100.2 9 "$SECONDS_" "$PAYLOAD")"
  sleep 0.5
  used=$(echo "$(cpu "${PIDS[0]}") - $c0 + $(cpu "${PIDS[1]}") - $c1" | bc)
  kill -INT "${PIDS[@]}"
  wait "${PIDS[@]}" || true
  for i in in0 out0; do
    echo "  tcpdump $i: $(grep -h 'dropped by kernel' "$WORK/tcpdump-$i.log")"
    rm -f "$WORK/$i.pcap"
  done
  echo "  tcpdump CPU during the flood: $used s"
fi

ip netns exec $R "$NATCHECK" collect -i in0 -i out0 --buffer-size "$BUFFER" \
  -o "$WORK/bundle" 2>"$WORK/collect.log" &
COLLECT=$!
until grep -q "capturing on" "$WORK/collect.log" 2>/dev/null; do sleep 0.1; done
read -r -a before < <(cut -d' ' -f14,15 /proc/$COLLECT/stat)
SENT=$(ip netns exec $S "$WORK/udpflood" 198.51.100.2 9 "$SECONDS_" "$PAYLOAD")
sleep 0.5
read -r -a after < <(cut -d' ' -f14,15 /proc/$COLLECT/stat)
kill -INT $COLLECT
wait $COLLECT
echo "generator while collecting: $SENT"
TICKS=$(getconf CLK_TCK)
python3 - "$WORK/bundle/manifest.json" "$SECONDS_" "$TICKS" "${before[@]}" "${after[@]}" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
secs = float(sys.argv[2])
ticks = float(sys.argv[3])
user = (int(sys.argv[6]) - int(sys.argv[4])) / ticks
system = (int(sys.argv[7]) - int(sys.argv[5])) / ticks
total = 0
for p in m["points"]:
    total += p["packets"]
    print(f'{p["name"]}: {p["packets"]} packets written ({p["packets"] / secs:.0f}/s over {secs:g} s), '
          f'kernel: {p["kernel_packets"]} received, {p["kernel_drops"]} dropped')
cap = next(f for f in m["files"] if f["kind"] == "capture")
print(f'all points: {total / secs:.0f} packets/s written; capture.pcapng {cap["bytes"]} bytes')
print(f'natcheck CPU during the flood: {user:.2f} s user, {system:.2f} s system '
      f'({(user + system) / max(total, 1) * 1e6:.2f} µs per packet written)')
PY
