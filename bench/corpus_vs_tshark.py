#!/usr/bin/env python3
"""Compares natcheck's flow tables with tshark's TCP and UDP conversation tables on every
capture of one or more corpus directories, and says why they differ where they do.

    bench/corpus_vs_tshark.py --csv /tmp/corpus.csv \\
        ../shared/corpus/suricata-verify ../shared/corpus/tcpdump-tests

For each capture (any file under the directories ending .pcap, .pcapng, .cap, .ntar or
.gz, in sorted order) it runs

    tshark -n -r FILE -d udp.port==8472,vxlan -q -z conv,tcp -z conv,udp
    natcheck flows --all --format json FILE

and compares the two per (protocol, endpoint pair) with the packet count in each
direction, leaving out of tshark's table the outer UDP conversations of the tunnels
natcheck opened (the `tunnel` and `reply_tunnel` of its flows: natcheck lists the packets inside them
instead). Rows of one pair are added up on both sides, so a tuple that one tool splits
into several conversations and the other does not still compares equal when the packets
are the same. Each capture lands in one class:

    equal                  the same conversations with the same packet counts
    differs                anything else; the likely cause is named (see below)
    natcheck-unsupported   natcheck skipped frames of a link type it does not decode
                           (its `skipped` counts say "unsupported link type"), even
                           when both tables are empty
    tshark-error           tshark could not read the file at all
    natcheck-error         natcheck crashed, hung or printed no JSON (never expected)

For a differing capture, tshark dissects it once more with `-T fields` (the protocol
stack of every frame, its addresses and ports at every layer, fragment fields, lengths
and an MD5 of its bytes). The frames that touch a conversation the two tools disagree on
are tagged by what they carry (GRE, VXLAN, an IP fragment, an ICMP error's quoted
header, a cut or malformed packet, a duplicate, ...); the cause is the first tag in
CAUSES order, or "unknown".

Prints a summary (captures per class, differing captures per cause, for each corpus)
and with --csv writes one row per capture. Captures whose sums agree but where one
tool lists a pair as more rows than the other (tshark's TCP streams split on port
reuse, natcheck's flows on a new SYN after a close) are equal, counted apart as "split
differently". Two more lines count, over all captures, what natcheck must never list:
TCP/UDP flows from port 0 to port 0 that tshark does not have (a fragment or a cut
header taken for a whole packet) and ICMP flows reported as errors whose type is
informational. Needs Python 3.8+, tshark, and a built natcheck (--natcheck, default
target/debug/natcheck or $NATCHECK). docs/corpus.md has the figures and the reasons.
"""

import argparse
import collections
import concurrent.futures
import csv
import json
import os
import re
import subprocess
import sys

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".ntar", ".gz")

# Causes of a difference, most specific first. The first that tags an implicated frame
# names the cause of a differing capture.
CAUSES = [
    # Tunnels: tshark counts the inner conversations too, natcheck only the outer packet.
    "gre",
    "erspan",
    "vxlan",
    "geneve",
    "teredo",
    "6in4",
    "4in6",
    "ip-in-ip",
    "l2tp",
    "gtp",
    "capwap",
    "etherip",
    "nsh",
    "other-tunnel",
    # Link-layer encapsulations between Ethernet and IP.
    "mpls",
    "pppoe",
    "pbb",
    "etag",
    "macsec",
    # Where the two tools read the same packet differently.
    "source-route",
    "gso-length",
    "icmp-embedded",
    "ip-fragments",
    "malformed",
    "udp-length",
    "bad-ip-length",
    "link-type-mismatch",
    "snaplen",
    "file-damaged",
    "port-reuse",
    "duplicates",
    "qinq",
    "vlan",
    "non-ip",
]

TUNNEL_TOKENS = {
    "gre": "gre",
    "erspan": "erspan",
    "vxlan": "vxlan",
    "vxlan_gpe": "vxlan",
    "geneve": "geneve",
    "teredo": "teredo",
    "l2tp": "l2tp",
    "gtp": "gtp",
    "gtpv2": "gtp",
    "capwap": "capwap",
    "capwap.data": "capwap",
    "etherip": "etherip",
    "nsh": "nsh",
    "mpls": "mpls",
    "pppoes": "pppoe",
    "ieee8021ah": "pbb",
    "etag": "etag",
    "macsec": "macsec",
}

FIELDS = [
    "frame.number",
    "frame.protocols",
    "frame.len",
    "frame.cap_len",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "ip.flags.mf",
    "ip.frag_offset",
    "ip.opt.type",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "tcp.analysis.reused_ports",
    "frame.md5_hash",
    # Last: expert messages may hold commas, the aggregator.
    "_ws.expert.message",
]

# tshark's expert messages that say why it stopped dissecting a packet.
EXPERT_TAGS = [
    ("segmentation offload", "gso-length"),
    ("TSO", "gso-length"),
    ("Bad length value 0 < 8", "gso-length"),
    ("Bad length value", "udp-length"),
    ("Bogus IP length", "bad-ip-length"),
    ("Bogus IPv6 length", "bad-ip-length"),
    ("Malformed Packet", "malformed"),
]

# IPv4 options that name a later destination (loose and strict source route).
SOURCE_ROUTE_OPTIONS = {"131", "137"}

CONV_LINE = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+")


def run(cmd, timeout):
    """(returncode, stdout, stderr), or (None, '', reason) when it did not finish."""
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout}s"
    except OSError as e:
        return None, "", str(e)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    return p.returncode, out, err


def add(convs, proto, a, b, ab, ba):
    """Adds one row (conversation or flow) with packets a->b and b->a to the sorted
    endpoint pair: its value is (packets a->b, packets b->a, rows)."""
    if a > b:
        a, b, ab, ba = b, a, ba, ab
    cur = convs.get((proto, a, b), (0, 0, 0))
    convs[(proto, a, b)] = (cur[0] + ab, cur[1] + ba, cur[2] + 1)


def tshark_convs(tshark, path, timeout):
    """tshark's TCP and UDP conversations, or (None, why) when it read nothing."""
    cmd = [tshark, "-n", "-r", path, "-d", "udp.port==8472,vxlan", "-q", "-z", "conv,tcp", "-z", "conv,udp"]
    rc, out, err = run(cmd, timeout)
    if rc is None or "TCP Conversations" not in out:
        return None, first_line(err) or f"exit {rc}"
    convs, proto = {}, None
    for line in out.splitlines():
        if line.startswith("TCP Conversations"):
            proto = "tcp"
        elif line.startswith("UDP Conversations"):
            proto = "udp"
        m = CONV_LINE.match(line)
        if m and proto:
            # A <-> B   frames B->A (the "<-" column), bytes, frames A->B ("->"), bytes
            add(convs, proto, m.group(1), m.group(2), int(m.group(4)), int(m.group(3)))
    return convs, first_line(err) if rc != 0 else ""


def first_line(text):
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("Running as user"):
            return line
    return ""


def natcheck_convs(natcheck, path, timeout):
    """natcheck's TCP and UDP flows, its skip reasons and warnings; or None and why."""
    rc, out, err = run([natcheck, "flows", "--all", "--format", "json", path], timeout)
    if rc not in (0, 2):
        return None, f"exit {rc}: {first_line(err)}"
    try:
        doc = json.loads(out)
    except ValueError:
        return None, f"no JSON (exit {rc}): {first_line(err)}"
    convs = {}
    tunnels = set()
    for point in doc.get("points", []):
        for f in point.get("flows", []):
            if f["proto"] in ("tcp", "udp"):
                a = f'{f["src"]}:{f["sport"]}'
                b = f'{f["dst"]}:{f["dport"]}'
                add(convs, f["proto"], a, b, f["packets_fwd"], f["packets_rev"])
            for t in (f.get("tunnel"), f.get("reply_tunnel")):
                if t and t["sport"] is not None:
                    a, b = f'{t["src"]}:{t["sport"]}', f'{t["dst"]}:{t["dport"]}'
                    tunnels.add(("udp", min(a, b), max(a, b)))
    # ICMP types that are errors quoting a packet (RFC 792, RFC 4443); any other type
    # in an `icmp_error` would be an informational message reported as an error.
    errors = {"icmp": {3, 4, 5, 11, 12}, "icmpv6": {1, 2, 3, 4}}
    info_as_error = sum(
        1
        for point in doc.get("points", [])
        for f in point.get("flows", [])
        if "icmp_error" in f and f["icmp_error"]["icmp_type"] not in errors.get(f["proto"], ())
    )
    skipped = collections.Counter()
    for inp in doc.get("inputs", []):
        for reason, n in inp.get("skipped", {}).items():
            skipped[reason] += n
    info = {
        "skipped": skipped,
        "warnings": [w.get("message", "") for w in doc.get("warnings", [])],
        "linktypes": sorted({p.get("linktype", "") for p in doc.get("points", [])}),
        "info_as_error": info_as_error,
        "tunnels": tunnels,
    }
    return convs, info


def frames_view(tshark, path, timeout):
    """One dict per frame from `tshark -T fields`, or [] when tshark fails."""
    cmd = [tshark, "-n", "-r", path, "-o", "frame.generate_md5_hash:TRUE", "-T", "fields"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=\t"]
    for f in FIELDS:
        cmd += ["-e", f]
    rc, out, _ = run(cmd, timeout)
    if rc is None:
        return []
    frames = []
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) != len(FIELDS):
            continue
        frames.append({k: (v.split(",") if v else []) for k, v in zip(FIELDS, cols)})
    return frames


def layers(fr):
    """The frame's protocol tokens; for each IP layer (token index, version, src, dst,
    next protocol); for each TCP/UDP layer the conversation key tshark gives it (proto,
    endpoint a, endpoint b), endpoints as tshark prints them, in packet direction."""
    tokens = fr["frame.protocols"][0].split(":") if fr["frame.protocols"] else []
    seen = {"ip": 0, "ipv6": 0, "tcp": 0, "udp": 0}
    last_ip, ips, keys = None, [], []
    for i, t in enumerate(tokens):
        if t in ("ip", "ipv6"):
            k = seen[t]
            src, dst = fr[f"{t}.src"], fr[f"{t}.dst"]
            nxt = fr["ip.proto" if t == "ip" else "ipv6.nxt"]
            last_ip = (src[k], dst[k]) if k < len(src) and k < len(dst) else None
            ips.append((i, t, *(last_ip or (None, None)), nxt[k] if k < len(nxt) else None))
            seen[t] += 1
        elif t in ("tcp", "udp"):
            k = seen[t]
            sp, dp = fr[f"{t}.srcport"], fr[f"{t}.dstport"]
            if last_ip and k < len(sp) and k < len(dp):
                keys.append((t, f"{last_ip[0]}:{sp[k]}", f"{last_ip[1]}:{dp[k]}"))
            seen[t] += 1
    return tokens, ips, keys


# What the IP header before another one must name for the pair to be a tunnel.
INNER_IP = {("ip", "ipv6"): ("41", "6in4"), ("ipv6", "ip"): ("4", "4in6"), ("ip", "ip"): ("4", "ip-in-ip"), ("ipv6", "ipv6"): ("41", "ip-in-ip")}


def tags_of(fr, tokens, ips, dup):
    """What a frame carries that may explain a difference."""
    tags = set()
    if not ips:
        tags.add("non-ip")
    for t in tokens:
        if t in TUNNEL_TOKENS:
            tags.add(TUNNEL_TOKENS[t])
        if t in ("_ws.malformed", "_ws.short"):
            tags.add("malformed")
        if t == "ipv6.routing":
            tags.add("source-route")
    vlans = tokens.count("vlan")
    if vlans == 1:
        tags.add("vlan")
    elif vlans > 1:
        tags.add("qinq")
    for (prev, pv, psrc, _, pnxt), (cur, cv, *_) in zip(ips, ips[1:]):
        between = tokens[prev + 1 : cur]
        if any(t in ("icmp", "icmpv6") for t in between):
            tags.add("icmp-embedded")
        elif not between and psrc is None:
            # tshark's IPv4 dissector handing a version-6 packet to IPv6: the link
            # type announced one version and the packet is the other.
            tags.add("link-type-mismatch")
        elif not between:
            want, tag = INNER_IP[(pv, cv)]
            tags.add(tag if pnxt == want else "ip-in-ip")
        elif not any(t in TUNNEL_TOKENS for t in between):
            carrier = [t for t in between if t not in ("eth", "ethertype", "vlan", "llc", "data")]
            tags.update(["other-tunnel", "via:" + (carrier or between)[-1]])
    if "1" in fr["ip.flags.mf"] or any(v not in ("0", "") for v in fr["ip.frag_offset"]):
        tags.add("ip-fragments")
    if fr["ipv6.fraghdr.offset"] or fr["ipv6.fraghdr.more"]:
        tags.add("ip-fragments")
    if SOURCE_ROUTE_OPTIONS & set(fr["ip.opt.type"]):
        tags.add("source-route")
    expert = ",".join(fr["_ws.expert.message"])
    for needle, tag in EXPERT_TAGS:
        if needle in expert:
            tags.add(tag)
            break
    if fr["frame.len"] and fr["frame.cap_len"] and fr["frame.len"] != fr["frame.cap_len"]:
        tags.add("snaplen")
    if fr["tcp.analysis.reused_ports"]:
        tags.add("port-reuse")
    if dup:
        tags.add("duplicates")
    return tags


def explain(tshark, path, diff_keys, timeout, tshark_note):
    """The cause of a difference and every tag seen on the frames involved: those with
    a TCP/UDP layer on a conversation the tools disagree on, and those with no TCP/UDP
    layer tshark could read between the addresses of one (natcheck may have read it)."""
    frames = frames_view(tshark, path, timeout)
    pairs = {tuple(sorted((a.rsplit(":", 1)[0], b.rsplit(":", 1)[0]))) for _, a, b in diff_keys}
    tags, all_tags, hashes = set(), set(), set()
    for fr in frames:
        md5 = fr["frame.md5_hash"][0] if fr["frame.md5_hash"] else None
        dup = md5 in hashes
        if md5:
            hashes.add(md5)
        tokens, ips, keys = layers(fr)
        ftags = tags_of(fr, tokens, ips, dup)
        all_tags |= ftags
        hit = any((p, *sorted((a, b))) in diff_keys for p, a, b in keys)
        if not keys and not hit:
            hit = any(tuple(sorted((s, d))) in pairs for _, _, s, d, _ in ips if s)
        if hit:
            tags |= ftags
    if any(w in tshark_note for w in ("cut short", "damaged", "corrupt")):
        tags.add("file-damaged")
        all_tags.add("file-damaged")
    cause = next((c for c in CAUSES if c in tags), None)
    if cause is None:
        cause = next((c for c in CAUSES if c in all_tags), "unknown")
    return cause, sorted(tags or all_tags)


def compare(tshark, natcheck, corpus, root, path, timeout):
    """One CSV row for one capture."""
    row = {"corpus": corpus, "capture": os.path.relpath(path, root), "class": "", "cause": ""}
    row.update(tags="", tshark_convs="", natcheck_convs="", only_tshark="", only_natcheck="")
    row.update(counts_differ="", split_differs="", zero_port_flows="", icmp_info_as_error="")
    row.update(linktypes="", detail="")
    t, tnote = tshark_convs(tshark, path, timeout)
    n, info = natcheck_convs(natcheck, path, timeout)
    if n is None:
        row.update({"class": "natcheck-error", "detail": info})
        return row
    row["linktypes"] = " ".join(info["linktypes"])
    row["icmp_info_as_error"] = info["info_as_error"]
    unsupported = sorted(r for r in info["skipped"] if r.startswith("unsupported link type"))
    if t is None:
        row.update({"class": "tshark-error", "detail": tnote})
        return row
    # The outer UDP conversations of the tunnels natcheck opened: natcheck lists the
    # packets inside them instead (tshark lists both).
    t = {k: v for k, v in t.items() if k in n or k not in info["tunnels"]}
    row["tshark_convs"], row["natcheck_convs"] = len(t), len(n)
    only_t = sorted(k for k in t if k not in n)
    only_n = sorted(k for k in n if k not in t)
    counts = sorted(k for k in t if k in n and t[k][:2] != n[k][:2])
    split = sorted(k for k in t if k in n and t[k][:2] == n[k][:2] and t[k][2] != n[k][2])
    row.update(only_tshark=len(only_t), only_natcheck=len(only_n), counts_differ=len(counts))
    row["split_differs"] = len(split)
    # TCP/UDP flows from port 0 to port 0 that tshark does not list: what a fragment
    # or a cut header taken for a whole packet would look like.
    row["zero_port_flows"] = sum(a.endswith(":0") and b.endswith(":0") for _, a, b in only_n)
    if unsupported:
        row.update({"class": "natcheck-unsupported", "detail": "; ".join(unsupported)})
        return row
    if not (only_t or only_n or counts):
        row["class"] = "equal"
        if split:
            row["detail"] = "; ".join(f"{p} {a} {b}: tshark {t[(p, a, b)][2]} rows, natcheck {n[(p, a, b)][2]} flows" for p, a, b in split[:3])
        return row
    diff = set(only_t) | set(only_n) | set(counts)
    cause, tags = explain(tshark, path, diff, timeout, tnote)
    shown = [f"{p} {a} {b} tshark {t.get((p, a, b), ())[:2]} natcheck {n.get((p, a, b), ())[:2]}" for p, a, b in sorted(diff)[:3]]
    skips = ", ".join(f"{r}: {c}" for r, c in sorted(info["skipped"].items()))
    detail = "; ".join(shown + ([f"natcheck skipped {skips}"] if skips else []) + ([tnote] if tnote else []))
    row.update({"class": "differs", "cause": cause, "tags": " ".join(tags), "detail": detail})
    return row


def captures(dirs):
    """(corpus name, corpus dir, capture path) for every capture, sorted."""
    out = []
    for d in dirs:
        d = os.path.normpath(d)
        for base, subdirs, files in os.walk(d):
            subdirs.sort()
            for f in sorted(files):
                if f.lower().endswith(CAPTURE_SUFFIXES):
                    out.append((os.path.basename(d), d, os.path.join(base, f)))
    return out


def summary(rows):
    """The summary table: captures per class and differing captures per cause."""
    corpora = sorted({r["corpus"] for r in rows})
    classes = ["equal", "differs", "natcheck-unsupported", "tshark-error", "natcheck-error"]
    causes = sorted({r["cause"] for r in rows if r["class"] == "differs"}, key=cause_order)
    head = ["", *corpora, "total"]
    lines = [["captures", *[sum(r["corpus"] == c for r in rows) for c in corpora], len(rows)]]
    for cl in classes:
        lines.append([cl, *[count(rows, c, "class", cl) for c in corpora], count(rows, None, "class", cl)])
        if cl == "equal":
            split = [r for r in rows if r["class"] == "equal" and r["split_differs"]]
            lines.append(["  split differently", *[sum(r["corpus"] == c for r in split) for c in corpora], len(split)])
        if cl == "differs":
            for cause in causes:
                lines.append([f"  {cause}", *[count(rows, c, "cause", cause) for c in corpora], count(rows, None, "cause", cause)])
    for field, what in [("zero_port_flows", "natcheck 0->0 flows tshark lacks"), ("icmp_info_as_error", "natcheck ICMP info as error")]:
        per = [sum(int(r[field] or 0) for r in rows if r["corpus"] == c) for c in corpora]
        lines.append([what, *per, sum(per)])
    widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
    text = []
    for x in [head] + lines:
        cells = [str(x[0]).ljust(widths[0])] + [str(v).rjust(w) for v, w in zip(x[1:], widths[1:])]
        text.append("  ".join(cells).rstrip())
    return "\n".join(text)


def cause_order(c):
    return CAUSES.index(c) if c in CAUSES else len(CAUSES)


def count(rows, corpus, field, value):
    return sum(r[field] == value and (corpus is None or r["corpus"] == corpus) for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="corpus directories (searched recursively)")
    ap.add_argument("--csv", help="write one row per capture here")
    default_natcheck = os.environ.get("NATCHECK", "target/debug/natcheck")
    ap.add_argument("--natcheck", default=default_natcheck, help="natcheck binary (default: %(default)s)")
    ap.add_argument("--tshark", default="tshark", help="tshark binary (default: %(default)s)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="captures compared at once")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per tool run")
    args = ap.parse_args()
    todo = captures(args.dirs)
    if not todo:
        sys.exit("no captures found")
    rows = [None] * len(todo)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futs = {ex.submit(compare, args.tshark, args.natcheck, c, root, p, args.timeout): i for i, (c, root, p) in enumerate(todo)}
        for done, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            rows[futs[fut]] = fut.result()
            if done % 100 == 0:
                print(f"{done}/{len(todo)} captures compared", file=sys.stderr, flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    print(summary(rows))


if __name__ == "__main__":
    main()
