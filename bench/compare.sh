#!/usr/bin/env bash
# bench/compare.sh: natcheck beside tshark, tcpdump and cat on one large generated
# capture pair, wall time and peak memory of each run, as a table, then the ratios the
# performance targets are stated in.
#
# Generates a docker0/eth0 MASQUERADE pair with examples/gen_pair.rs (deterministic: the
# same size gives the same files), then times with GNU time (`/usr/bin/time -v`):
#   natcheck flows       on one file and on both, default threads and -j 1
#   natcheck correlate   on the pair (table and JSON output), default threads and -j 1
#   tshark -q -z conv,tcp on each file (the part of `natcheck flows` tshark also does)
#   tcpdump -nn -r       on each file, output to /dev/null (read, decode and print)
#   tcpdump -r -w        on each file, written to /dev/null (read and copy: the floor)
#   cat                  both files, to /dev/null
# and peak memory at twice the packets per connection: a second pair with the same
# number of connections, each exchange repeated (gen_pair --connections N --exchanges 2).
# Every run is repeated (best wall and CPU times kept: the least disturbed by the rest
# of the machine) after one untimed read of the files, so all read from the page
# cache. packets_per_s counts the packets of every input of the run.
#
# Usage: bench/compare.sh [-n PACKETS] [-r REPEAT] [-d DIR] [-k]
#   -n PACKETS  packets per capture (default 1000000)
#   -r REPEAT   runs of each command (default 3)
#   -d DIR      where the pair is written (default /tmp/natcheck-compare); reused when
#               it already holds a pair of this size
#   -k          keep the pair afterwards (default: remove it)
# Results also go to DIR/../natcheck-compare.tsv. Missing tshark/tcpdump/time are
# installed with apt-get when running as root, else their rows are skipped.
set -euo pipefail

packets=1000000
repeat=3
dir=/tmp/natcheck-compare
keep=0
while getopts "n:r:d:kh" opt; do
    case $opt in
        n) packets=$OPTARG ;;
        r) repeat=$OPTARG ;;
        d) dir=$OPTARG ;;
        k) keep=1 ;;
        h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) exit 2 ;;
    esac
done
[[ $packets =~ ^[0-9]+$ && $packets -gt 0 ]] || { echo "compare.sh: -n wants a positive number" >&2; exit 2; }
[[ $repeat =~ ^[0-9]+$ && $repeat -gt 0 ]] || { echo "compare.sh: -r wants a positive number" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
results=$(dirname "$dir")/natcheck-compare.tsv
work=$(mktemp -d)
cleanup() {
    rm -rf "$work"
    if [[ $keep == 0 ]]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

# Peers: installed when missing and possible, else skipped.
missing=()
command -v tshark >/dev/null || missing+=(tshark)
command -v tcpdump >/dev/null || missing+=(tcpdump)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        # tshark asks whether non-root users may capture: answer no, non-interactively.
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
        apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null ||
            echo "compare.sh: could not install ${missing[*]}" >&2
    else
        echo "compare.sh: ${missing[*]} missing and not root: those rows are skipped" >&2
    fi
fi
if [[ ! -x /usr/bin/time ]]; then
    echo "compare.sh: GNU time (/usr/bin/time) is needed for wall time and peak memory" >&2
    exit 1
fi

echo "building natcheck and gen_pair (release)" >&2
cargo build --release --quiet --bin natcheck --example gen_pair
natcheck=$root/target/release/natcheck
gen=$root/target/release/examples/gen_pair

# The stamp names what was asked and holds the packets written per file (the
# generator finishes the connections still open, so a few more than asked) and the
# connections.
stamp="packets=$packets seed=1"
a=$dir/docker0.pcap
b=$dir/eth0.pcap
if [[ -f $dir/stamp && $(head -1 "$dir/stamp") == "$stamp" && -n $(sed -n 3p "$dir/stamp") && -f $a && -f $b ]]; then
    echo "reusing $dir ($stamp)" >&2
else
    rm -f "$dir/stamp"
    summary=$("$gen" --out "$dir" --packets "$packets" --no-truth)
    echo "$summary" >&2
    written=$(sed -n 's/.*: \([0-9]*\) packets per side.*/\1/p' <<<"$summary")
    connections=$(sed -n 's/.*, \([0-9]*\) connections over.*/\1/p' <<<"$summary")
    printf "%s\n%s\n%s\n" "$stamp" "$written" "$connections" >"$dir/stamp"
fi
per_file=$(sed -n 2p "$dir/stamp")
[[ $per_file =~ ^[0-9]+$ ]] || { echo "compare.sh: no packet count in $dir/stamp" >&2; exit 1; }
cat "$a" "$b" >/dev/null # warm the page cache

rows=()
# run LABEL INPUT PACKETS CMD...: times CMD `repeat` times, keeps the best wall time,
# the least CPU time and the largest peak RSS, and adds a row. Output goes to /dev/null (as tcpdump's
# would in a pipeline that only counts), stderr to $work/err.
run() {
    local label=$1 input=$2 n=$3
    shift 3
    local best="" cpu_best="" rss=0 i wall cpu kb status t0 t1
    last_wall="" last_rss=0
    for ((i = 0; i < repeat; i++)); do
        status=0
        t0=$(date +%s%N)
        /usr/bin/time -v -o "$work/time" "$@" >/dev/null 2>"$work/err" || status=$?
        t1=$(date +%s%N)
        # natcheck exits 1 on findings; anything else (2: input problems, or a crash)
        # would mean the run did not do the whole job.
        if [[ $status != 0 && ! ($1 == "$natcheck" && $status == 1) ]]; then
            echo "compare.sh: '$label' on $input exited $status:" >&2
            tail -5 "$work/err" >&2
            return 1
        fi
        # Wall time to the millisecond (GNU time's own is in hundredths), peak RSS
        # from GNU time.
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
        # CPU time (user + system) suffers much less than wall time when other work
        # competes for the cores.
        cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$work/time")
        kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
        if [[ -z $best ]] || awk "BEGIN {exit !($wall < $best)}"; then best=$wall; fi
        if [[ -z $cpu_best ]] || awk "BEGIN {exit !($cpu < $cpu_best)}"; then cpu_best=$cpu; fi
        if ((kb > rss)); then rss=$kb; fi
    done
    last_wall=$best last_rss=$rss
    rows+=("$(awk -v l="$label" -v i="$input" -v w="$best" -v c="$cpu_best" -v n="$n" -v k="$rss" 'BEGIN {
        printf "%s\t%s\t%.3f\t%s\t%.2f\t%.0f\n", l, i, w, (w > 0 ? sprintf("%.0f", n / w) : "-"), c, k / 1024 }')")
    echo "  $label ($input): ${best}s wall, ${cpu_best}s cpu" >&2
}

# Other work on the machine skews every row: the load average goes in the summary.
load_before=$(cut -d' ' -f1 /proc/loadavg)
echo "timing, best of $repeat" >&2
both=$((2 * per_file))
run "natcheck flows" docker0 "$per_file" "$natcheck" flows "$a"
run "natcheck flows" both "$both" "$natcheck" flows "$a" "$b"
flows_wall=$last_wall
run "natcheck -j 1 flows" both "$both" "$natcheck" -j 1 flows "$a" "$b"
run "natcheck correlate" both "$both" "$natcheck" correlate "$a" "$b"
table_wall=$last_wall
run "natcheck -j 1 correlate" both "$both" "$natcheck" -j 1 correlate "$a" "$b"
run "natcheck correlate --format json" both "$both" "$natcheck" correlate --format json "$a" "$b"
json_wall=$last_wall rss1=$last_rss
if command -v tshark >/dev/null; then
    run "tshark -n -q -z conv,tcp" docker0 "$per_file" tshark -n -q -z conv,tcp -r "$a"
    tshark_w=$last_wall
    run "tshark -n -q -z conv,tcp" eth0 "$per_file" tshark -n -q -z conv,tcp -r "$b"
    tshark_w=$(awk -v a="$tshark_w" -v b="$last_wall" 'BEGIN {printf "%.3f", a + b}')
else
    echo "  tshark: not installed, skipped" >&2
fi
if command -v tcpdump >/dev/null; then
    run "tcpdump -nn -r" docker0 "$per_file" tcpdump -nn -r "$a"
    run "tcpdump -nn -r" eth0 "$per_file" tcpdump -nn -r "$b"
    # -Z root: tcpdump would otherwise give the file it writes (/dev/null) to its user.
    run "tcpdump -r -w /dev/null" docker0 "$per_file" tcpdump -Z root -r "$a" -w /dev/null
    tcpdump_w=$last_wall
    run "tcpdump -r -w /dev/null" eth0 "$per_file" tcpdump -Z root -r "$b" -w /dev/null
    tcpdump_w=$(awk -v a="$tcpdump_w" -v b="$last_wall" 'BEGIN {printf "%.3f", a + b}')
else
    echo "  tcpdump: not installed, skipped" >&2
fi
run "cat" both "$both" cat "$a" "$b"

# Twice the packets per connection, the same connections: peak memory should follow
# the connections, not the packets.
conns=$(sed -n 3p "$dir/stamp")
dir2=$dir/exchanges-2
stamp2="connections=$conns exchanges=2 seed=1"
if [[ ! (-f $dir2/stamp && $(head -1 "$dir2/stamp") == "$stamp2") ]]; then
    mkdir -p "$dir2"
    summary=$("$gen" --out "$dir2" --connections "$conns" --exchanges 2 --no-truth)
    echo "$summary" >&2
    printf "%s\n%s\n" "$stamp2" "$(sed -n 's/.*: \([0-9]*\) packets per side.*/\1/p' <<<"$summary")" >"$dir2/stamp"
fi
per_file2=$(sed -n 2p "$dir2/stamp")
cat "$dir2/docker0.pcap" "$dir2/eth0.pcap" >/dev/null
run "natcheck correlate --format json" "both, 2x packets/conn" $((2 * per_file2)) \
    "$natcheck" correlate --format json "$dir2/docker0.pcap" "$dir2/eth0.pcap"
rss2=$last_rss

{
    printf "tool\tinput\twall_s\tpackets_per_s\tcpu_s\tmax_rss_mib\n"
    printf "%s\n" "${rows[@]}"
} >"$results"
echo
echo "$per_file packets per file ($(du -m "$a" | cut -f1) MiB each), $(nproc) cores," \
    "load average $load_before before and $(cut -d' ' -f1 /proc/loadavg) after," \
    "natcheck $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)"
column -t -s $'\t' "$results"
echo "(also in $results)"
echo
# ratio NAME NUMERATOR DENOMINATOR TARGET: one line of the targets.
ratio() {
    awk -v n="$1" -v a="$2" -v b="$3" -v t="$4" 'BEGIN {
        if (a == "" || b == "" || b == 0) { printf "%-58s -\n", n; exit }
        printf "%-58s %7.2f   (target %s)\n", n, a / b, t }'
}
echo "ratios (best wall times; peak RSS)"
ratio "correlate --format json / tcpdump -r -w, both files" "$json_wall" "${tcpdump_w:-}" "<= 2"
ratio "correlate (table) / tcpdump -r -w, both files" "$table_wall" "${tcpdump_w:-}" "<= 2"
ratio "tshark -z conv,tcp, both files / correlate --format json" "${tshark_w:-}" "$json_wall" "> 20"
ratio "flows, both files / tcpdump -r -w, both files" "$flows_wall" "${tcpdump_w:-}" "<= 1"
ratio "packets per connection, 2x pair / 1x pair" "$per_file2" "$per_file" "about 2"
ratio "peak RSS of correlate, 2x pair / 1x pair" "$rss2" "$rss1" "< 1.10"
awk -v w="$json_wall" -v n="$both" 'BEGIN {printf "%-58s %7.2f M   (target >= 3)\n", "correlate --format json, packets per second", n / w / 1e6}'
