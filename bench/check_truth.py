#!/usr/bin/env python3
"""Checks `natcheck correlate --format json` on a generated pair against the pair's
truth.tsv (written by examples/gen_pair.rs), at any size:

    cargo run --release --example gen_pair -- --out /tmp/pair --packets 1000000
    target/release/natcheck correlate --format json /tmp/pair/docker0.pcap \\
        /tmp/pair/eth0.pcap > /tmp/pair/report.json
    bench/check_truth.py /tmp/pair/truth.tsv /tmp/pair/report.json

Every generated connection must be one natcheck connection seen at docker0 then eth0
with the generated tuples, an SNAT, the generated port reallocation (and the connection
that held the wanted port), and all of its packets matched in both directions.
Prints a summary; exits 1 listing the first mismatches. tests/integration/bench_synth.rs makes the
same checks on small pairs.
"""

import json
import sys


def hop_key(hop):
    """A hop's tuple written as truth.tsv writes it."""
    if hop["proto"] == "icmp":
        return f'{hop["src"]} id={hop["sport"]}->{hop["dst"]}'
    return f'{hop["src"]}:{hop["sport"]}->{hop["dst"]}:{hop["dport"]}'


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} TRUTH.tsv REPORT.json")
    with open(sys.argv[1]) as f:
        header = f.readline().rstrip("\n").split("\t")
        truth = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f]
    with open(sys.argv[2]) as f:
        doc = json.load(f)

    problems = []
    conns = doc["connections"]
    by_inside = {}
    inside_of = {}
    for c in conns:
        hops = c["hops"]
        if [h["point"] for h in hops] != ["docker0", "eth0"]:
            problems.append(f'{c["id"]}: hops {[h["point"] for h in hops]}')
            continue
        key = (c["proto"], hop_key(hops[0]))
        by_inside[key] = c
        inside_of[c["id"]] = hop_key(hops[0])

    for t in truth:
        what = f'{t["proto"]} {t["inside"]}'
        c = by_inside.get((t["proto"], t["inside"]))
        if c is None:
            problems.append(f"{what}: no connection")
            continue
        if hop_key(c["hops"][1]) != t["outside"]:
            problems.append(f'{what}: eth0 {hop_key(c["hops"][1])}, want {t["outside"]}')
        tr = c["translations"]
        if len(tr) != 1 or tr[0]["kind"] != "snat":
            problems.append(f"{what}: translations {[x['kind'] for x in tr]}")
            continue
        tr = tr[0]
        if tr["port_reallocated"] != (t["port_reallocated"] == "true"):
            problems.append(f'{what}: port_reallocated {tr["port_reallocated"]}')
        ev = tr["evidence"]
        want = (int(t["packets_out"]), int(t["packets_in"]))
        if (ev["matched_fwd"], ev["matched_rev"]) != want:
            problems.append(f'{what}: matched {ev["matched_fwd"]}/{ev["matched_rev"]}, want {want}')
        unmatched = {k: v["packets"] for k, v in tr["unmatched"].items() if v["packets"]}
        if unmatched:
            problems.append(f"{what}: unmatched {unmatched}")
        realloc = tr["port_realloc"]
        holder = t.get("holder", "-")
        if holder == "-":
            if realloc is not None:
                problems.append(f"{what}: unexpected port_realloc {realloc}")
        elif realloc is None:
            problems.append(f"{what}: no port_realloc, holder {holder}")
        elif inside_of.get(realloc.get("colliding")) != holder:
            got = inside_of.get(realloc.get("colliding"))
            problems.append(f"{what}: holder {got}, want {holder}")

    if len(conns) != len(truth):
        problems.append(f"{len(conns)} connections reported, {len(truth)} generated")
    moved = sum(t["port_reallocated"] == "true" for t in truth)
    reported = doc["summary"].get("port_reallocations")
    if reported != moved:
        problems.append(f"summary: {reported} port reallocations, {moved} generated")

    print(
        f"{len(truth)} connections generated, {len(conns)} reported, "
        f"{moved} port reallocations; {len(problems)} problems"
    )
    for p in problems[:20]:
        print("  " + p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
