#!/usr/bin/env bash
# Record natcheck's real-kernel NAT samples.
#
# Builds a Docker-like host in network namespaces (bridge docker0 with two
# containers, uplink eth0 to an "outside" namespace), installs the iptables (or
# nftables) rules of one scenario, runs bounded traffic between the namespaces
# and records, in the host namespace: one pcap per interface, one
# multi-interface pcapng, a `tcpdump -i any` capture, conntrack snapshots and
# events, and the rules (iptables-save, nft).
# samples/README.md describes the topology, every scenario and its ground truth.
#
# Usage: samples/lab/record.sh [--out DIR] [--keep-going] [SCENARIO...]
#   Run as root. Default: every scenario, written to samples/<scenario>/.
#   Each scenario folder is replaced only when its recording and checks succeed.
#   --keep-going: record the other scenarios when one fails (exit status 1 still).
#   NATCHECK_LAB_KEEP=1 in the environment keeps the work directory (logs,
#   partial recordings) under /tmp for debugging.
#
# Every namespace made here is named nc-*, lives only for one scenario, and is
# deleted on exit (also on failure or interrupt). All traffic stays between those
# namespaces and uses documentation and private ranges only.
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SAMPLES=$(dirname "$LAB")
ALL_SCENARIOS=(masquerade published-port port-collision nodeport snat-random-fully
  fault-forward-drop fault-invalid-leak fault-wrong-source-udp fault-wrong-source-udp6 masquerade6 kube-rules
  fault-masq-miss fault-masq-miss6 fault-nodeport-blocked kube-nft stale-udp stale-udp-vip bulk-offload bulk-no-offload
  fault-snat-exhaustion fault-snat-exhaustion-udp6 fault-syn-dropped-once fault-dns-pair-dropped
  fault-hairpin-no-masq fault-hairpin-udp)
ALL_SCENARIOS+=(userland-proxy userland-proxy6 fault-pmtu-black-hole fault-pmtu-black-hole6)
ALL_SCENARIOS+=(fault-asym-route fault-asym-route6 asym-route-loose)
ALL_SCENARIOS+=(fault-ct-table-full fault-ct-table-full6 forward-drop-clean)
ALL_SCENARIOS+=(overlay-vxlan overlay-ipip fault-overlay-masq fault-overlay-masq-ipip)
ALL_SCENARIOS+=(fault-underlay-drop fault-underlay-blocked fault-vxlan-mtu)
ALL_SCENARIOS+=(redirect-local snat-pool netmap fragments6 probes6 sink6)
ALL_SCENARIOS+=(hairpin-routed hairpin-routed6 one-armed one-armed6)
ALL_SCENARIOS+=(fault-hairpin-routed-no-masq fault-hairpin-routed-no-masq6 fault-hairpin-no-br-netfilter)
ALL_SCENARIOS+=(fault-hairpin-mode-off fault-hairpin-mode-off6 ftp-alg ftp-alg6 tftp-alg local-published)
ALL_SCENARIOS+=(published-port6 local-published6 port-collision6 snat-pool6 netmap6 redirect-local6 nodeport6 nft-inet6 icmp-errors6 bulk-offload6)
ALL_SCENARIOS+=(routed-pods egress-snat fragments midstream docker-nft)
ALL_SCENARIOS+=(fault-loopback-published fault-localnet-service reuse-after-expiry reuse-after-expiry-dnat)
ALL_SCENARIOS+=(fault-idle-expiry-remap fault-idle-expiry-remap6 fault-state-loss-dnat fault-state-loss-udp)
ALL_SCENARIOS+=(fault-state-loss-icmp)

# The scenarios that run with IPv6 on (dual stack): those whose name ends in 6.
is_v6() { [[ $1 == *6 ]]; }

# Namespace names. Fixed (not per-run) so that links.txt does not change from one
# recording to the next; a lock file keeps two recordings from running at once.
NS_HOST=nc-host
NS_C1=nc-c1
NS_C2=nc-c2
NS_OUT=nc-out
LOCK=/run/lock/natcheck-lab.lock

# Addresses (see samples/README.md).
BR_IP=172.17.0.1 C1_IP=172.17.0.2 C2_IP=172.17.0.3
HOST_IP=203.0.113.1 SRV_IP=203.0.113.2 SRV_IP2=203.0.113.3
REMOTE_SRV=198.51.100.10 REMOTE_CLI=198.51.100.20
# A service address (ClusterIP-like) that exists only in the nat rules.
SVC_VIP=198.51.100.53

log() { printf '[record] %s\n' "$*" >&2; }
die() {
  printf '[record] error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  printf 'Scenarios: %s\n' "${ALL_SCENARIOS[*]}"
}

OUT=$SAMPLES
KEEP_GOING=0
SELECTED=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out)
      [[ $# -ge 2 ]] || die "--out needs a directory"
      OUT=$2
      shift 2
      ;;
    --keep-going)
      KEEP_GOING=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      SELECTED+=("$1")
      shift
      ;;
  esac
done
[[ ${#SELECTED[@]} -gt 0 ]] || SELECTED=("${ALL_SCENARIOS[@]}")
for s in "${SELECTED[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || die "unknown scenario '$s' (known: ${ALL_SCENARIOS[*]})"
done
[[ $EUID -eq 0 ]] || die "must run as root (network namespaces, iptables, captures)"

# ---------------------------------------------------------------- tools

ensure_tools() {
  local -A pkg_of=(
    [ip]=iproute2 [iptables]=iptables [iptables-save]=iptables [iptables-restore]=iptables
    [ip6tables-restore]=iptables [tcpdump]=tcpdump [conntrack]=conntrack [tshark]=tshark
    [dumpcap]=tshark [editcap]=tshark [capinfos]=tshark [python3]=python3 [sysctl]=procps
    [flock]=util-linux [ipset]=ipset [nft]=nftables [xtables-monitor]=iptables [stdbuf]=coreutils
    [ethtool]=ethtool [socat]=socat
  )
  local missing=() cmd
  for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing missing packages: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y iproute2 iptables tcpdump conntrack tshark python3 procps util-linux \
      ipset nftables coreutils ethtool socat
  fi
  # The system interpreter when there is one: it starts faster than a version-manager shim.
  if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
}

# ---------------------------------------------------------------- lifecycle

WORK=""
CREATED_NS=()
declare -A LIVE=() # pid -> label, for every background process still running
# nf_conntrack_max as it was before a scenario lowered it (see ct_table_full).
CT_MAX_SAVED=""

# Stop what this process started and delete its namespaces.
scenario_cleanup() {
  local rc=$? pid ns
  set +e
  ct_max_restore
  for pid in "${!LIVE[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${!LIVE[@]}"; do
    wait "$pid" 2>/dev/null
    unset "LIVE[$pid]"
  done
  for ns in "${CREATED_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  CREATED_NS=()
  return $rc
}

cleanup() {
  local rc=$?
  scenario_cleanup
  [[ -n $WORK && -d $WORK && -z ${NATCHECK_LAB_KEEP:-} ]] && rm -rf "$WORK"
  return $rc
}
# on_signal STATUS: stop the running scenario (its own trap cleans up), then exit.
SCEN_PID=""
on_signal() {
  if [[ -n $SCEN_PID ]]; then
    kill -TERM "$SCEN_PID" 2>/dev/null
    wait "$SCEN_PID" 2>/dev/null
  fi
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# bg LABEL NS CMD... : run CMD in namespace NS in the background, output to $LOGS/LABEL.log.
# `ip netns exec` execs CMD, so $! is CMD's own pid and signals reach it directly.
bg() {
  local label=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" >"$LOGS/$label.log" 2>&1 9>&- &
  LAST_PID=$!
  LIVE[$LAST_PID]=$label
}

# reap PID: wait for a background process; returns its exit status.
reap() {
  local pid=$1 rc=0
  wait "$pid" || rc=$?
  unset "LIVE[$pid]"
  return $rc
}

# expect_ok PID: the process must exit 0, else show its log and fail.
expect_ok() {
  local pid=$1 label=${LIVE[$1]:-?}
  if ! reap "$pid"; then
    sed 's/^/    /' "$LOGS/$label.log" >&2 || true
    die "$label failed"
  fi
}

# stop PID SIGNAL: stop a long-running process and reap it whatever its status.
stop() {
  kill "-$2" "$1" 2>/dev/null || true
  reap "$1" || true
}

wait_file() { # wait_file PATH SECONDS
  local i
  for ((i = 0; i < $2 * 100; i++)); do
    [[ -e $1 ]] && return 0
    sleep 0.01
  done
  die "timed out waiting for $1"
}

wait_log() { # wait_log FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 100; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.01
  done
  sed 's/^/    /' "$1" >&2 || true
  die "timed out waiting for '$2' in $1"
}

nsx() { ip netns exec "$@"; }
hx() { ip netns exec "$NS_HOST" "$@"; }

# ---------------------------------------------------------------- topology

ns_add() {
  ip netns add "$1"
  CREATED_NS+=("$1")
  nsx "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6="$2" net.ipv6.conf.default.disable_ipv6="$2"
  ip -n "$1" link set lo up
}

# quiet_ipv6 NS: keep IPv6's own chatter out of the captures: no link-local addresses
# (addr_gen_mode 1), no DAD, no router solicitations or advertisements, and the
# unsolicited MLD reports for the addresses' groups repeated within 10 ms, so they are
# over before the captures start. Before the namespace's interfaces are made.
quiet_ipv6() {
  local k
  for k in all default; do
    nsx "$1" sysctl -q -w net.ipv6.conf.$k.addr_gen_mode=1 net.ipv6.conf.$k.accept_dad=0 \
      net.ipv6.conf.$k.router_solicitations=0 net.ipv6.conf.$k.accept_ra=0 \
      net.ipv6.conf.$k.mldv1_unsolicited_report_interval=10 \
      net.ipv6.conf.$k.mldv2_unsolicited_report_interval=10
  done
}

# topo_up IPV6(0|1): build the four namespaces and their links.
topo_up() {
  local v6=$1 dis=1 ns
  [[ $v6 == 1 ]] && dis=0
  for ns in "$NS_HOST" "$NS_C1" "$NS_C2" "$NS_OUT"; do
    if ip netns list | awk '{print $1}' | grep -qx -- "$ns"; then
      [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] || die "namespace $ns exists and has processes; not touching it"
      log "removing namespace $ns left over by an interrupted recording"
      ip netns del "$ns"
    fi
  done
  for ns in "$NS_HOST" "$NS_C1" "$NS_C2" "$NS_OUT"; do ns_add "$ns" "$dis"; done

  # Host: routing on, reverse-path filtering off (pinned so that the recording does
  # not depend on the machine's defaults, which new namespaces inherit).
  hx sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  if [[ $v6 == 1 ]]; then
    hx sysctl -q -w net.ipv6.conf.all.forwarding=1
    local n
    for n in "$NS_HOST" "$NS_C1" "$NS_C2" "$NS_OUT"; do quiet_ipv6 "$n"; done
  fi

  # docker0 with Docker's MAC prefix 02:42. Multicast snooping off: with it on, the
  # bridge joins 224.0.0.106 (multicast router discovery) and its IGMP reports,
  # repeated at random within a few seconds, would land in some recordings only.
  ip -n "$NS_HOST" link add docker0 address 02:42:4e:43:00:01 type bridge mcast_snooping 0
  ip -n "$NS_HOST" addr add "$BR_IP/16" dev docker0
  ip -n "$NS_HOST" link set docker0 up

  # Containers: the host side is veth-cN (a docker0 port), the container side eth0
  # with Docker's MAC derived from the IPv4 address (02:42:ac:11:00:0N).
  local c idx ip cns
  for c in c1 c2; do
    if [[ $c == c1 ]]; then idx=02 ip=$C1_IP cns=$NS_C1; else idx=03 ip=$C2_IP cns=$NS_C2; fi
    ip -n "$NS_HOST" link add "veth-$c" address "6a:4e:43:00:00:$idx" type veth \
      peer name eth0 address "02:42:ac:11:00:$idx" netns "$cns"
    ip -n "$NS_HOST" link set "veth-$c" master docker0 up
    ip -n "$cns" addr add "$ip/16" dev eth0
    ip -n "$cns" link set eth0 up
    ip -n "$cns" route add default via "$BR_IP"
  done

  # Uplink: host eth0 <-> outside wan0. The outside namespace answers for
  # 203.0.113.2 and .3 on the link, and for 198.51.100.0/24 hosts behind it
  # (addresses on its lo, reached through the route below).
  ip -n "$NS_HOST" link add eth0 address 52:54:00:4e:43:01 type veth \
    peer name wan0 address 52:54:00:4e:43:02 netns "$NS_OUT"
  ip -n "$NS_HOST" addr add "$HOST_IP/24" dev eth0
  ip -n "$NS_HOST" link set eth0 up
  ip -n "$NS_OUT" addr add "$SRV_IP/24" dev wan0
  ip -n "$NS_OUT" addr add "$SRV_IP2/24" dev wan0
  ip -n "$NS_OUT" addr add "$REMOTE_SRV/32" dev lo
  ip -n "$NS_OUT" addr add "$REMOTE_CLI/32" dev lo
  ip -n "$NS_OUT" link set wan0 up
  ip -n "$NS_HOST" route add 198.51.100.0/24 via "$SRV_IP"

  if [[ $v6 == 1 ]]; then
    # ULA inside, documentation prefix outside.
    ip -n "$NS_HOST" addr add fd00:172:17::1/64 dev docker0 nodad
    ip -n "$NS_C1" addr add fd00:172:17::2/64 dev eth0 nodad
    ip -n "$NS_C2" addr add fd00:172:17::3/64 dev eth0 nodad
    ip -n "$NS_C1" -6 route add default via fd00:172:17::1
    ip -n "$NS_C2" -6 route add default via fd00:172:17::1
    ip -n "$NS_HOST" addr add 2001:db8:113::1/64 dev eth0 nodad
    ip -n "$NS_OUT" addr add 2001:db8:113::2/64 dev wan0 nodad
    ip -n "$NS_OUT" addr add 2001:db8:100::10/128 dev lo
    ip -n "$NS_HOST" -6 route add 2001:db8:100::/64 via 2001:db8:113::2
  fi
}

topo_down() {
  local ns
  for ns in "${CREATED_NS[@]}"; do ip netns del "$ns"; done
  CREATED_NS=()
}

# ---------------------------------------------------------------- rules

# The filter and nat rules a Docker daemon (iptables backend, userland proxy on)
# writes for docker0 with no published port. Scenarios append to these.
docker_filter_base() {
  cat <<'EOF'
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
EOF
}

docker_nat_base() {
  cat <<'EOF'
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -i docker0 -j RETURN
EOF
}

MASQ_RULE='-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE'

apply_rules() { # stdin: iptables-restore input
  hx iptables-restore
}

# Docker's filter and nat tables with the bridge's MASQUERADE rule, nothing else.
apply_docker_masquerade() {
  { docker_filter_base; echo COMMIT; docker_nat_base; echo "$MASQ_RULE"; echo COMMIT; } | apply_rules
}

# The same with the bridge's MASQUERADE made --random-fully (as kube-proxy, Calico and
# Flannel write it): every new entry gets a random port or identifier.
apply_docker_masquerade_random_fully() {
  { docker_filter_base; echo COMMIT; docker_nat_base; echo "$MASQ_RULE --random-fully"; echo COMMIT; } | apply_rules
}

# Docker's rules for `docker run -p 8080:80` on c1 (TCP only).
publish_web() {
  publish_c1 tcp 8080 80
}

# The raw table that gives PROTO traffic to port PORT the NAT helper HELPER (kernels
# since 6.0 assign none on their own), as iptables-restore input.
raw_helper() { # raw_helper PROTO PORT HELPER
  echo '*raw'
  echo ':PREROUTING ACCEPT [0:0]'
  echo ':OUTPUT ACCEPT [0:0]'
  echo "-A PREROUTING -p $1 -m $1 --dport $2 -j CT --helper $3"
  echo COMMIT
}

# Docker's rules for `docker run -p PORT:CPORT/PROTO` on c1 (CPORT: PORT when not
# given), with the bridge's MASQUERADE and the port's hairpin MASQUERADE.
publish_c1() { # publish_c1 PROTO PORT [CPORT]
  local p=$1 port=$2 cport=${3:-$2}
  docker_filter_base
  echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p $p -m $p --dport $cport -j ACCEPT"
  echo COMMIT
  docker_nat_base
  echo "$MASQ_RULE"
  echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p $p -m $p --dport $cport -j MASQUERADE"
  echo "-A DOCKER ! -i docker0 -p $p -m $p --dport $port -j DNAT --to-destination $C1_IP:$cport"
  echo COMMIT
}

# ---------------------------------------------------------------- recording

IFACES=(docker0 eth0 veth-c1)
CAP_PIDS=()
# Bytes kept of each packet (0: all of it). Bulk scenarios keep the headers and the
# start of the payload only, so that their files stay small.
SNAPLEN=0

# start_events: the conntrack event log of the host namespace, into events.txt, unless
# it runs already (a scenario that opens connections before the captures starts it
# first, so that the log holds every entry of the table).
EV_PID=""
start_events() {
  [[ -z $EV_PID ]] || return 0
  # conntrack writes events to stdout: they go to events.txt, not to the log.
  ip netns exec "$NS_HOST" conntrack -E -o timestamp,extended,id >"$SCEN_DIR/events.txt" 2>"$LOGS/events.log" 9>&- &
  EV_PID=$!
  LIVE[$EV_PID]=events
}

start_recording() {
  local d=$SCEN_DIR i
  CAP_PIDS=()
  hx ip -o link >"$d/links.txt"
  hx ip -o addr >"$d/addrs.txt"
  start_events
  for i in "${IFACES[@]}"; do
    # -Z root: stay root so the file can be written wherever --out points.
    bg "tcpdump-$i" "$NS_HOST" tcpdump -Z root -i "$i" -s "$SNAPLEN" -U --immediate-mode -n -w "$d/$i.pcap"
    CAP_PIDS+=("$LAST_PID")
  done
  # On "any" libpcap sizes each ring slot from the snapshot length (the device has
  # no MTU), so the default 2 MB ring holds only a few packets in immediate mode and
  # bursts are dropped: give it a larger ring.
  bg tcpdump-any "$NS_HOST" tcpdump -Z root -i any -y LINUX_SLL2 -B 32768 -s "$SNAPLEN" -U --immediate-mode -n -w "$d/any.pcap"
  CAP_PIDS+=("$LAST_PID")
  # dumpcap's -s applies to the interfaces named after it.
  local dargs=()
  [[ $SNAPLEN == 0 ]] || dargs+=(-s "$SNAPLEN")
  for i in "${IFACES[@]}"; do dargs+=(-i "$i"); done
  bg dumpcap "$NS_HOST" dumpcap -q "${dargs[@]}" -w "$d/multi.pcapng"
  CAP_PIDS+=("$LAST_PID")
  for i in "${IFACES[@]}" any; do wait_log "$LOGS/tcpdump-$i.log" "listening on" 5; done
  wait_log "$LOGS/dumpcap.log" "^File:" 5
  # conntrack -E prints nothing until the first event: give it time to subscribe.
  sleep 0.2
}

stop_recording() {
  local pid
  # Packet sockets hand packets to the capture processes asynchronously: let the
  # last ones arrive before stopping, then stop with SIGINT so every file is closed
  # cleanly (tcpdump and dumpcap flush and write their trailers).
  sleep 0.5
  for pid in "${CAP_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${CAP_PIDS[@]}"; do reap "$pid" || die "capture ${LIVE[$pid]:-} failed"; done
  # A capture that lost packets is not ground truth.
  local f
  for f in "$LOGS"/tcpdump-*.log; do
    grep -q '^0 packets dropped by kernel' "$f" || die "$(basename "$f" .log) dropped packets: $(grep dropped "$f")"
  done
  if grep -E 'received/dropped' "$LOGS/dumpcap.log" | grep -vqE ': [0-9]+/0 '; then
    die "dumpcap dropped packets: $(grep dropped "$LOGS/dumpcap.log")"
  fi
  stop "$EV_PID" INT
  EV_PID=""
  # iptables-save's "# Generated ... on <date>" comments would only add noise.
  hx iptables-save | sed '/^# /d' >"$SCEN_DIR/iptables.txt"
  hx conntrack -S >"$SCEN_DIR/conntrack-stats.txt" 2>>"$LOGS/conntrack-S.log"
  # The settings that decide how conntrack and NAT treated the traffic.
  hx sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv6.conf.all.disable_ipv6 \
    net.ipv6.conf.all.forwarding net.netfilter.nf_conntrack_tcp_loose \
    net.netfilter.nf_conntrack_tcp_be_liberal net.netfilter.nf_conntrack_max \
    net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_buckets \
    net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_udp_timeout \
    net.netfilter.nf_conntrack_udp_timeout_stream net.netfilter.nf_conntrack_icmp_timeout \
    >"$SCEN_DIR/sysctl.txt"
  chmod 644 "$SCEN_DIR"/*.pcap*
}

# snapshot [SUFFIX]: conntrack table of the host namespace, now.
snapshot() {
  local sfx=${1:-}
  # Let delayed ACKs go out first, so that entries are not caught with data in flight.
  sleep 0.25
  hx conntrack -L -o extended,id >"$SCEN_DIR/conntrack$sfx.txt" 2>>"$LOGS/conntrack-L.log"
  if hx test -r /proc/net/nf_conntrack; then
    hx cat /proc/net/nf_conntrack >"$SCEN_DIR/conntrack-proc$sfx.txt"
  fi
}

kill_servers() {
  local pid
  for pid in "${SERVERS[@]}"; do stop "$pid" TERM; done
  SERVERS=()
}

SERVERS=()
server() { # server LABEL NS SCRIPT ARGS...: start and wait until it is listening
  local label=$1 ns=$2 script=$3
  shift 3
  bg "$label" "$ns" "$PY" "$LAB/$script" --ready "$SYNC/$label.ready" "$@"
  SERVERS+=("$LAST_PID")
  wait_file "$SYNC/$label.ready" 5
}

run() { # run LABEL NS [--fifo] SCRIPT ARGS...: foreground helper; its log is shown if it fails
  local label=$1 ns=$2 prio=()
  shift 2
  if [[ $1 == --fifo ]]; then # real-time priority: nothing else runs on its CPU meanwhile
    prio=(chrt --fifo 1)
    shift
  fi
  local script=$1
  shift
  if ! ip netns exec "$ns" "${prio[@]}" "$PY" "$LAB/$script" "$@" >>"$LOGS/$label.log" 2>&1; then
    sed 's/^/    /' "$LOGS/$label.log" >&2 || true
    die "$label failed"
  fi
}

client() { # client LABEL NS SCRIPT ARGS...: start in the background, pid in LAST_PID
  local label=$1 ns=$2 script=$3
  shift 3
  bg "$label" "$ns" "$PY" "$LAB/$script" "$@"
}

# ---------------------------------------------------------------- scenarios

scenario_masquerade() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --port 8443 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording

  # Short request/response connections, closed with FIN before the snapshot.
  client t1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 3 --tag c1a
  local t1=$LAST_PID
  client t2 "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c2a
  local t2=$LAST_PID
  client t3 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 2 --tag c1b
  local t3=$LAST_PID
  expect_ok "$t1"
  expect_ok "$t2"
  expect_ok "$t3"
  # Held open across the snapshot.
  client h1 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV" --port 8443 --requests 2 --tag c1held \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  client h2 "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 8443 --requests 1 --tag c2held \
    --ready "$SYNC/h2" --release "$SYNC/release"
  local h2=$LAST_PID
  # DNS-like UDP (two sockets from c1, one from c2) and pings.
  run udp "$NS_C1" udp_client.py --dst "$SRV_IP" --count 2 --name c1.example
  run udp "$NS_C1" udp_client.py --dst "$SRV_IP" --count 1 --name c1.example
  run udp "$NS_C2" udp_client.py --dst "$REMOTE_SRV" --count 2 --name c2.example
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 3 --ident 3073
  run icmp "$NS_C2" icmp_ping.py --dst "$REMOTE_SRV" --count 2 --ident 3074
  wait_file "$SYNC/h1" 5
  wait_file "$SYNC/h2" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  expect_ok "$h2"
  kill_servers
  stop_recording
  mkdir -p "$SCEN_DIR/shifted"
  editcap -F pcap -t 3.5 "$SCEN_DIR/eth0.pcap" "$SCEN_DIR/shifted/eth0.pcap"
}

# Docker's rules for `docker run -p 8080:80 -p 8053:53/udp` on container c1.
scenario_published_port() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
    echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p udp -m udp --dport 53 -j MASQUERADE"
    echo "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C1_IP:80"
    echo "-A DOCKER ! -i docker0 -p udp -m udp --dport 8053 -j DNAT --to-destination $C1_IP:53"
    echo COMMIT
  } | apply_rules
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --port 53 --lifetime 30
  start_recording
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag ext1
  run o2 "$NS_OUT" tcp_client.py --src "$SRV_IP" --dst "$HOST_IP" --port 8080 --requests 3 --tag ext2
  client h1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag exthold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  run udp "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8053 --count 2 --name ext.example
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  stop_recording
}

# A process on the host itself reaching c1's published port by the host's own address
# (Docker with its userland proxy off): nat OUTPUT jumps to DOCKER, whose DNAT sends the
# packet out docker0 to c1 before any interface sees it, so every capture shows the
# connection already translated, from the host's address; only conntrack (and the
# rules) hold the address the client asked for. A client outside reaches the same
# port through PREROUTING, for contrast.
scenario_local_published() {
  IFACES=(docker0 eth0 veth-c1)
  publish_web | apply_rules
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  start_recording
  run l1 "$NS_HOST" tcp_client.py --dst "$HOST_IP" --port 8080 --requests 2 --tag local1
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag ext1
  client h1 "$NS_HOST" tcp_client.py --dst "$HOST_IP" --port 8080 --requests 2 --tag localhold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  stop_recording
}

# A transparent proxy on the host (a service mesh's sidecar capture, a local filtering
# proxy): nat PREROUTING REDIRECTs c1's TCP to port 7000, whatever its destination, to
# the host's port 15001, where a server answers in the destination's name; c2's goes
# out masqueraded as usual.
scenario_redirect_local() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A PREROUTING -s $C1_IP/32 -i docker0 -p tcp -m tcp --dport 7000 -j REDIRECT --to-ports 15001"
    echo COMMIT
  } | apply_rules
  server proxy "$NS_HOST" tcp_server.py --port 15001 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1redir
  run t2 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag c1redir2
  run t3 "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c2out
  run t4 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag c2out2
  snapshot
  kill_servers
  stop_recording
}

# SNAT to a pool of three host addresses: the kernel gives each connection one of
# them by a hash of its addresses, so the containers' connections to two servers leave
# under more than one.
SNAT_POOL=(203.0.113.21 203.0.113.22 203.0.113.23)
scenario_snat_pool() {
  IFACES=(docker0 eth0 veth-c1)
  local a
  for a in "${SNAT_POOL[@]}"; do hx ip addr add "$a/32" dev eth0; done
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j SNAT --to-source ${SNAT_POOL[0]}-${SNAT_POOL[2]}"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag p1a
  run t2 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag p1b
  run t3 "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag p2a
  run t4 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 2 --tag p2b
  run t5 "$NS_C2" tcp_client.py --dst "$SRV_IP2" --port 7000 --requests 1 --tag p2c
  run udp "$NS_C1" udp_client.py --dst "$REMOTE_SRV" --count 2 --name pool.example
  run udp "$NS_C2" udp_client.py --dst "$SRV_IP" --count 1 --name pool.example
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV_IP2" --count 2 --ident 3081
  snapshot
  kill_servers
  stop_recording
}

# NETMAP: the containers' network 172.17.0.0/24 is mapped one to one onto
# 192.0.2.0/24 (a network the outside routes to the host), both ways: each container
# leaves under its own mapped address, and a connection from outside to a mapped
# address reaches the container behind it.
NETMAP_NET=192.0.2.0/24
scenario_netmap() {
  IFACES=(docker0 eth0 veth-c1)
  ip -n "$NS_OUT" route add "$NETMAP_NET" via "$HOST_IP"
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8080 -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "-A PREROUTING -d $NETMAP_NET -i eth0 -j NETMAP --to 172.17.0.0/24"
    echo "-A POSTROUTING -s 172.17.0.0/24 -o eth0 -j NETMAP --to $NETMAP_NET"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  server web "$NS_C1" tcp_server.py --port 8080 --lifetime 30
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag nm1
  run t2 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag nm2
  run udp "$NS_C1" udp_client.py --dst "$SRV_IP" --count 2 --name netmap.example
  run icmp "$NS_C2" icmp_ping.py --dst "$SRV_IP2" --count 2 --ident 3091
  run in1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst 192.0.2.2 --port 8080 --requests 2 --tag nmin
  snapshot
  kill_servers
  stop_recording
}

# NAT loopback on a routed interface (a router's "NAT reflection"): a client outside
# reaches the host's own address, whose published port DNATs to a server on the same
# outside link, and the host sends the connection back out of eth0, the interface it
# came in by, masqueraded so that the server answers through the host. eth0 sees every
# packet twice, as two flows: the client's and the host's to the server. TCP and UDP;
# then c1 to the same address, its connection DNATed on docker0 and out of eth0 once.
scenario_hairpin_routed() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A FORWARD -i eth0 -o eth0 -m conntrack --ctstate DNAT -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A PREROUTING -d $HOST_IP/32 -p tcp -m tcp --dport 9000 -j DNAT --to-destination $SRV_IP:7000"
    echo "-A PREROUTING -d $HOST_IP/32 -p udp -m udp --dport 9053 -j DNAT --to-destination $SRV_IP:53"
    echo "-A POSTROUTING -o eth0 -d $SRV_IP/32 -m conntrack --ctstate DNAT -j MASQUERADE"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  run t1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 9000 --requests 3 --tag hp1
  run udp "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 9053 --count 2 --name hairpin.example
  run t2 "$NS_OUT" tcp_client.py --src "$REMOTE_SRV" --dst "$HOST_IP" --port 9000 --requests 1 --tag hp2
  # A container to the same published address: DNAT on docker0, out of eth0 once.
  run t3 "$NS_C1" tcp_client.py --dst "$HOST_IP" --port 9000 --requests 1 --tag hpc1
  snapshot
  kill_servers
  stop_recording
}

# The same over IPv6 (ip6tables DNAT and MASQUERADE on eth0): a client outside
# (2001:db8:100::10) to the host's 2001:db8:113::1, port 9000 to the server
# 2001:db8:113::2:7000 on the same link, and UDP 9053 to its port 53; then c1 to it.
scenario_hairpin_routed6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade6
  {
    echo "*nat"
    echo ":PREROUTING ACCEPT [0:0]"
    echo ":INPUT ACCEPT [0:0]"
    echo ":OUTPUT ACCEPT [0:0]"
    echo ":POSTROUTING ACCEPT [0:0]"
    echo "-A PREROUTING -d 2001:db8:113::1/128 -p tcp -m tcp --dport 9000 -j DNAT --to-destination [2001:db8:113::2]:7000"
    echo "-A PREROUTING -d 2001:db8:113::1/128 -p udp -m udp --dport 9053 -j DNAT --to-destination [2001:db8:113::2]:53"
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo "-A POSTROUTING -o eth0 -d 2001:db8:113::2/128 -m conntrack --ctstate DNAT -j MASQUERADE"
    echo COMMIT
  } | hx ip6tables-restore
  hx ip6tables -A FORWARD -i eth0 -o eth0 -m conntrack --ctstate DNAT -j ACCEPT
  # The lab's IPv6 interfaces have no link-local addresses: the outside, which speaks
  # first here, and the host know each other's link addresses from the start.
  ip -n "$NS_OUT" -6 neigh replace 2001:db8:113::1 lladdr 52:54:00:4e:43:01 dev wan0 nud permanent
  ip -n "$NS_HOST" -6 neigh replace 2001:db8:113::2 lladdr 52:54:00:4e:43:02 dev eth0 nud permanent
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run t1 "$NS_OUT" tcp_client.py --src 2001:db8:100::10 --dst 2001:db8:113::1 --port 9000 --requests 3 --tag hp6
  run udp "$NS_OUT" udp_client.py --src 2001:db8:100::10 --dst 2001:db8:113::1 --port 9053 --count 2 --name hairpin6.example
  run t3 "$NS_C1" tcp_client.py --dst 2001:db8:113::1 --port 9000 --requests 1 --tag hp6c1
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# A host with one interface for two networks (a cloud NAT instance, a router on a
# stick): a client on a second subnet of the uplink's link (192.0.2.2, in a namespace
# of its own, bridged with the outside namespace's wan0) has the host's eth0 (192.0.2.1) as
# its gateway, and the host masquerades its traffic back out of eth0 to the servers
# outside. eth0 sees every packet twice, before and after NAT, the destination the same
# and the second copy one TTL lower. TCP, UDP and ICMP echo; then c1 out as usual.
LAN_NS=nc-lan LAN_GW=192.0.2.1 LAN_CLI=192.0.2.2
scenario_one_armed() {
  IFACES=(docker0 eth0 veth-c1)
  one_armed_lan
  {
    docker_filter_base
    echo "-A FORWARD -i eth0 -o eth0 -s $LAN_CLI/32 -j ACCEPT"
    echo "-A FORWARD -i eth0 -o eth0 -d $LAN_CLI/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A POSTROUTING -s 192.0.2.0/24 -o eth0 ! -d 192.0.2.0/24 -j MASQUERADE"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  sleep 0.5
  start_recording
  run t1 "$LAN_NS" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 3 --tag lan1
  run t2 "$LAN_NS" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 2 --tag lan2
  run udp "$LAN_NS" udp_client.py --dst "$REMOTE_SRV" --count 2 --name lan.example
  run icmp "$LAN_NS" icmp_ping.py --dst "$SRV_IP2" --count 2 --ident 3093
  run c1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag c1out
  snapshot
  kill_servers
  stop_recording
}

# The same over IPv6: the client 2001:db8:9::2 on a second prefix of the uplink's link,
# its gateway the host's 2001:db8:9::1 on eth0, masqueraded back out of eth0 by
# ip6tables to 2001:db8:113::1; then c1 through Docker's IPv6 MASQUERADE.
LAN6_GW=2001:db8:9::1 LAN6_CLI=2001:db8:9::2
scenario_one_armed6() {
  IFACES=(docker0 eth0 veth-c1)
  one_armed_lan
  ip -n "$NS_OUT" addr add 2001:db8:113::2/64 dev br-out nodad
  ip -n "$LAN_NS" addr add "$LAN6_CLI/64" dev eth0 nodad
  ip -n "$LAN_NS" -6 route add default via "$LAN6_GW"
  ip -n "$NS_HOST" addr add "$LAN6_GW/64" dev eth0 nodad
  # The lab's IPv6 interfaces have no link-local addresses: the client and the host,
  # which it reaches first, know each other's link addresses from the start.
  ip -n "$LAN_NS" -6 neigh replace "$LAN6_GW" lladdr 52:54:00:4e:43:01 dev eth0 nud permanent
  ip -n "$NS_HOST" -6 neigh replace "$LAN6_CLI" lladdr 52:54:00:4e:43:09 dev eth0 nud permanent
  apply_docker_masquerade6
  hx ip6tables -A FORWARD -i eth0 -o eth0 -s "$LAN6_CLI/128" -j ACCEPT
  hx ip6tables -A FORWARD -i eth0 -o eth0 -d "$LAN6_CLI/128" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  hx ip6tables -t nat -A POSTROUTING -s 2001:db8:9::/64 -o eth0 ! -d 2001:db8:9::/64 -j MASQUERADE
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  sleep 0.5
  start_recording
  run t1 "$LAN_NS" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 3 --tag lan6
  run udp "$LAN_NS" udp_client.py --dst 2001:db8:100::10 --count 2 --name lan6.example
  run icmp "$LAN_NS" icmp_ping.py --dst 2001:db8:113::2 --count 2 --ident 3094
  run c1 "$NS_C1" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 1 --tag c1out6
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# NAT loopback without the hairpin MASQUERADE (FM-07 on a routed link, a router's
# "NAT reflection" half set up): a LAN client (192.0.2.2, its gateway the host's eth0,
# 192.0.2.1) reaches the host's public address, whose ports DNAT to a server on the
# client's own subnet (192.0.2.3, on the outside namespace's bridge). The masquerade
# leaves the LAN's own destinations alone (`! -d 192.0.2.0/24`, as routers write it),
# so the host sends the connection back out of eth0 with the client's address kept,
# and the server answers the client directly, past the host and its conntrack: the
# client, which spoke to 203.0.113.1, refuses answers from 192.0.2.3 (TCP: a reset; a
# UDP client that does not check the answer's source takes it). For contrast, the
# same hairpin that works: a port forward from outside (198.51.100.20 to the host's
# 203.0.113.1:8080, DNATed to the LAN client's own server) goes back out of eth0 with
# its source kept too, but the LAN client routes its answers through the host, which
# translates them back. The client's connection to a server outside, masqueraded, is
# answered; then c1 out as usual.
LAN_SRV=192.0.2.3
scenario_fault_hairpin_routed_no_masq() {
  IFACES=(docker0 eth0 veth-c1)
  one_armed_lan
  ip -n "$NS_OUT" addr add "$LAN_SRV/24" dev br-out
  {
    docker_filter_base
    echo "-A FORWARD -i eth0 -o eth0 -s 192.0.2.0/24 -j ACCEPT"
    echo "-A FORWARD -i eth0 -o eth0 -d 192.0.2.0/24 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A PREROUTING -d $HOST_IP/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination $LAN_CLI:8080"
    echo "-A PREROUTING -d $HOST_IP/32 -p tcp -m tcp --dport 9000 -j DNAT --to-destination $LAN_SRV:7000"
    echo "-A PREROUTING -d $HOST_IP/32 -p udp -m udp --dport 9053 -j DNAT --to-destination $LAN_SRV:53"
    echo "-A POSTROUTING -s 192.0.2.0/24 -o eth0 ! -d 192.0.2.0/24 -j MASQUERADE"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  server web "$LAN_NS" tcp_server.py --port 8080 --lifetime 30
  sleep 0.5
  start_recording
  run out "$LAN_NS" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag lanout
  run fwd "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag lanfwd
  client hp "$LAN_NS" tcp_client.py --dst "$HOST_IP" --port 9000 --connect-timeout 3.5 --expect-fail --tag lanhp
  local hp=$LAST_PID
  run udp "$LAN_NS" udp_client.py --dst "$HOST_IP" --port 9053 --count 1 --timeout 1 --any \
    --name reflect.example
  expect_ok "$hp"
  run c1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag c1out
  sleep 0.5
  snapshot
  kill_servers
  stop_recording
}

# The same over IPv6 (ip6tables): the client 2001:db8:9::2 of one-armed6's LAN to the
# host's 2001:db8:113::1, port 9000 DNATed to [2001:db8:9::3]:7000 and UDP 9053 to
# its port 53, a server on the client's own prefix, sent back out of eth0 with the
# client's address kept; the port forward from 2001:db8:100::10 to port 8080, DNATed
# to the LAN client's own server and answered through the host; then c1 out through
# Docker's IPv6 MASQUERADE. The namespaces on the link hold each other's link
# addresses as permanent neighbour entries (no link-local addresses in the lab).
LAN6_SRV=2001:db8:9::3
scenario_fault_hairpin_routed_no_masq6() {
  IFACES=(docker0 eth0 veth-c1)
  one_armed_lan
  ip -n "$NS_OUT" addr add 2001:db8:113::2/64 dev br-out nodad
  ip -n "$NS_OUT" addr add "$LAN6_SRV/64" dev br-out nodad
  ip -n "$LAN_NS" addr add "$LAN6_CLI/64" dev eth0 nodad
  ip -n "$LAN_NS" -6 route add default via "$LAN6_GW"
  ip -n "$NS_HOST" addr add "$LAN6_GW/64" dev eth0 nodad
  local srv_mac
  srv_mac=$(ip -n "$NS_OUT" -br link show br-out | awk '{print $3}')
  ip -n "$LAN_NS" -6 neigh replace "$LAN6_GW" lladdr 52:54:00:4e:43:01 dev eth0 nud permanent
  ip -n "$LAN_NS" -6 neigh replace "$LAN6_SRV" lladdr "$srv_mac" dev eth0 nud permanent
  ip -n "$NS_HOST" -6 neigh replace "$LAN6_CLI" lladdr 52:54:00:4e:43:09 dev eth0 nud permanent
  ip -n "$NS_HOST" -6 neigh replace "$LAN6_SRV" lladdr "$srv_mac" dev eth0 nud permanent
  ip -n "$NS_HOST" -6 neigh replace 2001:db8:113::2 lladdr "$srv_mac" dev eth0 nud permanent
  ip -n "$NS_OUT" -6 neigh replace "$LAN6_CLI" lladdr 52:54:00:4e:43:09 dev br-out nud permanent
  ip -n "$NS_OUT" -6 neigh replace 2001:db8:113::1 lladdr 52:54:00:4e:43:01 dev br-out nud permanent
  apply_docker_masquerade6
  hx ip6tables -A FORWARD -i eth0 -o eth0 -s 2001:db8:9::/64 -j ACCEPT
  hx ip6tables -A FORWARD -i eth0 -o eth0 -d 2001:db8:9::/64 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT
  hx ip6tables -t nat -A PREROUTING -d 2001:db8:113::1/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "[$LAN6_CLI]:8080"
  hx ip6tables -t nat -A PREROUTING -d 2001:db8:113::1/128 -p tcp -m tcp --dport 9000 -j DNAT --to-destination "[$LAN6_SRV]:7000"
  hx ip6tables -t nat -A PREROUTING -d 2001:db8:113::1/128 -p udp -m udp --dport 9053 -j DNAT --to-destination "[$LAN6_SRV]:53"
  hx ip6tables -t nat -A POSTROUTING -s 2001:db8:9::/64 -o eth0 ! -d 2001:db8:9::/64 -j MASQUERADE
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  server web "$LAN_NS" tcp_server.py --bind :: --port 8080 --lifetime 30
  sleep 0.5
  start_recording
  run fwd "$NS_OUT" tcp_client.py --src 2001:db8:100::10 --dst 2001:db8:113::1 --port 8080 --requests 2 --tag lanfwd6
  client hp "$LAN_NS" tcp_client.py --dst 2001:db8:113::1 --port 9000 --connect-timeout 3.5 --expect-fail --tag lanhp6
  local hp=$LAST_PID
  run udp "$LAN_NS" udp_client.py --dst 2001:db8:113::1 --port 9053 --count 1 --timeout 1 --any \
    --name reflect6.example
  expect_ok "$hp"
  run c1 "$NS_C1" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 1 --tag c1out6
  sleep 0.5
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# A container to another container's published port through the host's address,
# with the bridge not calling netfilter (`bridge-nf-call-iptables=0`, as without
# br_netfilter): c2's connection to 203.0.113.1:8080 is DNATed on docker0 to c1:80
# and keeps c2's address (Docker masquerades only a container's hairpin to itself).
# c1 answers c2 directly across the bridge, which hands the frames on without
# conntrack: c2, which spoke to 203.0.113.1, refuses answers from 172.17.0.2 (TCP: a
# reset; a UDP client that does not check the answer's source takes it). veth-c1 and
# docker0 (whose capture, promiscuous, sees what the bridge forwards) see the answers
# as c1 sent them; none is translated back. c1's connection out, masqueraded, is
# answered.
scenario_fault_hairpin_no_br_netfilter() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed '/-A DOCKER -i docker0 -j RETURN/d'
    echo "$MASQ_RULE"
    echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
    echo "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C1_IP:80"
    echo "-A DOCKER -p udp -m udp --dport 8053 -j DNAT --to-destination $C1_IP:53"
    echo COMMIT
  } | apply_rules
  hx sysctl -q -w net.bridge.bridge-nf-call-iptables=0
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --port 53 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  run out "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag out
  client hp "$NS_C2" tcp_client.py --dst "$HOST_IP" --port 8080 --connect-timeout 3.5 --expect-fail --tag c2hp
  local hp=$LAST_PID
  run udp "$NS_C2" udp_client.py --dst "$HOST_IP" --port 8053 --count 1 --timeout 1 --any \
    --name bridge.example
  expect_ok "$hp"
  sleep 0.5
  snapshot
  kill_servers
  stop_recording
}

# one_armed_lan: the client's namespace on a second subnet of the uplink's link (a
# bridge in the outside namespace joins wan0 and the client's link), and the host's
# eth0 its gateway, with no ICMP redirects.
one_armed_lan() {
  if is_v6 "$SCEN"; then
    ns_add "$LAN_NS" 0
    quiet_ipv6 "$LAN_NS"
  else
    ns_add "$LAN_NS" 1
  fi
  # No multicast on the new bridge: its IGMP reports would cross eth0 while recording.
  ip -n "$NS_OUT" link add br-out type bridge mcast_snooping 0
  ip -n "$NS_OUT" link set br-out multicast off
  ip -n "$NS_OUT" addr flush dev wan0
  ip -n "$NS_OUT" link set wan0 master br-out
  ip -n "$NS_OUT" link add lan0 type veth peer name eth0 address 52:54:00:4e:43:09 netns "$LAN_NS"
  ip -n "$NS_OUT" link set lan0 master br-out
  ip -n "$NS_OUT" link set lan0 up
  ip -n "$NS_OUT" link set br-out up
  ip -n "$NS_OUT" addr add "$SRV_IP/24" dev br-out
  ip -n "$NS_OUT" addr add "$SRV_IP2/24" dev br-out
  ip -n "$LAN_NS" addr add "$LAN_CLI/24" dev eth0
  ip -n "$LAN_NS" link set eth0 up
  ip -n "$LAN_NS" route add default via "$LAN_GW"
  ip -n "$NS_HOST" addr add "$LAN_GW/24" dev eth0
  hx sysctl -q -w net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
}

# Docker's filter rules letting DNS from outside reach c1 and c2, and the nat table's
# base with Docker's masquerade: the caller adds its DNAT rules and the COMMIT.
dns_backends_base() {
  docker_filter_base
  echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
  echo "-A DOCKER -d $C2_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
  echo COMMIT
  docker_nat_base
  echo "$MASQ_RULE"
}

# balanced_dns LIFETIME: UDP port 8053 of the host balanced over DNS servers on c1
# and c2 (every other new entry to c1, as `-m statistic --mode nth` sends it), the
# servers running for LIFETIME seconds.
balanced_dns() {
  {
    dns_backends_base
    echo "-A DOCKER ! -i docker0 -p udp -m udp --dport 8053 -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination $C1_IP:53"
    echo "-A DOCKER ! -i docker0 -p udp -m udp --dport 8053 -j DNAT --to-destination $C2_IP:53"
    echo COMMIT
  } | apply_rules
  server dns1 "$NS_C1" udp_server.py --port 53 --lifetime "$1"
  server dns2 "$NS_C2" udp_server.py --port 53 --lifetime "$1"
}

# query_balanced LABEL SPORT NAME SEED: three queries from the client outside, from
# UDP port SPORT, to the balanced port 8053 (balanced_dns).
query_balanced() {
  run "$1" "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --sport "$2" --dst "$HOST_IP" --port 8053 \
    --count 3 --name "$3" --seed "$4"
}

# A stale UDP entry (FM-12): a client outside keeps one source port to a published
# UDP port while the DNAT is retargeted from c1 to c2 and c1's server stops. NAT is
# decided on a flow's first packet: the client's datagrams keep going to c1 (which
# answers port unreachable) as long as the entry lives, while a new client's flow
# gets the new rule and c2's answers.
scenario_stale_udp() {
  IFACES=(docker0 eth0 veth-c1)
  {
    dns_backends_base
    echo "-A DOCKER ! -i docker0 -p udp -m udp --dport 8053 -j DNAT --to-destination $C1_IP:53"
    echo COMMIT
  } | apply_rules
  server dns1 "$NS_C1" udp_server.py --port 53 --lifetime 30
  local dns1=$LAST_PID
  server dns2 "$NS_C2" udp_server.py --port 53 --lifetime 30
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-before.txt"
  start_recording
  client stale "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --sport 41053 --dst "$HOST_IP" --port 8053 \
    --count 24 --interval 0.15 --timeout 0.05 --name stale.example --any
  local stale=$LAST_PID
  sleep 1.2
  # The endpoint changes: the rule now points at c2, and c1's server goes away.
  hx iptables -t nat -R DOCKER 2 ! -i docker0 -p udp -m udp --dport 8053 -j DNAT --to-destination "$C2_IP:53"
  stop "$dns1" TERM
  sleep 0.5
  run fresh "$NS_OUT" udp_client.py --src "$SRV_IP" --sport 42053 --dst "$HOST_IP" --port 8053 --count 3 --name fresh.example
  expect_ok "$stale"
  # The neighbour entries are re-checked about a second after the last datagram:
  # let that ARP exchange happen before the captures stop, not during.
  sleep 1.5
  snapshot
  kill_servers
  stop_recording
}

# The same from inside (FM-12 the other way): a container's queries to a service
# address DNATed to a server outside, retargeted to a second server while the first
# stops answering; the container's flow stays on the first, its new flow (another
# source port) uses the second.
scenario_stale_udp_vip() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A PREROUTING -d $SVC_VIP/32 -p udp -m udp --dport 53 -j DNAT --to-destination $SRV_IP:5300"
    echo COMMIT
  } | apply_rules
  server up1 "$NS_OUT" udp_server.py --bind "$SRV_IP" --port 5300 --lifetime 30
  local up1=$LAST_PID
  server up2 "$NS_OUT" udp_server.py --bind "$SRV_IP2" --port 5300 --lifetime 30
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-before.txt"
  start_recording
  client stale "$NS_C1" udp_client.py --sport 43053 --dst "$SVC_VIP" --port 53 \
    --count 24 --interval 0.15 --timeout 0.05 --name vip.example --any
  local stale=$LAST_PID
  sleep 1.2
  hx iptables -t nat -R PREROUTING 2 -d "$SVC_VIP/32" -p udp -m udp --dport 53 -j DNAT --to-destination "$SRV_IP2:5300"
  stop "$up1" TERM
  sleep 0.5
  run fresh "$NS_C1" udp_client.py --sport 44053 --dst "$SVC_VIP" --port 53 --count 3 --name fresh.example
  expect_ok "$stale"
  # The neighbour entries are re-checked about a second after the last datagram:
  # let that ARP exchange happen before the captures stop, not during.
  sleep 1.5
  snapshot
  kill_servers
  stop_recording
}

# Tuples used again after their conntrack entries expired: c1 queries from UDP port
# 40003 and pings with one identifier, then both go quiet past the UDP and ICMP
# timeouts (30 s); c2 takes the same source port and identifier to the same server,
# which MASQUERADE now gives it unchanged, so c1's later queries and pings (new
# entries on the same inside tuple) are moved to another port and identifier.
scenario_reuse_after_expiry() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 120
  start_recording
  run udp "$NS_C1" udp_client.py --sport 40003 --dst "$SRV_IP" --count 2 --name first.example --seed 1
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 20036
  sleep "$EXPIRY_WAIT"
  run udp "$NS_C2" udp_client.py --sport 40003 --dst "$SRV_IP" --count 2 --name c2.example --seed 2
  run icmp "$NS_C2" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 20036
  run udp "$NS_C1" udp_client.py --sport 40003 --dst "$SRV_IP" --count 2 --name again.example --seed 3
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 20036
  sleep 1.5
  snapshot
  kill_servers
  stop_recording
}

# The same on the way in: a client outside queries a UDP port the host balances
# over c1 and c2 (every other new connection to c1, as `-m statistic --mode nth`
# sends it), goes quiet past the UDP timeout and queries again from the same port:
# the new entry is a new connection to the rules, which send it to c2, though the
# tuple outside is the one of before.
scenario_reuse_after_expiry_dnat() {
  IFACES=(docker0 eth0 veth-c1)
  balanced_dns 120
  start_recording
  query_balanced first 41054 first.example 1
  sleep "$EXPIRY_WAIT"
  query_balanced again 41054 again.example 2
  sleep 1.5
  snapshot
  kill_servers
  stop_recording
}

# State lost mid-connection, and NAT decided again (FM-02 with nf_conntrack_tcp_loose=1,
# the default): the host keeps an established TCP entry 5 s (a low
# nf_conntrack_tcp_timeout_established) and masquerades with --random-fully (as
# kube-proxy, Calico and Flannel do). c1 exchanges twice, stays quiet 7 s and sends
# again: the segment is picked up mid-stream as a new entry and leaves from another
# port; the server knows no such connection and resets it.
scenario_fault_idle_expiry_remap() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade_random_fully
  hx sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_established=5
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  idle_past_timeout "$SRV_IP" idle
  kill_servers
  stop_recording
}

# idle_past_timeout DST TAG: c1 connects to DST:7000 from port 41000, exchanges twice
# (a snapshot then), stays quiet 7 s (past the scenario's 5 s established timeout) and
# sends again; the late request goes unanswered (the server resets it).
idle_past_timeout() {
  client c1 "$NS_C1" tcp_client.py --sport 41000 --dst "$1" --port 7000 --requests 2 --tag "$2" \
    --ready "$SYNC/h1" --phase2 "$SYNC/go" --phase2-timeout 1.5 --hold-max 15 --close rst
  local c1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  sleep 7
  touch "$SYNC/go"
  expect_ok "$c1"
  sleep 0.5
  snapshot -after
}

# IPv6: the same expiry behind IPv6 MASQUERADE --random-fully (as in masquerade6).
scenario_fault_idle_expiry_remap6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE --random-fully"
    echo COMMIT
  } | hx ip6tables-restore
  hx sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_established=5
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  idle_past_timeout "$SRV6_IP" idle6
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
  kill_servers
}

# The same loss on the way in, by deletion: a client outside reaches a TCP port the
# host balances over c1 and c2 (`-m statistic --mode nth`); its entry is deleted while
# the connection is open (`conntrack -D`, as a flush or an agent's clean-up does). The
# client's next segment is a new entry to the rules, which send it to c2; c2 resets it.
scenario_fault_state_loss_dnat() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo "-A DOCKER -d $C2_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination $C1_IP:80"
    echo "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C2_IP:80"
    echo COMMIT
  } | apply_rules
  server web1 "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server web2 "$NS_C2" tcp_server.py --port 80 --lifetime 30
  start_recording
  client c "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --sport 42080 --dst "$HOST_IP" --port 8080 \
    --requests 2 --tag lost --ready "$SYNC/h1" --phase2 "$SYNC/go" --phase2-timeout 1.5 --close rst
  local c=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  hx conntrack -D -p tcp --orig-port-src 42080 -o extended,id >"$SCEN_DIR/conntrack-deleted.txt" 2>>"$LOGS/conntrack-D.log"
  sleep 1
  touch "$SYNC/go"
  expect_ok "$c"
  sleep 0.5
  snapshot -after
  # c1's server keeps the connection: stopped after the captures, its FIN (which no
  # entry translates any more) would go on being sent again while they stop.
  stop_recording
  kill_servers
}

# A UDP flow whose entry is deleted while it goes on (as kube-proxy clears the UDP
# entries of a Service whose endpoints changed, or a flush): a client outside queries
# a UDP port the host balances over c1 and c2 (`-m statistic --mode nth`), three
# queries from one port; the entry is deleted; a second later three more from the same
# port are a new entry, which the rules send to c2. Well within the UDP timeout: one
# flow at eth0, two backends.
scenario_fault_state_loss_udp() {
  IFACES=(docker0 eth0 veth-c1)
  balanced_dns 30
  start_recording
  query_balanced first 43054 before.example 1
  snapshot
  hx conntrack -D -p udp --orig-port-src 43054 -o extended,id >"$SCEN_DIR/conntrack-deleted.txt" 2>>"$LOGS/conntrack-D.log"
  sleep 1
  query_balanced again 43054 after.example 2
  sleep 0.5
  snapshot -after
  kill_servers
  stop_recording
}

# The same for ICMP echo on the way out: c1 pings 203.0.113.2 with identifier 20040
# through MASQUERADE --random-fully; its entry is deleted; a second later it pings
# again with the same identifier, a new entry that NAT gives another identifier.
scenario_fault_state_loss_icmp() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade_random_fully
  start_recording
  run first "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 3 --ident 20040
  snapshot
  hx conntrack -D -p icmp --icmp-id 20040 -o extended,id >"$SCEN_DIR/conntrack-deleted.txt" 2>>"$LOGS/conntrack-D.log"
  sleep 1
  run again "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 3 --ident 20040
  sleep 0.5
  snapshot -after
  stop_recording
}

# Longer than the kernel's UDP and ICMP timeouts (30 s) and natcheck's bound for them.
EXPIRY_WAIT=33

# Two containers connect from the same source port to the same server ip:port
# (TCP, UDP, and ICMP echo with the same identifier): MASQUERADE keeps the first
# mapping and has to move the second.
scenario_port_collision() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  client h1 "$NS_C1" tcp_client.py --sport 40000 --dst "$SRV_IP" --port 7000 --requests 2 --tag c1 \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  client h2 "$NS_C2" tcp_client.py --sport 40000 --dst "$SRV_IP" --port 7000 --requests 2 --tag c2 \
    --ready "$SYNC/h2" --release "$SYNC/release"
  local h2=$LAST_PID
  wait_file "$SYNC/h2" 5
  run udp "$NS_C1" udp_client.py --sport 40001 --dst "$SRV_IP" --count 2 --name c1.example
  run udp "$NS_C2" udp_client.py --sport 40001 --dst "$SRV_IP" --count 2 --name c2.example
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 20035
  run icmp "$NS_C2" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 20035
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  expect_ok "$h2"
  kill_servers
  stop_recording
}

# kube-proxy (iptables mode) NodePort 30080 -> 172.17.0.2:80: DNAT in PREROUTING,
# and MASQUERADE of marked traffic to the address of the output interface
# (docker0, 172.17.0.1). Chain names are kube-proxy's, with readable suffixes in
# place of its hashes.
scenario_nodeport() {
  IFACES=(docker0 eth0 veth-c1)
  apply_rules <<EOF
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
$MASQ_RULE
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination $C1_IP:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m comment --comment "default/web -> $C1_IP:80" -j KUBE-SEP-WEB1
COMMIT
EOF
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  start_recording
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30080 --requests 2 --tag np1
  run o2 "$NS_OUT" tcp_client.py --src "$SRV_IP" --dst "$HOST_IP" --port 30080 --requests 2 --tag np2
  client h1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30080 --requests 3 --tag nphold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  stop_recording
}

# SNAT to a 4-port range with --random-fully instead of MASQUERADE. A range needs
# a protocol, hence one rule for TCP and one for UDP.
scenario_snat_random_fully() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -p tcp -j SNAT --to-source $HOST_IP:20000-20003 --random-fully"
    echo "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -p udp -j SNAT --to-source $HOST_IP:20000-20003 --random-fully"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  local pids=() n ns
  for n in 1 2 3; do
    ns=$NS_C1
    [[ $n == 3 ]] && ns=$NS_C2
    client "h$n" "$ns" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag "rf$n" \
      --ready "$SYNC/h$n" --release "$SYNC/release"
    pids+=("$LAST_PID")
    wait_file "$SYNC/h$n" 5
  done
  run udp "$NS_C1" udp_client.py --dst "$SRV_IP" --count 2 --name rf.example
  snapshot
  touch "$SYNC/release"
  for n in "${pids[@]}"; do expect_ok "$n"; done
  kill_servers
  stop_recording
}

# Docker's rules plus a DROP in FORWARD for TCP port 9090: the SYNs to 9090 reach
# docker0 and never eth0, while port 7000 works.
scenario_fault_forward_drop() { forward_drop_lab drop; }

# The same traffic as fault-forward-drop with nothing dropped: the clean baseline a
# regression diff compares the faulty recording with.
scenario_forward_drop_clean() { forward_drop_lab clean; }

# $1: `drop` (a FORWARD rule drops the connection to port 9090) or `clean`.
forward_drop_lab() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  local fate=(--requests 1)
  if [[ $1 == drop ]]; then
    hx iptables -I FORWARD -p tcp -m tcp --dport 9090 -j DROP
    fate=(--expect-fail)
  fi
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --port 9090 --lifetime 30
  start_recording
  client blocked "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 9090 --connect-timeout 3 "${fate[@]}" --tag blocked
  local blocked=$LAST_PID
  client h1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag ok \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  expect_ok "$blocked"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  stop_recording
}

# Hairpin NAT (FM-07), L3: c1 connects to its own published port. The bridge port
# is in hairpin mode, so the DNATed SYN goes back to c1, but without Docker's
# hairpin MASQUERADE rule its source is c1's own address: c1 drops it (a packet from
# itself arriving on eth0) and never answers. c2's connection to the same published
# port works (bridge netfilter translates c1's answer back).
scenario_fault_hairpin_no_masq() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed '/-A DOCKER -i docker0 -j RETURN/d'
    echo "$MASQ_RULE"
    echo "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C1_IP:80"
    echo COMMIT
  } | apply_rules
  hx ip link set veth-c1 type bridge_slave hairpin on
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  # Ordinary egress through the masquerade, for contrast (and the uplink's capture).
  run out "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag out
  client self "$NS_C1" tcp_client.py --dst "$HOST_IP" --port 8080 --connect-timeout 3.5 --expect-fail --tag self
  local self=$LAST_PID
  run other "$NS_C2" tcp_client.py --dst "$HOST_IP" --port 8080 --requests 2 --tag other
  expect_ok "$self"
  sleep 1.5
  snapshot
  kill_servers
  stop_recording
}

# Hairpin NAT (FM-07) with Docker's hairpin MASQUERADE rules in place but c1's bridge
# port in hairpin mode off, bridge netfilter on: c1's TCP and UDP to its own published
# ports are DNATed back to it and come out of veth-c1 unmasqueraded, with 172.17.0.2
# as source and destination, and conntrack keeps no entry for them (the kernel never
# confirms one). c2's connections to the same ports are answered.
scenario_fault_hairpin_mode_off() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed '/-A DOCKER -i docker0 -j RETURN/d'
    echo "$MASQ_RULE"
    echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
    echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p udp -m udp --dport 53 -j MASQUERADE"
    echo "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C1_IP:80"
    echo "-A DOCKER -p udp -m udp --dport 8053 -j DNAT --to-destination $C1_IP:53"
    echo COMMIT
  } | apply_rules
  bridge_netfilter
  hx ip link set veth-c1 type bridge_slave hairpin off
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --port 53 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  # Ordinary egress through the masquerade, for contrast (and the uplink's capture).
  run out "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag out
  client self "$NS_C1" tcp_client.py --dst "$HOST_IP" --port 8080 --connect-timeout 3.5 --expect-fail --tag self
  local self=$LAST_PID
  run selfu "$NS_C1" udp_client.py --dst "$HOST_IP" --port 8053 --count 2 --timeout 0.5 --name self.example --expect-fail
  run other "$NS_C2" tcp_client.py --dst "$HOST_IP" --port 8080 --requests 2 --tag other
  run otheru "$NS_C2" udp_client.py --dst "$HOST_IP" --port 8053 --count 1 --name other.example
  expect_ok "$self"
  sleep 1
  snapshot
  kill_servers
  stop_recording
}

# The same over IPv6 (ip6tables, Docker's rules for `-p 8080:80` and `-p 8053:53/udp`
# on c1 with their hairpin MASQUERADE rules), bridge netfilter on and c1's port in
# hairpin mode off: c1's TCP and UDP to its own published ports come back to it
# DNATed and unmasqueraded, and conntrack keeps no entry for them; c2's are answered.
scenario_fault_hairpin_mode_off6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  {
    docker_filter_base
    echo "-A DOCKER -d fd00:172:17::2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo "-A DOCKER -d fd00:172:17::2/128 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|; /-A DOCKER -i docker0 -j RETURN/d'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo "-A POSTROUTING -s fd00:172:17::2/128 -d fd00:172:17::2/128 -p tcp -m tcp --dport 80 -j MASQUERADE"
    echo "-A POSTROUTING -s fd00:172:17::2/128 -d fd00:172:17::2/128 -p udp -m udp --dport 53 -j MASQUERADE"
    echo "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:172:17::2]:80"
    echo "-A DOCKER -p udp -m udp --dport 8053 -j DNAT --to-destination [fd00:172:17::2]:53"
    echo COMMIT
  } | hx ip6tables-restore
  bridge_netfilter
  hx ip link set veth-c1 type bridge_slave hairpin off
  ip -n "$NS_HOST" neigh replace fd00:172:17::2 lladdr 02:42:ac:11:00:02 dev docker0 nud permanent
  ip -n "$NS_HOST" neigh replace fd00:172:17::3 lladdr 02:42:ac:11:00:03 dev docker0 nud permanent
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --bind :: --port 53 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  sleep 0.3
  start_recording
  run out "$NS_C1" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 1 --tag out6
  client self "$NS_C1" tcp_client.py --dst 2001:db8:113::1 --port 8080 --connect-timeout 3.5 --expect-fail --tag self6
  local self=$LAST_PID
  run selfu "$NS_C1" udp_client.py --dst 2001:db8:113::1 --port 8053 --count 2 --timeout 0.5 --name self6.example --any
  run other "$NS_C2" tcp_client.py --dst 2001:db8:113::1 --port 8080 --requests 2 --tag other6
  run otheru "$NS_C2" udp_client.py --dst 2001:db8:113::1 --port 8053 --count 1 --name other6.example
  expect_ok "$self"
  sleep 1
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# FTP through NAT with the kernel's FTP helper (nf_conntrack_ftp and nf_nat_ftp,
# assigned by a raw-table CT rule, as kernels since 6.0 require): the helper rewrites
# the address in the control connection's PORT command and 227 reply, which changes
# the payload's length, so conntrack shifts every later sequence number of that
# direction (and the acknowledgement numbers answering it) by the difference; it also
# expects the data connections, which NAT then translates without a rule of their own.
# c1 fetches from an outside server in active mode (PORT rewritten, data connection
# DNATed to c1 by the expectation) and in passive mode (nothing rewritten); an outside
# client fetches from c1's published port 21 in passive mode (227 rewritten).
scenario_ftp_alg() {
  IFACES=(docker0 eth0 veth-c1)
  { raw_helper tcp 21 ftp; publish_c1 tcp 21; } | apply_rules
  server ftp-out "$NS_OUT" ftp_server.py --bind "$REMOTE_SRV" --lifetime 30
  server ftp-c1 "$NS_C1" ftp_server.py --bind "$C1_IP" --lifetime 30
  start_recording
  run active "$NS_C1" ftp_client.py --dst "$REMOTE_SRV" --mode active
  run passive "$NS_C1" ftp_client.py --dst "$REMOTE_SRV" --mode passive
  run published "$NS_OUT" ftp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --mode passive
  snapshot
  kill_servers
  stop_recording
}

# ftp-alg over IPv6: the same FTP helper behind ip6tables MASQUERADE and a published
# port. Active mode sends EPRT, whose address the helper rewrites (and shifts the
# sequence numbers after it); passive mode asks EPSV, whose 229 reply names a port
# only: nothing is rewritten, but the helper still expects the data connection, and
# NAT translates it as its master, without a rule.
scenario_ftp_alg6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade6
  {
    raw_helper tcp 21 ftp
    docker_filter_base
    echo "-A DOCKER -d fd00:172:17::2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 21 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 21 -j DNAT --to-destination [fd00:172:17::2]:21"
    echo COMMIT
  } | hx ip6tables-restore
  server ftp-out "$NS_OUT" ftp_server.py --bind 2001:db8:100::10 --lifetime 30
  server ftp-c1 "$NS_C1" ftp_server.py --bind fd00:172:17::2 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run active "$NS_C1" ftp_client.py --dst 2001:db8:100::10 --mode active
  run passive "$NS_C1" ftp_client.py --dst 2001:db8:100::10 --mode passive
  run published "$NS_OUT" ftp_client.py --src "$SRV6_IP" --dst "$HOST6_IP" --mode passive
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# TFTP through NAT with the kernel's TFTP helper (raw-table CT rule): c1 and c2 each
# read a file from an outside server, and a client outside reads one from a server on
# c1 behind a published port 69. A TFTP server answers a read request from a new port of
# its own; the helper expects that transfer (nothing in the payload is rewritten: a
# TFTP request names a file, not an address) and NAT translates it as the request,
# without a rule: the outside server's answers to 203.0.113.1 are DNATed to c1.
scenario_tftp_alg() {
  IFACES=(docker0 eth0 veth-c1)
  { raw_helper udp 69 tftp; publish_c1 udp 69; } | apply_rules
  server tftp-out "$NS_OUT" tftp.py serve --bind "$REMOTE_SRV" --lifetime 30
  server tftp-c1 "$NS_C1" tftp.py serve --bind "$C1_IP" --lifetime 30
  start_recording
  run get-out "$NS_C1" tftp.py get --dst "$REMOTE_SRV"
  run get-out2 "$NS_C2" tftp.py get --dst "$REMOTE_SRV" --name other.bin
  run get-published "$NS_OUT" tftp.py get --dst "$HOST_IP"
  snapshot
  kill_servers
  stop_recording
}

# Hairpin NAT (FM-07) for a published UDP port, without the hairpin MASQUERADE
# rule: c1's datagrams to its own published port come back to it with its own
# address as the source, and c1 does not answer them; c2's datagrams to the same
# port get answers.
scenario_fault_hairpin_udp() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed '/-A DOCKER -i docker0 -j RETURN/d'
    echo "$MASQ_RULE"
    echo "-A DOCKER -p udp -m udp --dport 8053 -j DNAT --to-destination $C1_IP:53"
    echo COMMIT
  } | apply_rules
  hx ip link set veth-c1 type bridge_slave hairpin on
  server dns "$NS_C1" udp_server.py --port 53 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  # Ordinary egress through the masquerade, for contrast (and the uplink's capture).
  run out "$NS_C1" udp_client.py --dst "$SRV_IP" --count 2 --name out.example
  run self "$NS_C1" udp_client.py --dst "$HOST_IP" --port 8053 --count 3 --timeout 0.5 --name self.example --expect-fail
  run other "$NS_C2" udp_client.py --dst "$HOST_IP" --port 8053 --count 2 --name other.example
  sleep 1.5
  snapshot
  kill_servers
  stop_recording
}

# With nf_conntrack_tcp_loose=0 a mid-stream segment without a conntrack entry is
# INVALID, and NAT skips INVALID packets. Open a connection, delete its entry,
# then let c1 send more: the segment (and its retransmissions, then c1's RST)
# leaves eth0 with the container address. The server's FIN, sent when it exits,
# reaches the host un-translated and draws a RST from the host itself.
scenario_fault_invalid_leak() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  hx sysctl -q -w net.netfilter.nf_conntrack_tcp_loose=0
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  client c1 "$NS_C1" tcp_client.py --sport 41000 --dst "$SRV_IP" --port 7000 --requests 2 --tag leak \
    --ready "$SYNC/h1" --phase2 "$SYNC/go" --phase2-timeout 1.5 --close rst
  local c1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  hx conntrack -D -p tcp --orig-port-src 41000 -o extended,id >"$SCEN_DIR/conntrack-deleted.txt" 2>>"$LOGS/conntrack-D.log"
  touch "$SYNC/go"
  expect_ok "$c1"
  kill_servers
  sleep 0.2
  snapshot -after
  stop_recording
}

# A UDP server on the outside with two addresses, bound to 0.0.0.0, that always
# answers from 203.0.113.2. A query to 203.0.113.3 gets its answer from .2: the
# reply does not match the conntrack entry's reply tuple, so it is not de-NATed;
# it opens a new entry of its own and the host answers port unreachable.
scenario_fault_wrong_source_udp() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  server srv-udp "$NS_OUT" udp_server.py --port 53 --reply-from "$SRV_IP" --lifetime 30
  start_recording
  run good "$NS_C1" udp_client.py --dst "$SRV_IP" --count 1 --name good.example
  run bad "$NS_C1" udp_client.py --dst "$SRV_IP2" --count 1 --retries 2 --timeout 0.7 --expect-fail --name bad.example
  snapshot
  kill_servers
  stop_recording
}

# Docker's IPv4 rules and its IPv6 ones (`"ipv6": true, "ip6tables": true`): the
# bridge's ULA prefix masqueraded to the uplink's address.
apply_docker_masquerade6() {
  apply_docker_masquerade
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo COMMIT
  } | hx ip6tables-restore
}

# IPv6: the same multi-homed responder behind IPv6 MASQUERADE (as in masquerade6).
# The server has 2001:db8:113::2 and ::3 and always answers from ::2: the query to
# ::3 is answered from ::2, which matches no entry's reply tuple, is not de-NATed and
# gets an ICMPv6 port unreachable from the host.
SRV6_IP=2001:db8:113::2 SRV6_IP2=2001:db8:113::3 HOST6_IP=2001:db8:113::1

scenario_fault_wrong_source_udp6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade6
  ip -n "$NS_OUT" addr add "$SRV6_IP2/64" dev wan0 nodad
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --reply-from "$SRV6_IP" --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run good "$NS_C1" udp_client.py --dst "$SRV6_IP" --count 1 --name good6.example
  run bad "$NS_C1" udp_client.py --dst "$SRV6_IP2" --count 1 --retries 2 --timeout 0.7 --expect-fail --name bad6.example
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# IPv6: the same Docker host with IPv6 on docker0 (ULA fd00:172:17::/64) and
# ip6tables MASQUERADE to the uplink's 2001:db8:113::1, as Docker writes with
# "ipv6": true, "ip6tables": true. The IPv4 rules are there too (dual stack).
scenario_masquerade6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade6
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --port 8443 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 3 --tag c1v6a
  run t2 "$NS_C2" tcp_client.py --dst 2001:db8:100::10 --port 7000 --requests 2 --tag c2v6a
  client h1 "$NS_C1" tcp_client.py --dst 2001:db8:100::10 --port 8443 --requests 2 --tag c1v6held \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  run udp "$NS_C1" udp_client.py --dst 2001:db8:113::2 --count 2 --name c1v6.example
  run udp "$NS_C2" udp_client.py --dst 2001:db8:100::10 --count 1 --name c2v6.example
  run icmp "$NS_C1" icmp_ping.py --dst 2001:db8:113::2 --count 3 --ident 3080
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# IPv6 datagrams larger than the links' MTU through MASQUERADE: each container's UDP
# datagrams (3000 bytes) leave it in fragments, conntrack puts them back together
# before NAT, and the host fragments them again under identifications of its own; the
# echoes (2053 bytes) come back in fragments the same way. Both containers send the
# same bytes, c2 a little after c1, to two servers. The bridge calls netfilter, so it
# too puts the containers' datagrams back together.
scenario_fragments6() {
  bridge_netfilter
  echo6_lab fragments6_traffic
}
fragments6_traffic() {
  run big1 "$NS_C1" udp_client.py --dst 2001:db8:113::2 --port 9999 --raw --size 3000 --count 3
  sleep 0.2
  run big2 "$NS_C2" udp_client.py --dst 2001:db8:100::10 --port 9999 --raw --size 3000 --count 2
}

# The same UDP probe from both containers at once over IPv6 (which has no IP ID), as
# health checks or metrics agents send it: each container sends six 64-byte probes,
# 10 ms apart, to its own server through MASQUERADE, and each is echoed. The copies of
# a probe and of its echo cross each interface a few milliseconds apart or less.
scenario_probes6() { echo6_lab probes6_traffic; }
probes6_traffic() {
  client p1 "$NS_C1" udp_client.py --dst 2001:db8:113::2 --port 9999 --raw --size 64 --count 6 --interval 0.01
  local p1=$LAST_PID
  client p2 "$NS_C2" udp_client.py --dst 2001:db8:100::10 --port 9999 --raw --size 64 --count 6 --interval 0.01
  local p2=$LAST_PID
  expect_ok "$p1"
  expect_ok "$p2"
}

# The same one-way UDP datagrams (metrics, as statsd clients send them) from both
# containers at once over IPv6, to a collector that answers nothing: eight 64-byte
# datagrams each, 10 ms apart, to two servers; nothing comes back.
scenario_sink6() { echo6_lab sink6_traffic --sink; }
sink6_traffic() {
  local c p=()
  for c in "$NS_C1:2001:db8:113::2" "$NS_C2:2001:db8:100::10"; do
    client "sink-${c%%:*}" "${c%%:*}" udp_client.py --dst "${c#*:}" --port 9999 --raw --size 64 --count 8 \
      --interval 0.01 --timeout 0.001 --any
    p+=("$LAST_PID")
  done
  expect_ok "${p[0]}"
  expect_ok "${p[1]}"
}

# echo6_lab TRAFFIC [SERVER ARG...]: the IPv6 MASQUERADE of masquerade6 and a UDP echo
# server on port 9999 outside (with SERVER ARGs), recorded around the function TRAFFIC.
echo6_lab() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade6
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 9999 --lifetime 30 "${@:2}"
  sleep 0.3
  start_recording
  "$1"
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# A MASQUERADE limited to one container (as when Calico's natOutgoing covers one
# pool only, or a hand-written rule names one host): c1 (172.17.0.2) is
# translated; c2's TCP connection and UDP query match no NAT rule, Docker's
# FORWARD lets them out, and they leave eth0 with 172.17.0.3. The outside has no
# route back to 172.17.0.0/16, so they are never answered.
LEAK_TCP_SPORT=41002
LEAK_UDP_SPORT=41053
LEAK_ICMP_ID=3091

scenario_fault_masq_miss() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "-A POSTROUTING -s $C1_IP/32 ! -o docker0 -j MASQUERADE"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  # c1: translated, held across the snapshot.
  client h1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1masq \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  # c2: the SYN and its retransmission (at 1 s), unanswered; then one query sent
  # twice from one socket, unanswered.
  client leak "$NS_C2" tcp_client.py --sport "$LEAK_TCP_SPORT" --dst "$SRV_IP" --port 7000 \
    --connect-timeout 2.5 --expect-fail --tag c2leak
  local leak=$LAST_PID
  run udp "$NS_C2" udp_client.py --sport "$LEAK_UDP_SPORT" --dst "$SRV_IP" --count 1 --retries 1 \
    --timeout 0.7 --expect-fail --name c2leak.example
  expect_ok "$leak"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  stop_recording
}

# The same fault over IPv6 (masquerade6's dual-stack host): ip6tables MASQUERADE
# for c1's fd00:172:17::2 only. c2's TCP connection, UDP query and ICMPv6 echo
# leave eth0 with fd00:172:17::3; the outside has no route to the ULA prefix.
scenario_fault_masq_miss6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::2/128 ! -o docker0 -j MASQUERADE"
    echo COMMIT
  } | hx ip6tables-restore
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  client h1 "$NS_C1" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 2 --tag c1v6masq \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  run icmp "$NS_C1" icmp_ping.py --dst 2001:db8:113::2 --count 2 --ident 3090
  client leak "$NS_C2" tcp_client.py --sport "$LEAK_TCP_SPORT" --dst 2001:db8:113::2 --port 7000 \
    --connect-timeout 2.5 --expect-fail --tag c2v6leak
  local leak=$LAST_PID
  run udp "$NS_C2" udp_client.py --sport "$LEAK_UDP_SPORT" --dst 2001:db8:113::2 --count 1 --retries 1 \
    --timeout 0.7 --expect-fail --name c2v6leak.example
  run icmp "$NS_C2" icmp_ping.py --dst 2001:db8:113::2 --count 2 --ident "$LEAK_ICMP_ID" --timeout 0.5 --expect-fail
  expect_ok "$leak"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# kube-proxy NodePorts to one pod (172.17.0.2): 30080/tcp and 30081/tcp to :80,
# 30053/udp to :53, as in `nodeport`, plus a user's FORWARD DROP for the traffic
# that came in on 30081 (matched after DNAT, by its original destination port).
# The SYNs to 30081 are DNATed and dropped: they reach eth0, never docker0.
BLOCKED_SPORT=40081

scenario_fault_nodeport_blocked() {
  IFACES=(docker0 eth0 veth-c1)
  apply_rules <<EOF
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -d $C1_IP/32 -p tcp -m tcp --dport 80 -m conntrack --ctorigdstport 30081 -j DROP
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-DNS - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-EXT-WEBALT - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-DNS1 - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SEP-WEBALT1 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-DNS - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SVC-WEBALT - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
$MASQ_RULE
-A KUBE-EXT-DNS -m comment --comment "masquerade traffic for default/dns external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-DNS -j KUBE-SVC-DNS
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-EXT-WEBALT -m comment --comment "masquerade traffic for default/web-alt external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEBALT -j KUBE-SVC-WEBALT
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web-alt" -m tcp --dport 30081 -j KUBE-EXT-WEBALT
-A KUBE-NODEPORTS -p udp -m comment --comment "default/dns" -m udp --dport 30053 -j KUBE-EXT-DNS
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-DNS1 -p udp -m comment --comment "default/dns" -m udp -j DNAT --to-destination $C1_IP:53
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination $C1_IP:80
-A KUBE-SEP-WEBALT1 -p tcp -m comment --comment "default/web-alt" -m tcp -j DNAT --to-destination $C1_IP:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-DNS -m comment --comment "default/dns -> $C1_IP:53" -j KUBE-SEP-DNS1
-A KUBE-SVC-WEB -m comment --comment "default/web -> $C1_IP:80" -j KUBE-SEP-WEB1
-A KUBE-SVC-WEBALT -m comment --comment "default/web-alt -> $C1_IP:80" -j KUBE-SEP-WEBALT1
COMMIT
EOF
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --port 53 --lifetime 30
  # The counters before the traffic, for the deltas of --rules-before.
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-counters-before.txt"
  start_recording
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30080 --requests 2 --tag np1
  client h1 "$NS_OUT" tcp_client.py --src "$SRV_IP" --dst "$HOST_IP" --port 30080 --requests 2 --tag nphold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  # The blocked NodePort: the SYN and its retransmissions at about 1 s and 3 s.
  client blocked "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --sport "$BLOCKED_SPORT" --dst "$HOST_IP" \
    --port 30081 --connect-timeout 3.5 --expect-fail --tag blocked
  local blocked=$LAST_PID
  run udp "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30053 --count 2 --name np.example
  expect_ok "$blocked"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-counters.txt"
  stop_recording
}

# kube-proxy (iptables mode), Docker and Calico rules on one host, as people find
# them when they debug: a NodePort service on 30080 with three endpoints picked by
# `-m statistic` (172.17.0.2:80 on c1, 172.17.0.3:80 and 172.17.0.4:80 on c2, which
# gets a second address), Docker's published port 8080 -> c1:8080 and 9090 ->
# c2:9090 with a DOCKER-USER DROP for 9090, a Calico-style PREROUTING jump that
# returns, an ipset MASQUERADE for c2 only, and a user INPUT DROP for 30080 that
# never sees the NodePort traffic. The kernel's trace of every SYN
# (xtables-monitor --trace), the rule counters and the ipsets are the ground
# truth for rule attribution.
KUBE_EPS=("$C1_IP" "$C2_IP" 172.17.0.4)

kube_rules() {
  cat <<EOF
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m multiport --dports 30080,8080,9090,7000 -j TRACE
-A OUTPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m multiport --dports 30080 -j TRACE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
:KUBE-FORWARD - [0:0]
-A INPUT -p tcp -m tcp --dport 30080 -j DROP
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8080 -j ACCEPT
-A DOCKER -d $C2_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 9090 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 9090 -j DROP
-A DOCKER-USER -j RETURN
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SEP-WEB2 - [0:0]
:KUBE-SEP-WEB3 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
:cali-PREROUTING - [0:0]
:cali-POSTROUTING - [0:0]
:cali-fip-dnat - [0:0]
:cali-nat-outgoing - [0:0]
-A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
$MASQ_RULE
-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p tcp -m tcp --dport 8080 -j MASQUERADE
-A POSTROUTING -s $C2_IP/32 -d $C2_IP/32 -p tcp -m tcp --dport 9090 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C1_IP:8080
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 9090 -j DNAT --to-destination $C2_IP:9090
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-WEB1 -s ${KUBE_EPS[0]}/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination ${KUBE_EPS[0]}:80
-A KUBE-SEP-WEB2 -s ${KUBE_EPS[1]}/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB2 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination ${KUBE_EPS[1]}:80
-A KUBE-SEP-WEB3 -s ${KUBE_EPS[2]}/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB3 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination ${KUBE_EPS[2]}:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m comment --comment "default/web -> ${KUBE_EPS[0]}:80" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-WEB1
-A KUBE-SVC-WEB -m comment --comment "default/web -> ${KUBE_EPS[1]}:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WEB2
-A KUBE-SVC-WEB -m comment --comment "default/web -> ${KUBE_EPS[2]}:80" -j KUBE-SEP-WEB3
-A cali-PREROUTING -m comment --comment "cali:r6XmIziWUJsdOK6Z" -i cali+ -j cali-fip-dnat
-A cali-PREROUTING -m comment --comment "cali:5CxYD3fpWC2L1wXA" -j RETURN
-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-nat-outgoing
-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
EOF
}

# kube_endpoint_counts: "N1 N2 N3", NodePort entries per endpoint in the conntrack table.
kube_endpoint_counts() {
  local table ep out=()
  table=$(hx conntrack -L -p tcp --orig-port-dst 30080 -o extended 2>/dev/null || true)
  for ep in "${KUBE_EPS[@]}"; do
    out+=("$(grep -cE "dport=30080 .*src=${ep//./\\.} dst=$BR_IP sport=80 " <<<"$table" || true)")
  done
  echo "${out[*]}"
}

scenario_kube_rules() {
  IFACES=(docker0 eth0 veth-c1)
  # The trace comes from nf_tables (xtables-monitor): the legacy backend's TRACE
  # only logs to the kernel log.
  hx iptables -V | grep -q nf_tables || die "$SCEN needs iptables-nft (iptables -V: $(hx iptables -V))"
  # c2 holds the third endpoint's address, as a second address on its eth0.
  ip -n "$NS_C2" addr add "${KUBE_EPS[2]}/16" dev eth0
  # Calico-style pool sets: c2 is the only "workload" whose egress Calico masquerades.
  hx ipset create cali40masq-ipam-pools hash:net family inet
  hx ipset add cali40masq-ipam-pools "$C2_IP/32"
  hx ipset create cali40all-ipam-pools hash:net family inet
  hx ipset add cali40all-ipam-pools 172.17.0.0/16
  kube_rules | apply_rules
  server web1 "$NS_C1" tcp_server.py --port 80 --port 8080 --lifetime 40
  server web2 "$NS_C2" tcp_server.py --port 80 --port 9090 --lifetime 40
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 40
  # The kernel's trace of every packet the raw TRACE rules mark (the SYNs).
  ip netns exec "$NS_HOST" stdbuf -oL xtables-monitor --trace >"$SCEN_DIR/trace.txt" 2>"$LOGS/trace.log" 9>&- &
  TRACE_PID=$!
  LIVE[$TRACE_PID]=trace
  start_recording

  # Two SYNs (the first and its retransmission after 1 s) to the published port
  # that DOCKER-USER drops; no answer.
  client blocked "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 9090 \
    --connect-timeout 1.5 --expect-fail --tag blocked
  local blocked=$LAST_PID
  # NodePort, one exchange per connection, sequentially; more connections while an
  # endpoint has not been chosen yet (12 leave one out with probability ~2 %).
  local n=0 counts
  while :; do
    n=$((n + 1))
    run np "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30080 --requests 1 --tag "np$n"
    if [[ $n -ge 12 ]]; then
      counts=$(kube_endpoint_counts)
      [[ " $counts " != *" 0 "* ]] && break
      [[ $n -lt 30 ]] || die "$SCEN: an endpoint got no connection in $n (per endpoint: $counts)"
      log "endpoints so far: $counts; one more connection"
    fi
  done
  # The node itself to its own NodePort (nat OUTPUT -> KUBE-SERVICES).
  run local "$NS_HOST" tcp_client.py --dst "$HOST_IP" --port 30080 --requests 1 --tag nplocal
  # Docker's published port, held across the snapshot.
  client h1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag pub \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  # Container egress: c1 through Docker's MASQUERADE, c2 through the ipset rule.
  run e1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1out
  run e2 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 2 --tag c2out
  wait_file "$SYNC/h1" 5
  expect_ok "$blocked"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  sleep 0.3
  stop "$TRACE_PID" TERM
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-counters.txt"
  hx ipset save >"$SCEN_DIR/ipsets.txt"
  hx nft -j list ruleset >"$SCEN_DIR/nft.json"
  stop_recording
  # Which endpoint each NodePort connection got, from its conntrack NEW event.
  grep -E '\[NEW\] .* dport=30080 ' "$SCEN_DIR/events.txt" |
    sed -E 's/.* src=([0-9.]+) dst=([0-9.]+) sport=([0-9]+) dport=([0-9]+) \[UNREPLIED\] src=([0-9.]+) dst=([0-9.]+) sport=([0-9]+) dport=([0-9]+).*/\1:\3 -> \2:\4 => \5:\7 (from \6:\8)/' \
      >"$SCEN_DIR/endpoints.txt"
}

# kube-proxy's nftables mode and a Docker-like native table, with no iptables rule
# at all: NodePort 30080 with three endpoints picked by `numgen random mod 3`
# (172.17.0.2:80 on c1, 172.17.0.3:80 and 172.17.0.4:80 on c2, as in kube-rules),
# Docker-style MASQUERADE of 172.17.0.0/16 and a published port 9090 -> c2:9090
# whose forwarded SYNs a user's rule drops by original destination port. Rule and
# chain names are kube-proxy's, with readable tokens in place of its hashes. The
# kernel's trace (`nft monitor trace`, fed by `meta nftrace set 1` in raw-priority
# chains) and the rule counters are the ground truth for rule attribution.
KNFT_SVC=service-WEBSVC01-default/web/tcp/http
KNFT_EXT=external-WEBSVC01-default/web/tcp/http
KNFT_CLUSTER_IP=198.51.100.41

knft_ep_chain() { echo "endpoint-WEBEP00$1-default/web/tcp/http__${KUBE_EPS[$(($1 - 1))]}/80"; }

kube_nft_rules() {
  local ep1 ep2 ep3 i
  ep1=$(knft_ep_chain 1) ep2=$(knft_ep_chain 2) ep3=$(knft_ep_chain 3)
  cat <<EOF
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority filter ; }
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority srcnat ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority dstnat ; }
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add chain ip kube-proxy $KNFT_SVC
add chain ip kube-proxy $KNFT_EXT
add chain ip kube-proxy $ep1
add chain ip kube-proxy $ep2
add chain ip kube-proxy $ep3
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy mark-for-masquerade meta mark set meta mark | 0x4000
add rule ip kube-proxy masquerading meta mark & 0x4000 == 0 return
add rule ip kube-proxy masquerading meta mark set meta mark ^ 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip kube-proxy $KNFT_SVC ip daddr $KNFT_CLUSTER_IP tcp dport 80 ip saddr != 172.17.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy $KNFT_SVC numgen random mod 3 vmap { 0 : goto $ep1 , 1 : goto $ep2 , 2 : goto $ep3 }
add rule ip kube-proxy $KNFT_EXT jump mark-for-masquerade
add rule ip kube-proxy $KNFT_EXT goto $KNFT_SVC
EOF
  for i in 1 2 3; do
    cat <<EOF
add rule ip kube-proxy $(knft_ep_chain "$i") ip saddr ${KUBE_EPS[$((i - 1))]} jump mark-for-masquerade
add rule ip kube-proxy $(knft_ep_chain "$i") meta l4proto tcp counter dnat to ${KUBE_EPS[$((i - 1))]}:80
EOF
  done
  cat <<EOF
add element ip kube-proxy service-ips { $KNFT_CLUSTER_IP . tcp . 80 : goto $KNFT_SVC }
add element ip kube-proxy service-nodeports { tcp . 30080 : goto $KNFT_EXT }

table ip docker-native {
	comment "Docker-like rules for docker0, written natively"
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump docker
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr != 127.0.0.0/8 fib daddr type local jump docker
	}
	chain docker {
		iifname "docker0" return
		iifname != "docker0" tcp dport 9090 dnat to $C2_IP:9090
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.17.0.0/16 oifname != "docker0" masquerade
		ip saddr $C2_IP ip daddr $C2_IP tcp dport 9090 masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		jump docker-user
		ct state established,related accept
		iifname "docker0" accept
		oifname "docker0" ct status dnat accept
	}
	chain docker-user {
		meta l4proto tcp ct original proto-dst 9090 counter drop
	}
}

table ip trace {
	comment "marks the first packet of every connection of the scenario for nft monitor trace"
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		tcp flags & (fin | syn | rst | ack) == syn tcp dport { 7000, 9090, 30080 } meta nftrace set 1
	}
	chain output {
		type filter hook output priority raw; policy accept;
		tcp flags & (fin | syn | rst | ack) == syn tcp dport 30080 meta nftrace set 1
	}
}
EOF
}

scenario_kube_nft() {
  IFACES=(docker0 eth0 veth-c1)
  # c2 holds the third endpoint's address, as a second address on its eth0.
  ip -n "$NS_C2" addr add "${KUBE_EPS[2]}/16" dev eth0
  kube_nft_rules >"$SCEN_DIR/rules.nft"
  hx nft -f "$SCEN_DIR/rules.nft"
  # The rule set as loaded (counters at 0); rule handles are those of the trace.
  hx nft -j list ruleset >"$SCEN_DIR/nft.json"
  hx nft -a list ruleset >"$SCEN_DIR/nft.txt"
  server web1 "$NS_C1" tcp_server.py --port 80 --lifetime 40
  server web2 "$NS_C2" tcp_server.py --port 80 --port 9090 --lifetime 40
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 40
  # The kernel's trace of every packet with nftrace set (the SYNs), with handles.
  ip netns exec "$NS_HOST" stdbuf -oL nft -a monitor trace >"$SCEN_DIR/trace.txt" 2>"$LOGS/trace.log" 9>&- &
  TRACE_PID=$!
  LIVE[$TRACE_PID]=trace
  # nft monitor prints nothing until the first event: give it time to subscribe.
  sleep 0.3
  start_recording

  # Two SYNs (the first and its retransmission after 1 s) to the published port
  # that docker-user drops; no answer.
  client blocked "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 9090 \
    --connect-timeout 1.5 --expect-fail --tag blocked
  local blocked=$LAST_PID
  # NodePort, one exchange per connection, sequentially; more connections while an
  # endpoint has not been chosen yet.
  local n=0 counts
  while :; do
    n=$((n + 1))
    run np "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30080 --requests 1 --tag "np$n"
    if [[ $n -ge 12 ]]; then
      counts=$(kube_endpoint_counts)
      [[ " $counts " != *" 0 "* ]] && break
      [[ $n -lt 30 ]] || die "$SCEN: an endpoint got no connection in $n (per endpoint: $counts)"
      log "endpoints so far: $counts; one more connection"
    fi
  done
  # The node itself to its own NodePort (nat-output -> services).
  run local "$NS_HOST" tcp_client.py --dst "$HOST_IP" --port 30080 --requests 1 --tag nplocal
  # Container egress through docker-native's masquerade, held across the snapshot.
  client h1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1out \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  expect_ok "$blocked"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  sleep 0.3
  stop "$TRACE_PID" TERM
  hx nft -j list ruleset >"$SCEN_DIR/nft-counters.json"
  stop_recording
  # No iptables rule in this scenario: keep iptables.txt only if something is there.
  [[ -n $(grep -vE '^(\*|:|COMMIT|#)' "$SCEN_DIR/iptables.txt" || true) ]] || rm -f "$SCEN_DIR/iptables.txt"
  # Which endpoint each NodePort connection got, from its conntrack NEW event.
  grep -E '\[NEW\] .* dport=30080 ' "$SCEN_DIR/events.txt" |
    sed -E 's/.* src=([0-9.]+) dst=([0-9.]+) sport=([0-9]+) dport=([0-9]+) \[UNREPLIED\] src=([0-9.]+) dst=([0-9.]+) sport=([0-9]+) dport=([0-9]+).*/\1:\3 -> \2:\4 => \5:\7 (from \6:\8)/' \
      >"$SCEN_DIR/endpoints.txt"
}

# Segmentation offloads of the lab's links, on or off. With them on, TCP hands
# veth super-packets of up to 64 kB, and the host is set so that its two capture
# points see the same bytes cut differently in both directions: c1 sends
# super-packets (TSO/GSO on its eth0), which veth-c1 and docker0 carry whole and
# eth0 (TSO/GSO off) cuts into MSS-sized segments; the outside sends MSS-sized
# segments (TSO/GSO off on wan0), which GRO on eth0 merges into aggregates and
# docker0 (TSO/GSO off) cuts again on the way in. Off: every link carries
# MSS-sized segments only, and both points see the same cuts.
set_offloads() {
  local on=$1
  if [[ $on == on ]]; then
    nsx "$NS_C1" ethtool -K eth0 tso on gso on gro on
    hx ethtool -K veth-c1 tso on gso on gro on
    hx ethtool -K docker0 tso off gso off
    hx ethtool -K eth0 tso off gso off gro on
    nsx "$NS_OUT" ethtool -K wan0 tso off gso off gro on
  else
    nsx "$NS_C1" ethtool -K eth0 tso off gso off gro off
    hx ethtool -K veth-c1 tso off gso off gro off
    hx ethtool -K docker0 tso off gso off gro off
    hx ethtool -K eth0 tso off gso off gro off
    nsx "$NS_OUT" ethtool -K wan0 tso off gso off gro off
  fi
  # The settings in force, as `ethtool -k` shows them, for the host's interfaces.
  local i
  for i in veth-c1 docker0 eth0; do
    echo "$i:"
    hx ethtool -k "$i" | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):'
  done >"$SCEN_DIR/offloads.txt"
}

# Bulk TCP both ways through MASQUERADE (c1 -> 203.0.113.2:7000) and through a
# published port (198.51.100.20 -> 203.0.113.1:8080, DNAT to c1:80): two
# exchanges of 40 kB requests and 40 kB responses per connection, held across the
# snapshot, then closed with FIN. Offloads on or off (see set_offloads); captures
# keep the first SNAPLEN bytes of each packet.
bulk_scenario() {
  IFACES=(docker0 eth0 veth-c1)
  SNAPLEN=128
  publish_web | apply_rules
  set_offloads "$1"
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  client out "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --size 40000 --tag bulkout \
    --ready "$SYNC/out" --release "$SYNC/release"
  local egress=$LAST_PID
  wait_file "$SYNC/out" 10
  client in "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --size 40000 \
    --tag bulkin --ready "$SYNC/in" --release "$SYNC/release"
  local ingress=$LAST_PID
  wait_file "$SYNC/in" 10
  snapshot
  touch "$SYNC/release"
  expect_ok "$egress"
  expect_ok "$ingress"
  kill_servers
  stop_recording
}

scenario_bulk_offload() { bulk_scenario on; }
scenario_bulk_no_offload() { bulk_scenario off; }

# SNAT port exhaustion (FM-06): Docker's MASQUERADE, with TCP limited to a two-port
# range. Two held connections to 203.0.113.2:7000 take both ports; the third
# connection's SYNs (the first and its retransmissions at 1 s and 3 s) are given a
# tuple already in use and dropped when conntrack inserts the entry (insert_failed,
# drop). A connection to another port of the same server still gets a port: the
# tuple space is per destination.
EXHAUST_SPORT=40100

scenario_fault_snat_exhaustion() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -p tcp -j MASQUERADE --to-ports 20000-20001"
    echo "$MASQ_RULE"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --port 8443 --lifetime 30
  start_recording
  client h1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag held1 \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  client h2 "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag held2 \
    --ready "$SYNC/h2" --release "$SYNC/release"
  local h2=$LAST_PID
  wait_file "$SYNC/h2" 5
  # Another destination port: a port of the range is free for it.
  run other "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 8443 --requests 1 --tag other
  # The third connection to 7000: no port left.
  client lost "$NS_C1" tcp_client.py --sport "$EXHAUST_SPORT" --dst "$SRV_IP" --port 7000 \
    --connect-timeout 3.5 --expect-fail --tag lost
  local lost=$LAST_PID
  expect_ok "$lost"
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  expect_ok "$h2"
  kill_servers
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-counters.txt"
  stop_recording
}

# The same fault over IPv6 and UDP, with SNAT to an address and a two-port range
# (ip6tables `SNAT --to-source [ADDR]:LO-HI`): two DNS sockets answered from
# 2001:db8:113::2:53 hold both ports (a UDP entry lives 30 s after its last
# packet); a third socket's query and its two resends never leave the host, while
# a query to another server (2001:db8:100::10) still gets a port.
EXHAUST_UDP_SPORT=40153

scenario_fault_snat_exhaustion_udp6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -p udp -j SNAT --to-source [2001:db8:113::1]:20000-20001"
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo COMMIT
  } | hx ip6tables-restore
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run udp1 "$NS_C1" udp_client.py --dst 2001:db8:113::2 --count 2 --name held1.example
  run udp2 "$NS_C2" udp_client.py --dst 2001:db8:113::2 --count 1 --name held2.example
  run lost "$NS_C1" udp_client.py --sport "$EXHAUST_UDP_SPORT" --dst 2001:db8:113::2 --count 1 \
    --retries 2 --timeout 1 --expect-fail --name lost.example
  # Another destination: a port of the range is free for it.
  run other "$NS_C2" udp_client.py --dst 2001:db8:100::10 --count 1 --name other.example
  snapshot
  kill_servers
  hx ip6tables-save -c | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# A connection's first SYN dropped once (DOCKER-USER drops every other SYN from
# docker0: `-m statistic --mode nth --every 2 --packet 0`): the client's
# retransmission 1 s later crosses and the connection works, a second late. Two
# such connections (c1 to 203.0.113.2:7000, held across the snapshot; c2 to
# 198.51.100.10:7000) and a DNS query that loses nothing. The kernel's own record
# of the same drops is the rule's counter; conntrack sees no insert failure.
scenario_fault_syn_dropped_once() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  hx iptables -I DOCKER-USER -i docker0 -p tcp --syn -m statistic --mode nth --every 2 --packet 0 -j DROP
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  # First the query: eth0 is seen capturing before the first SYN it never carried.
  run udp "$NS_C1" udp_client.py --dst "$SRV_IP" --count 1 --name clean.example
  client h1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag once1 \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  run t2 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 2 --tag once2
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  kill_servers
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-counters.txt"
  stop_recording
}

# DNS as glibc sends it: the A and AAAA queries for one name back to back from one
# socket. DOCKER-USER drops every other DNS datagram c1 sends (`-m statistic
# --mode nth --every 2 --packet 1`): c1's A query crosses, its AAAA query (sent
# about 0.1 ms later) does not, and the resolver resends the AAAA alone 3 s later,
# which crosses. The FM-03 insert-race signature, made here by a rule. c2 asks the
# same way and loses nothing.
scenario_fault_dns_pair_dropped() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  hx iptables -I DOCKER-USER -s "$C1_IP" -p udp --dport 53 -m statistic --mode nth --every 2 --packet 1 -j DROP
  # The server runs as SCHED_IDLE: woken by the A query, it must not preempt the
  # client before the kernel has taken the AAAA query from the same sendmmsg() call
  # (it would answer first, and the AAAA would leave after the answer).
  bg srv-udp "$NS_OUT" chrt --idle 0 "$PY" "$LAB/udp_server.py" --ready "$SYNC/srv-udp.ready" --port 53 --lifetime 30
  SERVERS+=("$LAST_PID")
  wait_file "$SYNC/srv-udp.ready" 5
  # The containers know their gateway's MAC already and the host its next hop's, as
  # on a busy host: the A query does not wait for ARP on its way (the AAAA query
  # would then leave after the A query's answer, not with the A query).
  ip -n "$NS_C1" neigh replace "$BR_IP" lladdr 02:42:4e:43:00:01 dev eth0 nud permanent
  ip -n "$NS_C2" neigh replace "$BR_IP" lladdr 02:42:4e:43:00:01 dev eth0 nud permanent
  ip -n "$NS_HOST" neigh replace "$SRV_IP" lladdr 52:54:00:4e:43:02 dev eth0 nud permanent
  start_recording
  # The clients run as SCHED_FIFO, so that no other task of a busy machine takes
  # the CPU between the two datagrams of one sendmmsg() call.
  run pair1 "$NS_C1" --fifo udp_client.py --pair --dst "$SRV_IP" --count 1 --timeout 3 --retries 1 \
    --name pair1.example
  run pair2 "$NS_C2" --fifo udp_client.py --pair --dst "$REMOTE_SRV" --count 1 --timeout 2 --name pair2.example
  snapshot
  kill_servers
  hx iptables-save -c | sed '/^# /d' >"$SCEN_DIR/iptables-counters.txt"
  stop_recording
}

# wait_listen NS PORT: wait until something listens on TCP PORT in namespace NS.
wait_listen() {
  local i
  for ((i = 0; i < 500; i++)); do
    [[ -n $(nsx "$1" ss -Hltn "sport = :$2") ]] && return 0
    sleep 0.01
  done
  die "nothing listens on TCP port $2 in $1"
}

# proxy LABEL SOCAT-ARGS...: socat in the host namespace, standing in for Docker's
# userland proxy (docker-proxy); stopped with the servers.
proxy() {
  local label=$1
  shift
  bg "$label" "$NS_HOST" socat "$@"
  SERVERS+=("$LAST_PID")
}

# Docker's userland proxy with no DNAT for the port (as with "iptables": false): a
# proxy on the host listens on 8080 and, for every client, opens a connection of
# its own from the bridge address to c1:80 and copies the bytes both ways. Clients
# from outside and from the host itself (over lo, captured in lo.pcap); c2's own
# egress goes through MASQUERADE as usual.
scenario_userland_proxy() {
  IFACES=(docker0 eth0 veth-c1 lo)
  apply_docker_masquerade
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  proxy proxy TCP4-LISTEN:8080,fork,reuseaddr "TCP4:$C1_IP:80"
  wait_listen "$NS_HOST" 8080
  start_recording
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag ext1
  run local "$NS_HOST" tcp_client.py --dst 127.0.0.1 --port 8080 --requests 2 --tag local
  run egress "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c2out
  client h1 "$NS_OUT" tcp_client.py --src "$SRV_IP" --dst "$HOST_IP" --port 8080 --requests 3 --tag exthold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  # Let the proxy close its side to c1 before the servers stop.
  sleep 1
  kill_servers
  stop_recording
}

# The userland proxy between address families (moby/moby#15086): Docker publishes
# 8080 -> c1:80 with a DNAT rule for IPv4 and no IPv6 rule ("ip6tables": false), so IPv4
# clients are DNATed and keep their address, while docker-proxy alone serves IPv6
# and opens an IPv4 connection of its own from the bridge address to c1:80 for
# every IPv6 client.
scenario_userland_proxy6() {
  IFACES=(docker0 eth0 veth-c1)
  publish_web | apply_rules
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  proxy proxy TCP6-LISTEN:8080,ipv6only=1,fork,reuseaddr "TCP4:$C1_IP:80"
  wait_listen "$NS_HOST" 8080
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run v6 "$NS_OUT" tcp_client.py --src 2001:db8:113::2 --dst 2001:db8:113::1 --port 8080 --requests 2 --tag ext6
  run v4 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag ext4
  client h1 "$NS_OUT" tcp_client.py --src 2001:db8:100::10 --dst 2001:db8:113::1 --port 8080 --requests 3 \
    --tag ext6hold --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  sleep 1
  kill_servers
  stop_recording
}

# A path MTU black hole (FM-18, FM-20): the host's uplink eth0 has an MTU of 1400
# (a tunnel or PPPoE link) while both ends announce a 1460-byte MSS (their own
# links are 1500). c1's full-size segments (1500 bytes, DF) cannot leave eth0: the
# host answers "fragmentation needed" (mtu 1400), a hardening rule in its OUTPUT
# chain drops that ICMP, so c1 never learns and sends the same bytes again until
# it gives up (RST). The first exchange, small, gets through; so does c2's.
scenario_fault_pmtu_black_hole() {
  IFACES=(docker0 eth0 veth-c1)
  SNAPLEN=128
  {
    docker_filter_base
    echo "-A OUTPUT -p icmp -m icmp --icmp-type 3/4 -j DROP"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo COMMIT
  } | apply_rules
  hx ip link set eth0 mtu 1400
  set_offloads off
  nsx "$NS_C1" sysctl -q -w net.ipv4.tcp_mtu_probing=0
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  client ok "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag small \
    --ready "$SYNC/ok" --release "$SYNC/release"
  local ok=$LAST_PID
  wait_file "$SYNC/ok" 5
  run upload "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --last-size 40000 \
    --expect-stall --io-timeout 4 --close rst --tag upload
  snapshot
  touch "$SYNC/release"
  expect_ok "$ok"
  kill_servers
  stop_recording
}

# The same black hole over IPv6, the other way, with the error seen: c1 downloads
# from [2001:db8:113::2]:7000 through masquerade6, and docker0's MTU is 1400 while
# every other link is 1500 (both ends announce a 1440-byte MSS). The host cannot
# forward the server's full-size segments (1500 bytes) into docker0 and sends
# "packet too big" (mtu 1400) out eth0, where it is captured; the server's own
# firewall (ip6tables INPUT in nc-out) drops it, so the server sends the same
# bytes again until c1 gives up (RST). The first response, small, gets through.
scenario_fault_pmtu_black_hole6() {
  IFACES=(docker0 eth0 veth-c1)
  SNAPLEN=128
  apply_docker_masquerade6
  nsx "$NS_OUT" ip6tables -A INPUT -p icmpv6 -m icmp6 --icmpv6-type packet-too-big -j DROP
  hx ip link set docker0 mtu 1400
  set_offloads off
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --resp-pads 32,40000 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  client ok "$NS_C2" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 1 --tag small \
    --ready "$SYNC/ok" --release "$SYNC/release"
  local ok=$LAST_PID
  wait_file "$SYNC/ok" 5
  run download "$NS_C1" tcp_client.py --dst 2001:db8:113::2 --port 7000 --requests 2 \
    --expect-stall --io-timeout 4 --close rst --tag download
  snapshot
  touch "$SYNC/release"
  expect_ok "$ok"
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# A second uplink for the asymmetric-route scenarios: host eth1 198.51.100.1/29
# <-> outside wan1 198.51.100.2/29 (2001:db8:114::/64 with IPv6), and the outside
# routes the host's eth0 address back over it, so replies to what the host sends
# out eth0 come back on eth1. The outside announces its wan1 address in ARP
# (arp_announce=2, as a router on that link would), not the reply's source: the
# host's reverse-path filter would drop an ARP request from 203.0.113.2 on eth1
# and no reply would ever reach eth1. Its own reverse-path filter is off.
second_uplink() {
  ip -n "$NS_HOST" link add eth1 address 52:54:00:4e:43:11 type veth \
    peer name wan1 address 52:54:00:4e:43:12 netns "$NS_OUT"
  ip -n "$NS_HOST" addr add 198.51.100.1/29 dev eth1
  ip -n "$NS_HOST" link set eth1 up
  nsx "$NS_OUT" sysctl -q -w net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.wan0.rp_filter=0
  ip -n "$NS_OUT" addr add 198.51.100.2/29 dev wan1
  ip -n "$NS_OUT" link set wan1 up
  nsx "$NS_OUT" sysctl -q -w net.ipv4.conf.wan1.rp_filter=0
  ip -n "$NS_OUT" route add "$HOST_IP/32" via 198.51.100.1 dev wan1
  if is_v6 "$SCEN"; then
    ip -n "$NS_HOST" addr add 2001:db8:114::1/64 dev eth1 nodad
    ip -n "$NS_OUT" addr add 2001:db8:114::2/64 dev wan1 nodad
    ip -n "$NS_OUT" -6 route add 2001:db8:113::1/128 via 2001:db8:114::1 dev wan1
  fi
}

# The host's routes (and the one to PEER) and its IPv4 reverse-path filter counter (TcpExt
# IPReversePathFilter: packets the routing decision dropped because the route
# back to their source leaves by another interface), at the end.
asym_context() { # asym_context PEER: the route to PEER too
  { hx ip route; hx ip -6 route; hx ip route get "$1"; } >"$SCEN_DIR/routes.txt"
  hx awk '/^TcpExt:/ { if (!n++) { split($0, k); next } for (i = 2; i <= NF; i++) print k[i], $i }' /proc/net/netstat |
    grep -E '^IPReversePathFilter ' >"$SCEN_DIR/netstat.txt"
}

# Asymmetric routing with strict reverse-path filtering (FM-16): the host's
# routes send c1's connection to 203.0.113.2:7000 out eth0 (MASQUERADE to
# 203.0.113.1), the outside answers over the second uplink, and eth1 has
# rp_filter=1: the route back to 203.0.113.2 leaves by eth0, so the routing
# decision drops every SYN-ACK arriving on eth1 (after conntrack has seen it:
# the entry leaves SYN_SENT). c1 gets nothing and gives up after 3 s. c2's
# connection to the outside's eth1 address goes out eth1 and comes back on it.
scenario_fault_asym_route() {
  IFACES=(docker0 eth0 eth1 veth-c1)
  second_uplink
  hx sysctl -q -w net.ipv4.conf.eth1.rp_filter=1
  apply_docker_masquerade
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  start_recording
  client ok "$NS_C2" tcp_client.py --dst 198.51.100.2 --port 7000 --requests 2 --tag second \
    --ready "$SYNC/ok" --release "$SYNC/release"
  local ok=$LAST_PID
  wait_file "$SYNC/ok" 5
  run asym "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --connect-timeout 3 \
    --expect-fail --tag asym
  snapshot
  touch "$SYNC/release"
  expect_ok "$ok"
  kill_servers
  stop_recording
  hx sysctl net.ipv4.conf.eth0.rp_filter net.ipv4.conf.eth1.rp_filter >>"$SCEN_DIR/sysctl.txt"
  asym_context "$SRV_IP"
}

# The same over IPv6 and UDP, with the reverse-path filter firewalld installs
# for IPv6 (IPv6_rpfilter=yes, iptables backend): `ip6tables -t raw -A
# PREROUTING -m rpfilter --invert -j DROP`. c1's DNS queries to
# [2001:db8:113::2]:53 leave eth0 (IPv6 MASQUERADE), the answers come back on
# eth1 and the raw table drops them before conntrack sees them (the entry stays
# [UNREPLIED]); so are the echo replies to c1's pings. c2's query to the
# outside's eth1 address is answered.
scenario_fault_asym_route6() {
  IFACES=(docker0 eth0 eth1 veth-c1)
  second_uplink
  {
    echo '*raw'
    echo ':PREROUTING ACCEPT [0:0]'
    echo ':OUTPUT ACCEPT [0:0]'
    echo '-A PREROUTING -m rpfilter --invert -j DROP'
    echo COMMIT
    docker_filter_base
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo COMMIT
  } | hx ip6tables-restore
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  # Let the last MLD reports of the address setup go out before capturing.
  sleep 0.3
  start_recording
  run ok "$NS_C2" udp_client.py --dst 2001:db8:114::2 --count 1 --name second.example
  run asym "$NS_C1" udp_client.py --dst 2001:db8:113::2 --count 1 --retries 1 --timeout 1 \
    --expect-fail --name asym.example
  run icmp "$NS_C1" icmp_ping.py --dst 2001:db8:113::2 --count 2 --ident 3095 --timeout 0.5 --expect-fail
  snapshot
  kill_servers
  hx ip6tables-save -c | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
  asym_context 2001:db8:113::2
}

# The same asymmetric routes with loose reverse-path filtering (rp_filter=2 on
# eth1: a packet passes when any route leads back to its source): the replies
# coming back on eth1 are translated back and delivered, and conntrack follows
# the connection as usual. Also the other way: the host routes 198.51.100.20 out
# eth1, so a connection from there to the published port 203.0.113.1:8080
# (DNAT to c1:80) arrives on eth0 and its replies leave by eth1.
scenario_asym_route_loose() {
  IFACES=(docker0 eth0 eth1 veth-c1)
  second_uplink
  hx sysctl -q -w net.ipv4.conf.eth1.rp_filter=2
  hx ip route add "$REMOTE_CLI/32" via 198.51.100.2 dev eth1
  # The outside client's own traffic still goes out wan0 (a policy route).
  ip -n "$NS_OUT" rule add from "$REMOTE_CLI" lookup 100
  ip -n "$NS_OUT" route add "$HOST_IP/32" dev wan0 table 100
  publish_web | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  start_recording
  run out "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag loose
  run in "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag inbound
  snapshot
  kill_servers
  stop_recording
  hx sysctl net.ipv4.conf.eth0.rp_filter net.ipv4.conf.eth1.rp_filter >>"$SCEN_DIR/sysctl.txt"
  asym_context "$SRV_IP"
}

# ct_table_full: from now on the host namespace's conntrack table is full. The limit,
# nf_conntrack_max, is one setting for the whole machine, writable only from the
# initial namespace, while the count it bounds is per namespace: it is set to the
# number of entries the host namespace holds, so that every packet that would create
# an entry there is dropped ("nf_conntrack: table full, dropping packet"; conntrack -S
# drop) unless early drop can evict an entry that is not ASSURED. ct_max_restore (also
# run by scenario_cleanup) puts the old value back.
ct_table_full() {
  local f=/proc/sys/net/netfilter/nf_conntrack_max n
  [[ -w $f ]] || die "$f is not writable: record from the initial network namespace"
  CT_MAX_SAVED=$(<"$f")
  n=$(hx cat /proc/sys/net/netfilter/nf_conntrack_count)
  log "nf_conntrack_max $CT_MAX_SAVED -> $n (the host namespace's entries) until the recording stops"
  echo "$n" >"$f"
}

ct_max_restore() {
  [[ -n $CT_MAX_SAVED ]] || return 0
  echo "$CT_MAX_SAVED" >/proc/sys/net/netfilter/nf_conntrack_max
  log "nf_conntrack_max restored to $CT_MAX_SAVED"
  CT_MAX_SAVED=""
}

# Connections that fill the table before the captures start: established both ways,
# so conntrack marks them ASSURED and early drop never evicts them.
CT_FILL=40

# A full conntrack table (FM-13). Docker's rules, the bridge calling them for the
# packets it forwards (br_netfilter, as Docker needs): conntrack sees c1's packets as
# veth-c1 hands them to docker0. Before the captures, c2 opens CT_FILL connections to
# 203.0.113.2:7000 and holds them. Captured: c1 -> 203.0.113.2:7000 and c2 ->
# 198.51.100.10:7000 open and exchange, held; then the table is made full
# (ct_table_full), and c1's new connections are lost at the host whatever their
# destination: TCP to 203.0.113.2:8443 and to 198.51.100.10:7000, a DNS query to
# 203.0.113.2:53. They reach veth-c1 and nothing further: conntrack drops them before
# docker0 sees them. Meanwhile the two held connections exchange once more: packets
# of existing entries still cross.
scenario_fault_ct_table_full() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  bridge_netfilter
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --port 8443 --max-conns 200 --lifetime 40
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 40
  start_events
  sleep 0.2
  client fill "$NS_C2" tcp_fill.py --dst "$SRV_IP" --port 7000 --count "$CT_FILL" \
    --ready "$SYNC/fill" --release "$SYNC/release"
  local fill=$LAST_PID
  wait_file "$SYNC/fill" 10
  # The fill's entries last saw a packet well before the captures start (more than
  # the uncertainty of a snapshot's estimated time).
  sleep 2
  start_recording
  ct_hold flow1 "$NS_C1" --dst "$SRV_IP" --port 7000
  ct_hold flow2 "$NS_C2" --dst "$REMOTE_SRV" --port 7000
  hx conntrack -S >"$SCEN_DIR/conntrack-stats-before.txt" 2>>"$LOGS/conntrack-S.log"
  ct_table_full
  client lost1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 8443 --connect-timeout 2.5 --expect-fail --tag lost1
  local lost1=$LAST_PID
  client lost2 "$NS_C1" udp_client.py --dst "$SRV_IP" --count 1 --retries 2 --timeout 1 --expect-fail \
    --name lost2.example
  local lost2=$LAST_PID
  client lost3 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --connect-timeout 2.5 --expect-fail --tag lost3
  local lost3=$LAST_PID
  ct_table_finish "$fill" "$lost1" "$lost2" "$lost3"
}

# The same over IPv6, with traffic both ways (masquerade6's dual-stack host, and
# Docker's rules for `-p 8080:80` on c1 over IPv6). Before the captures, the outside
# (2001:db8:113::2) opens CT_FILL connections to the published port
# [2001:db8:113::1]:8080 (DNAT to c1:80) and holds them. Captured: 2001:db8:100::10
# -> [2001:db8:113::1]:8080 and c1 -> [2001:db8:113::2]:7000 open and exchange, held;
# then the table is full, and new connections are lost at the host: c1's DNS queries
# to [2001:db8:113::2]:53 and to [2001:db8:100::10]:53 (outbound, lost on veth-c1)
# and 2001:db8:113::2's TCP to the published port (inbound, lost on eth0). Meanwhile
# the two held connections exchange once more.
scenario_fault_ct_table_full6() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  {
    docker_filter_base
    echo "-A DOCKER -d fd00:172:17::2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
    echo "-A POSTROUTING -s fd00:172:17::2/128 -d fd00:172:17::2/128 -p tcp -m tcp --dport 80 -j MASQUERADE"
    echo "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:172:17::2]:80"
    echo COMMIT
  } | hx ip6tables-restore
  bridge_netfilter
  # The host sends a neighbour solicitation for a packet it forwards from a link-local
  # address, and the lab's have none: it knows c1's address, as after c1's first packet.
  ip -n "$NS_HOST" neigh replace fd00:172:17::2 lladdr 02:42:ac:11:00:02 dev docker0 nud permanent
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --max-conns 200 --lifetime 40
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 40
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 40
  start_events
  sleep 0.2
  client fill "$NS_OUT" tcp_fill.py --src 2001:db8:113::2 --dst 2001:db8:113::1 --port 8080 \
    --count "$CT_FILL" --ready "$SYNC/fill" --release "$SYNC/release"
  local fill=$LAST_PID
  wait_file "$SYNC/fill" 10
  sleep 2
  start_recording
  ct_hold flow1 "$NS_OUT" --src 2001:db8:100::10 --dst 2001:db8:113::1 --port 8080
  ct_hold flow2 "$NS_C1" --dst 2001:db8:113::2 --port 7000
  hx conntrack -S >"$SCEN_DIR/conntrack-stats-before.txt" 2>>"$LOGS/conntrack-S.log"
  ct_table_full
  client lost1 "$NS_C1" udp_client.py --dst 2001:db8:113::2 --count 1 --retries 2 --timeout 1 --expect-fail \
    --name lost1.example
  local lost1=$LAST_PID
  client lost2 "$NS_C1" udp_client.py --dst 2001:db8:100::10 --count 1 --retries 2 --timeout 1 --expect-fail \
    --name lost2.example
  local lost2=$LAST_PID
  client lost3 "$NS_OUT" tcp_client.py --src 2001:db8:113::2 --dst 2001:db8:113::1 --port 8080 \
    --connect-timeout 2.5 --expect-fail --tag lost3
  local lost3=$LAST_PID
  ct_table_finish "$fill" "$lost1" "$lost2" "$lost3"
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
}

# bridge_netfilter: the host's bridge calls iptables and ip6tables for the packets
# it forwards (Docker and Kubernetes need it; the br_netfilter module must be
# loaded), so conntrack first sees a container's packets on its veth.
bridge_netfilter() {
  hx sysctl -q -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 ||
    die "no bridge netfilter (modprobe br_netfilter)"
}

# ct_hold LABEL NS ARGS...: a held connection of a full-table scenario, opened
# before the table is full: tcp_client.py ARGS with two exchanges, one more at
# $SYNC/LABEL.late, closed at $SYNC/release.
CT_HELD=()
ct_hold() {
  local label=$1 ns=$2
  shift 2
  client "$label" "$ns" tcp_client.py "$@" --requests 2 --tag "$label" --ready "$SYNC/$label" \
    --phase2 "$SYNC/$label.late" --close-after "$SYNC/release" --hold-max 20
  CT_HELD+=("$LAST_PID")
  wait_file "$SYNC/$label" 5
}

# ct_table_finish FILL LOST...: the held connections' late exchanges, flow1's while
# the new connections are lost, flow2's after the last of them (so that every point
# captures past it); the snapshot and the statistics with the table still full; then
# the limit restored and everything closed.
ct_table_finish() {
  local fill=$1 pid
  shift
  sleep 1.5
  touch "$SYNC/flow1.late"
  for pid in "$@"; do expect_ok "$pid"; done
  touch "$SYNC/flow2.late"
  snapshot
  stop_recording
  ct_max_restore
  touch "$SYNC/release"
  for pid in "${CT_HELD[@]}" "$fill"; do expect_ok "$pid"; done
  local label
  for label in flow1 flow2; do
    grep -q "late request answered" "$LOGS/$label.log" || die "$label: the late request was not answered"
  done
  kill_servers
}

# ---------------------------------------------------------------- overlay

# Two Kubernetes-style nodes joined by a tunnel: node A is nc-host (pod nc-c1 on
# docker0, pod CIDR 172.17.0.0/24), node B is nc-nodeb (pod nc-podb on its own docker0,
# pod CIDR 172.17.1.0/24). Their eth0s share an underlay link (203.0.113.0/24); the
# tunnel carries the other node's pod CIDR, either VXLAN (flannel's vxlan backend:
# vxlan0 on each, VNI 1, UDP 4789) or IP in IP (Calico's: tunl0 on each, addressed
# from the node's own pod CIDR, routes via the other node's underlay address).
# Node B's captures, rules and conntrack table go to node-b/; node-b/shifted/ holds
# its captures with the clock moved by OVL_SHIFT seconds.
NS_NODEB=nc-nodeb
NS_PODB=nc-podb
OVL_A_POD=172.17.0.2 OVL_B_POD=172.17.1.2
OVL_A_UL=203.0.113.1 OVL_B_UL=203.0.113.2
OVL_VNI=1 OVL_PORT=4789 OVL_SHIFT=0.25
# The pod CIDRs: each node's, and the cluster's.
OVL_A_CIDR=172.17.0.0/24 OVL_B_CIDR=172.17.1.0/24 OVL_CLUSTER=172.17.0.0/16

# ovl_kind KIND: the overlay's tunnel (vxlan|ipip): OVL_KIND, the tunnel devices'
# name (OVL_DEV) and addresses (OVL_A_TUN, OVL_B_TUN: node A's is the source node A's
# masquerade gives the packets it sends into the tunnel).
ovl_kind() {
  OVL_KIND=$1
  case $1 in
    vxlan) OVL_DEV=vxlan0 OVL_A_TUN=172.17.254.1 OVL_B_TUN=172.17.254.2 ;;
    ipip) OVL_DEV=tunl0 OVL_A_TUN=172.17.0.254 OVL_B_TUN=172.17.1.254 ;;
    *) die "unknown overlay tunnel $1" ;;
  esac
}

# ovl_node NS IDX UNDERLAY REMOTE TUNADDR POD_NS POD_IP: one node, its pod and its
# tunnel device.
ovl_node() {
  local ns=$1 idx=$2 ul=$3 remote=$4 tun=$5 pns=$6 pip=$7
  nsx "$ns" sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ip -n "$ns" link add docker0 address "02:42:4e:43:0$idx:01" type bridge mcast_snooping 0
  ip -n "$ns" addr add "${pip%.*}.1/24" dev docker0
  ip -n "$ns" link set docker0 up
  ip -n "$ns" link add veth-c1 address "6a:4e:43:00:0$idx:02" type veth \
    peer name eth0 address "02:42:ac:11:0$idx:02" netns "$pns"
  ip -n "$ns" link set veth-c1 master docker0 up
  ip -n "$pns" addr add "$pip/24" dev eth0
  ip -n "$pns" link set eth0 up
  ip -n "$pns" route add default via "${pip%.*}.1"
  ip -n "$ns" addr add "$ul/24" dev eth0
  ip -n "$ns" link set eth0 up
  if [[ $OVL_KIND == vxlan ]]; then
    ip -n "$ns" link add vxlan0 address "0e:4e:43:00:0$idx:01" type vxlan id "$OVL_VNI" \
      dstport "$OVL_PORT" local "$ul" remote "$remote" dev eth0
    ip -n "$ns" addr add "$tun/24" dev vxlan0
  else
    # The kernel's tunl0 (the ipip module's fallback device, or one made here) when the
    # kernel has IP in IP; else a TUN device named tunl0 whose packets ipip_tunnel.py
    # carries as IP in IP (the same packets on the underlay; see that script).
    if ! ip -n "$ns" link show tunl0 >/dev/null 2>&1 && ! ip -n "$ns" link add tunl0 type ipip 2>/dev/null; then
      bg "ipip-$ns" "$ns" "$PY" "$LAB/ipip_tunnel.py" --local "$ul" --remote "$remote" \
        --lifetime 120 --ready "$SYNC/ipip-$ns.ready"
      wait_file "$SYNC/ipip-$ns.ready" 5
    fi
    ip -n "$ns" link set tunl0 mtu 1480
    ip -n "$ns" addr add "$tun/32" dev tunl0
  fi
  ip -n "$ns" link set "$OVL_DEV" up
}

# topo_overlay KIND [NET]: the two nodes, their pods and the tunnel between them; with
# NET, the underlay goes through that namespace (ovl_network).
topo_overlay() {
  local ns net=${2:-}
  ovl_kind "$1"
  for ns in "$NS_HOST" "$NS_C1" "$NS_NODEB" "$NS_PODB" ${net:+"$net"}; do
    if ip netns list | awk '{print $1}' | grep -qx -- "$ns"; then
      [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] || die "namespace $ns exists and has processes; not touching it"
      ip netns del "$ns"
    fi
    ns_add "$ns" 1
  done
  # The underlay: the two nodes' eth0s on one link, or on two ports of NET's bridge.
  if [[ -n $net ]]; then
    ovl_network "$net"
  else
    ip -n "$NS_HOST" link add eth0 address 52:54:00:4e:43:01 type veth \
      peer name eth0 address 52:54:00:4e:43:02 netns "$NS_NODEB"
  fi
  ovl_node "$NS_HOST" 0 "$OVL_A_UL" "$OVL_B_UL" "$OVL_A_TUN" "$NS_C1" "$OVL_A_POD"
  ovl_node "$NS_NODEB" 1 "$OVL_B_UL" "$OVL_A_UL" "$OVL_B_TUN" "$NS_PODB" "$OVL_B_POD"
  # Static neighbours, as flannel and Calico install them: no ARP inside the tunnel or
  # on the underlay during the recording.
  ip -n "$NS_HOST" neigh add "$OVL_B_UL" lladdr 52:54:00:4e:43:02 dev eth0 nud permanent
  ip -n "$NS_NODEB" neigh add "$OVL_A_UL" lladdr 52:54:00:4e:43:01 dev eth0 nud permanent
  if [[ $OVL_KIND == vxlan ]]; then
    ip -n "$NS_HOST" neigh add "$OVL_B_TUN" lladdr 0e:4e:43:00:01:01 dev vxlan0 nud permanent
    ip -n "$NS_NODEB" neigh add "$OVL_A_TUN" lladdr 0e:4e:43:00:00:01 dev vxlan0 nud permanent
    ip -n "$NS_HOST" route add "$OVL_B_CIDR" via "$OVL_B_TUN" dev vxlan0
    ip -n "$NS_NODEB" route add "$OVL_A_CIDR" via "$OVL_A_TUN" dev vxlan0
  else
    ip -n "$NS_HOST" route add "$OVL_B_CIDR" via "$OVL_B_UL" dev tunl0 onlink
    ip -n "$NS_NODEB" route add "$OVL_A_CIDR" via "$OVL_A_UL" dev tunl0 onlink
  fi
}
topo_overlay_vxlan() { topo_overlay vxlan; }
topo_overlay_ipip() { topo_overlay ipip; }
topo_fault_overlay_masq() { topo_overlay vxlan; }
topo_fault_overlay_masq_ipip() { topo_overlay ipip; }

# kube-proxy's rules for a ClusterIP service (TCP 80, UDP 53, and ICMP echo to the
# address) whose one endpoint is the pod on node B, with masquerade-all: every
# service connection is masqueraded on node A.
overlay_rules() {
  cat <<EOF
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-DNS1 - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-DNS - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SERVICES -d $SVC_VIP/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -d $SVC_VIP/32 -p udp -m comment --comment "default/dns cluster IP" -m udp --dport 53 -j KUBE-SVC-DNS
-A KUBE-SERVICES -d $SVC_VIP/32 -p icmp -m comment --comment "default/web cluster IP" -j KUBE-SVC-WEB
-A KUBE-SEP-DNS1 -m comment --comment "default/dns" -j KUBE-MARK-MASQ
-A KUBE-SEP-DNS1 -p udp -m comment --comment "default/dns" -m udp -j DNAT --to-destination $OVL_B_POD:53
-A KUBE-SEP-WEB1 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination $OVL_B_POD:80
-A KUBE-SEP-WEB1 -p icmp -m comment --comment "default/web" -j DNAT --to-destination $OVL_B_POD
-A KUBE-SVC-DNS -m comment --comment "default/dns -> $OVL_B_POD:53" -j KUBE-SEP-DNS1
-A KUBE-SVC-WEB -m comment --comment "default/web -> $OVL_B_POD:80" -j KUBE-SEP-WEB1
COMMIT
EOF
}

# ovl_service_rules: kube-proxy writes the same rules on every node; on node B they
# also hook conntrack into its namespace, which then tracks the inner connections.
ovl_service_rules() {
  overlay_rules | apply_rules
  overlay_rules | nsx "$NS_NODEB" iptables-restore
}

# ovl_nodeb_start: node B's captures (eth0, veth-c1) and conntrack events, into node-b/.
OVL_B_PIDS=() OVL_B_EV=""
ovl_nodeb_start() {
  local b=$SCEN_DIR/node-b i
  mkdir -p "$b"
  ip -n "$NS_NODEB" -o link >"$b/links.txt"
  ip -n "$NS_NODEB" -o addr >"$b/addrs.txt"
  OVL_B_PIDS=()
  for i in eth0 veth-c1; do
    bg "tcpdump-b-$i" "$NS_NODEB" tcpdump -Z root -i "$i" -s 0 -U --immediate-mode -n -w "$b/$i.pcap"
    OVL_B_PIDS+=("$LAST_PID")
    wait_log "$LOGS/tcpdump-b-$i.log" "listening on" 5
  done
  ip netns exec "$NS_NODEB" conntrack -E -o timestamp,extended,id >"$b/events.txt" 2>"$LOGS/events-b.log" 9>&- &
  OVL_B_EV=$!
  LIVE[$OVL_B_EV]=events-b
}

# ovl_snapshot: both nodes' conntrack tables, one right after the other.
ovl_snapshot() {
  snapshot
  nsx "$NS_NODEB" conntrack -L -o extended,id >"$SCEN_DIR/node-b/conntrack.txt" 2>>"$LOGS/conntrack-L.log"
}

# ovl_finish: stop both nodes' captures and the tunnel endpoints; node B's rules, and its
# captures with the clock shifted.
ovl_finish() {
  local b=$SCEN_DIR/node-b i pid
  kill_servers
  sleep 0.5
  for i in "${OVL_B_PIDS[@]}"; do kill -INT "$i" 2>/dev/null || true; done
  for i in "${OVL_B_PIDS[@]}"; do reap "$i" || die "capture ${LIVE[$i]:-} failed"; done
  stop_recording
  stop "$OVL_B_EV" INT
  for pid in "${!LIVE[@]}"; do
    [[ ${LIVE[$pid]} != ipip-* ]] || stop "$pid" TERM
  done
  nsx "$NS_NODEB" iptables-save | sed '/^# /d' >"$b/iptables.txt"
  chmod 644 "$b"/*.pcap
  mkdir -p "$b/shifted"
  for i in eth0 veth-c1; do
    editcap -F pcap -t "$OVL_SHIFT" "$b/$i.pcap" "$b/shifted/$i.pcap"
  done
}

# ovl_start [TCP_SERVER_ARGS...]: the pod on node B serving TCP 80 and UDP 53, then
# both nodes' captures and conntrack events. The rules are the scenario's.
ovl_start() {
  IFACES=(docker0 eth0 veth-c1)
  # Bridged pod traffic goes through iptables, as Kubernetes requires: node A's DNAT
  # happens as docker0 receives the packet from veth-c1.
  bridge_netfilter
  nsx "$NS_NODEB" sysctl -q -w net.bridge.bridge-nf-call-iptables=1
  server srv-tcp "$NS_PODB" tcp_server.py --port 80 --lifetime 30 "$@"
  server srv-udp "$NS_PODB" udp_server.py --port 53 --lifetime 30
  ovl_nodeb_start
  start_recording
}

# ovl_run TRAFFIC...: both nodes' captures around the traffic functions given, run in
# order; both tables snapshotted after them, while the connection they hold open (h1),
# if any, is open. The rules are the scenario's.
ovl_run() {
  ovl_start
  local fn pid
  for fn in "$@"; do "$fn"; done
  ovl_snapshot
  for pid in "${!LIVE[@]}"; do
    if [[ ${LIVE[$pid]} == h1 ]]; then
      touch "$SYNC/release"
      expect_ok "$pid"
    fi
  done
  ovl_finish
}

# Pod A's traffic to OVL_DST: TCP 80 (2 connections, 3 and 2 exchanges, closed; 1
# held across the snapshots, 2 exchanges); DNS from two sockets (2 and 1 queries) and
# 3 pings (id 3073).
ovl_tcp_traffic() {
  client t1 "$NS_C1" tcp_client.py --dst "$OVL_DST" --port 80 --requests 3 --tag a1
  local t1=$LAST_PID
  client t2 "$NS_C1" tcp_client.py --dst "$OVL_DST" --port 80 --requests 2 --tag a2
  local t2=$LAST_PID
  expect_ok "$t1"
  expect_ok "$t2"
  client h1 "$NS_C1" tcp_client.py --dst "$OVL_DST" --port 80 --requests 2 --tag a1held \
    --ready "$SYNC/h1" --release "$SYNC/release"
}
ovl_udp_icmp_traffic() {
  run udp "$NS_C1" udp_client.py --dst "$OVL_DST" --count 2 --name a.example
  run udp "$NS_C1" udp_client.py --dst "$OVL_DST" --count 1 --name a.example
  run icmp "$NS_C1" icmp_ping.py --dst "$OVL_DST" --count 3 --ident 3073
}
ovl_held() { wait_file "$SYNC/h1" 5; }

# overlay_service: pod A calls the service (TCP, UDP, ICMP echo); node A DNATs it to pod
# B and masquerades it into the tunnel.
overlay_service() {
  ovl_service_rules
  OVL_DST=$SVC_VIP
  ovl_run ovl_tcp_traffic ovl_udp_icmp_traffic ovl_held
}
scenario_overlay_vxlan() { overlay_service; }
scenario_overlay_ipip() { overlay_service; }

# The nat table's header with its built-in chains, empty.
nat_head() { printf '%s\n' '*nat' ':PREROUTING ACCEPT [0:0]' ':INPUT ACCEPT [0:0]' ':OUTPUT ACCEPT [0:0]' ':POSTROUTING ACCEPT [0:0]'; }

# flannel's masquerade rules for a node with pod CIDR CIDR (FLANNEL-POSTRTG), with or
# without (`broken`) the RETURN that keeps the node's pods' traffic to the rest of the
# cluster untranslated: without it, `-s CLUSTER ! -d 224.0.0.0/4 -j MASQUERADE`,
# meant for traffic leaving the cluster, also masquerades traffic to other nodes' pods.
flannel_rules() { # flannel_rules CIDR ok|broken
  local c="-m comment --comment \"flanneld masq\""
  nat_head
  cat <<EOF
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING $c -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 $c -j RETURN
EOF
  [[ $2 == broken ]] || echo "-A FLANNEL-POSTRTG -s $1 -d $OVL_CLUSTER $c -j RETURN"
  cat <<EOF
-A FLANNEL-POSTRTG -s $OVL_CLUSTER -d $1 $c -j RETURN
-A FLANNEL-POSTRTG ! -s $OVL_CLUSTER -d $1 $c -j RETURN
-A FLANNEL-POSTRTG -s $OVL_CLUSTER ! -d 224.0.0.0/4 $c -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s $OVL_CLUSTER -d $OVL_CLUSTER $c -j MASQUERADE --random-fully
COMMIT
EOF
}

# Calico's natOutgoing (cali-nat-outgoing): masquerade traffic from a pool with
# natOutgoing to anywhere outside every pool, the pools being the ipsets
# cali40masq-ipam-pools and cali40all-ipam-pools.
calico_rules() {
  nat_head
  cat <<'EOF'
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-nat-outgoing
-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
EOF
}

# calico_sets NS POOL...: the two ipsets of cali-nat-outgoing in NS: every pool given
# has natOutgoing, and they are all the pools NS knows of.
calico_sets() {
  local ns=$1 set pool
  shift
  for set in cali40masq-ipam-pools cali40all-ipam-pools; do
    nsx "$ns" ipset create "$set" hash:net family inet
    for pool in "$@"; do nsx "$ns" ipset add "$set" "$pool"; done
  done
}

# fault-overlay-masq: flannel over VXLAN, node A's rules missing the RETURN for its
# pods' traffic to the cluster: pod A's TCP connections to pod B are masqueraded to
# vxlan0's address (ports moved: --random-fully).
scenario_fault_overlay_masq() {
  flannel_rules "$OVL_A_CIDR" broken | apply_rules
  flannel_rules "$OVL_B_CIDR" ok | nsx "$NS_NODEB" iptables-restore
  OVL_DST=$OVL_B_POD
  ovl_run ovl_tcp_traffic ovl_held
}

# fault-overlay-masq-ipip: Calico over IP in IP, natOutgoing on node A's pool, and node
# A's cali40all-ipam-pools missing node B's pool: pod A's DNS queries and pings to pod B
# are masqueraded to tunl0's address.
scenario_fault_overlay_masq_ipip() {
  calico_sets "$NS_HOST" "$OVL_A_CIDR"
  calico_sets "$NS_NODEB" "$OVL_A_CIDR" "$OVL_B_CIDR"
  calico_rules | apply_rules
  calico_rules | nsx "$NS_NODEB" iptables-restore
  OVL_DST=$OVL_B_POD
  ovl_run ovl_udp_icmp_traffic
  hx ipset save >"$SCEN_DIR/ipsets.txt"
  nsx "$NS_NODEB" ipset save >"$SCEN_DIR/node-b/ipsets.txt"
}

# "The network" between the two nodes: NET holds a bridge (br0) with a port for each
# node's eth0 (ul-a, ul-b), and a bridge-family nftables chain, `underlay forward`,
# for what the network drops.
NS_ULNET=nc-ulnet
OVL_UL_MAX=1400
ovl_network() {
  local net=$1 p
  ip -n "$net" link add br0 type bridge mcast_snooping 0
  ip -n "$NS_HOST" link add eth0 address 52:54:00:4e:43:01 type veth peer name ul-a netns "$net"
  ip -n "$NS_NODEB" link add eth0 address 52:54:00:4e:43:02 type veth peer name ul-b netns "$net"
  for p in ul-a ul-b; do ip -n "$net" link set "$p" master br0 up; done
  ip -n "$net" link set br0 up
  nsx "$net" nft add table bridge underlay
  nsx "$net" nft add chain bridge underlay forward '{ type filter hook forward priority 0; policy accept; }'
}

# ovl_unsegmented MTU: both pods' links at MTU (the vxlan devices' own, as flannel sets
# them, so that nothing is too big for the tunnel), and no segmentation or receive
# offloads on the pods' and nodes' links: every capture shows the segments as sent.
ovl_unsegmented() {
  local mtu=$1 ns i
  for ns in "$NS_C1" "$NS_PODB"; do
    ip -n "$ns" link set eth0 mtu "$mtu"
    nsx "$ns" ethtool -K eth0 tso off gso off gro off
  done
  for ns in "$NS_HOST" "$NS_NODEB"; do
    ip -n "$ns" link set veth-c1 mtu "$mtu"
    for i in veth-c1 eth0; do nsx "$ns" ethtool -K "$i" tso off gso off gro off; done
  done
}

topo_fault_underlay_drop() { topo_overlay vxlan "$NS_ULNET"; }
topo_fault_underlay_blocked() { topo_overlay vxlan "$NS_ULNET"; }

# The network drops by size: the overlay of overlay-vxlan with its underlay through
# nc-ulnet, whose firewall drops VXLAN packets longer than OVL_UL_MAX bytes (a path
# that carries less than the nodes' 1500). Pod A reaches the service over TCP: each
# connection's first response is small, a second one 3000 bytes, which node B sends
# in full-size segments (1450 bytes inside, 1500 with VXLAN) that leave its eth0 and
# never reach node A's; pod B sends them again until pod A gives up (RST). Small
# connections and DNS cross before and after, pings all along.
scenario_fault_underlay_drop() {
  ovl_unsegmented 1450
  nsx "$NS_ULNET" nft add rule bridge underlay forward udp dport "$OVL_PORT" ip length gt "$OVL_UL_MAX" drop
  ovl_service_rules
  ovl_start --resp-pads 32,3000
  run before "$NS_C1" tcp_client.py --dst "$SVC_VIP" --port 80 --requests 1 --tag before
  run udp "$NS_C1" udp_client.py --dst "$SVC_VIP" --count 2 --name a.example
  # Pings all along: small packets cross both ways while the large ones are lost.
  client icmp "$NS_C1" icmp_ping.py --dst "$SVC_VIP" --count 16 --interval 0.2 --ident 3073
  local icmp=$LAST_PID
  run big "$NS_C1" tcp_client.py --dst "$SVC_VIP" --port 80 --requests 2 --expect-stall --io-timeout 3 \
    --close rst --tag big
  expect_ok "$icmp"
  run after "$NS_C1" tcp_client.py --dst "$SVC_VIP" --port 80 --requests 1 --tag after
  ovl_snapshot
  nsx "$NS_ULNET" nft list ruleset >"$SCEN_DIR/network-nft.txt"
  ovl_finish
}

# The network blocks the tunnel one way for a while: the same overlay, and for
# OVL_BLOCK seconds nc-ulnet's firewall drops every VXLAN packet from node B (a
# security group changed, then rolled back) while pod A queries DNS (UDP) and pings
# (ICMP) through the service every 50 ms: the replies node B sends meanwhile never
# reach node A; those before and after cross.
OVL_BLOCK=0.6
scenario_fault_underlay_blocked() {
  ovl_unsegmented 1450
  ovl_service_rules
  ovl_start
  client udp "$NS_C1" udp_client.py --dst "$SVC_VIP" --count 30 --interval 0.05 --timeout 0.2 --any \
    --name b.example
  local udp=$LAST_PID
  client icmp "$NS_C1" icmp_ping.py --dst "$SVC_VIP" --count 30 --interval 0.05 --timeout 0.2 --ident 3074
  local icmp=$LAST_PID
  sleep 0.5
  nsx "$NS_ULNET" nft add rule bridge underlay forward ip saddr "$OVL_B_UL" udp dport "$OVL_PORT" drop
  nsx "$NS_ULNET" nft list ruleset >"$SCEN_DIR/network-nft.txt"
  sleep "$OVL_BLOCK"
  nsx "$NS_ULNET" nft flush chain bridge underlay forward
  expect_ok "$udp"
  reap "$icmp" || true # the pings sent while blocked go unanswered
  ovl_snapshot
  ovl_finish
}

# Too big for the tunnel: the overlay of overlay-vxlan with both vxlan devices at MTU
# 1500 over 1500-byte underlay links (set while eth0 allowed it: the kernel caps a
# vxlan device at its lower device's MTU less 50 only when it is set), outer DF set
# (`df set`), pods at 1500. Node B's pod answers a 3000-byte response in 1500-byte
# segments (DF): with VXLAN's 50 bytes they no longer fit eth0, vxlan0 drops them
# before node B's eth0 and only lowers the path MTU of node B's route, which
# forwarding ignores (`ip_forward_use_pmtu` 0): no ICMP reaches the pod, which sends
# them again until pod A gives up (RST). Small exchanges and pings cross.
topo_fault_vxlan_mtu() { topo_overlay vxlan; }
scenario_fault_vxlan_mtu() {
  local ns
  ovl_unsegmented 1500
  for ns in "$NS_HOST" "$NS_NODEB"; do
    ip -n "$ns" link set eth0 mtu 1550
    ip -n "$ns" link set vxlan0 mtu 1500
    ip -n "$ns" link set vxlan0 type vxlan df set
    ip -n "$ns" link set eth0 mtu 1500
  done
  ovl_service_rules
  ovl_start --resp-pads 32,3000
  run before "$NS_C1" tcp_client.py --dst "$SVC_VIP" --port 80 --requests 1 --tag before
  run big "$NS_C1" tcp_client.py --dst "$SVC_VIP" --port 80 --requests 2 --expect-stall --io-timeout 3 \
    --close rst --tag big
  run icmp "$NS_C1" icmp_ping.py --dst "$SVC_VIP" --count 2 --ident 3073
  nsx "$NS_NODEB" sysctl net.ipv4.ip_forward_use_pmtu >"$SCEN_DIR/node-b/sysctl.txt"
  ip -n "$NS_NODEB" -d link show vxlan0 >>"$SCEN_DIR/node-b/links.txt"
  ovl_snapshot
  ovl_finish
}

# ---------------------------------------------------------------- checks

# Every pcap must show only lab addresses.
# ---------------------------------------------------------------- IPv6 twins

# The IPv6 twins of published-port, local-published, port-collision, snat-pool,
# netmap, redirect-local and nodeport: the same rules written for ip6tables on the
# dual-stack topology (docker0 fd00:172:17::/64, the uplink 2001:db8:113::/64, hosts
# behind the outside in 2001:db8:100::/64), with the IPv4 rules of a Docker host
# beside them.
C1_IP6=fd00:172:17::2 BR_IP6=fd00:172:17::1 REMOTE_SRV6=2001:db8:100::10 REMOTE_CLI6=2001:db8:100::20

# The lab's namespaces have no link-local addresses (quiet_ipv6), so a neighbor
# solicitation can only come from an address of the interface it leaves by: a packet
# whose source is elsewhere (an address on lo, one a NAT rule wrote, a routed one)
# would find no neighbor and be dropped. Real hosts solicit from their link-local
# address; here the uplink's and the bridge's neighbors are written in instead: the
# outside's for the host's uplink addresses (2001:db8:113::1 and ADDR...), the host's
# for the outside's and the containers'.
static_neighbors6() { # static_neighbors6 [ADDR...]
  local a
  for a in "$HOST6_IP" "$@"; do
    ip -n "$NS_OUT" neigh replace "$a" lladdr 52:54:00:4e:43:01 dev wan0 nud permanent
  done
  for a in "$SRV6_IP" "$SRV6_IP2"; do
    hx ip neigh replace "$a" lladdr 52:54:00:4e:43:02 dev eth0 nud permanent
  done
  hx ip neigh replace "$C1_IP6" lladdr 02:42:ac:11:00:02 dev docker0 nud permanent
  hx ip neigh replace fd00:172:17::3 lladdr 02:42:ac:11:00:03 dev docker0 nud permanent
}

# Docker's ip6tables with IPv6 on docker0 and MASQUERADE to the uplink, plus the filter
# lines FILTER and the nat lines NAT (each may be empty), as ip6tables-restore input.
docker6_rules() { # docker6_rules FILTER NAT
  docker_filter_base
  [[ -z $1 ]] || printf '%s\n' "$1"
  echo COMMIT
  docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
  echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE"
  [[ -z $2 ]] || printf '%s\n' "$2"
  echo COMMIT
}

# What every IPv6 twin starts with: the IPv4 rules of a Docker host, the neighbors
# (ADDR... as static_neighbors6), and a client address outside.
twin6_setup() { # twin6_setup [ADDR...]
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  static_neighbors6 "$@"
  ip -n "$NS_OUT" addr add "$REMOTE_CLI6/128" dev lo
}

# Saved beside the IPv4 rules; then the captures stop.
twin6_done() {
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}

# published-port over IPv6: `docker run -p 8080:80 -p 8053:53/udp` on c1 with
# ip6tables on: clients outside reach [2001:db8:113::1]:8080 and :8053, DNATed to c1
# with their addresses kept.
scenario_published_port6() {
  twin6_setup
  docker6_rules "-A DOCKER -d $C1_IP6/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d $C1_IP6/128 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT" \
    "-A POSTROUTING -s $C1_IP6/128 -d $C1_IP6/128 -p tcp -m tcp --dport 80 -j MASQUERADE
-A POSTROUTING -s $C1_IP6/128 -d $C1_IP6/128 -p udp -m udp --dport 53 -j MASQUERADE
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [$C1_IP6]:80
-A DOCKER ! -i docker0 -p udp -m udp --dport 8053 -j DNAT --to-destination [$C1_IP6]:53" | hx ip6tables-restore
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --bind :: --port 53 --lifetime 30
  sleep 0.3
  start_recording
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8080 --requests 2 --tag ext1
  run o2 "$NS_OUT" tcp_client.py --src "$SRV6_IP" --dst "$HOST6_IP" --port 8080 --requests 3 --tag ext2
  client h1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8080 --requests 2 --tag exthold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  run udp "$NS_OUT" udp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8053 --count 2 --name ext.example
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  twin6_done
}

# local-published over IPv6: the host's own connections to [2001:db8:113::1]:8080,
# DNATed to c1 in nat OUTPUT (every capture shows them from the host's address to
# c1:80), and one from outside for contrast.
scenario_local_published6() {
  twin6_setup
  docker6_rules "-A DOCKER -d $C1_IP6/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT" \
    "-A POSTROUTING -s $C1_IP6/128 -d $C1_IP6/128 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [$C1_IP6]:80" | hx ip6tables-restore
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --lifetime 30
  sleep 0.3
  start_recording
  run l1 "$NS_HOST" tcp_client.py --dst "$HOST6_IP" --port 8080 --requests 2 --tag local1
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8080 --requests 2 --tag ext1
  client h1 "$NS_HOST" tcp_client.py --dst "$HOST6_IP" --port 8080 --requests 2 --tag localhold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  twin6_done
}

# port-collision over IPv6: c1 and c2 use the same source port (TCP, UDP) and ICMPv6
# echo id to one server; MASQUERADE keeps the first and moves the second.
scenario_port_collision6() {
  twin6_setup
  docker6_rules "" "" | hx ip6tables-restore
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  sleep 0.3
  start_recording
  client h1 "$NS_C1" tcp_client.py --sport 40000 --dst "$SRV6_IP" --port 7000 --requests 2 --tag c1 \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  wait_file "$SYNC/h1" 5
  client h2 "$NS_C2" tcp_client.py --sport 40000 --dst "$SRV6_IP" --port 7000 --requests 2 --tag c2 \
    --ready "$SYNC/h2" --release "$SYNC/release"
  local h2=$LAST_PID
  wait_file "$SYNC/h2" 5
  run udp "$NS_C1" udp_client.py --sport 40001 --dst "$SRV6_IP" --count 2 --name c1.example
  run udp "$NS_C2" udp_client.py --sport 40001 --dst "$SRV6_IP" --count 2 --name c2.example
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV6_IP" --count 2 --ident 20035
  run icmp "$NS_C2" icmp_ping.py --dst "$SRV6_IP" --count 2 --ident 20035
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  expect_ok "$h2"
  twin6_done
}

# snat-pool over IPv6: SNAT to a range of three uplink addresses, picked per
# connection by a hash of its addresses.
SNAT_POOL6=(2001:db8:113::21 2001:db8:113::22 2001:db8:113::23)
scenario_snat_pool6() {
  twin6_setup "${SNAT_POOL6[@]}"
  local a
  for a in "${SNAT_POOL6[@]}"; do hx ip addr add "$a/128" dev eth0 nodad; done
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j SNAT --to-source ${SNAT_POOL6[0]}-${SNAT_POOL6[2]}"
    echo COMMIT
  } | hx ip6tables-restore
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  sleep 0.3
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 2 --tag p1a
  run t2 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV6" --port 7000 --requests 1 --tag p1b
  run t3 "$NS_C2" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 1 --tag p2a
  run t4 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV6" --port 7000 --requests 2 --tag p2b
  run udp "$NS_C1" udp_client.py --dst "$REMOTE_SRV6" --count 2 --name pool.example
  run udp "$NS_C2" udp_client.py --dst "$SRV6_IP" --count 1 --name pool.example
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV6_IP" --count 2 --ident 3081
  snapshot
  twin6_done
}

# netmap over IPv6: the containers' fd00:172:17::/64 mapped one to one onto
# 2001:db8:200::/64 (routed by the outside to the host), both ways.
NETMAP_NET6=2001:db8:200::/64
scenario_netmap6() {
  twin6_setup
  ip -n "$NS_OUT" -6 route add "$NETMAP_NET6" via "$HOST6_IP"
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP6/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8080 -j ACCEPT"
    echo COMMIT
    docker_nat_base | sed 's|! -d 127.0.0.0/8|! -d ::1/128|'
    echo "-A PREROUTING -d $NETMAP_NET6 -i eth0 -j NETMAP --to fd00:172:17::/64"
    echo "-A POSTROUTING -s fd00:172:17::/64 -o eth0 -j NETMAP --to $NETMAP_NET6"
    echo COMMIT
  } | hx ip6tables-restore
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  server web "$NS_C1" tcp_server.py --bind :: --port 8080 --lifetime 30
  sleep 0.3
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 2 --tag nm1
  run t2 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV6" --port 7000 --requests 1 --tag nm2
  run udp "$NS_C1" udp_client.py --dst "$SRV6_IP" --count 2 --name netmap.example
  run icmp "$NS_C2" icmp_ping.py --dst "$SRV6_IP" --count 2 --ident 3091
  run in1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst 2001:db8:200::2 --port 8080 --requests 2 --tag nmin
  snapshot
  twin6_done
}

# redirect-local over IPv6: c1's TCP to port 7000 REDIRECTed in PREROUTING to the
# host's port 15001 (on docker0's address), c2's masqueraded out.
scenario_redirect_local6() {
  twin6_setup
  docker6_rules "" "-A PREROUTING -s $C1_IP6/128 -i docker0 -p tcp -m tcp --dport 7000 -j REDIRECT --to-ports 15001" |
    hx ip6tables-restore
  server proxy "$NS_HOST" tcp_server.py --bind :: --port 15001 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  sleep 0.3
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 2 --tag c1redir
  run t2 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV6" --port 7000 --requests 1 --tag c1redir2
  run t3 "$NS_C2" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 2 --tag c2out
  snapshot
  twin6_done
}

# nodeport over IPv6: kube-proxy's ip6tables for NodePort 30080/tcp and 30053/udp to
# c1 with `externalTrafficPolicy: Cluster`: DNAT in PREROUTING and MASQUERADE
# --random-fully of the marked traffic to docker0's address.
scenario_nodeport6() {
  twin6_setup
  hx ip6tables-restore <<EOT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s fd00:172:17::/64 ! -o docker0 -j MASQUERADE
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-NODEPORTS -p udp -m comment --comment "default/web:dns" -m udp --dport 30053 -j KUBE-EXT-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination [$C1_IP6]:80
-A KUBE-SEP-WEB1 -p udp -m comment --comment "default/web:dns" -m udp -j DNAT --to-destination [$C1_IP6]:53
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m comment --comment "default/web -> [$C1_IP6]:80" -j KUBE-SEP-WEB1
COMMIT
EOT
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --bind :: --port 53 --lifetime 30
  sleep 0.3
  start_recording
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 30080 --requests 2 --tag np1
  run o2 "$NS_OUT" tcp_client.py --src "$SRV6_IP" --dst "$HOST6_IP" --port 30080 --requests 2 --tag np2
  client h1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 30080 --requests 3 --tag nphold \
    --ready "$SYNC/h1" --release "$SYNC/release"
  local h1=$LAST_PID
  run udp "$NS_OUT" udp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 30053 --count 2 --name np.example
  wait_file "$SYNC/h1" 5
  snapshot
  touch "$SYNC/release"
  expect_ok "$h1"
  twin6_done
}

# A dual-stack host whose NAT is one nftables `inet` table (as firewalld and hand-written
# rule sets lay it out; no iptables rule at all): masquerade of both container
# networks out of the uplink, and ports 8080 (TCP) and 8053 (UDP) published to c1 for
# both families, from outside (prerouting) and from the host itself (output). IPv4 and
# IPv6 connections mix in every capture. The TCP rules name their family (`meta
# nfproto`); the UDP ones do not, and nft adds no test of its own: the `dnat ip to`
# rule matches an IPv6 datagram too, and the kernel skips its IPv4 translation, so the
# datagram goes on to the `dnat ip6 to` rule after it.
nft_inet_rules() {
  cat <<EOT
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "docker0" accept
		ct status dnat accept
	}
}
table inet nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump published
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local jump published
	}
	chain published {
		iifname "docker0" return
		meta nfproto ipv4 tcp dport 8080 dnat ip to $C1_IP:80
		meta nfproto ipv6 tcp dport 8080 dnat ip6 to [$C1_IP6]:80
		udp dport 8053 dnat ip to $C1_IP:53
		udp dport 8053 dnat ip6 to [$C1_IP6]:53
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.17.0.0/16 oifname != "docker0" masquerade
		ip6 saddr fd00:172:17::/64 oifname != "docker0" masquerade
	}
}
EOT
}

scenario_nft_inet6() {
  IFACES=(docker0 eth0 veth-c1)
  static_neighbors6
  ip -n "$NS_OUT" addr add "$REMOTE_CLI6/128" dev lo
  nft_inet_rules >"$SCEN_DIR/rules.nft"
  hx nft -f "$SCEN_DIR/rules.nft"
  hx nft -j list ruleset >"$SCEN_DIR/nft.json"
  hx nft -a list ruleset >"$SCEN_DIR/nft.txt"
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --bind :: --port 53 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind :: --port 53 --lifetime 30
  sleep 0.3
  start_recording
  run t4 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1v4
  run t6 "$NS_C1" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 2 --tag c1v6
  run t6b "$NS_C2" tcp_client.py --dst "$REMOTE_SRV6" --port 7000 --requests 1 --tag c2v6
  run u4 "$NS_C2" udp_client.py --dst "$REMOTE_SRV" --count 2 --name c2v4.example
  run u6 "$NS_C1" udp_client.py --dst "$SRV6_IP" --count 2 --name c1v6.example
  run i6 "$NS_C2" icmp_ping.py --dst "$SRV6_IP" --count 2 --ident 3101
  run i4 "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 3102
  run o4 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag ext4
  run o6 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8080 --requests 2 --tag ext6
  run ou4 "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8053 --count 2 --name ext4.example
  run ou6 "$NS_OUT" udp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8053 --count 2 --name ext6.example
  run l6 "$NS_HOST" tcp_client.py --dst "$HOST6_IP" --port 8080 --requests 1 --tag local6
  run l4 "$NS_HOST" tcp_client.py --dst "$HOST_IP" --port 8080 --requests 1 --tag local4
  snapshot
  kill_servers
  stop_recording
  [[ -n $(grep -vE '^(\*|:|COMMIT|#)' "$SCEN_DIR/iptables.txt" || true) ]] || rm -f "$SCEN_DIR/iptables.txt"
}

# ICMP errors through NAT, both families: c1's datagrams to a port nothing listens on
# outside draw port unreachable errors addressed to the host's uplink address; conntrack
# takes each as RELATED to the masqueraded flow and translates it back to c1, the
# packet it quotes with it. The same from c2 to a port published on c1 with nothing
# listening behind it: c1's error goes back through the DNAT.
scenario_icmp_errors6() {
  IFACES=(docker0 eth0 veth-c1)
  static_neighbors6
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p udp -m udp --dport 5353 -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A DOCKER ! -i docker0 -p udp -m udp --dport 8053 -j DNAT --to-destination $C1_IP:5353"
    echo COMMIT
  } | apply_rules
  docker6_rules "" "" | hx ip6tables-restore
  ip -n "$NS_OUT" addr add "$REMOTE_CLI6/128" dev lo
  sleep 0.3
  start_recording
  run u4 "$NS_C1" udp_client.py --dst "$SRV_IP" --port 9 --count 1 --retries 1 --timeout 0.3 --expect-fail --name closed4.example
  run u6 "$NS_C1" udp_client.py --dst "$SRV6_IP" --port 9 --count 1 --retries 1 --timeout 0.3 --expect-fail --name closed6.example
  run r4 "$NS_C2" udp_client.py --dst "$REMOTE_SRV" --port 9 --count 1 --retries 1 --timeout 0.3 --expect-fail --name closed4r.example
  run p4 "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8053 --count 1 --retries 1 --timeout 0.3 --expect-fail --name pub4.example
  snapshot
  kill_servers
  hx ip6tables-save | sed '/^# /d' >"$SCEN_DIR/ip6tables.txt"
  stop_recording
}
check_icmp_errors6() {
  need 2 "port unreachable errors to c1" "$(pkts "$SCEN_DIR/veth-c1.pcap" "(icmp.type==3 && icmp.code==3) || icmpv6.type==1")"
  need 2 "port unreachable errors to the uplink address" "$(pkts "$SCEN_DIR/eth0.pcap" "(icmp.type==3 && ip.dst==$HOST_IP) || (icmpv6.type==1 && ipv6.dst==$HOST6_IP)")"
}

# bulk-offload over IPv6: the same two 40 kB exchanges each way, out masqueraded and in
# through the published port, with segmentation offloads on (IPv6 has no IP ID to pair
# the pieces by: only the sequence space and the timestamps tell them).
scenario_bulk_offload6() {
  twin6_setup
  SNAPLEN=128
  docker6_rules "-A DOCKER -d $C1_IP6/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT" \
    "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [$C1_IP6]:80" | hx ip6tables-restore
  set_offloads on
  server web "$NS_C1" tcp_server.py --bind :: --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --bind :: --port 7000 --lifetime 30
  sleep 0.3
  start_recording
  client out "$NS_C1" tcp_client.py --dst "$SRV6_IP" --port 7000 --requests 2 --size 40000 --tag bulkout \
    --ready "$SYNC/out" --release "$SYNC/release"
  local egress=$LAST_PID
  wait_file "$SYNC/out" 10
  client in "$NS_OUT" tcp_client.py --src "$REMOTE_CLI6" --dst "$HOST6_IP" --port 8080 --requests 2 --size 40000 \
    --tag bulkin --ready "$SYNC/in" --release "$SYNC/release"
  local ingress=$LAST_PID
  wait_file "$SYNC/in" 10
  snapshot
  touch "$SYNC/release"
  expect_ok "$egress"
  expect_ok "$ingress"
  twin6_done
}
check_bulk_offload6() {
  local d=$SCEN_DIR/docker0.pcap e=$SCEN_DIR/eth0.pcap
  need 2 "TCP conversations on eth0" "$(tcp_convs "$e")"
  need 1 "super-packets from $C1_IP6 on docker0" "$(pkts "$d" "ipv6.src==$C1_IP6 && ipv6.plen > 1460")"
  need 1 "super-packets to $HOST6_IP on eth0" "$(pkts "$e" "ipv6.dst==$HOST6_IP && ipv6.plen > 1460")"
  [[ $(pkts "$e" "ipv6.src==$HOST6_IP && ipv6.plen > 1460") -eq 0 ]] || die "$SCEN: super-packets leaving eth0"
  [[ $(pkts "$d" "ipv6.dst==$C1_IP6 && ipv6.plen > 1460") -eq 0 ]] || die "$SCEN: super-packets leaving docker0 for c1"
}

# ---------------------------------------------------------------- routed pods

# A node whose pods hang off routed veths, not a bridge (Calico's layout): each pod
# has its address as a /32 and a default route via 169.254.1.1 on its link, which the
# node answers by proxy ARP; the node routes to each pod by a /32 on its veth
# (cali-c1, cali-c2). No docker0.
topo_routed_pods() {
  local ns c idx ip cns
  for ns in "$NS_HOST" "$NS_C1" "$NS_C2" "$NS_OUT"; do
    if ip netns list | awk '{print $1}' | grep -qx -- "$ns"; then
      [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] || die "namespace $ns exists and has processes; not touching it"
      ip netns del "$ns"
    fi
    ns_add "$ns" 1
  done
  hx sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  for c in c1 c2; do
    if [[ $c == c1 ]]; then idx=02 ip=$C1_IP cns=$NS_C1; else idx=03 ip=$C2_IP cns=$NS_C2; fi
    ip -n "$NS_HOST" link add "cali-$c" address ee:ee:ee:ee:ee:ee type veth \
      peer name eth0 address "02:42:ac:11:00:$idx" netns "$cns"
    hx sysctl -q -w "net.ipv4.conf.cali-$c.proxy_arp=1" "net.ipv4.conf.cali-$c.rp_filter=0"
    ip -n "$NS_HOST" link set "cali-$c" up
    ip -n "$NS_HOST" route add "$ip/32" dev "cali-$c" scope link
    ip -n "$cns" addr add "$ip/32" dev eth0
    ip -n "$cns" link set eth0 up
    ip -n "$cns" route add 169.254.1.1 dev eth0 scope link
    ip -n "$cns" route add default via 169.254.1.1 dev eth0
  done
  ip -n "$NS_HOST" link add eth0 address 52:54:00:4e:43:01 type veth \
    peer name wan0 address 52:54:00:4e:43:02 netns "$NS_OUT"
  ip -n "$NS_HOST" addr add "$HOST_IP/24" dev eth0
  ip -n "$NS_HOST" link set eth0 up
  ip -n "$NS_OUT" addr add "$SRV_IP/24" dev wan0
  ip -n "$NS_OUT" addr add "$REMOTE_SRV/32" dev lo
  ip -n "$NS_OUT" addr add "$REMOTE_CLI/32" dev lo
  ip -n "$NS_OUT" link set wan0 up
  # A default route, as every node has: proxy ARP answers for 169.254.1.1 because it
  # is routed out of another interface than the pod's.
  ip -n "$NS_HOST" route add default via "$SRV_IP"
}

# On routed pods: Calico's natOutgoing (MASQUERADE of the pod pool out of anything
# but a pod link) and kube-proxy's rules for a Service 198.51.100.53:80 and NodePort
# 30080 with c1 as its endpoint. c1 and c2 reach outside; c2 reaches c1 directly
# (routed, no NAT) and through the Service (DNAT on cali-c2, out cali-c1, the client
# kept); a client outside reaches the NodePort (DNAT and MASQUERADE to the node's
# address, as `externalTrafficPolicy: Cluster` does).
scenario_routed_pods() {
  IFACES=(cali-c1 cali-c2 eth0)
  apply_rules <<EOT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:cali-nat-outgoing - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -m comment --comment "cali:nat-outgoing" -j cali-nat-outgoing
-A cali-nat-outgoing -s 172.17.0.0/16 ! -d 172.17.0.0/16 ! -o cali+ -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-SVC-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination $C1_IP:80
-A KUBE-SERVICES -d $SVC_VIP/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m comment --comment "default/web -> $C1_IP:80" -j KUBE-SEP-WEB1
COMMIT
EOT
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  run t1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1out
  run t2 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag c2out
  run udp "$NS_C2" udp_client.py --dst "$SRV_IP" --count 2 --name c2.example
  run icmp "$NS_C1" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 3111
  run direct "$NS_C2" tcp_client.py --dst "$C1_IP" --port 80 --requests 1 --tag c2c1
  run svc "$NS_C2" tcp_client.py --dst "$SVC_VIP" --port 80 --requests 2 --tag c2svc
  run np "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 30080 --requests 2 --tag np
  snapshot
  kill_servers
  stop_recording
}
check_routed_pods() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "entries masqueraded to $HOST_IP" "$(ct_count "$ct" 'src=172\.17\.0\.[23] ' "dst=$HOST_IP ")"
  need 1 "Service entry DNATed to $C1_IP:80, c2 kept" "$(ct_count "$ct" "src=$C2_IP dst=$SVC_VIP " "src=$C1_IP dst=$C2_IP sport=80 ")"
  need 1 "NodePort entry DNATed to $C1_IP:80 and masqueraded" "$(ct_count "$ct" "dport=30080 src=$C1_IP " 'sport=80 ')"
  need 1 "direct entry c2 -> c1 untranslated" "$(ct_count "$ct" "src=$C2_IP dst=$C1_IP sport=[0-9]+ dport=80 src=$C1_IP dst=$C2_IP ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ip.addr==172.17.0.0/16') -eq 0 ]] || die "$SCEN: a pod address on eth0"
}

# An egress address for everything that leaves: every connection out of eth0, the
# host's own among them, is SNATed to 203.0.113.21 (a second address of eth0), as an
# egress gateway's rule does. The host's own connections are translated in
# POSTROUTING, after routing and before eth0's capture: eth0 shows them from
# 203.0.113.21 and no interface shows their source before NAT; only the entries do.
scenario_egress_snat() {
  IFACES=(docker0 eth0 veth-c1)
  hx ip addr add 203.0.113.21/32 dev eth0
  {
    docker_filter_base
    echo COMMIT
    docker_nat_base
    echo "-A POSTROUTING -o eth0 -j SNAT --to-source 203.0.113.21"
    echo COMMIT
  } | apply_rules
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  run h1 "$NS_HOST" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag host1
  run h2 "$NS_HOST" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag host2
  run hu "$NS_HOST" udp_client.py --dst "$SRV_IP" --count 2 --name host.example
  run c1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1out
  run cu "$NS_C2" udp_client.py --dst "$REMOTE_SRV" --count 1 --name c2.example
  snapshot
  kill_servers
  stop_recording
}
check_egress_snat() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "the host's own entries SNATed to 203.0.113.21" "$(ct_count "$ct" "src=$HOST_IP dst=" 'dst=203\.0\.113\.21 ')"
  need 2 "the containers' entries SNATed to 203.0.113.21" "$(ct_count "$ct" 'src=172\.17\.0\.[23] ' 'dst=203\.0\.113\.21 ')"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$HOST_IP && (tcp || udp)") -eq 0 ]] || die "$SCEN: $HOST_IP's own packets on eth0 untranslated"
}

# fragments6 over IPv4: datagrams larger than the links' MTU through MASQUERADE. c1's
# 3000-byte datagrams leave it in fragments (DF off), conntrack puts them back together
# before NAT, and the host fragments them again, keeping the datagram's IP ID; the
# echoes come back in fragments the same way. c2 sends the same bytes a little after
# c1, to another server. The bridge calls netfilter, so it too puts the containers'
# datagrams back together.
scenario_fragments() {
  IFACES=(docker0 eth0 veth-c1)
  bridge_netfilter
  apply_docker_masquerade
  server srv-udp "$NS_OUT" udp_server.py --port 9999 --lifetime 30
  start_recording
  run big1 "$NS_C1" udp_client.py --dst "$SRV_IP" --port 9999 --raw --size 3000 --count 3
  sleep 0.2
  run big2 "$NS_C2" udp_client.py --dst "$REMOTE_SRV" --port 9999 --raw --size 3000 --count 2
  snapshot
  kill_servers
  stop_recording
}
check_fragments() {
  local ct=$SCEN_DIR/conntrack.txt first='ip.flags.mf == 1 && ip.frag_offset == 0'
  need 2 "UDP MASQUERADE entries to port 9999" "$(ct_count "$ct" '^ipv4 +2 udp ' 'dport=9999 ' "dst=$HOST_IP ")"
  need 5 "datagrams leaving eth0 in fragments" "$(pkts "$SCEN_DIR/eth0.pcap" "$first && ip.src == $HOST_IP")"
  need 5 "datagrams reaching eth0 in fragments" "$(pkts "$SCEN_DIR/eth0.pcap" "$first && ip.dst == $HOST_IP")"
  need 3 "datagrams leaving c1 in fragments" "$(pkts "$SCEN_DIR/veth-c1.pcap" "$first && ip.src == $C1_IP")"
  need 3 "datagrams reaching c1 in fragments" "$(pkts "$SCEN_DIR/veth-c1.pcap" "$first && ip.dst == $C1_IP")"
}

# Captures that start in the middle of connections, as most incident captures do: c1's
# connection out (masqueraded) and a client's in through the published port 8080 are
# opened and exchange once before the captures start; the captures see one more
# exchange each and the close, never the SYNs. A third connection out is opened and
# closed while capturing, for contrast.
scenario_midstream() {
  IFACES=(docker0 eth0 veth-c1)
  publish_web | apply_rules
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  client out "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 1 --tag midout \
    --ready "$SYNC/out" --release "$SYNC/release" --phase2 "$SYNC/go"
  local out=$LAST_PID
  client in "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 1 --tag midin \
    --ready "$SYNC/in" --release "$SYNC/release" --phase2 "$SYNC/go"
  local in=$LAST_PID
  wait_file "$SYNC/out" 5
  wait_file "$SYNC/in" 5
  touch "$SYNC/release"
  start_recording
  touch "$SYNC/go"
  expect_ok "$out"
  expect_ok "$in"
  run t1 "$NS_C1" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag whole
  snapshot
  kill_servers
  stop_recording
}
check_midstream() {
  local ct=$SCEN_DIR/conntrack.txt
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "tcp.flags.syn==1 && tcp.port==8080") -eq 0 ]] || die "$SCEN: a SYN of the connection in captured"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" "tcp.flags.syn==1 && ip.dst==$SRV_IP") -eq 0 ]] || die "$SCEN: a SYN of the connection out captured"
  need 1 "data of the connection in on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "tcp.port==8080 && tcp.len > 0")"
  need 1 "data of the connection out on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.dst==$SRV_IP && tcp.len > 0")"
  need 2 "entries closing or closed" "$(ct_count "$ct" '^ipv4 +2 tcp ' '(TIME_WAIT|CLOSE|FIN_WAIT|LAST_ACK)')"
}

# Docker's native nftables firewall (`"firewall-backend": "nftables"`): no iptables
# rule at all, one `ip docker-bridges` table laid out as Docker 28+ writes it for
# docker0 with `-p 8080:80 -p 8053:53/udp` on c1 (verdict maps dispatching on the
# bridge's name, the published ports' DNAT shared by prerouting and output, a raw-table
# drop of direct access to the container from outside, masquerade of the bridge's
# network). Traffic: the containers out (TCP, UDP, ICMP), clients outside to both
# published ports, the host itself to 8080, and one client outside straight to
# 172.17.0.2:80 (routed to the host), dropped in raw PREROUTING.
docker_nft_rules() {
  cat <<EOT
table ip docker-bridges {
	map filter-forward-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-in__docker0 }
	}
	map filter-forward-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-out__docker0 }
	}
	map nat-postrouting-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump nat-postrouting-in__docker0 }
	}
	map nat-postrouting-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump nat-postrouting-out__docker0 }
	}
	chain filter-FORWARD {
		type filter hook forward priority filter + 1; policy accept;
		oifname vmap @filter-forward-in-jumps
		iifname vmap @filter-forward-out-jumps
	}
	chain nat-OUTPUT {
		type nat hook output priority -100; policy accept;
		ip daddr != 127.0.0.0/8 fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		iifname vmap @nat-postrouting-out-jumps
		oifname vmap @nat-postrouting-in-jumps
	}
	chain nat-PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-prerouting-and-output {
		iifname != "docker0" tcp dport 8080 counter dnat to $C1_IP:80 comment "DNAT"
		iifname != "docker0" udp dport 8053 counter dnat to $C1_IP:53 comment "DNAT"
	}
	chain raw-PREROUTING {
		type filter hook prerouting priority raw; policy accept;
		ip daddr $C1_IP iifname != "docker0" counter drop comment "DROP DIRECT ACCESS"
	}
	chain filter-forward-in__docker0 {
		ct state established,related counter accept
		iifname "docker0" counter accept comment "ICC"
		ip daddr $C1_IP tcp dport 80 counter accept
		ip daddr $C1_IP udp dport 53 counter accept
		counter drop comment "UNPUBLISHED PORT DROP"
	}
	chain filter-forward-out__docker0 {
		ct state established,related counter accept
		counter accept comment "OUTGOING"
	}
	chain nat-postrouting-in__docker0 {
	}
	chain nat-postrouting-out__docker0 {
		oifname != "docker0" ip saddr 172.17.0.0/16 counter masquerade comment "MASQUERADE"
	}
}
EOT
}

scenario_docker_nft() {
  IFACES=(docker0 eth0 veth-c1)
  ip -n "$NS_OUT" route add 172.17.0.0/16 via "$HOST_IP"
  docker_nft_rules >"$SCEN_DIR/rules.nft"
  hx nft -f "$SCEN_DIR/rules.nft"
  hx nft -j list ruleset >"$SCEN_DIR/nft.json"
  hx nft -a list ruleset >"$SCEN_DIR/nft.txt"
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server dns "$NS_C1" udp_server.py --port 53 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --port 7000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --port 53 --lifetime 30
  start_recording
  client direct "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$C1_IP" --port 80 --connect-timeout 1.5 \
    --expect-fail --tag direct
  local direct=$LAST_PID
  run t1 "$NS_C1" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c1out
  run t2 "$NS_C2" tcp_client.py --dst "$REMOTE_SRV" --port 7000 --requests 1 --tag c2out
  run u1 "$NS_C1" udp_client.py --dst "$SRV_IP" --count 2 --name c1.example
  run i2 "$NS_C2" icmp_ping.py --dst "$SRV_IP" --count 2 --ident 3121
  run o1 "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8080 --requests 2 --tag ext1
  run ou "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst "$HOST_IP" --port 8053 --count 1 --name ext.example
  run l1 "$NS_HOST" tcp_client.py --dst "$HOST_IP" --port 8080 --requests 1 --tag local1
  expect_ok "$direct"
  snapshot
  kill_servers
  stop_recording
  [[ -n $(grep -vE '^(\*|:|COMMIT|#)' "$SCEN_DIR/iptables.txt" || true) ]] || rm -f "$SCEN_DIR/iptables.txt"
}
# A neighbour that routes 127.0.0.1 to the host (its own loopback routes taken away,
# route_localnet on its link): what moby/moby#45610 and CVE-2020-8558 describe. The
# neighbour's kernel drops the answers, which come from a loopback source, so its
# SYNs are sent again and its queries go unanswered; the host's side is all there.
loopback_neighbour() {
  ip -n "$NS_OUT" route del table local local 127.0.0.1 dev lo
  ip -n "$NS_OUT" route del table local local 127.0.0.0/8 dev lo
  ip -n "$NS_OUT" route add 127.0.0.1/32 via "$HOST_IP" dev wan0
  nsx "$NS_OUT" sysctl -q -w net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.wan0.route_localnet=1
}

# `docker run -p 127.0.0.1:8080:80` on c1 (Docker before 28, iptables backend): the
# DNAT rule names `-d 127.0.0.1/32` on every interface but the bridge, so a neighbour
# that sends to 127.0.0.1:8080 through the host's MAC reaches c1, which answers; the
# answers leave eth0 from 127.0.0.1:8080. c2 goes out masqueraded, for contrast.
scenario_fault_loopback_published() {
  IFACES=(docker0 eth0 veth-c1)
  {
    docker_filter_base
    echo "-A DOCKER -d $C1_IP/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    echo COMMIT
    docker_nat_base
    echo "$MASQ_RULE"
    echo "-A POSTROUTING -s $C1_IP/32 -d $C1_IP/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
    echo "-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination $C1_IP:80"
    echo COMMIT
  } | apply_rules
  loopback_neighbour
  server web "$NS_C1" tcp_server.py --port 80 --lifetime 30
  server srv-tcp "$NS_OUT" tcp_server.py --bind "$SRV_IP" --port 7000 --lifetime 30
  start_recording
  run t2 "$NS_C2" tcp_client.py --dst "$SRV_IP" --port 7000 --requests 2 --tag c2out
  client probe "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst 127.0.0.1 --port 8080 --connect-timeout 2.5 \
    --expect-fail --tag probe
  local probe=$LAST_PID
  sleep 1.5
  snapshot
  expect_ok "$probe"
  kill_servers
  stop_recording
}

# The host's own services bound to 127.0.0.1 (a DNS cache on 53/udp, an admin port on
# 8000/tcp) answer a neighbour that routes 127.0.0.1 to the host, because eth0 has
# route_localnet on (kube-proxy before 1.18 set it for localhost NodePorts): no NAT
# at all, the packets are delivered to the host, the answers leave eth0 from
# 127.0.0.1. c1 goes out masqueraded, for contrast.
scenario_fault_localnet_service() {
  IFACES=(docker0 eth0 veth-c1)
  apply_docker_masquerade
  hx sysctl -q -w net.ipv4.conf.eth0.route_localnet=1
  loopback_neighbour
  server cache "$NS_HOST" udp_server.py --bind 127.0.0.1 --port 53 --lifetime 30
  server admin "$NS_HOST" tcp_server.py --bind 127.0.0.1 --port 8000 --lifetime 30
  server srv-udp "$NS_OUT" udp_server.py --bind "$SRV_IP" --port 53 --lifetime 30
  start_recording
  run u1 "$NS_C1" udp_client.py --dst "$SRV_IP" --count 2 --name c1.example
  run q "$NS_OUT" udp_client.py --src "$REMOTE_CLI" --dst 127.0.0.1 --port 53 --count 2 --timeout 0.5 \
    --name probe.example --expect-fail
  client probe "$NS_OUT" tcp_client.py --src "$REMOTE_CLI" --dst 127.0.0.1 --port 8000 --connect-timeout 2.5 \
    --expect-fail --tag probe
  local probe=$LAST_PID
  sleep 1.5
  snapshot
  expect_ok "$probe"
  kill_servers
  stop_recording
}

check_fault_loopback_published() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs to 127.0.0.1:8080 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.dst==127.0.0.1 && tcp.dstport==8080 && tcp.flags.syn==1 && tcp.flags.ack==0")"
  need 2 "SYNs DNATed to $C1_IP:80 on veth-c1" "$(pkts "$SCEN_DIR/veth-c1.pcap" "ip.dst==$C1_IP && tcp.dstport==80 && tcp.flags.syn==1 && tcp.flags.ack==0")"
  need 2 "SYN-ACKs from 127.0.0.1:8080 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==127.0.0.1 && tcp.srcport==8080 && tcp.flags.syn==1 && tcp.flags.ack==1")"
  need 1 "the DNAT entry from 127.0.0.1" "$(ct_count "$ct" "dst=127\.0\.0\.1 sport=[0-9]+ dport=8080 src=$C1_IP ")"
}

check_fault_localnet_service() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "queries to 127.0.0.1:53 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.dst==127.0.0.1 && udp.dstport==53")"
  need 2 "answers from 127.0.0.1:53 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==127.0.0.1 && udp.srcport==53")"
  need 2 "SYN-ACKs from 127.0.0.1:8000 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==127.0.0.1 && tcp.srcport==8000 && tcp.flags.syn==1 && tcp.flags.ack==1")"
  need 1 "an entry to 127.0.0.1:53" "$(ct_count "$ct" "dst=127\.0\.0\.1 sport=[0-9]+ dport=53 ")"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" "ip.addr==127.0.0.1") -eq 0 ]] || die "$SCEN: loopback traffic on docker0"
}

check_docker_nft() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "entries masqueraded to $HOST_IP" "$(ct_count "$ct" 'src=172\.17\.0\.[23] ' "dst=$HOST_IP ")"
  need 2 "DNAT entries to $C1_IP" "$(ct_count "$ct" "dport=80(80|53) src=$C1_IP ")"
  need 1 "the host's own DNAT entry" "$(ct_count "$ct" "src=$HOST_IP dst=$HOST_IP sport=[0-9]+ dport=8080 src=$C1_IP ")"
  need 2 "SYNs straight to $C1_IP:80 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.dst==$C1_IP && tcp.flags.syn==1")"
  [[ $(ct_count "$ct" "dst=$C1_IP sport=[0-9]+ dport=80 \\[UNREPLIED\\]") -eq 0 ]] || die "$SCEN: an entry for the direct access"
  [[ ! -e $SCEN_DIR/iptables.txt ]] || die "$SCEN: iptables rules present"
}

check_addresses() {
  local f bad
  for f in "$SCEN_DIR"/*.pcap "$SCEN_DIR"/*.pcapng; do
    bad=$(tshark -r "$f" -T fields -E separator=, -e ip.src -e ip.dst -e arp.src.proto_ipv4 -e arp.dst.proto_ipv4 \
      -e ipv6.src -e ipv6.dst 2>/dev/null | tr ',\t' '\n' |
      grep -v -E '^$|^172\.17\.|^169\.254\.1\.1$|^203\.0\.113\.|^192\.0\.2\.|^198\.51\.100\.|^0\.0\.0\.0$|^127\.0\.0\.1$|^fd00:172:17:|^2001:db8:|^ff02:' | sort -u || true)
    [[ -z $bad ]] || die "$(basename "$f"): unexpected addresses: $bad"
  done
  # IPv6 only where the scenario asks for it.
  if ! is_v6 "$SCEN"; then
    [[ $(pkts "$SCEN_DIR/any.pcap" ipv6) -eq 0 ]] || die "$SCEN: IPv6 packets in an IPv4 scenario"
  fi
}

npk() { capinfos -M -c -T -r "$1" | awk -F'\t' '{print $2}'; }

check_counts() {
  local sum=0 i n m
  for i in "${IFACES[@]}"; do
    n=$(npk "$SCEN_DIR/$i.pcap")
    [[ $n -gt 0 ]] || die "$i.pcap is empty"
    sum=$((sum + n))
  done
  m=$(npk "$SCEN_DIR/multi.pcapng")
  [[ $m -eq $sum ]] || die "multi.pcapng has $m packets, the per-interface pcaps $sum"
  # any.pcap must hold, per interface (SLL2 ifindex, named in links.txt), as many
  # packets as that interface's own pcap.
  local idx
  for i in "${IFACES[@]}"; do
    idx=$(awk -v n="$i" '{name=$2; sub(/:$/, "", name); sub(/@.*/, "", name); if (name == n) {sub(/:$/, "", $1); print $1}}' "$SCEN_DIR/links.txt")
    [[ -n $idx ]] || die "$i not in links.txt"
    n=$(pkts "$SCEN_DIR/any.pcap" "sll.ifindex == $idx")
    [[ $n -eq $(npk "$SCEN_DIR/$i.pcap") ]] || die "any.pcap has $n packets on $i (ifindex $idx), $i.pcap $(npk "$SCEN_DIR/$i.pcap")"
  done
}

# ct_count FILE PATTERN...: number of conntrack lines matching every extended regex.
ct_count() {
  local f=$1
  shift
  local lines
  lines=$(cat "$f")
  local pat
  for pat in "$@"; do
    lines=$(grep -E -- "$pat" <<<"$lines" || true)
  done
  grep -c . <<<"$lines" || true
}

# ct_nat_port FILE PROTO OKEY RKEY VALUE kept|moved: number of PROTO entries whose
# original-direction OKEY is VALUE and whose reply-direction RKEY (its second
# occurrence on the line: the NAT port or ICMP id) is VALUE (kept) or not (moved).
ct_nat_port() {
  awk -v proto="$2" -v okey="$3" -v rkey="$4" -v val="$5" -v want="$6" '
    $3 == proto {
      o = ""; r = ""; no = 0; nr = 0
      for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == okey && ++no == 1) o = kv[2]
        if (kv[1] == rkey && ++nr == 2) r = kv[2]
      }
      if (o == val && r != "" && ((want == "kept") == (r == val))) n++
    }
    END { print n + 0 }' "$1"
}

# need N WHAT COUNT: fail unless COUNT >= N.
need() {
  [[ $3 -ge $1 ]] || die "$SCEN: expected at least $1 $2, found $3"
}

# tcp_convs FILE [FILTER]: number of TCP conversations in FILE.
tcp_convs() {
  tshark -r "$1" -q -z "conv,tcp${2:+,$2}" 2>/dev/null | grep -c '<->' || true
}
udp_convs() {
  tshark -r "$1" -q -z "conv,udp${2:+,$2}" 2>/dev/null | grep -c '<->' || true
}
# pkts FILE FILTER: number of packets matching a display filter.
pkts() {
  tshark -r "$1" -Y "$2" 2>/dev/null | grep -c . || true
}

check_masquerade() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "ESTABLISHED MASQUERADE entries" "$(ct_count "$ct" ' ESTABLISHED ' 'src=172\.17\.0\.[23] ' "dst=$HOST_IP ")"
  need 3 "TIME_WAIT entries" "$(ct_count "$ct" ' TIME_WAIT ')"
  need 3 "UDP entries" "$(ct_count "$ct" '^ipv4 +2 udp ' "dst=$HOST_IP ")"
  need 2 "ICMP entries" "$(ct_count "$ct" '^ipv4 +2 icmp ' "dst=$HOST_IP ")"
  need 5 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
  need 3 "UDP conversations on eth0" "$(udp_convs "$SCEN_DIR/eth0.pcap")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ip.src==172.17.0.0/16') -eq 0 ]] || die "container address on eth0"
  [[ -s $SCEN_DIR/shifted/eth0.pcap ]] || die "shifted/eth0.pcap missing"
}

# hairpin-routed: each connection DNATed and masqueraded back out of eth0.
check_hairpin_routed() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "TCP entries 9000 -> $SRV_IP:7000 masqueraded" "$(ct_count "$ct" "dst=$HOST_IP sport=[0-9]+ dport=9000 src=$SRV_IP dst=$HOST_IP sport=7000 ")"
  need 1 "UDP entry 9053 -> $SRV_IP:53 masqueraded" "$(ct_count "$ct" "dport=9053 src=$SRV_IP dst=$HOST_IP sport=53 ")"
  need 4 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

check_hairpin_routed6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "IPv6 TCP entry 9000 -> [2001:db8:113::2]:7000 masqueraded" "$(ct_count "$ct" '^ipv6 +10 tcp ' 'dport=9000 src=2001:db8:113::2 dst=2001:db8:113::1 sport=7000 ')"
  need 1 "IPv6 UDP entry 9053 -> [2001:db8:113::2]:53 masqueraded" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dport=9053 src=2001:db8:113::2 dst=2001:db8:113::1 sport=53 ')"
  need 2 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

# one-armed: the LAN client's TCP, UDP and ICMP masqueraded back out of eth0.
check_one_armed() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "TCP entries of $LAN_CLI masqueraded" "$(ct_count "$ct" '^ipv4 +2 tcp ' "src=$LAN_CLI " "dst=$HOST_IP ")"
  need 1 "UDP entry of $LAN_CLI masqueraded" "$(ct_count "$ct" '^ipv4 +2 udp ' "src=$LAN_CLI " "dst=$HOST_IP ")"
  need 1 "ICMP entry of $LAN_CLI masqueraded" "$(ct_count "$ct" '^ipv4 +2 icmp ' "src=$LAN_CLI " "dst=$HOST_IP ")"
  need 4 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

check_one_armed6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "IPv6 TCP entry of $LAN6_CLI masqueraded" "$(ct_count "$ct" '^ipv6 +10 tcp ' "src=$LAN6_CLI " 'dst=2001:db8:113::1 ')"
  need 1 "IPv6 UDP entry of $LAN6_CLI masqueraded" "$(ct_count "$ct" '^ipv6 +10 udp ' "src=$LAN6_CLI " 'dst=2001:db8:113::1 ')"
  need 1 "ICMPv6 entry of $LAN6_CLI masqueraded" "$(ct_count "$ct" '^ipv6 +10 icmpv6 ' "src=$LAN6_CLI " 'dst=2001:db8:113::1 ')"
  need 2 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

check_netmap() {
  local ct=$SCEN_DIR/conntrack.txt
  # Out: each container under its own mapped address; in: to c1 behind 192.0.2.2.
  need 1 "entry of c1 mapped to 192.0.2.2" "$(ct_count "$ct" "src=$C1_IP " 'dst=192\.0\.2\.2 ')"
  need 1 "entry of c2 mapped to 192.0.2.3" "$(ct_count "$ct" "src=$C2_IP " 'dst=192\.0\.2\.3 ')"
  need 1 "inbound entry to c1 through 192.0.2.2" "$(ct_count "$ct" 'dst=192\.0\.2\.2 sport=[0-9]+ dport=8080 ' "src=$C1_IP ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ip.addr==172.17.0.0/16') -eq 0 ]] \
    || die "$SCEN: a container address on eth0"
}

check_snat_pool() {
  local ct=$SCEN_DIR/conntrack.txt a used=0
  for a in "${SNAT_POOL[@]}"; do
    [[ $(ct_count "$ct" "dst=$a ") -gt 0 ]] && used=$((used + 1))
  done
  [[ $used -ge 2 ]] || die "$SCEN: connections SNATed to $used pool address(es), want 2 or more"
  need 6 "entries SNATed into the pool" "$(ct_count "$ct" 'src=172\.17\.' "dst=203\.0\.113\.2[123] ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$HOST_IP || ip.src==172.17.0.0/16") -eq 0 ]] \
    || die "$SCEN: container traffic on eth0 not from the pool"
}

# published port: DNAT to c1:80 / c1:53 with the client address kept.
check_redirect_local() {
  local ct=$SCEN_DIR/conntrack.txt
  # Answered by the host in the destination's name: REPLY from the bridge's port 15001.
  need 2 "REDIRECTed entries" "$(ct_count "$ct" "src=$C1_IP " "src=$BR_IP dst=$C1_IP sport=15001 ")"
  need 2 "TCP conversations on veth-c1" "$(tcp_convs "$SCEN_DIR/veth-c1.pcap")"
  need 2 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "tcp.port==15001 || ip.src==$C1_IP") -eq 0 ]] \
    || die "$SCEN: c1's redirected traffic on eth0"
  # Bridge netfilter runs PREROUTING as docker0 receives the frame from c1's port:
  # docker0 shows the packets already redirected, veth-c1 as c1 sent them.
  need 2 "redirected packets on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" "tcp.dstport==15001")"
  [[ $(pkts "$SCEN_DIR/veth-c1.pcap" "tcp.port==15001") -eq 0 ]] \
    || die "$SCEN: the proxy's port on veth-c1"
}

check_published_port() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "TCP DNAT entries 8080 -> $C1_IP:80" "$(ct_count "$ct" "dst=$HOST_IP sport=[0-9]+ dport=8080 src=$C1_IP dst=(198\\.51\\.100\\.20|203\\.0\\.113\\.2) sport=80 ")"
  need 1 "ESTABLISHED DNAT entry" "$(ct_count "$ct" ' ESTABLISHED ' 'dport=8080 ')"
  need 1 "UDP DNAT entry 8053 -> $C1_IP:53" "$(ct_count "$ct" '^ipv4 +2 udp ' "dport=8053 src=$C1_IP ")"
  need 3 "TCP conversations to $C1_IP:80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ip.dst==$C1_IP && tcp.port==80")"
  need 1 "packets from $REMOTE_CLI on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" "ip.src==$REMOTE_CLI")"
}

# local-published: the host's own connections to its published port are DNATed in
# OUTPUT: on docker0 they come from the host's address, with no packet to port 8080
# on any interface.
check_local_published() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "held local entry src=$HOST_IP dst=$HOST_IP dport=8080 -> $C1_IP:80" "$(ct_count "$ct" "src=$HOST_IP dst=$HOST_IP sport=[0-9]+ dport=8080 src=$C1_IP dst=$HOST_IP sport=80 ")"
  need 2 "TCP conversations from $HOST_IP to $C1_IP:80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ip.src==$HOST_IP && ip.dst==$C1_IP && tcp.dstport==80")"
  need 1 "TCP conversation to port 8080 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" "tcp.port==8080")"
}

# The IPv6 twins: the same kernel truth as their IPv4 scenarios.
check_published_port6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "TCP DNAT entries 8080 -> [$C1_IP6]:80" "$(ct_count "$ct" "dst=$HOST6_IP sport=[0-9]+ dport=8080 src=$C1_IP6 dst=($REMOTE_CLI6|$SRV6_IP) sport=80 ")"
  need 1 "ESTABLISHED DNAT entry" "$(ct_count "$ct" ' ESTABLISHED ' 'dport=8080 ')"
  need 1 "UDP DNAT entry 8053 -> [$C1_IP6]:53" "$(ct_count "$ct" '^ipv6 +10 udp ' "dport=8053 src=$C1_IP6 ")"
  need 3 "TCP conversations to [$C1_IP6]:80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ipv6.dst==$C1_IP6 && tcp.port==80")"
  need 1 "packets from $REMOTE_CLI6 on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" "ipv6.src==$REMOTE_CLI6")"
}

check_local_published6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "held local entry [$HOST6_IP]:8080 -> [$C1_IP6]:80" "$(ct_count "$ct" ' ESTABLISHED ' "src=$HOST6_IP dst=$HOST6_IP sport=[0-9]+ dport=8080 src=$C1_IP6 dst=$HOST6_IP sport=80 ")"
  need 2 "TCP conversations from $HOST6_IP to [$C1_IP6]:80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ipv6.src==$HOST6_IP && ipv6.dst==$C1_IP6 && tcp.dstport==80")"
  need 1 "TCP conversation to port 8080 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" "tcp.port==8080")"
}

check_port_collision6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "TCP entry keeping port 40000" "$(ct_nat_port "$ct" tcp sport dport 40000 kept)"
  need 1 "TCP entry moved off port 40000" "$(ct_nat_port "$ct" tcp sport dport 40000 moved)"
  need 1 "UDP entry keeping port 40001" "$(ct_nat_port "$ct" udp sport dport 40001 kept)"
  need 1 "UDP entry moved off port 40001" "$(ct_nat_port "$ct" udp sport dport 40001 moved)"
  need 1 "ICMPv6 entry keeping id 20035" "$(ct_nat_port "$ct" icmpv6 id id 20035 kept)"
  need 1 "ICMPv6 entry moved off id 20035" "$(ct_nat_port "$ct" icmpv6 id id 20035 moved)"
  need 2 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

check_snat_pool6() {
  local ct=$SCEN_DIR/conntrack.txt a used=0
  for a in "${SNAT_POOL6[@]}"; do
    [[ $(ct_count "$ct" "dst=$a ") -gt 0 ]] && used=$((used + 1))
  done
  [[ $used -ge 2 ]] || die "$SCEN: connections SNATed to $used pool address(es), want 2 or more"
  need 6 "entries SNATed into the pool" "$(ct_count "$ct" 'src=fd00:172:17::' 'dst=2001:db8:113::2[123] ')"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "ipv6.src==$HOST6_IP || ipv6.src==fd00:172:17::/64") -eq 0 ]] \
    || die "$SCEN: container traffic on eth0 not from the pool"
}

check_netmap6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "entry of c1 mapped to 2001:db8:200::2" "$(ct_count "$ct" "src=$C1_IP6 " 'dst=2001:db8:200::2 ')"
  need 1 "entry of c2 mapped to 2001:db8:200::3" "$(ct_count "$ct" 'src=fd00:172:17::3 ' 'dst=2001:db8:200::3 ')"
  need 1 "inbound entry to c1 through 2001:db8:200::2" "$(ct_count "$ct" 'dst=2001:db8:200::2 sport=[0-9]+ dport=8080 ' "src=$C1_IP6 ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ipv6.addr==fd00:172:17::/64') -eq 0 ]] \
    || die "$SCEN: a container address on eth0"
}

check_redirect_local6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "REDIRECTed entries" "$(ct_count "$ct" "src=$C1_IP6 " "src=$BR_IP6 dst=$C1_IP6 sport=15001 ")"
  need 1 "TCP conversation on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "tcp.port==15001 || ipv6.src==$C1_IP6") -eq 0 ]] \
    || die "$SCEN: c1's redirected traffic on eth0"
  need 2 "redirected packets on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" "tcp.dstport==15001")"
  [[ $(pkts "$SCEN_DIR/veth-c1.pcap" "tcp.port==15001") -eq 0 ]] \
    || die "$SCEN: the proxy's port on veth-c1"
}

check_nodeport6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "TCP SNAT+DNAT entries" "$(ct_count "$ct" "dst=$HOST6_IP sport=[0-9]+ dport=30080 src=$C1_IP6 dst=$BR_IP6 sport=80 ")"
  need 1 "UDP SNAT+DNAT entry" "$(ct_count "$ct" "dst=$HOST6_IP sport=[0-9]+ dport=30053 src=$C1_IP6 dst=$BR_IP6 sport=53 ")"
  need 1 "ESTABLISHED SNAT+DNAT entry" "$(ct_count "$ct" ' ESTABLISHED ' 'dport=30080 ')"
  need 3 "TCP conversations [$BR_IP6] -> [$C1_IP6]:80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ipv6.src==$BR_IP6 && tcp.port==80")"
}

# nft-inet6: both families masqueraded and DNATed by the one inet table.
check_nft_inet6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "IPv4 entries masqueraded to $HOST_IP" "$(ct_count "$ct" '^ipv4 ' 'src=172\.17\.0\.[23] ' "dst=$HOST_IP ")"
  need 5 "IPv6 entries masqueraded to $HOST6_IP" "$(ct_count "$ct" '^ipv6 ' 'src=fd00:172:17::[23] ' "dst=$HOST6_IP ")"
  need 2 "IPv4 DNAT entries 8080 -> $C1_IP:80" "$(ct_count "$ct" "dport=8080 src=$C1_IP " 'sport=80 ')"
  need 2 "IPv6 DNAT entries 8080 -> [$C1_IP6]:80" "$(ct_count "$ct" "dport=8080 src=$C1_IP6 " 'sport=80 ')"
  need 1 "IPv4 UDP DNAT entry 8053 -> $C1_IP:53" "$(ct_count "$ct" '^ipv4 .* udp ' "dport=8053 src=$C1_IP dst=[^ ]+ sport=53 ")"
  need 1 "IPv6 UDP DNAT entry 8053 -> [$C1_IP6]:53" "$(ct_count "$ct" '^ipv6 .* udp ' "dport=8053 src=$C1_IP6 dst=[^ ]+ sport=53 ")"
  need 1 "the host's own IPv6 entry" "$(ct_count "$ct" "src=$HOST6_IP dst=$HOST6_IP sport=[0-9]+ dport=8080 src=$C1_IP6 ")"
  need 1 "the host's own IPv4 entry" "$(ct_count "$ct" "src=$HOST_IP dst=$HOST_IP sport=[0-9]+ dport=8080 src=$C1_IP ")"
  [[ ! -e $SCEN_DIR/iptables.txt ]] || die "$SCEN: iptables rules present"
}

# port collision: one of the two TCP, UDP and ICMP mappings keeps its port/id, the other moved.
check_port_collision() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "TCP entry keeping port 40000" "$(ct_nat_port "$ct" tcp sport dport 40000 kept)"
  need 1 "TCP entry moved off port 40000" "$(ct_nat_port "$ct" tcp sport dport 40000 moved)"
  need 1 "UDP entry keeping port 40001" "$(ct_nat_port "$ct" udp sport dport 40001 kept)"
  need 1 "UDP entry moved off port 40001" "$(ct_nat_port "$ct" udp sport dport 40001 moved)"
  need 1 "ICMP entry keeping id 20035" "$(ct_nat_port "$ct" icmp id id 20035 kept)"
  need 1 "ICMP entry moved off id 20035" "$(ct_nat_port "$ct" icmp id id 20035 moved)"
  need 2 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

# nodeport: DNAT to c1:80 and SNAT to docker0's address, in one entry.
check_nodeport() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "SNAT+DNAT entries" "$(ct_count "$ct" "dst=$HOST_IP sport=[0-9]+ dport=30080 src=$C1_IP dst=$BR_IP sport=80 ")"
  need 1 "ESTABLISHED SNAT+DNAT entry" "$(ct_count "$ct" ' ESTABLISHED ' 'dport=30080 ')"
  need 3 "TCP conversations $BR_IP -> $C1_IP:80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ip.src==$BR_IP && tcp.port==80")"
  need 3 "TCP conversations to $HOST_IP:30080 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" "tcp.port==30080")"
}

check_snat_random_fully() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "TCP entries SNATed into 20000-20003" "$(ct_count "$ct" '^ipv4 +2 tcp ' "dst=$HOST_IP sport=7000 dport=2000[0-3] ")"
  need 1 "UDP entry SNATed into 20000-20003" "$(ct_count "$ct" '^ipv4 +2 udp ' "dst=$HOST_IP sport=53 dport=2000[0-3] ")"
  local ports
  ports=$(grep -oE "dst=$HOST_IP sport=7000 dport=[0-9]+" "$ct" | sort -u | grep -c .)
  need 3 "distinct TCP NAT ports" "$ports"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$HOST_IP && (tcp.srcport < 20000 || tcp.srcport > 20003)") -eq 0 ]] ||
    die "$SCEN: TCP source port outside 20000-20003 on eth0"
}

check_fault_forward_drop() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs to port 9090 on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" 'tcp.dstport==9090 && tcp.flags.syn==1')"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'tcp.port==9090') -eq 0 ]] || die "$SCEN: port 9090 traffic on eth0"
  [[ $(ct_count "$ct" 'dport=9090 ') -eq 0 ]] || die "$SCEN: conntrack entry for the dropped flow"
  need 1 "ESTABLISHED entry to port 7000" "$(ct_count "$ct" ' ESTABLISHED ' 'dport=7000 ' "dst=$HOST_IP ")"
  need 1 "TCP conversation to port 7000 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" 'tcp.port==7000')"
}

check_forward_drop_clean() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "TCP conversation to port 9090 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" 'tcp.port==9090')"
  need 1 "TCP conversation to port 7000 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" 'tcp.port==7000')"
  need 1 "entry to port 9090" "$(ct_count "$ct" 'dport=9090 ' "dst=$HOST_IP ")"
}

check_fault_invalid_leak() {
  need 1 "entry for sport 41000 before the deletion" "$(ct_count "$SCEN_DIR/conntrack.txt" 'sport=41000 dport=7000 ' "dst=$HOST_IP ")"
  need 1 "deleted entry" "$(ct_count "$SCEN_DIR/conntrack-deleted.txt" 'sport=41000 ')"
  [[ $(ct_count "$SCEN_DIR/conntrack-after.txt" 'sport=41000 ') -eq 0 ]] || die "$SCEN: entry came back"
  need 1 "packets from the container address on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$C1_IP && tcp.srcport==41000")"
  need 1 "masqueraded packets before the leak on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$HOST_IP && tcp.srcport==41000 && tcp.len>0")"
  need 1 "host RST answering the server's FIN" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$HOST_IP && tcp.flags.reset==1")"
}

check_masquerade6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "ESTABLISHED IPv6 MASQUERADE entry" "$(ct_count "$ct" '^ipv6 +10 tcp ' ' ESTABLISHED ' 'src=fd00:172:17::2 ' 'dst=2001:db8:113::1 ')"
  need 1 "TIME_WAIT IPv6 entries" "$(ct_count "$ct" '^ipv6 +10 tcp ' ' TIME_WAIT ' 'dst=2001:db8:113::1 ')"
  need 2 "UDP IPv6 entries" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dst=2001:db8:113::1 ')"
  need 1 "ICMPv6 entry" "$(ct_count "$ct" '^ipv6 +10 icmpv6 ' 'dst=2001:db8:113::1 ')"
  need 3 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ipv6.src==fd00::/8') -eq 0 ]] || die "ULA address on eth0"
}

# probes6: both containers' entries translated, and their first probes within 20 ms
# of each other on eth0 (two of a probe interval).
check_probes6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "UDP IPv6 MASQUERADE entries to port 9999" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dport=9999 ' 'dst=2001:db8:113::1 ')"
  local first1 first2
  first1=$(tshark -r "$SCEN_DIR/eth0.pcap" -Y 'udp.dstport == 9999 && ipv6.dst == 2001:db8:113::2' -T fields -e frame.time_epoch 2>/dev/null | head -n1)
  first2=$(tshark -r "$SCEN_DIR/eth0.pcap" -Y 'udp.dstport == 9999 && ipv6.dst == 2001:db8:100::10' -T fields -e frame.time_epoch 2>/dev/null | head -n1)
  python3 -c "import sys; sys.exit(0 if abs($first1 - $first2) < 0.02 else 1)" ||
    die "$SCEN: the first probes $first1 and $first2 are not within 20 ms"
}

# sink6: both containers' entries translated and unreplied, no answer on eth0.
check_sink6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "UNREPLIED UDP IPv6 MASQUERADE entries to port 9999" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dport=9999 \[UNREPLIED\]' 'dst=2001:db8:113::1 ')"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'udp.srcport == 9999') -eq 0 ]] || die "$SCEN: answers on eth0"
}

# fragments6: both datagrams' entries translated; fragments both ways on eth0 and on
# c1's link, and none of the identifications c1 gave its fragments on eth0.
check_fragments6() {
  local ct=$SCEN_DIR/conntrack.txt first='ipv6.fraghdr.offset == 0 && ipv6.fraghdr.more == 1' ids id
  need 2 "UDP IPv6 MASQUERADE entries to port 9999" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dport=9999 ' 'dst=2001:db8:113::1 ')"
  need 5 "datagrams leaving eth0 in fragments" "$(pkts "$SCEN_DIR/eth0.pcap" "$first && ipv6.src == 2001:db8:113::1")"
  need 5 "datagrams reaching eth0 in fragments" "$(pkts "$SCEN_DIR/eth0.pcap" "$first && ipv6.dst == 2001:db8:113::1")"
  need 3 "datagrams leaving c1 in fragments" "$(pkts "$SCEN_DIR/veth-c1.pcap" "$first && ipv6.src == fd00:172:17::2")"
  need 3 "datagrams reaching c1 in fragments" "$(pkts "$SCEN_DIR/veth-c1.pcap" "$first && ipv6.dst == fd00:172:17::2")"
  ids=$(tshark -r "$SCEN_DIR/veth-c1.pcap" -Y "$first" -T fields -e ipv6.fraghdr.ident 2>/dev/null | sort -u)
  for id in $ids; do
    [[ $(pkts "$SCEN_DIR/eth0.pcap" "ipv6.fraghdr.ident == $id") -eq 0 ]] || die "$SCEN: fragment identification $id at c1 and at eth0"
  done
}

# wrong_source_checks C1 SRV SRV2 HOST IP UNREACH: the query from C1 to SRV2 left
# [UNREPLIED], its replies came from SRV (a reverse [UNREPLIED] entry, seen on eth0),
# the host answered them with UNREACH (a display filter), and none reached docker0. IP
# is the address field's protocol in display filters (ip, ipv6).
wrong_source_checks() {
  local c1=$1 srv=$2 srv2=$3 host=$4 ip=$5 unreach=$6 ct=$SCEN_DIR/conntrack.txt port
  port=$(grep -oE "src=${c1//./\\.} dst=${srv2//./\\.} sport=[0-9]+ dport=53 \\[UNREPLIED\\] src=${srv2//./\\.} dst=${host//./\\.} sport=53 dport=[0-9]+" "$ct" |
    sed 's/.*dport=//' | head -n1)
  [[ -n $port ]] || die "$SCEN: no UNREPLIED entry for the query to $srv2"
  need 1 "reverse UNREPLIED entry for the stray reply" "$(ct_count "$ct" "src=$srv dst=$host sport=53 dport=$port \\[UNREPLIED\\]")"
  need 1 "replies from $srv to port $port on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" "$ip.src==$srv && udp.dstport==$port")"
  need 1 "port unreachable from the host" "$(pkts "$SCEN_DIR/eth0.pcap" "$ip.src==$host && $unreach")"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" "$ip.src==$srv2 || (udp.srcport==53 && $ip.dst==$c1 && dns.qry.name contains \"bad\")") -eq 0 ]] ||
    die "$SCEN: a reply reached the container"
}

check_fault_wrong_source_udp() {
  wrong_source_checks "$C1_IP" "$SRV_IP" "$SRV_IP2" "$HOST_IP" ip "icmp.type==3 && icmp.code==3"
}

check_fault_wrong_source_udp6() {
  wrong_source_checks fd00:172:17::2 "$SRV6_IP" "$SRV6_IP2" "$HOST6_IP" ipv6 "icmpv6.type==1 && icmpv6.code==4"
}

# counter FILE RULE: packet counter of the rule whose iptables-save -c line ends in RULE.
counter() {
  awk -v r="$2" 'index($0, r) && substr($0, length($0) - length(r) + 1) == r {
    sub(/^\[/, ""); sub(/:.*/, ""); print; exit }' "$1"
}

check_kube_rules() {
  local ct=$SCEN_DIR/conntrack.txt ic=$SCEN_DIR/iptables-counters.txt ep i n total
  # Every NodePort connection reached one of the three endpoints, from 172.17.0.1.
  total=$(ct_count "$ct" '^ipv4 +2 tcp ' 'dport=30080 ')
  n=0
  for ep in "${KUBE_EPS[@]}"; do
    i=$(ct_count "$ct" '^ipv4 +2 tcp ' 'dport=30080 ' "src=${ep//./\\.} dst=$BR_IP sport=80 ")
    need 1 "NodePort entries to endpoint $ep:80" "$i"
    n=$((n + i))
  done
  [[ $n -eq $total ]] || die "$SCEN: $((total - n)) NodePort entries reached no endpoint"
  need 13 "NodePort entries (12 from outside, 1 from the node)" "$total"
  [[ $(grep -c . "$SCEN_DIR/endpoints.txt") -eq $total ]] || die "$SCEN: endpoints.txt does not list every NodePort connection"
  need 13 "TCP conversations from $BR_IP to port 80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ip.src==$BR_IP && tcp.port==80")"
  # The published port: DNAT to c1:8080, client address kept.
  need 1 "ESTABLISHED DNAT entry 8080 -> $C1_IP:8080" "$(ct_count "$ct" ' ESTABLISHED ' "dport=8080 src=$C1_IP dst=$REMOTE_CLI sport=8080 ")"
  # The SYNs DOCKER-USER drops: on eth0, never on docker0, no conntrack entry.
  need 2 "SYNs to port 9090 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" 'tcp.dstport==9090 && tcp.flags.syn==1')"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'tcp.srcport==9090') -eq 0 ]] || die "$SCEN: the blocked port answered"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" 'tcp.port==9090') -eq 0 ]] || die "$SCEN: port 9090 traffic reached docker0"
  [[ $(ct_count "$ct" 'dport=9090 ') -eq 0 ]] || die "$SCEN: conntrack entry for the dropped flow"
  # Egress: c1 by Docker's MASQUERADE, c2 by the ipset rule; no inside address on eth0.
  need 2 "egress SNAT entries to port 7000" "$(ct_count "$ct" '^ipv4 +2 tcp ' 'src=172\.17\.0\.[23] ' 'dport=7000 ' "dst=$HOST_IP ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ip.src==172.17.0.0/16 || ip.dst==172.17.0.0/16') -eq 0 ]] || die "$SCEN: container address on eth0"
  # Counters: every KUBE-SEP DNAT rule used, the DOCKER-USER DROP hit by both
  # SYNs, the ipset rule once, the user's INPUT DROP never.
  for i in 1 2 3; do
    n=$(counter "$ic" "-A KUBE-SEP-WEB$i -p tcp -m comment --comment \"default/web\" -m tcp -j DNAT --to-destination ${KUBE_EPS[$((i - 1))]}:80")
    need 1 "packets on the KUBE-SEP-WEB$i DNAT rule" "${n:-0}"
  done
  need 2 "packets on the DOCKER-USER DROP" "$(counter "$ic" '-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 9090 -j DROP')"
  need 1 "packets on the ipset MASQUERADE" "$(counter "$ic" '! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully')"
  n=$(counter "$ic" '-A INPUT -p tcp -m tcp --dport 30080 -j DROP')
  [[ ${n:-x} == 0 ]] || die "$SCEN: the INPUT DROP for 30080 counted '${n:-?}' packets"
  # The trace: a SYN for every connection, the DNAT rules among its verdicts, lab
  # addresses only.
  need 18 "traced SYNs (distinct trace ids)" "$(awk '/^PACKET: .* SYN/ {print $3}' "$SCEN_DIR/trace.txt" | sort -u | grep -c .)"
  for i in 1 2 3; do
    need 1 "traces through KUBE-SEP-WEB$i's DNAT" "$(grep -c "nat:KUBE-SEP-WEB$i:rule:.*-j DNAT" "$SCEN_DIR/trace.txt")"
  done
  local bad
  bad=$(grep -oE ' (SRC|DST)=[0-9.]+' "$SCEN_DIR/trace.txt" | cut -d= -f2 | grep -vE '^(172\.17|203\.0\.113|198\.51\.100)\.' | sort -u || true)
  [[ -z $bad ]] || die "$SCEN: unexpected addresses in trace.txt: $bad"
  [[ -s $SCEN_DIR/ipsets.txt && -s $SCEN_DIR/nft.json ]] || die "$SCEN: ipsets.txt or nft.json missing"
}

# nft_rules FILE: one line per rule of an `nft -j list ruleset` file:
# "<table> <chain> <handle> <packets of its counter, or ->" then its expression kinds.
nft_rules() {
  "$PY" - "$1" <<'PYEOF'
import json, sys
for o in json.load(open(sys.argv[1]))["nftables"]:
    r = o.get("rule")
    if not r:
        continue
    pk = [e["counter"]["packets"] for e in r["expr"] if "counter" in e]
    kinds = [k for e in r["expr"] for k in e]
    print(r["table"], r["chain"], r["handle"], pk[0] if pk else "-", *kinds)
PYEOF
}

check_kube_nft() {
  local ct=$SCEN_DIR/conntrack.txt tr=$SCEN_DIR/trace.txt ep i n total h pk
  # Every NodePort connection reached one of the three endpoints, from 172.17.0.1.
  total=$(ct_count "$ct" '^ipv4 +2 tcp ' 'dport=30080 ')
  n=0
  for ep in "${KUBE_EPS[@]}"; do
    i=$(ct_count "$ct" '^ipv4 +2 tcp ' 'dport=30080 ' "src=${ep//./\\.} dst=$BR_IP sport=80 ")
    need 1 "NodePort entries to endpoint $ep:80" "$i"
    n=$((n + i))
  done
  [[ $n -eq $total ]] || die "$SCEN: $((total - n)) NodePort entries reached no endpoint"
  need 13 "NodePort entries (12 from outside, 1 from the node)" "$total"
  [[ $(grep -c . "$SCEN_DIR/endpoints.txt") -eq $total ]] || die "$SCEN: endpoints.txt does not list every NodePort connection"
  need 13 "TCP conversations from $BR_IP to port 80 on docker0" "$(tcp_convs "$SCEN_DIR/docker0.pcap" "ip.src==$BR_IP && tcp.port==80")"
  # The SYNs docker-user drops: on eth0, never on docker0 or veth-c1, no entry.
  need 2 "SYNs to port 9090 on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" 'tcp.dstport==9090 && tcp.flags.syn==1')"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'tcp.srcport==9090') -eq 0 ]] || die "$SCEN: the blocked port answered"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" 'tcp.port==9090') -eq 0 ]] || die "$SCEN: port 9090 traffic reached docker0"
  [[ $(pkts "$SCEN_DIR/veth-c1.pcap" 'tcp.port==9090') -eq 0 ]] || die "$SCEN: port 9090 traffic reached veth-c1"
  [[ $(ct_count "$ct" 'dport=9090 ') -eq 0 ]] || die "$SCEN: conntrack entry for the dropped flow"
  [[ $(ct_count "$SCEN_DIR/events.txt" 'dport=9090 ') -eq 0 ]] || die "$SCEN: conntrack event for the dropped flow"
  # Egress: c1 by docker-native's masquerade; no inside address on eth0.
  need 1 "egress SNAT entry $C1_IP -> port 7000" "$(ct_count "$ct" '^ipv4 +2 tcp ' "src=$C1_IP " 'dport=7000 ' "dst=$HOST_IP ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ip.src==172.17.0.0/16 || ip.dst==172.17.0.0/16') -eq 0 ]] || die "$SCEN: container address on eth0"
  # No iptables rule at all: the rule set is nftables only.
  [[ ! -e $SCEN_DIR/iptables.txt ]] || die "$SCEN: iptables rules present: $(cat "$SCEN_DIR/iptables.txt")"
  local rules counters
  rules=$(nft_rules "$SCEN_DIR/nft.json")
  counters=$(nft_rules "$SCEN_DIR/nft-counters.json")
  [[ -s $SCEN_DIR/nft.txt ]] || die "$SCEN: nft.txt missing"
  # Counters: every endpoint's DNAT rule used, the drop hit by both SYNs. The
  # trace: each endpoint's DNAT rule, by its handle in nft.json, with verdict
  # accept, and the drop with verdict drop for each SYN.
  n=0
  for i in 1 2 3; do
    read -r h pk < <(awk -v c="$(knft_ep_chain "$i")" '$1 == "kube-proxy" && $2 == c && / dnat/ {print $3, $4}' <<<"$counters")
    [[ -n ${h:-} ]] || die "$SCEN: no DNAT rule in $(knft_ep_chain "$i")"
    [[ $(awk -v c="$(knft_ep_chain "$i")" '$1 == "kube-proxy" && $2 == c && / dnat/ {print $3}' <<<"$rules") == "$h" ]] ||
      die "$SCEN: handles differ between nft.json and nft-counters.json"
    need 1 "packets on the DNAT rule to ${KUBE_EPS[$((i - 1))]} (handle $h)" "$pk"
    n=$((n + pk))
    need 1 "traces through the DNAT to ${KUBE_EPS[$((i - 1))]} (handle $h)" \
      "$(grep -cF "ip kube-proxy $(knft_ep_chain "$i") rule meta l4proto tcp counter packets 0 bytes 0 dnat to ${KUBE_EPS[$((i - 1))]}:80 # handle $h (verdict accept)" "$tr")"
  done
  need "$total" "packets on the three DNAT rules (one per NodePort connection)" "$n"
  read -r h pk < <(awk '$1 == "docker-native" && $2 == "docker-user" && / drop/ {print $3, $4}' <<<"$counters")
  need 2 "packets on docker-user's drop" "${pk:-0}"
  need 2 "traces ending in docker-user's drop (handle ${h:-?})" "$(grep -c "ip docker-native docker-user rule .* # handle ${h:-x} (verdict drop)" "$tr")"
  # A trace for every first packet: 13 NodePort, 2 blocked, 1 egress SYNs.
  need 16 "traced SYNs" "$(grep -E '^trace id [0-9a-f]+ ip trace (prerouting|output) packet: ' "$tr" |
    grep -oE 'ip saddr [0-9.]+ .* ip id [0-9]+ .* tcp sport [0-9]+' | sed -E 's/ ip (daddr|dscp|ecn|ttl) [^ ]+//g' | sort -u | grep -c .)"
  local bad
  bad=$(grep -oE ' ip [sd]addr [0-9.]+' "$tr" | awk '{print $3}' | grep -vE '^(172\.17|203\.0\.113|198\.51\.100)\.' | sort -u || true)
  [[ -z $bad ]] || die "$SCEN: unexpected addresses in trace.txt: $bad"
}

check_fault_masq_miss() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap
  # c1: translated.
  need 1 "ESTABLISHED SNAT entry for $C1_IP" "$(ct_count "$ct" ' ESTABLISHED ' "src=$C1_IP " "dst=$HOST_IP ")"
  need 1 "TCP conversation from $HOST_IP to port 7000 on eth0" "$(tcp_convs "$e" "ip.src==$HOST_IP && tcp.dstport==7000")"
  # c2: untranslated entries, the container address on eth0, no reply.
  need 1 "untranslated TCP entry for c2" "$(ct_count "$ct" "src=$C2_IP dst=$SRV_IP sport=$LEAK_TCP_SPORT dport=7000 \\[UNREPLIED\\] src=$SRV_IP dst=$C2_IP sport=7000 dport=$LEAK_TCP_SPORT ")"
  need 1 "untranslated UDP entry for c2" "$(ct_count "$ct" "src=$C2_IP dst=$SRV_IP sport=$LEAK_UDP_SPORT dport=53 \\[UNREPLIED\\] src=$SRV_IP dst=$C2_IP sport=53 dport=$LEAK_UDP_SPORT ")"
  [[ $(ct_count "$ct" "src=$C2_IP " "dst=$HOST_IP ") -eq 0 ]] || die "$SCEN: c2 has a translated entry"
  need 2 "SYNs from $C2_IP:$LEAK_TCP_SPORT on eth0" "$(pkts "$e" "ip.src==$C2_IP && tcp.srcport==$LEAK_TCP_SPORT && tcp.flags.syn==1")"
  need 2 "UDP queries from $C2_IP:$LEAK_UDP_SPORT on eth0" "$(pkts "$e" "ip.src==$C2_IP && udp.srcport==$LEAK_UDP_SPORT")"
  [[ $(pkts "$e" "ip.src==$HOST_IP && (tcp.srcport==$LEAK_TCP_SPORT || udp.srcport==$LEAK_UDP_SPORT)") -eq 0 ]] ||
    die "$SCEN: a translated copy of c2's traffic on eth0"
  [[ $(pkts "$e" "ip.src==$C1_IP") -eq 0 ]] || die "$SCEN: c1's address on eth0"
  [[ $(pkts "$e" "ip.dst==$C2_IP") -eq 0 ]] || die "$SCEN: c2's traffic was answered"
}

check_fault_masq_miss6() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap c1=fd00:172:17::2 c2=fd00:172:17::3 srv=2001:db8:113::2
  need 1 "ESTABLISHED IPv6 SNAT entry for c1" "$(ct_count "$ct" '^ipv6 +10 tcp ' ' ESTABLISHED ' "src=$c1 " 'dst=2001:db8:113::1 ')"
  need 1 "IPv6 ICMP SNAT entry for c1" "$(ct_count "$ct" '^ipv6 +10 icmpv6 ' "src=$c1 " 'dst=2001:db8:113::1 ')"
  need 1 "untranslated IPv6 TCP entry for c2" "$(ct_count "$ct" "src=$c2 dst=$srv sport=$LEAK_TCP_SPORT dport=7000 \\[UNREPLIED\\] src=$srv dst=$c2 sport=7000 dport=$LEAK_TCP_SPORT ")"
  need 1 "untranslated IPv6 UDP entry for c2" "$(ct_count "$ct" "src=$c2 dst=$srv sport=$LEAK_UDP_SPORT dport=53 \\[UNREPLIED\\] src=$srv dst=$c2 sport=53 dport=$LEAK_UDP_SPORT ")"
  need 1 "untranslated ICMPv6 entry for c2" "$(ct_count "$ct" '^ipv6 +10 icmpv6 ' "src=$c2 dst=$srv .*id=$LEAK_ICMP_ID \\[UNREPLIED\\] src=$srv dst=$c2 ")"
  [[ $(ct_count "$ct" "src=$c2 " 'dst=2001:db8:113::1 ') -eq 0 ]] || die "$SCEN: c2 has a translated entry"
  need 2 "SYNs from [$c2]:$LEAK_TCP_SPORT on eth0" "$(pkts "$e" "ipv6.src==$c2 && tcp.srcport==$LEAK_TCP_SPORT && tcp.flags.syn==1")"
  need 2 "UDP queries from [$c2]:$LEAK_UDP_SPORT on eth0" "$(pkts "$e" "ipv6.src==$c2 && udp.srcport==$LEAK_UDP_SPORT")"
  need 2 "echo requests from $c2 on eth0" "$(pkts "$e" "ipv6.src==$c2 && icmpv6.type==128 && icmpv6.echo.identifier==$LEAK_ICMP_ID")"
  [[ $(pkts "$e" "ipv6.src==2001:db8:113::1 && (tcp.srcport==$LEAK_TCP_SPORT || udp.srcport==$LEAK_UDP_SPORT || icmpv6.echo.identifier==$LEAK_ICMP_ID)") -eq 0 ]] ||
    die "$SCEN: a translated copy of c2's traffic on eth0"
  [[ $(pkts "$e" "ipv6.src==$c1") -eq 0 ]] || die "$SCEN: c1's address on eth0"
  [[ $(pkts "$e" "ipv6.dst==$c2") -eq 0 ]] || die "$SCEN: c2's traffic was answered"
  [[ $(pkts "$SCEN_DIR/any.pcap" ip) -eq 0 ]] || die "$SCEN: IPv4 packets"
}

check_fault_nodeport_blocked() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap isn
  need 2 "SNAT+DNAT entries for 30080" "$(ct_count "$ct" "dst=$HOST_IP sport=[0-9]+ dport=30080 src=$C1_IP dst=$BR_IP sport=80 ")"
  need 1 "ESTABLISHED entry for 30080" "$(ct_count "$ct" ' ESTABLISHED ' 'dport=30080 ')"
  need 1 "UDP SNAT+DNAT entry for 30053" "$(ct_count "$ct" '^ipv4 +2 udp ' "dst=$HOST_IP sport=[0-9]+ dport=30053 src=$C1_IP dst=$BR_IP sport=53 ")"
  need 2 "TCP conversations to port 30080 on eth0" "$(tcp_convs "$e" 'tcp.port==30080')"
  [[ $(tcp_convs "$d" "ip.dst==$C1_IP && tcp.dstport==80") -eq 2 ]] ||
    die "$SCEN: expected exactly 2 TCP conversations to $C1_IP:80 on docker0"
  need 1 "UDP conversation to $C1_IP:53 on docker0" "$(udp_convs "$d" "ip.src==$BR_IP && udp.port==53")"
  # The blocked connection: SYNs on eth0 only, no answer, no entry, no event.
  need 3 "SYNs to 30081 on eth0" "$(pkts "$e" "ip.src==$REMOTE_CLI && tcp.srcport==$BLOCKED_SPORT && tcp.dstport==30081 && tcp.flags.syn==1")"
  [[ $(pkts "$e" 'tcp.srcport==30081') -eq 0 ]] || die "$SCEN: port 30081 answered"
  isn=$(tshark -r "$e" -Y "tcp.dstport==30081 && tcp.flags.syn==1" -T fields -e tcp.seq_raw 2>/dev/null | sort -u)
  [[ $(grep -c . <<<"$isn") -eq 1 ]] || die "$SCEN: the SYNs to 30081 do not share one sequence number: $isn"
  [[ $(pkts "$d" "tcp.seq_raw==$isn || tcp.ack_raw==$((isn + 1)) || tcp.port==$BLOCKED_SPORT || tcp.port==30081") -eq 0 ]] ||
    die "$SCEN: the blocked connection reached docker0"
  [[ $(ct_count "$ct" 'dport=30081 ') -eq 0 ]] || die "$SCEN: conntrack entry for the blocked flow"
  [[ $(ct_count "$SCEN_DIR/events.txt" 'dport=30081 ') -eq 0 ]] || die "$SCEN: conntrack event for the blocked flow"
  need 3 "packets on the FORWARD DROP" "$(counter "$SCEN_DIR/iptables-counters.txt" '--ctorigdstport 30081 -j DROP')"
}

# The stale flow stays on the old backend after the retarget, the fresh one gets
# the new one; the old backend's port unreachable errors are on the wire.
check_stale_udp() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap
  need 20 "stale datagrams on eth0" "$(pkts "$e" "ip.src==$REMOTE_CLI && udp.srcport==41053 && udp.dstport==8053")"
  need 20 "stale datagrams to $C1_IP:53 on docker0" "$(pkts "$d" "ip.dst==$C1_IP && udp.dstport==53 && udp.srcport==41053")"
  [[ $(pkts "$d" "ip.dst==$C2_IP && udp.srcport==41053") -eq 0 ]] || die "$SCEN: the stale flow reached c2"
  need 3 "answers from $C2_IP:53 on docker0" "$(pkts "$d" "ip.src==$C2_IP && udp.srcport==53")"
  need 1 "port unreachable from $C1_IP" "$(pkts "$d" "ip.src==$C1_IP && icmp.type==3 && icmp.code==3")"
  need 1 "entry of the stale flow to $C1_IP" "$(ct_count "$ct" "sport=41053 dport=8053 src=$C1_IP ")"
  need 1 "entry of the fresh flow to $C2_IP" "$(ct_count "$ct" "sport=42053 dport=8053 src=$C2_IP ")"
}

check_stale_udp_vip() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap
  # On veth-c1 to the service address; docker0 shows them DNATed already (bridge
  # netfilter runs PREROUTING as the bridge receives them).
  need 20 "stale datagrams to $SVC_VIP on veth-c1" "$(pkts "$SCEN_DIR/veth-c1.pcap" "ip.src==$C1_IP && udp.srcport==43053 && ip.dst==$SVC_VIP")"
  need 20 "stale datagrams to $SRV_IP:5300 on eth0" "$(pkts "$e" "ip.dst==$SRV_IP && udp.dstport==5300")"
  [[ $(pkts "$e" "ip.dst==$SRV_IP2 && udp.srcport==43053") -eq 0 ]] || die "$SCEN: the stale flow reached $SRV_IP2"
  need 3 "answers from $SRV_IP2:5300 on eth0" "$(pkts "$e" "ip.src==$SRV_IP2 && udp.srcport==5300")"
  need 1 "port unreachable from $SRV_IP" "$(pkts "$e" "ip.src==$SRV_IP && icmp.type==3 && icmp.code==3")"
  need 1 "entry of the stale flow to $SRV_IP" "$(ct_count "$ct" "sport=43053 dport=53 src=$SRV_IP ")"
  need 1 "entry of the fresh flow to $SRV_IP2" "$(ct_count "$ct" "sport=44053 dport=53 src=$SRV_IP2 ")"
}

# c1's first entries expired (events), c2 kept the port and identifier, c1's new
# entries were moved.
check_reuse_after_expiry() {
  local ct=$SCEN_DIR/conntrack.txt ev=$SCEN_DIR/events.txt e=$SCEN_DIR/eth0.pcap
  need 1 "UDP entry of c2 on port 40003" "$(ct_count "$ct" "src=$C2_IP dst=$SRV_IP sport=40003 dport=53 src=$SRV_IP dst=$HOST_IP sport=53 dport=40003 ")"
  need 1 "UDP entry of c1 moved off port 40003" "$(grep -E "src=$C1_IP dst=$SRV_IP sport=40003 dport=53 .*src=$SRV_IP dst=$HOST_IP sport=53 dport=[0-9]+ " "$ct" | grep -vc 'dport=40003 ' || true)"
  need 1 "expiry of c1's first UDP entry" "$(ct_count "$ev" '\[DESTROY\]' "src=$C1_IP dst=$SRV_IP sport=40003 dport=53 src=$SRV_IP dst=$HOST_IP sport=53 dport=40003 ")"
  need 1 "expiry of c1's first ICMP entry" "$(ct_count "$ev" '\[DESTROY\]' ' icmp ' "src=$C1_IP dst=$SRV_IP .*id=20036 .*src=$SRV_IP dst=$HOST_IP .*id=20036 ")"
  need 4 "queries from $HOST_IP:40003 on eth0" "$(pkts "$e" "ip.src==$HOST_IP && udp.srcport==40003")"
  need 2 "queries from another port on eth0" "$(pkts "$e" "ip.src==$HOST_IP && udp.dstport==53 && udp.srcport!=40003")"
}

# c1's connection left eth0 from two ports: its first entry expired (no close), the
# late segment was a new entry, and the server reset it.
check_fault_idle_expiry_remap() {
  local ev=$SCEN_DIR/events.txt e=$SCEN_DIR/eth0.pcap
  need 1 "expiry of c1's first entry" "$(ct_count "$ev" '\[DESTROY\]' "src=$C1_IP dst=$SRV_IP sport=41000 dport=7000 ")"
  need 2 "entries of c1's connection" "$(ct_count "$ev" '\[NEW\]' "src=$C1_IP dst=$SRV_IP sport=41000 dport=7000 ")"
  need 2 "source ports of c1's connection on eth0" "$(tshark -r "$e" -Y "ip.src==$HOST_IP && tcp.dstport==7000" -T fields -e tcp.srcport | sort -u | wc -l)"
  need 1 "reset from $SRV_IP on eth0" "$(pkts "$e" "ip.src==$SRV_IP && tcp.flags.reset==1")"
}

check_fault_idle_expiry_remap6() {
  local ev=$SCEN_DIR/events.txt e=$SCEN_DIR/eth0.pcap
  need 1 "expiry of c1's first entry" "$(ct_count "$ev" '\[DESTROY\]' "src=fd00:172:17::2 dst=$SRV6_IP sport=41000 dport=7000 ")"
  need 2 "entries of c1's connection" "$(ct_count "$ev" '\[NEW\]' "src=fd00:172:17::2 dst=$SRV6_IP sport=41000 dport=7000 ")"
  need 2 "source ports of c1's connection on eth0" "$(tshark -r "$e" -Y "ipv6.src==$HOST6_IP && tcp.dstport==7000" -T fields -e tcp.srcport | sort -u | wc -l)"
  need 1 "reset from $SRV6_IP on eth0" "$(pkts "$e" "ipv6.src==$SRV6_IP && tcp.flags.reset==1")"
}

# The client's queries reached c1, then c2 after the deletion, both answered.
check_fault_state_loss_udp() {
  local d=$SCEN_DIR/docker0.pcap e=$SCEN_DIR/eth0.pcap
  need 3 "answers from $C1_IP on docker0" "$(pkts "$d" "ip.src==$C1_IP && udp.srcport==53")"
  need 3 "answers from $C2_IP on docker0" "$(pkts "$d" "ip.src==$C2_IP && udp.srcport==53")"
  need 6 "answers to $REMOTE_CLI:43054 on eth0" "$(pkts "$e" "ip.dst==$REMOTE_CLI && udp.dstport==43054")"
  need 1 "deleted entry" "$(grep -c 'sport=43054' "$SCEN_DIR/conntrack-deleted.txt" || true)"
}

# c1's pings left eth0 under two identifiers, all answered.
check_fault_state_loss_icmp() {
  local e=$SCEN_DIR/eth0.pcap
  need 2 "identifiers of c1's pings on eth0" "$(tshark -r "$e" -Y "ip.src==$HOST_IP && icmp.type==8" -T fields -e icmp.ident | sort -u | wc -l)"
  need 6 "echo replies on eth0" "$(pkts "$e" "ip.dst==$HOST_IP && icmp.type==0")"
  need 1 "deleted entry" "$(grep -c 'id=20040' "$SCEN_DIR/conntrack-deleted.txt" || true)"
}

# The client's connection reached c1, then c2 after the deletion; c2 reset it.
check_fault_state_loss_dnat() {
  local d=$SCEN_DIR/docker0.pcap
  need 1 "SYN to $C1_IP:80 on docker0" "$(pkts "$d" "ip.dst==$C1_IP && tcp.dstport==80 && tcp.flags.syn==1")"
  need 1 "late segment to $C2_IP:80 on docker0" "$(pkts "$d" "ip.dst==$C2_IP && tcp.dstport==80 && tcp.len > 0")"
  need 1 "reset from $C2_IP on docker0" "$(pkts "$d" "ip.src==$C2_IP && tcp.flags.reset==1")"
}

check_reuse_after_expiry_dnat() {
  local ct=$SCEN_DIR/conntrack.txt ev=$SCEN_DIR/events.txt d=$SCEN_DIR/docker0.pcap
  need 3 "answers from $C1_IP on docker0" "$(pkts "$d" "ip.src==$C1_IP && udp.srcport==53")"
  need 3 "answers from $C2_IP on docker0" "$(pkts "$d" "ip.src==$C2_IP && udp.srcport==53")"
  need 1 "entry of the second flow to $C2_IP" "$(ct_count "$ct" "sport=41054 dport=8053 src=$C2_IP ")"
  need 1 "expiry of the first entry" "$(ct_count "$ev" '\[DESTROY\]' "sport=41054 dport=8053 src=$C1_IP ")"
}

# c1's SYNs to its own published port come back to it DNATed, source unchanged,
# and get no answer; c2's connection works.
check_fault_hairpin_no_masq() {
  local v=$SCEN_DIR/veth-c1.pcap ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs from c1 to $HOST_IP:8080 on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$HOST_IP && tcp.dstport==8080 && tcp.flags.syn==1")"
  need 2 "SYNs back to c1 from itself on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$C1_IP && tcp.dstport==80 && tcp.flags.syn==1")"
  [[ $(pkts "$v" "ip.src==$C1_IP && tcp.srcport==80 && ip.dst==$C1_IP") -eq 0 ]] || die "$SCEN: c1 answered itself on the wire"
  need 1 "c2's connection answered" "$(pkts "$SCEN_DIR/veth-c1.pcap" "ip.dst==$C2_IP && tcp.srcport==80")"
}

# fault-hairpin-routed-no-masq: the LAN client's TCP and UDP to the host's address
# go back out of eth0 with its address kept, and the server's answers never reach eth0;
# its masqueraded connection out is answered there.
check_fault_hairpin_routed_no_masq() {
  local e=$SCEN_DIR/eth0.pcap ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs from $LAN_CLI to $HOST_IP:9000 on eth0" "$(pkts "$e" "ip.src==$LAN_CLI && ip.dst==$HOST_IP && tcp.dstport==9000 && tcp.flags.syn==1")"
  need 2 "the same SYNs DNATed to $LAN_SRV:7000 on eth0" "$(pkts "$e" "ip.src==$LAN_CLI && ip.dst==$LAN_SRV && tcp.dstport==7000 && tcp.flags.syn==1")"
  need 1 "datagrams DNATed to $LAN_SRV:53 on eth0" "$(pkts "$e" "ip.src==$LAN_CLI && ip.dst==$LAN_SRV && udp.dstport==53")"
  [[ $(pkts "$e" "ip.src==$LAN_SRV") -eq 0 ]] || die "$SCEN: the server's answers crossed eth0"
  need 1 "unreplied TCP entry 9000 -> $LAN_SRV:7000" "$(ct_count "$ct" "dport=9000 \\[UNREPLIED\\] src=$LAN_SRV dst=$LAN_CLI sport=7000 ")"
  need 1 "answers to the masqueraded connection on eth0" "$(pkts "$e" "ip.src==$SRV_IP && ip.dst==$HOST_IP && tcp.srcport==7000")"
  need 1 "the port forward's answers translated back on eth0" "$(pkts "$e" "ip.src==$HOST_IP && ip.dst==$REMOTE_CLI && tcp.srcport==8080")"
}

check_fault_hairpin_routed_no_masq6() {
  local e=$SCEN_DIR/eth0.pcap ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs DNATed to [$LAN6_SRV]:7000 on eth0" "$(pkts "$e" "ipv6.src==$LAN6_CLI && ipv6.dst==$LAN6_SRV && tcp.dstport==7000 && tcp.flags.syn==1")"
  need 1 "datagrams DNATed to [$LAN6_SRV]:53 on eth0" "$(pkts "$e" "ipv6.src==$LAN6_CLI && ipv6.dst==$LAN6_SRV && udp.dstport==53")"
  [[ $(pkts "$e" "ipv6.src==$LAN6_SRV") -eq 0 ]] || die "$SCEN: the server's answers crossed eth0"
  need 1 "unreplied IPv6 TCP entry 9000 -> [$LAN6_SRV]:7000" "$(ct_count "$ct" '^ipv6 +10 tcp ' "dport=9000 \\[UNREPLIED\\] src=$LAN6_SRV dst=$LAN6_CLI sport=7000 ")"
  need 1 "the port forward's answers translated back on eth0" "$(pkts "$e" "ipv6.src==2001:db8:113::1 && ipv6.dst==2001:db8:100::10 && tcp.srcport==8080")"
}

# fault-hairpin-no-br-netfilter: c2's TCP and UDP DNATed on docker0 to c1, answered
# by c1 straight to c2 across the bridge (docker0's capture, promiscuous, sees the
# frames the bridge forwards), never translated back.
check_fault_hairpin_no_br_netfilter() {
  local v=$SCEN_DIR/veth-c1.pcap d=$SCEN_DIR/docker0.pcap ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs from c2 to $HOST_IP:8080 on docker0" "$(pkts "$d" "ip.src==$C2_IP && ip.dst==$HOST_IP && tcp.dstport==8080 && tcp.flags.syn==1")"
  need 2 "SYNs DNATed to c1 on veth-c1" "$(pkts "$v" "ip.src==$C2_IP && ip.dst==$C1_IP && tcp.dstport==80 && tcp.flags.syn==1")"
  need 2 "SYN-ACKs from c1 straight to c2 on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$C2_IP && tcp.srcport==80 && tcp.flags.syn==1")"
  need 1 "answers from c1's port 53 straight to c2 on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$C2_IP && udp.srcport==53")"
  [[ $(pkts "$d" "ip.src==$HOST_IP && ip.dst==$C2_IP") -eq 0 ]] || die "$SCEN: an answer was translated back"
  need 1 "unreplied TCP entry 8080 -> c1:80" "$(ct_count "$ct" "dport=8080 \\[UNREPLIED\\] src=$C1_IP dst=$C2_IP sport=80 ")"
}

# fault-hairpin-mode-off: c1's SYNs and datagrams come back to veth-c1 from itself,
# unmasqueraded, with no conntrack entry for them; c2's are answered.
check_fault_hairpin_mode_off() {
  local v=$SCEN_DIR/veth-c1.pcap ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs back to c1 from itself on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$C1_IP && tcp.dstport==80 && tcp.flags.syn==1")"
  need 2 "datagrams back to c1 from itself on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$C1_IP && udp.dstport==53")"
  [[ $(ct_count "$ct" "src=$C1_IP dst=$HOST_IP ") -eq 0 ]] || die "$SCEN: an entry for c1's hairpin"
  need 1 "c2's TCP answered" "$(pkts "$v" "ip.dst==$C2_IP && tcp.srcport==80")"
  need 1 "c2's query answered" "$(pkts "$v" "ip.dst==$C2_IP && udp.srcport==53")"
}

check_fault_hairpin_mode_off6() {
  local v=$SCEN_DIR/veth-c1.pcap ct=$SCEN_DIR/conntrack.txt
  need 2 "SYNs back to c1 from itself on veth-c1" "$(pkts "$v" "ipv6.src==fd00:172:17::2 && ipv6.dst==fd00:172:17::2 && tcp.dstport==80 && tcp.flags.syn==1")"
  need 2 "datagrams back to c1 from itself on veth-c1" "$(pkts "$v" "ipv6.src==fd00:172:17::2 && ipv6.dst==fd00:172:17::2 && udp.dstport==53")"
  [[ $(ct_count "$ct" "src=fd00:172:17::2 dst=2001:db8:113::1 ") -eq 0 ]] || die "$SCEN: an entry for c1's hairpin"
  need 1 "c2's TCP answered" "$(pkts "$v" "ipv6.dst==fd00:172:17::3 && tcp.srcport==80")"
}

# ftp-alg: three control connections through the FTP helper, the PORT and 227
# addresses rewritten on eth0, and the data connections expected and translated.
check_ftp_alg() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "control entries with the FTP helper" "$(ct_count "$ct" 'dport=21 ' 'helper=ftp')"
  need 1 "PORT with c1's address on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" 'ftp.request.command == "PORT" && ftp.request.arg contains "172,17,0,2"')"
  need 1 "PORT with the host's address on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" 'ftp.request.command == "PORT" && ftp.request.arg contains "203,0,113,1"')"
  need 1 "227 with c1's address on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" 'ftp.response.code == 227 && ftp.response.arg contains "172,17,0,2"')"
  need 1 "227 with the host's address on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" 'ftp.response.code == 227 && ftp.response.arg contains "203,0,113,1"')"
  need 4 "data connections on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" '!(tcp.port == 21)')"
}

# ftp-alg6: three control connections through the FTP helper, EPRT's address rewritten
# on eth0, and the data connections expected and translated.
check_ftp_alg6() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "control entries with the FTP helper" "$(ct_count "$ct" '^ipv6 ' 'dport=21 ' 'helper=ftp')"
  need 1 "EPRT with c1's address on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" 'ftp.request.command == "EPRT" && ftp.request.arg contains "fd00:172:17::2"')"
  need 1 "EPRT with the host's address on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" 'ftp.request.command == "EPRT" && ftp.request.arg contains "2001:0db8:0113:0000:0000:0000:0000:0001"')"
  need 4 "data connections on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" '!(tcp.port == 21)')"
}

# tftp-alg: the read requests' entries carry the TFTP helper, and each transfer, from
# another port of the server's, is translated back to its client.
check_tftp_alg() {
  local ct=$SCEN_DIR/conntrack.txt
  need 3 "request entries with the TFTP helper" "$(ct_count "$ct" 'dport=69 ' 'helper=tftp')"
  need 1 "transfers DNATed to c1" "$(ct_count "$ct" '^ipv4 +2 udp ' "src=$REMOTE_SRV dst=$HOST_IP " "src=$C1_IP ")"
  need 1 "transfers DNATed to c2" "$(ct_count "$ct" '^ipv4 +2 udp ' "src=$REMOTE_SRV dst=$HOST_IP " "src=$C2_IP ")"
  need 3 "DATA blocks on eth0 from $REMOTE_SRV" "$(pkts "$SCEN_DIR/eth0.pcap" "ip.src==$REMOTE_SRV && tftp.opcode == 3")"
}

# c1's datagrams to its own published port come back to it unanswered; c2's are
# answered.
check_fault_hairpin_udp() {
  local v=$SCEN_DIR/veth-c1.pcap
  need 3 "datagrams from c1 to $HOST_IP:8053 on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$HOST_IP && udp.dstport==8053")"
  need 3 "datagrams back to c1 from itself on veth-c1" "$(pkts "$v" "ip.src==$C1_IP && ip.dst==$C1_IP && udp.dstport==53")"
  [[ $(pkts "$v" "ip.src==$C1_IP && udp.srcport==53 && ip.dst==$C1_IP") -eq 0 ]] || die "$SCEN: c1 answered itself on the wire"
  need 2 "answers to c2" "$(pkts "$v" "ip.dst==$C2_IP && udp.srcport==53")"
}

# The bulk connections' conntrack entries: MASQUERADE out, DNAT in.
check_bulk_entries() {
  local ct=$SCEN_DIR/conntrack.txt
  need 1 "ESTABLISHED MASQUERADE entry to port 7000" "$(ct_count "$ct" ' ESTABLISHED ' "src=$C1_IP dst=$SRV_IP " 'dport=7000 ' "dst=$HOST_IP ")"
  need 1 "ESTABLISHED DNAT entry 8080 -> $C1_IP:80" "$(ct_count "$ct" ' ESTABLISHED ' "dst=$HOST_IP sport=[0-9]+ dport=8080 src=$C1_IP dst=$REMOTE_CLI sport=80 ")"
  need 2 "TCP conversations on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap")"
}

# Super-packets (IP packets longer than the 1500-byte MTU) and different cuts:
# c1's data leaves docker0 in super-packets and eth0 in MSS-sized segments; the
# outside's data arrives at eth0 in GRO aggregates and leaves docker0 in
# MSS-sized segments.
check_bulk_offload() {
  check_bulk_entries
  local d=$SCEN_DIR/docker0.pcap e=$SCEN_DIR/eth0.pcap
  need 1 "super-packets from $C1_IP on docker0" "$(pkts "$d" "ip.src==$C1_IP && ip.len > 1500")"
  need 1 "super-packets to $HOST_IP on eth0" "$(pkts "$e" "ip.dst==$HOST_IP && ip.len > 1500")"
  [[ $(pkts "$e" "ip.src==$HOST_IP && ip.len > 1500") -eq 0 ]] || die "$SCEN: super-packets leaving eth0"
  [[ $(pkts "$d" "ip.dst==$C1_IP && ip.len > 1500") -eq 0 ]] || die "$SCEN: super-packets leaving docker0 for c1"
  local dn en
  dn=$(pkts "$d" "ip.src==$C1_IP && tcp.len > 0")
  en=$(pkts "$e" "ip.src==$HOST_IP && tcp.len > 0")
  [[ $dn -lt $en ]] || die "$SCEN: c1's data in $dn segments on docker0, $en on eth0 (expected fewer on docker0)"
  dn=$(pkts "$d" "ip.dst==$C1_IP && tcp.len > 0")
  en=$(pkts "$e" "ip.dst==$HOST_IP && tcp.len > 0")
  [[ $en -lt $dn ]] || die "$SCEN: c1's incoming data in $en segments on eth0, $dn on docker0 (expected fewer on eth0)"
}

check_bulk_no_offload() {
  check_bulk_entries
  local f
  for f in "$SCEN_DIR"/*.pcap; do
    [[ $(pkts "$f" "ip.len > 1500") -eq 0 ]] || die "$SCEN: super-packets in $(basename "$f") with offloads off"
  done
}

# ct_stat FILE NAME: a `conntrack -S` counter summed over the CPUs.
ct_stat() {
  grep -oE "(^|[[:space:]])$2=[0-9]+" "$1" | cut -d= -f2 | awk '{n += $1} END {print n + 0}'
}

check_fault_snat_exhaustion() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap st=$SCEN_DIR/conntrack-stats.txt isn
  # Both ports of the range held to 203.0.113.2:7000, a port of it for 8443 too.
  need 1 "ESTABLISHED entry on NAT port 20000 to :7000" "$(ct_count "$ct" ' ESTABLISHED ' "src=$SRV_IP dst=$HOST_IP sport=7000 dport=20000 ")"
  need 1 "ESTABLISHED entry on NAT port 20001 to :7000" "$(ct_count "$ct" ' ESTABLISHED ' "src=$SRV_IP dst=$HOST_IP sport=7000 dport=20001 ")"
  need 1 "entry for :8443 in the range" "$(ct_count "$ct" "src=$SRV_IP dst=$HOST_IP sport=8443 dport=2000[01] ")"
  [[ $(pkts "$e" "ip.src==$HOST_IP && (tcp.srcport < 20000 || tcp.srcport > 20001)") -eq 0 ]] ||
    die "$SCEN: TCP source port outside 20000-20001 on eth0"
  # The third connection: its SYNs on docker0, never on eth0; no entry, no event.
  need 3 "SYNs from $C1_IP:$EXHAUST_SPORT on docker0" "$(pkts "$d" "ip.src==$C1_IP && tcp.srcport==$EXHAUST_SPORT && tcp.flags.syn==1")"
  isn=$(tshark -r "$d" -Y "tcp.srcport==$EXHAUST_SPORT && tcp.flags.syn==1" -T fields -e tcp.seq_raw 2>/dev/null | sort -u)
  [[ $(grep -c . <<<"$isn") -eq 1 ]] || die "$SCEN: the lost SYNs do not share one sequence number: $isn"
  [[ $(pkts "$e" "tcp.seq_raw==$isn") -eq 0 ]] || die "$SCEN: the lost connection reached eth0"
  [[ $(ct_count "$ct" "sport=$EXHAUST_SPORT ") -eq 0 ]] || die "$SCEN: conntrack entry for the lost connection"
  [[ $(ct_count "$SCEN_DIR/events.txt" "sport=$EXHAUST_SPORT ") -eq 0 ]] || die "$SCEN: conntrack event for the lost connection"
  # The kernel counted each lost SYN as a failed insert and a drop.
  need 3 "insert_failed" "$(ct_stat "$st" insert_failed)"
  need 3 "drop" "$(ct_stat "$st" drop)"
}

check_fault_snat_exhaustion_udp6() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap st=$SCEN_DIR/conntrack-stats.txt
  need 1 "UDP entry on NAT port 20000" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dst=2001:db8:113::1 sport=53 dport=20000 ')"
  need 1 "UDP entry on NAT port 20001" "$(ct_count "$ct" '^ipv6 +10 udp ' 'dst=2001:db8:113::1 sport=53 dport=20001 ')"
  need 3 "queries from port $EXHAUST_UDP_SPORT on docker0" "$(pkts "$d" "udp.srcport==$EXHAUST_UDP_SPORT")"
  [[ $(pkts "$e" "udp.dstport==53 && (udp.srcport < 20000 || udp.srcport > 20001)") -eq 0 ]] ||
    die "$SCEN: UDP source port outside 20000-20001 on eth0"
  [[ $(pkts "$e" "ipv6.dst==2001:db8:113::2 && udp.dstport==53") -eq 3 ]] || die "$SCEN: expected exactly the 3 answered queries to 2001:db8:113::2 on eth0"
  need 1 "query to 2001:db8:100::10 on eth0" "$(pkts "$e" "ipv6.dst==2001:db8:100::10 && udp.dstport==53")"
  [[ $(ct_count "$ct" "sport=$EXHAUST_UDP_SPORT ") -eq 0 ]] || die "$SCEN: conntrack entry for the lost socket"
  need 3 "insert_failed" "$(ct_stat "$st" insert_failed)"
  need 3 "drop" "$(ct_stat "$st" drop)"
  [[ $(pkts "$SCEN_DIR/any.pcap" ip) -eq 0 ]] || die "$SCEN: IPv4 packets"
}

check_fault_syn_dropped_once() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap st=$SCEN_DIR/conntrack-stats.txt
  # Each connection: two SYNs on docker0 (one sequence number), one on eth0.
  local c dst n
  for c in "$C1_IP $SRV_IP" "$C2_IP $REMOTE_SRV"; do
    read -r c dst <<<"$c"
    n=$(pkts "$d" "ip.src==$c && ip.dst==$dst && tcp.dstport==7000 && tcp.flags.syn==1 && tcp.flags.ack==0")
    [[ $n -eq 2 ]] || die "$SCEN: expected 2 SYNs from $c on docker0, found $n"
    n=$(pkts "$e" "ip.src==$HOST_IP && ip.dst==$dst && tcp.dstport==7000 && tcp.flags.syn==1 && tcp.flags.ack==0")
    [[ $n -eq 1 ]] || die "$SCEN: expected 1 SYN to $dst on eth0, found $n"
  done
  need 1 "ESTABLISHED entry for c1" "$(ct_count "$ct" ' ESTABLISHED ' "src=$C1_IP " "dst=$HOST_IP ")"
  need 2 "packets on the nth DROP" "$(counter "$SCEN_DIR/iptables-counters.txt" '--every 2 --packet 0 -j DROP')"
  [[ $(ct_stat "$st" insert_failed) -eq 0 && $(ct_stat "$st" drop) -eq 0 ]] || die "$SCEN: conntrack counted insert failures"
}

check_fault_dns_pair_dropped() {
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap d=$SCEN_DIR/docker0.pcap st=$SCEN_DIR/conntrack-stats.txt
  # c1: A and AAAA back to back, the AAAA again later: 3 on docker0, 2 on eth0.
  [[ $(pkts "$d" "ip.src==$C1_IP && udp.dstport==53") -eq 3 ]] || die "$SCEN: expected 3 queries from c1 on docker0"
  [[ $(pkts "$e" "ip.src==$HOST_IP && ip.dst==$SRV_IP && udp.dstport==53") -eq 2 ]] || die "$SCEN: expected 2 of c1's queries on eth0"
  [[ $(pkts "$d" "ip.src==$C1_IP && udp.dstport==53 && dns.qry.type==28") -eq 2 ]] || die "$SCEN: the AAAA query was not resent"
  # The A and AAAA queries within 1 ms of each other; the resend seconds later.
  local gaps pair_us resend_ms
  gaps=$(tshark -r "$d" -Y "ip.src==$C1_IP && udp.dstport==53" -T fields -e frame.time_epoch 2>/dev/null |
    awk 'NR == 1 {a = $1} NR == 2 {b = $1} NR == 3 {c = $1} END {printf "%d %d\n", (b - a) * 1e6, (c - b) * 1e3}')
  read -r pair_us resend_ms <<<"$gaps"
  [[ $pair_us -lt 1000 ]] || die "$SCEN: the A and AAAA queries are $pair_us us apart"
  [[ $resend_ms -ge 2500 ]] || die "$SCEN: the AAAA query was resent after $resend_ms ms"
  # c2: the pair, nothing lost.
  [[ $(pkts "$d" "ip.src==$C2_IP && udp.dstport==53") -eq 2 ]] || die "$SCEN: expected 2 queries from c2 on docker0"
  [[ $(pkts "$e" "ip.dst==$REMOTE_SRV && udp.dstport==53") -eq 2 ]] || die "$SCEN: expected 2 of c2's queries on eth0"
  need 2 "UDP entries" "$(ct_count "$ct" '^ipv4 +2 udp ' "dst=$HOST_IP ")"
  need 1 "packet on the nth DROP" "$(counter "$SCEN_DIR/iptables-counters.txt" '--every 2 --packet 1 -j DROP')"
  [[ $(ct_stat "$st" insert_failed) -eq 0 && $(ct_stat "$st" drop) -eq 0 ]] || die "$SCEN: conntrack counted insert failures"
}

# The userland proxy: every client's connection ends at the host (no DNAT entry),
# and a connection of the proxy's own from the bridge address reaches c1:80.
check_proxy_common() {
  local ct=$SCEN_DIR/conntrack.txt d=$SCEN_DIR/docker0.pcap
  need 2 "TCP conversations from $BR_IP to $C1_IP:80 on docker0" "$(tcp_convs "$d" "ip.src==$BR_IP && ip.dst==$C1_IP && tcp.dstport==80")"
  need 1 "entry from $BR_IP to $C1_IP:80 without NAT" "$(ct_count "$ct" "src=$BR_IP dst=$C1_IP sport=([0-9]+) dport=80 src=$C1_IP dst=$BR_IP sport=80 dport=\\1 ")"
  [[ $(pkts "$d" 'tcp.port==8080') -eq 0 ]] || die "$SCEN: port 8080 on docker0"
}

check_userland_proxy() {
  check_proxy_common
  local ct=$SCEN_DIR/conntrack.txt
  need 2 "TCP conversations to $HOST_IP:8080 on eth0" "$(tcp_convs "$SCEN_DIR/eth0.pcap" "ip.dst==$HOST_IP && tcp.dstport==8080")"
  need 1 "TCP conversation to 127.0.0.1:8080 on lo" "$(tcp_convs "$SCEN_DIR/lo.pcap" "tcp.dstport==8080")"
  need 1 "entry to $HOST_IP:8080 without NAT" "$(ct_count "$ct" "dst=$HOST_IP sport=([0-9]+) dport=8080 src=$HOST_IP dst=$SRV_IP sport=8080 dport=\\1 ")"
  [[ $(ct_count "$ct" "dport=8080 src=$C1_IP ") -eq 0 ]] || die "$SCEN: a DNAT entry for 8080"
  need 1 "MASQUERADE entry for $C2_IP" "$(ct_count "$ct" "src=$C2_IP dst=$SRV_IP " 'dport=7000 ' "dst=$HOST_IP ")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" 'ip.src==172.17.0.0/16 || ip.dst==172.17.0.0/16') -eq 0 ]] || die "$SCEN: container address on eth0"
}

check_userland_proxy6() {
  check_proxy_common
  local ct=$SCEN_DIR/conntrack.txt e=$SCEN_DIR/eth0.pcap
  need 2 "IPv6 TCP conversations to [2001:db8:113::1]:8080 on eth0" "$(tcp_convs "$e" "ipv6.dst==2001:db8:113::1 && tcp.dstport==8080")"
  # No ip6tables rule at all, so conntrack does not track IPv6 here.
  [[ $(ct_count "$ct" '^ipv6 ') -eq 0 ]] || die "$SCEN: IPv6 conntrack entries"
  need 1 "IPv4 DNAT entry 8080 -> $C1_IP:80" "$(ct_count "$ct" "src=$REMOTE_CLI dst=$HOST_IP sport=[0-9]+ dport=8080 src=$C1_IP dst=$REMOTE_CLI sport=80 ")"
  need 1 "packets from $REMOTE_CLI on docker0" "$(pkts "$SCEN_DIR/docker0.pcap" "ip.src==$REMOTE_CLI")"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" 'ipv6 && tcp') -eq 0 ]] || die "$SCEN: IPv6 TCP on docker0"
}

# A PMTU black hole: full-size segments with DF seen at FROM and never at TO,
# sent again; smaller packets of the connection crossed.
# check_black_hole FROM TO FILTER (FILTER selects the stalled direction at both).
check_black_hole() {
  local from=$SCEN_DIR/$1.pcap to=$SCEN_DIR/$2.pcap f=$3
  need 3 "full-size (1500-byte) segments on $1" "$(pkts "$from" "$f && (ip.len==1500 || ipv6.plen==1460)")"
  need 2 "retransmissions on $1" "$(pkts "$from" "$f && tcp.analysis.retransmission")"
  [[ $(pkts "$to" "$f && (ip.len > 1400 || ipv6.plen > 1360)") -eq 0 ]] || die "$SCEN: full-size segments reached $2"
  need 1 "data segments that reached $2" "$(pkts "$to" "$f && tcp.len > 0")"
}

check_fault_pmtu_black_hole() {
  check_black_hole docker0 eth0 "tcp.dstport==7000"
  need 3 "full-size segments with DF" "$(pkts "$SCEN_DIR/docker0.pcap" 'ip.len==1500 && ip.flags.df==1')"
  local f
  for f in "$SCEN_DIR"/*.pcap; do
    [[ $(pkts "$f" 'icmp') -eq 0 ]] || die "$SCEN: ICMP in $(basename "$f") (the OUTPUT rule should drop it)"
  done
  need 2 "SYNs announcing MSS 1460" "$(pkts "$SCEN_DIR/docker0.pcap" 'tcp.flags.syn==1 && tcp.options.mss_val==1460')"
  grep -qE '^[0-9]+: eth0(@[^:]*)?: .* mtu 1400 ' "$SCEN_DIR/links.txt" || die "$SCEN: eth0's MTU is not 1400"
}

check_fault_pmtu_black_hole6() {
  check_black_hole eth0 docker0 "tcp.srcport==7000"
  need 1 "packet too big (mtu 1400) on eth0" "$(pkts "$SCEN_DIR/eth0.pcap" 'icmpv6.type==2 && icmpv6.mtu==1400')"
  [[ $(pkts "$SCEN_DIR/docker0.pcap" 'icmpv6.type==2') -eq 0 ]] || die "$SCEN: packet too big on docker0"
  need 2 "SYNs announcing MSS 1440" "$(pkts "$SCEN_DIR/eth0.pcap" 'tcp.flags.syn==1 && tcp.options.mss_val==1440')"
  grep -qE '^[0-9]+: docker0: .* mtu 1400 ' "$SCEN_DIR/links.txt" || die "$SCEN: docker0's MTU is not 1400"
}

# Asymmetric routes: c1's requests to PEER leave eth0, the answers reach eth1 and
# never eth0. check_asym_paths PEER REQUESTS ANSWERS (display filters, at any point).
check_asym_paths() {
  local e=$SCEN_DIR/eth0.pcap e1=$SCEN_DIR/eth1.pcap
  need 2 "requests to $1 on eth0" "$(pkts "$e" "$2")"
  need 2 "answers from $1 on eth1" "$(pkts "$e1" "$3")"
  [[ $(pkts "$e" "$3") -eq 0 ]] || die "$SCEN: answers from $1 on eth0"
  grep -qE "^[^ ]*$1 .*dev eth0 " "$SCEN_DIR/routes.txt" || die "$SCEN: the route to $1 does not leave by eth0"
}

check_fault_asym_route() {
  local ct=$SCEN_DIR/conntrack.txt d=$SCEN_DIR/docker0.pcap synack="ip.src==$SRV_IP && tcp.srcport==7000 && tcp.flags.syn==1 && tcp.flags.ack==1"
  check_asym_paths "$SRV_IP" "ip.src==$HOST_IP && ip.dst==$SRV_IP" "$synack"
  need 2 "SYNs from $C1_IP on docker0" "$(pkts "$d" "ip.src==$C1_IP && tcp.flags.syn==1")"
  [[ $(pkts "$d" "ip.src==$SRV_IP") -eq 0 ]] || die "$SCEN: a reply from $SRV_IP reached docker0"
  # The routing decision dropped every SYN-ACK: the counter is the number on eth1.
  [[ $(awk '{print $2}' "$SCEN_DIR/netstat.txt") -eq $(pkts "$SCEN_DIR/eth1.pcap" "$synack") ]] ||
    die "$SCEN: IPReversePathFilter $(cat "$SCEN_DIR/netstat.txt") is not the number of SYN-ACKs on eth1"
  # Conntrack saw the SYN-ACKs (no [UNREPLIED]): the drop came after it.
  need 1 "SYN_RECV entry for c1" "$(ct_count "$ct" ' SYN_RECV ' "src=$C1_IP dst=$SRV_IP ")"
  [[ $(ct_count "$ct" "src=$C1_IP dst=$SRV_IP " 'UNREPLIED') -eq 0 ]] || die "$SCEN: c1's entry is [UNREPLIED]"
  need 1 "ESTABLISHED entry for c2 over eth1" "$(ct_count "$ct" ' ESTABLISHED ' "src=$C2_IP dst=198.51.100.2 " 'dst=198.51.100.1 ')"
  grep -qx 'net.ipv4.conf.eth1.rp_filter = 1' "$SCEN_DIR/sysctl.txt" || die "$SCEN: eth1's rp_filter is not 1"
}

check_fault_asym_route6() {
  local ct=$SCEN_DIR/conntrack.txt d=$SCEN_DIR/docker0.pcap answers='ipv6.src==2001:db8:113::2 && udp.srcport==53' n
  check_asym_paths 2001:db8:113::2 'ipv6.src==2001:db8:113::1 && ipv6.dst==2001:db8:113::2' "$answers"
  [[ $(pkts "$d" "$answers") -eq 0 ]] || die "$SCEN: an answer reached docker0"
  need 1 "answer to c2 on docker0" "$(pkts "$d" 'ipv6.src==2001:db8:114::2 && udp.srcport==53')"
  # The raw table's rpfilter rule dropped every answer and echo reply, before
  # conntrack saw one.
  n=$(counter "$SCEN_DIR/ip6tables.txt" '-A PREROUTING -m rpfilter --invert -j DROP')
  [[ $n -eq $(pkts "$SCEN_DIR/eth1.pcap" "ipv6.dst==2001:db8:113::1 && !icmpv6.type==135 && !icmpv6.type==136") ]] ||
    die "$SCEN: the rpfilter rule counted $n packets"
  need 1 "UNREPLIED entry for c1's query" "$(ct_count "$ct" '^ipv6 +10 udp ' 'src=fd00:172:17::2 dst=2001:db8:113::2 ' 'UNREPLIED')"
  need 2 "echo replies to 2001:db8:113::1 on eth1" "$(pkts "$SCEN_DIR/eth1.pcap" 'ipv6.dst==2001:db8:113::1 && icmpv6.type==129')"
  [[ $(pkts "$d" 'icmpv6.type==129') -eq 0 ]] || die "$SCEN: an echo reply reached docker0"
}

check_asym_route_loose() {
  local ct=$SCEN_DIR/conntrack.txt d=$SCEN_DIR/docker0.pcap e=$SCEN_DIR/eth0.pcap e1=$SCEN_DIR/eth1.pcap
  check_asym_paths "$SRV_IP" "ip.src==$HOST_IP && ip.dst==$SRV_IP" "ip.src==$SRV_IP && tcp.srcport==7000"
  need 2 "answers from $SRV_IP on docker0" "$(pkts "$d" "ip.src==$SRV_IP && tcp.len > 0")"
  need 1 "ASSURED entry for c1" "$(ct_count "$ct" ' \[ASSURED\] ' "src=$C1_IP dst=$SRV_IP ")"
  # Inbound: the requests arrive on eth0, the replies leave by eth1.
  need 2 "requests from $REMOTE_CLI on eth0" "$(pkts "$e" "ip.src==$REMOTE_CLI && tcp.dstport==8080")"
  need 2 "replies to $REMOTE_CLI on eth1" "$(pkts "$e1" "ip.dst==$REMOTE_CLI && tcp.srcport==8080")"
  [[ $(pkts "$e" "ip.dst==$REMOTE_CLI") -eq 0 ]] || die "$SCEN: a reply to $REMOTE_CLI left by eth0"
  [[ $(awk '{print $2}' "$SCEN_DIR/netstat.txt") -eq 0 ]] || die "$SCEN: the reverse-path filter dropped packets"
  grep -qx 'net.ipv4.conf.eth1.rp_filter = 2' "$SCEN_DIR/sysctl.txt" || die "$SCEN: eth1's rp_filter is not 2"
}

# check_table_full LOST...: the table was full and the kernel dropped the new
# connections: the snapshot holds nf_conntrack_max entries, every one ESTABLISHED and
# ASSURED (early drop could evict none); conntrack -S drop grew by at least the lost
# packets (LOST: "POINT FILTER", a display filter for them at the point where they
# arrived, veth-c1 or eth0), insert_failed and early_drop not at all; none of them on
# docker0, where they would have gone next; the held connections' late requests
# crossed docker0 and eth0 meanwhile.
check_table_full() {
  local ct=$SCEN_DIR/conntrack.txt st=$SCEN_DIR/conntrack-stats.txt st0=$SCEN_DIR/conntrack-stats-before.txt
  local max n k lost=0 spec f filter c
  max=$(awk '$1 == "net.netfilter.nf_conntrack_max" {print $3}' "$SCEN_DIR/sysctl.txt")
  n=$(grep -c . "$ct")
  [[ $n -eq $max ]] || die "$SCEN: $n entries in conntrack.txt, nf_conntrack_max $max"
  [[ $(ct_count "$ct" ' ESTABLISHED ' '\[ASSURED\]') -eq $n ]] || die "$SCEN: entries other than ESTABLISHED [ASSURED]"
  for spec in "$@"; do
    read -r f filter <<<"$spec"
    c=$(pkts "$SCEN_DIR/$f.pcap" "$filter")
    need 3 "packets of '$filter' on $f" "$c"
    [[ $(pkts "$SCEN_DIR/docker0.pcap" "$filter") -eq 0 ]] || die "$SCEN: '$filter' reached docker0"
    lost=$((lost + c))
  done
  need "$lost" "more drops (conntrack -S) than lost packets" "$(($(ct_stat "$st" drop) - $(ct_stat "$st0" drop)))"
  for k in insert_failed early_drop; do
    [[ $(ct_stat "$st" $k) -eq $(ct_stat "$st0" $k) ]] || die "$SCEN: conntrack -S $k grew"
  done
  for f in docker0 eth0; do
    need 2 "late requests on $f" "$(pkts "$SCEN_DIR/$f.pcap" 'tcp.payload contains "late"')"
  done
}

check_fault_ct_table_full() {
  # A lost connection's SYNs carry one sequence number.
  local v=$SCEN_DIR/veth-c1.pcap isn1 isn3
  isn1=$(tshark -r "$v" -Y "tcp.dstport==8443 && tcp.flags.syn==1" -T fields -e tcp.seq_raw 2>/dev/null | sort -u)
  isn3=$(tshark -r "$v" -Y "ip.dst==$REMOTE_SRV && tcp.flags.syn==1" -T fields -e tcp.seq_raw 2>/dev/null | sort -u)
  [[ $(grep -c . <<<"$isn1") -eq 1 && $(grep -c . <<<"$isn3") -eq 1 ]] || die "$SCEN: lost SYNs with several sequence numbers"
  check_table_full "veth-c1 tcp.seq_raw==$isn1 && tcp.flags.syn==1" "veth-c1 tcp.seq_raw==$isn3 && tcp.flags.syn==1" \
    "veth-c1 udp.dstport==53"
}

check_fault_ct_table_full6() {
  local isn
  isn=$(tshark -r "$SCEN_DIR/eth0.pcap" -Y "ipv6.src==2001:db8:113::2 && tcp.dstport==8080 && tcp.flags.syn==1 && tcp.flags.ack==0" \
    -T fields -e tcp.seq_raw 2>/dev/null | sort -u)
  [[ $(grep -c . <<<"$isn") -eq 1 ]] || die "$SCEN: lost SYNs with several sequence numbers: $isn"
  check_table_full "veth-c1 ipv6.dst==2001:db8:113::2 && udp.dstport==53" \
    "veth-c1 ipv6.dst==2001:db8:100::10 && udp.dstport==53" "eth0 tcp.seq_raw==$isn && tcp.flags.syn==1"
  [[ $(pkts "$SCEN_DIR/any.pcap" ip) -eq 0 ]] || die "$SCEN: IPv4 packets"
}

# ovl_check_nodeb: node B's files are there, hold only lab addresses, and its shifted
# captures are shifted by OVL_SHIFT.
ovl_check_nodeb() {
  local b=$SCEN_DIR/node-b f bad
  for f in "$b"/*.pcap "$b"/shifted/*.pcap; do
    [[ $(npk "$f") -gt 0 ]] || die "$f is empty"
    bad=$(tshark -r "$f" -T fields -E separator=, -e ip.src -e ip.dst 2>/dev/null | tr ',\t' '\n' |
      grep -v -E '^$|^172\.17\.|^203\.0\.113\.' | sort -u || true)
    [[ -z $bad ]] || die "$(basename "$f"): unexpected addresses: $bad"
  done
  [[ -s $b/iptables.txt ]] || die "node B's iptables.txt missing"
  local shift
  shift=$(awk '{print $1 - $2}' <<<"$(capinfos -a -T -r -S "$b/shifted/eth0.pcap" | awk -F'\t' '{print $2}') $(capinfos -a -T -r -S "$b/eth0.pcap" | awk -F'\t' '{print $2}')")
  [[ $(awk -v s="$shift" -v w="$OVL_SHIFT" 'BEGIN{d=s-w; print (d<0?-d:d) < 0.001}') == 1 ]] || die "node-b/shifted is shifted by $shift s"
}

# ovl_check_underlay MIN: both underlay captures hold at least MIN tunnel packets each
# way between the two nodes (VXLAN with the VNI, or IP in IP: protocol 4), and nothing
# outside the tunnel.
ovl_check_underlay() {
  local f enc
  if [[ $OVL_KIND == vxlan ]]; then enc="udp.dstport==$OVL_PORT && vxlan.vni==$OVL_VNI"; else enc="ip.proto==4"; fi
  for f in "$SCEN_DIR/eth0.pcap" "$SCEN_DIR/node-b/eth0.pcap"; do
    need "$1" "$OVL_KIND packets to node B in $f" "$(pkts "$f" "$enc && ip.src==$OVL_A_UL && ip.dst==$OVL_B_UL")"
    need "$1" "$OVL_KIND packets to node A in $f" "$(pkts "$f" "$enc && ip.src==$OVL_B_UL && ip.dst==$OVL_A_UL")"
    [[ $(pkts "$f" "!($enc)") -eq 0 ]] || die "$f: packets outside the tunnel"
  done
}

# overlay: node A's pod reaches the service; node A DNATs it to the pod on node B and
# masquerades it to its tunnel device's address; node B sees the inner packets plain.
check_overlay_service() {
  local a=$SCEN_DIR b=$SCEN_DIR/node-b f
  ovl_check_nodeb
  ovl_check_underlay 10
  for f in "$a/eth0.pcap" "$b/eth0.pcap"; do
    [[ $(pkts "$f" "ip.dst==$SVC_VIP") -eq 0 ]] || die "$f: the service address in the tunnel"
  done
  need 3 "TCP conversations to the service on node A's pod link" \
    "$(tcp_convs "$a/veth-c1.pcap" "ip.dst==$SVC_VIP")"
  need 3 "TCP conversations on node B's pod link" "$(tcp_convs "$b/veth-c1.pcap" "ip.src==$OVL_A_TUN")"
  need 2 "UDP conversations on node B's pod link" "$(udp_convs "$b/veth-c1.pcap" "ip.src==$OVL_A_TUN")"
  need 3 "ICMP echo replies on node A's pod link" "$(pkts "$a/veth-c1.pcap" "icmp.type==0 && ip.src==$SVC_VIP")"
  # Node A: DNAT to the pod on node B and MASQUERADE to the tunnel's address, every protocol.
  local ct=$a/conntrack.txt p
  for p in tcp udp icmp; do
    need 1 "$p DNAT+MASQUERADE entries on node A" "$(ct_count "$ct" "^ipv4 +2 $p " "src=$OVL_A_POD dst=$SVC_VIP " \
      "src=$OVL_B_POD dst=$OVL_A_TUN ")"
  done
  need 1 "ESTABLISHED DNAT+MASQUERADE entries on node A" "$(ct_count "$ct" ' ESTABLISHED ' "dst=$SVC_VIP ")"
  # Node B: the same connections, untranslated.
  ct=$b/conntrack.txt
  for p in tcp udp icmp; do
    need 1 "plain $p entries on node B" "$(ct_count "$ct" "^ipv4 +2 $p " "src=$OVL_A_TUN dst=$OVL_B_POD " \
      "src=$OVL_B_POD dst=$OVL_A_TUN ")"
  done
  [[ $(ct_count "$ct" "$SVC_VIP") -eq 0 ]] || die "the service address in node B's conntrack table"
}
check_overlay_vxlan() { check_overlay_service; }
check_overlay_ipip() { check_overlay_service; }

# fault-overlay-masq*: pod A calls pod B directly (no service); node A masquerades it
# into the tunnel to its tunnel device's address; node B forwards it untranslated, so
# pod B never sees pod A's address. check_overlay_masq PROTO...
check_overlay_masq() {
  local a=$SCEN_DIR b=$SCEN_DIR/node-b p
  ovl_check_nodeb
  ovl_check_underlay 5
  for p in "$@"; do
    need 1 "$p MASQUERADE entries from pod A to pod B on node A" "$(ct_count "$a/conntrack.txt" "^ipv4 +2 $p " \
      "src=$OVL_A_POD dst=$OVL_B_POD " "src=$OVL_B_POD dst=$OVL_A_TUN ")"
    need 1 "plain $p entries on node B" "$(ct_count "$b/conntrack.txt" "^ipv4 +2 $p " \
      "src=$OVL_A_TUN dst=$OVL_B_POD " "src=$OVL_B_POD dst=$OVL_A_TUN ")"
  done
  [[ $(ct_count "$a/conntrack.txt" "src=$OVL_A_POD dst=$OVL_B_POD " "src=$OVL_B_POD dst=$OVL_A_POD ") -eq 0 ]] ||
    die "an untranslated pod-to-pod entry on node A"
  [[ $(pkts "$b/veth-c1.pcap" "ip.addr==$OVL_A_POD") -eq 0 ]] || die "pod A's address on node B's pod link"
  [[ $(pkts "$a/veth-c1.pcap" "ip.dst==$OVL_B_POD") -gt 0 ]] || die "pod A did not address pod B"
}
check_fault_overlay_masq() {
  check_overlay_masq tcp
  need 3 "TCP conversations from node A's tunnel address on node B's pod link" \
    "$(tcp_convs "$SCEN_DIR/node-b/veth-c1.pcap" "ip.src==$OVL_A_TUN")"
  need 1 "ESTABLISHED entries on node A" "$(ct_count "$SCEN_DIR/conntrack.txt" ' ESTABLISHED ' "dst=$OVL_B_POD ")"
}
check_fault_overlay_masq_ipip() {
  check_overlay_masq udp icmp
  need 2 "UDP conversations from node A's tunnel address on node B's pod link" \
    "$(udp_convs "$SCEN_DIR/node-b/veth-c1.pcap" "ip.src==$OVL_A_TUN")"
  need 3 "ICMP echo replies on node A's pod link" "$(pkts "$SCEN_DIR/veth-c1.pcap" "icmp.type==0 && ip.src==$OVL_B_POD")"
  grep -q "^add cali40all-ipam-pools $OVL_A_CIDR" "$SCEN_DIR/ipsets.txt" || die "node A's pools missing from ipsets.txt"
  ! grep -q "^add cali40all-ipam-pools $OVL_B_CIDR" "$SCEN_DIR/ipsets.txt" || die "node B's pool in node A's cali40all-ipam-pools"
}

# The underlay scenarios: what crossed the network one way is what left the other
# node (VXLAN packets counted at both nodes' eth0 by direction and filter FILTER).
# ovl_crossed DIR FILTER: the same number of such packets at both ends.
ovl_crossed() {
  local a b
  a=$(pkts "$SCEN_DIR/eth0.pcap" "vxlan && $1 && $2")
  b=$(pkts "$SCEN_DIR/node-b/eth0.pcap" "vxlan && $1 && $2")
  [[ $a -eq $b ]] || die "$SCEN: '$1 && $2': $a VXLAN packets at node A, $b at node B"
}

# fault-underlay-drop: every VXLAN packet longer than OVL_UL_MAX left node B and none
# reached node A; every shorter one crossed, both ways; the small connections, DNS
# and pings were answered.
check_fault_underlay_drop() {
  local big="vxlan && ip.len > $OVL_UL_MAX"
  need 3 "VXLAN packets over $OVL_UL_MAX bytes leaving node B" \
    "$(pkts "$SCEN_DIR/node-b/eth0.pcap" "$big && ip.src==$OVL_B_UL")"
  [[ $(pkts "$SCEN_DIR/eth0.pcap" "$big") -eq 0 ]] || die "$SCEN: VXLAN packets over $OVL_UL_MAX bytes at node A"
  ovl_crossed "ip.src==$OVL_A_UL" "ip.len > 0"
  ovl_crossed "ip.src==$OVL_B_UL" "ip.len <= $OVL_UL_MAX"
  need 3 "TCP conversations on node B's pod link" "$(tcp_convs "$SCEN_DIR/node-b/veth-c1.pcap")"
  need 2 "DNS answers on node A's pod link" "$(pkts "$SCEN_DIR/veth-c1.pcap" "udp.srcport==53")"
  need 16 "ICMP echo replies on node A's pod link" "$(pkts "$SCEN_DIR/veth-c1.pcap" "icmp.type==0")"
  grep -q "ip length > $OVL_UL_MAX drop" "$SCEN_DIR/network-nft.txt" || die "$SCEN: the network's rule"
}

# fault-underlay-blocked: VXLAN from node B stopped reaching node A for a while and
# crossed before and after; everything from node A crossed; DNS answers and echo
# replies were lost, others arrived.
check_fault_underlay_blocked() {
  local b=$SCEN_DIR/node-b/eth0.pcap a=$SCEN_DIR/eth0.pcap from_b="vxlan && ip.src==$OVL_B_UL" lost
  ovl_crossed "ip.src==$OVL_A_UL" "ip.len > 0"
  lost=$(($(pkts "$b" "$from_b") - $(pkts "$a" "$from_b")))
  need 6 "VXLAN packets from node B lost" "$lost"
  need 6 "VXLAN packets from node B that crossed" "$(pkts "$a" "$from_b")"
  local v=$SCEN_DIR/veth-c1.pcap
  need 3 "DNS queries unanswered" "$(($(pkts "$v" "udp.dstport==53") - $(pkts "$v" "udp.srcport==53")))"
  need 3 "echo requests unanswered" "$(($(pkts "$v" "icmp.type==8") - $(pkts "$v" "icmp.type==0")))"
  need 10 "DNS answers" "$(pkts "$v" "udp.srcport==53")"
  need 10 "echo replies" "$(pkts "$v" "icmp.type==0")"
  grep -q "ip saddr $OVL_B_UL udp dport $OVL_PORT drop" "$SCEN_DIR/network-nft.txt" || die "$SCEN: the network's rule"
}

# fault-vxlan-mtu: the pod's full-size segments left pod B and never node B's eth0,
# nothing over 1500 bytes and no fragment on either underlay capture, no ICMP on
# either pod link; the small exchanges and pings crossed.
check_fault_vxlan_mtu() {
  local b=$SCEN_DIR/node-b f
  need 3 "full-size segments from pod B" "$(pkts "$b/veth-c1.pcap" "ip.src==$OVL_B_POD && ip.len==1500 && ip.flags.df==1")"
  [[ $(pkts "$b/eth0.pcap" "vxlan && ip.len > 1450") -eq 0 ]] || die "$SCEN: full-size segments in the tunnel"
  for f in "$SCEN_DIR/eth0.pcap" "$b/eth0.pcap"; do
    [[ $(pkts "$f" "ip.len > 1500 || ip.flags.mf==1 || ip.frag_offset > 0") -eq 0 ]] || die "$SCEN: $f: fragments"
  done
  for f in "$SCEN_DIR/veth-c1.pcap" "$b/veth-c1.pcap"; do
    [[ $(pkts "$f" "icmp.type==3") -eq 0 ]] || die "$SCEN: $f: ICMP errors"
  done
  need 2 "ICMP echo replies on node A's pod link" "$(pkts "$SCEN_DIR/veth-c1.pcap" "icmp.type==0")"
  grep -q 'df set' "$b/links.txt" || die "$SCEN: vxlan0 without df set"
}

# ---------------------------------------------------------------- main

record_one() {
  local s=$1 start=$SECONDS
  log "scenario $s"
  SCEN=$s
  SCEN_DIR=$WORK/out/$s
  LOGS=$WORK/logs/$s
  SYNC=$WORK/sync/$s
  mkdir -p "$SCEN_DIR" "$LOGS" "$SYNC"
  local v6=0
  is_v6 "$s" && v6=1
  # A scenario with a topology of its own (topo_<name>) builds it instead.
  if declare -F "topo_${s//-/_}" >/dev/null; then "topo_${s//-/_}"; else topo_up "$v6"; fi
  "scenario_${s//-/_}"
  topo_down
  check_addresses
  check_counts
  "check_${s//-/_}"
  mkdir -p "$OUT"
  rm -rf "${OUT:?}/$s"
  cp -r "$SCEN_DIR" "$OUT/$s"
  log "scenario $s recorded in $((SECONDS - start)) s: $(du -sh "$OUT/$s" | cut -f1)"
}

ensure_tools
mkdir -p "$(dirname "$LOCK")"
exec 9>"$LOCK"
flock -n 9 || die "another recording holds $LOCK"
WORK=$(mktemp -d /tmp/natcheck-lab.XXXXXX)
failed=()
for s in "${SELECTED[@]}"; do
  # Each scenario runs in a subshell with its own cleanup trap. `set -e` is turned
  # on again inside: it would be ignored in a subshell whose status is tested.
  # It runs in the background and is waited for, so that a signal sent to this
  # process alone is handled at once (bash defers traps while a foreground child
  # runs) and forwarded to it; its own trap then cleans up.
  set +e
  (
    set -e
    trap scenario_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    record_one "$s"
  ) &
  SCEN_PID=$!
  wait "$SCEN_PID"
  rc=$?
  SCEN_PID=""
  set -e
  if [[ $rc -ne 0 ]]; then
    [[ $rc -lt 128 ]] || exit "$rc"
    failed+=("$s")
    [[ $KEEP_GOING == 1 ]] || break
  fi
done
[[ ${#failed[@]} -eq 0 ]] || die "failed scenarios: ${failed[*]}"
log "done: ${SELECTED[*]}"
