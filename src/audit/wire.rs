//! Detectors that need the captures only: `lost`, `leak`, `unsolicited` and
//! `port-reallocated` (failure modes FM-01, FM-02, FM-03/06/09/10, FM-04 and FM-16 of
//! the design notes).
//!
//! They run in a fixed order because some explain the evidence of others: packets a
//! link did not carry that left as another connection (`related`, a leak or a new
//! translation) are not lost, and a reply the host answered with its own RST is a
//! leak, not a loss. Whatever is left unexplained is `lost`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::topology::Topology;
use super::{Code, Detail, Direction, Finding, Seen, Severity};
use crate::correlate::{Connection, Correlation, Gap, Hop};
use crate::model::{fmt_endpoint, tcp_flags, Proto, Tuple};
use crate::report::time::{rfc3339_ns, short};

/// How soon after an untranslated segment the host's own RST must follow to be its
/// answer. The kernel answers within microseconds (under 100 µs in the lab, FM-01);
/// 5 ms leaves room for a busy host without pairing unrelated packets.
const HOST_RST_NS: i64 = 5_000_000;

/// A reply later than this after its translation's last packet is not linked to it
/// (conntrack's UDP stream timeout is 120 s; unreplied entries live 30 s).
const REPLY_HORIZON_NS: i64 = 120_000_000_000;

pub fn findings(c: &Correlation, topo: &Topology) -> Vec<Finding> {
    let x = Ctx::new(c, topo);
    let mut out = Vec::new();
    let mut explained: BTreeMap<(usize, usize, Direction), u64> = BTreeMap::new();
    x.related_explains(&mut explained);
    x.leaks_inside_address(&mut out);
    x.host_rst(&mut out, &mut explained);
    x.lost_on_links(&explained, &mut out);
    x.blocked(&mut out);
    x.unsolicited(&mut out);
    x.port_reallocated(&mut out);
    out
}

struct Ctx<'a> {
    c: &'a Correlation,
    topo: &'a Topology,
    idx: HashMap<&'a str, usize>,
}

/// An endpoint as tools print it, ports only where the protocol has them.
fn ep(proto: Proto, a: IpAddr, port: u16) -> String {
    if proto.has_ports() {
        fmt_endpoint(a, Some(port))
    } else if proto.is_icmp() {
        format!("{a} id={port}")
    } else {
        a.to_string()
    }
}

fn src(t: &Tuple) -> String {
    ep(t.proto, t.src, t.sport)
}

fn dst(t: &Tuple) -> String {
    if t.proto.is_icmp() {
        t.dst.to_string()
    } else {
        ep(t.proto, t.dst, t.dport)
    }
}

fn tup(t: &Tuple) -> String {
    format!("{} {} -> {}", t.proto, src(t), dst(t))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn flags_of(g: &Gap) -> String {
    g.first_tcp_flags
        .map(|f| format!(" [{}]", tcp_flags::to_string(f)))
        .unwrap_or_default()
}

fn gap_times(g: &Gap) -> String {
    match (g.first_ns, g.last_ns) {
        (Some(a), Some(b)) if a != b => format!("from {} to {}", rfc3339_ns(a), rfc3339_ns(b)),
        (Some(a), _) => format!("at {}", rfc3339_ns(a)),
        _ => String::new(),
    }
}

/// ICMP errors by name where the name is well known (RFC 792, RFC 4443), else numbers.
fn icmp_name(proto: Proto, ty: u8, code: u8) -> String {
    let name = match (proto, ty, code) {
        (Proto::Icmp, 3, 0) => "network unreachable",
        (Proto::Icmp, 3, 1) => "host unreachable",
        (Proto::Icmp, 3, 2) => "protocol unreachable",
        (Proto::Icmp, 3, 3) => "port unreachable",
        (Proto::Icmp, 3, 4) => "fragmentation needed",
        (Proto::Icmp, 3, 9 | 10 | 13) => "administratively prohibited",
        (Proto::Icmp, 11, _) => "time exceeded",
        (Proto::Icmpv6, 1, 1) => "administratively prohibited",
        (Proto::Icmpv6, 1, 3) => "address unreachable",
        (Proto::Icmpv6, 1, 4) => "port unreachable",
        (Proto::Icmpv6, 1, 6) => "reject route",
        (Proto::Icmpv6, 2, _) => "packet too big",
        (Proto::Icmpv6, 3, _) => "time exceeded",
        _ => "",
    };
    let proto = if proto == Proto::Icmpv6 {
        "ICMPv6"
    } else {
        "ICMP"
    };
    if name.is_empty() {
        format!("{proto} type {ty} code {code}")
    } else {
        format!("{proto} {name} (type {ty} code {code})")
    }
}

fn ids(c: &Correlation, v: &[usize]) -> String {
    v.iter()
        .map(|&i| c.connections[i].id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> Ctx<'a> {
    fn new(c: &'a Correlation, topo: &'a Topology) -> Ctx<'a> {
        let idx = c
            .connections
            .iter()
            .enumerate()
            .map(|(i, k)| (k.id.as_str(), i))
            .collect();
        Ctx { c, topo, idx }
    }

    fn name(&self, p: usize) -> &'a str {
        &self.c.points[p].name
    }

    /// A point's capture span, clock-corrected.
    fn span(&self, p: usize) -> Option<(i64, i64)> {
        let pt = &self.c.points[p];
        Some((
            pt.first_ns? - pt.clock.offset_ns,
            pt.last_ns? - pt.clock.offset_ns,
        ))
    }

    fn capturing(&self, p: usize, t: i64) -> bool {
        self.span(p).is_some_and(|(a, b)| t >= a && t <= b)
    }

    fn seen(&self, h: &Hop, role: &'static str) -> Seen {
        Seen {
            point: self.name(h.point).to_string(),
            role,
            tuple: h.flow.tuple,
        }
    }

    fn hop_line(&self, h: &Hop) -> String {
        let f = &h.flow;
        let state = if f.tuple.proto == Proto::Tcp {
            format!(", {}", crate::commands::flows::tcp_state(&f.tcp))
        } else {
            String::new()
        };
        let when = if h.first_ns == h.last_ns {
            format!("at {}", rfc3339_ns(h.first_ns))
        } else {
            format!(
                "from {} to {}",
                rfc3339_ns(h.first_ns),
                rfc3339_ns(h.last_ns)
            )
        };
        format!(
            "{}: {}  {}>/{}< packets {when}{state}",
            self.name(h.point),
            tup(&f.tuple),
            f.packets[0],
            f.packets[1]
        )
    }

    /// The connection's tuple on the far side of the translation into `point`, as
    /// `A tuple => B tuple`.
    fn translation_line(&self, k: &Connection, point: usize) -> Option<String> {
        let i = k.hops.iter().position(|h| h.point == point)?;
        let first = &k.hops[0];
        if i == 0 {
            return None;
        }
        Some(format!(
            "{} was translated: {} {} => {} {}",
            k.id,
            self.name(first.point),
            tup(&first.flow.tuple),
            self.name(point),
            tup(&k.hops[i].flow.tuple)
        ))
    }

    /// Packets of link `A → B` that `correlate` found at `B` under another connection
    /// left after all (leaked or re-translated): they are not lost. Initiator packets
    /// at A explain `lost_fwd`; responder packets at B (related the other way round)
    /// explain `lost_rev`.
    fn related_explains(&self, explained: &mut BTreeMap<(usize, usize, Direction), u64>) {
        for (ci, conn) in self.c.connections.iter().enumerate() {
            for (li, l) in conn.links.iter().enumerate() {
                let (a, b) = (
                    self.name(conn.hops[l.from].point),
                    self.name(conn.hops[l.to].point),
                );
                for r in &conn.related {
                    if r.point == a && r.other_point == b {
                        *explained.entry((ci, li, Direction::Fwd)).or_default() +=
                            r.matched_packets;
                    } else if r.point == b && r.other_point == a {
                        *explained.entry((ci, li, Direction::Rev)).or_default() +=
                            r.matched_packets;
                    }
                }
            }
        }
    }

    /// `leak` (FM-01, FM-02): a hop at an outside point whose tuple carries an address
    /// NAT hides at that point, talking to something that is not inside.
    fn leaks_inside_address(&self, out: &mut Vec<Finding>) {
        let (c, topo) = (self.c, self.topo);
        for (ci, conn) in c.connections.iter().enumerate() {
            for h in &conn.hops {
                let Some(hidden) = topo.hidden.get(&h.point) else {
                    continue;
                };
                let t = h.flow.tuple;
                let inside = if hidden.contains(&t.src) && !topo.is_inside(t.dst) {
                    t.src
                } else if hidden.contains(&t.dst) && !topo.is_inside(t.src) {
                    t.dst
                } else {
                    continue;
                };
                // Connections that translated this same traffic: the flows correlate
                // matched but could not join (same packets), and connections that
                // carried this very tuple across the translation into this point.
                let here = self.name(h.point);
                let mut by: BTreeSet<usize> = conn
                    .related
                    .iter()
                    .filter(|r| r.point == here)
                    .filter_map(|r| self.idx.get(r.connection.as_str()).copied())
                    .collect();
                for (k, other) in c.connections.iter().enumerate() {
                    if k != ci
                        && other.links.iter().any(|l| {
                            other.hops[l.to].point == h.point
                                && other.hops[l.from].flow.tuple == t
                                && l.change.kind != crate::model::NatKind::None
                        })
                    {
                        by.insert(k);
                    }
                }
                let by: Vec<usize> = by.into_iter().collect();
                let f = &h.flow;
                let n = f.packets[0] + f.packets[1];
                let mut tuples = vec![self.seen(h, "leaked")];
                let mut evidence = vec![self.hop_line(h)];
                for &k in &by {
                    let other = &c.connections[k];
                    if let Some(kh) = other.hops.iter().find(|x| x.point == h.point) {
                        tuples.push(self.seen(kh, "translated"));
                    }
                    if let Some(line) = self.translation_line(other, h.point) {
                        evidence.push(line);
                    }
                    for r in other
                        .related
                        .iter()
                        .filter(|r| r.connection == conn.id && r.other_point == here)
                    {
                        evidence.push(format!(
                            "{} packets of {} at {} are these packets (same invariant fields)",
                            r.matched_packets, other.id, r.point
                        ));
                    }
                }
                let whose = if by.is_empty() {
                    String::new()
                } else {
                    format!(" (traffic of {})", ids(c, &by))
                };
                let message = format!(
                    "{} left {here} untranslated, with the inside address {inside}{whose}: NAT skipped them",
                    plural(n, "packet", "packets")
                );
                let check = if t.proto == Proto::Tcp {
                    format!(
                        "Conntrack no longer tracked this connection (entry deleted, expired or the segments INVALID, e.g. out of window) and NAT skipped it. Check `conntrack -S` (invalid), `conntrack -E` for a DESTROY of the flow before {}, and the sysctls nf_conntrack_tcp_loose / nf_conntrack_tcp_be_liberal; a FORWARD rule `-m conntrack --ctstate INVALID -j DROP` (DOCKER-USER, KUBE-FORWARD) keeps such packets in.",
                        rfc3339_ns(h.first_ns)
                    )
                } else {
                    "Conntrack had no entry for these packets when they left (expired, flushed, table full, or a NOTRACK rule in the raw table). Check `conntrack -E` around the first packet, `conntrack -S` (drop, insert_failed) and the raw table rules.".to_string()
                };
                out.push(Finding {
                    code: Code::Leak,
                    severity: Severity::Error,
                    conns: std::iter::once(ci).chain(by.iter().copied()).collect(),
                    connections: Vec::new(),
                    points: vec![here.to_string()],
                    tuples,
                    first_ns: Some(h.first_ns),
                    last_ns: Some(h.last_ns),
                    packets: n,
                    message,
                    check,
                    evidence,
                    detail: Detail::Leak {
                        kind: "inside-address",
                        inside_address: Some(inside),
                        translated_by: by.iter().map(|&k| c.connections[k].id.clone()).collect(),
                    },
                });
            }
        }
    }

    /// `leak` (FM-01 host RST): on a translated TCP link, a packet towards the NAT
    /// endpoint reached the outside point and was never translated back, and right
    /// after it a RST left the outside point from the NAT endpoint without coming from
    /// inside: the host's own stack answered a segment conntrack would not translate.
    fn host_rst(
        &self,
        out: &mut Vec<Finding>,
        explained: &mut BTreeMap<(usize, usize, Direction), u64>,
    ) {
        for (ci, conn) in self.c.connections.iter().enumerate() {
            if conn.proto != Proto::Tcp {
                continue;
            }
            for (li, l) in conn.links.iter().enumerate() {
                if l.change.kind == crate::model::NatKind::None {
                    continue;
                }
                let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
                // SNAT alone: outside is downstream; any DNAT: outside is upstream.
                let outside_down = !(l.change.dst_addr_changed || l.change.dport_changed);
                let (lost, rst, lost_dir, outside, inside) = if outside_down {
                    (
                        &l.unmatched.lost_rev,
                        &l.unmatched.appeared_fwd,
                        Direction::Rev,
                        down,
                        up,
                    )
                } else {
                    (
                        &l.unmatched.lost_fwd,
                        &l.unmatched.appeared_rev,
                        Direction::Fwd,
                        up,
                        down,
                    )
                };
                let is_rst = rst.first_tcp_flags.is_some_and(|f| f & tcp_flags::RST != 0);
                let (Some(lf), Some(ll), Some(rf)) = (lost.first_ns, lost.last_ns, rst.first_ns)
                else {
                    continue;
                };
                if !is_rst || rf < lf || rf > ll + HOST_RST_NS {
                    continue;
                }
                let already = explained.get(&(ci, li, lost_dir)).copied().unwrap_or(0);
                if already >= lost.packets {
                    continue;
                }
                explained.insert((ci, li, lost_dir), lost.packets);
                let t = outside.flow.tuple;
                let (nat, peer) = if outside_down {
                    (src(&t), dst(&t))
                } else {
                    (dst(&t), src(&t))
                };
                let (oname, iname) = (self.name(outside.point), self.name(inside.point));
                let evidence = vec![
                    self.hop_line(outside),
                    format!(
                        "{}{} from {peer} to {nat} reached {oname} and never {iname}, {}",
                        plural(lost.packets, "packet", "packets"),
                        flags_of(lost),
                        gap_times(lost)
                    ),
                    format!(
                        "{} from {nat} to {peer} left {oname} {}, {} after it, seen nowhere inside: made by the NAT host",
                        plural(rst.packets, "RST", "RSTs"),
                        gap_times(rst),
                        short(rf - lf)
                    ),
                ];
                out.push(Finding {
                    code: Code::Leak,
                    severity: Severity::Error,
                    conns: vec![ci],
                    connections: Vec::new(),
                    points: vec![oname.to_string()],
                    tuples: vec![self.seen(outside, "translated")],
                    first_ns: Some(lf),
                    last_ns: Some(rst.last_ns.unwrap_or(rf).max(ll)),
                    packets: lost.packets + rst.packets,
                    message: format!(
                        "the NAT host answered {peer}'s untranslated{} with its own RST from {nat}: the peer's side of {} is reset",
                        flags_of(lost),
                        conn.id
                    ),
                    check: "Conntrack no longer translated this connection (its entry was deleted or expired, or the segment was INVALID, e.g. out of window), so the segment went to the host's own stack. Check `conntrack -S` (invalid), `conntrack -E` for a DESTROY of the flow, and nf_conntrack_tcp_be_liberal; `-m conntrack --ctstate INVALID -j DROP` in INPUT stops the RST (FM-01).".to_string(),
                    evidence,
                    detail: Detail::Leak {
                        kind: "host-rst",
                        inside_address: None,
                        translated_by: Vec::new(),
                    },
                });
            }
        }
    }

    /// `lost` on a correlated path: packets one hop carried and the next did not,
    /// while it was capturing, that nothing else explains.
    fn lost_on_links(
        &self,
        explained: &BTreeMap<(usize, usize, Direction), u64>,
        out: &mut Vec<Finding>,
    ) {
        for (ci, conn) in self.c.connections.iter().enumerate() {
            for (li, l) in conn.links.iter().enumerate() {
                let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
                for dir in [Direction::Fwd, Direction::Rev] {
                    let (gap, from, to, matched, who) = match dir {
                        Direction::Fwd => (
                            &l.unmatched.lost_fwd,
                            up,
                            down,
                            l.evidence.matched_fwd,
                            "initiator",
                        ),
                        Direction::Rev => (
                            &l.unmatched.lost_rev,
                            down,
                            up,
                            l.evidence.matched_rev,
                            "responder",
                        ),
                    };
                    let gone = explained.get(&(ci, li, dir)).copied().unwrap_or(0);
                    let n = gap.packets.saturating_sub(gone);
                    let Some(first) = gap.first_ns else { continue };
                    if n == 0 || !self.capturing(to.point, first) {
                        continue;
                    }
                    let (fname, tname) = (self.name(from.point), self.name(to.point));
                    let blocked = matched == 0;
                    let mut evidence = vec![
                        self.hop_line(from),
                        self.hop_line(to),
                        format!(
                            "{} {who} {} seen at {fname} never reached {tname}, {}{}",
                            gap.packets,
                            if gap.packets == 1 {
                                "packet"
                            } else {
                                "packets"
                            },
                            gap_times(gap),
                            gap.first_tcp_flags
                                .map(|f| format!(", the first [{}]", tcp_flags::to_string(f)))
                                .unwrap_or_default()
                        ),
                    ];
                    if gone > 0 {
                        evidence.push(format!(
                            "{gone} of them left {tname} as another connection (see related)"
                        ));
                    }
                    if matched > 0 {
                        evidence.push(format!(
                            "{} other {who} {} crossed",
                            matched,
                            if matched == 1 { "packet" } else { "packets" }
                        ));
                    }
                    let check = match dir {
                        Direction::Fwd => format!(
                            "Drops between {fname} and {tname}: FORWARD rules and their counters (`iptables -L FORWARD -v -n --line-numbers`, DOCKER-USER, KUBE-FORWARD), conntrack insert failures or a full table (`conntrack -S`: insert_failed, drop, early_drop), routing and MTU towards {tname}."
                        ),
                        Direction::Rev => format!(
                            "Replies that reached {fname} but were not forwarded back to {tname}: the conntrack entry (`conntrack -L`, expired or deleted?), INVALID replies (`conntrack -S` invalid), FORWARD rules for the reply direction, rp_filter on {fname}."
                        ),
                    };
                    out.push(Finding {
                        code: Code::Lost,
                        severity: if blocked {
                            Severity::Error
                        } else {
                            Severity::Warning
                        },
                        conns: vec![ci],
                        connections: Vec::new(),
                        points: vec![fname.to_string(), tname.to_string()],
                        tuples: vec![self.seen(from, "seen"), self.seen(to, "next")],
                        first_ns: gap.first_ns,
                        last_ns: gap.last_ns,
                        packets: n,
                        message: format!(
                            "{} {who} {} of {} reached {fname} and never {tname}",
                            n,
                            if n == 1 { "packet" } else { "packets" },
                            conn.id
                        ),
                        check,
                        evidence,
                        detail: Detail::Lost {
                            from: fname.to_string(),
                            to: tname.to_string(),
                            direction: dir,
                            blocked,
                            first_tcp_flags: gap.first_tcp_flags.map(tcp_flags::to_string),
                            path_from: Vec::new(),
                        },
                    });
                }
            }
        }
    }

    /// `lost` for connections whose path stops short: the last point saw initiator
    /// packets and no reply, and other connections show where such traffic goes next
    /// (the same inside prefix to an outside destination, or the same DNAT'ed
    /// endpoint), while that point was capturing. The usual blocked connection: a SYN
    /// dropped in FORWARD never reaches the uplink (FM-09/FM-10), or a full table.
    fn blocked(&self, out: &mut Vec<Finding>) {
        let (c, topo) = (self.c, self.topo);
        for (ci, conn) in c.connections.iter().enumerate() {
            let Some(last) = conn.hops.last() else {
                continue;
            };
            let f = &last.flow;
            if f.packets[0] == 0 || f.packets[1] != 0 || f.icmp_error.is_some() {
                continue;
            }
            let t = f.tuple;
            let a = last.point;
            let mut next: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
            let mut why = String::new();
            if let Some(p) = topo.prefix_of(t.src) {
                if topo.is_outside_dst(t.dst) {
                    if let Some(m) = topo.egress.get(&(a, p)) {
                        for (b, cs) in m {
                            next.entry(*b).or_default().extend(cs.iter().copied());
                        }
                        why = format!("from {p} to outside destinations");
                    }
                }
            }
            if let Some(m) = topo.published.get(&(a, conn.proto, t.dst, t.dport)) {
                for (b, cs) in m {
                    next.entry(*b).or_default().extend(cs.iter().copied());
                }
                why = format!("to {}", dst(&t));
            }
            let on_path: BTreeSet<usize> = conn.hops.iter().map(|h| h.point).collect();
            next.retain(|b, cs| {
                cs.remove(&ci);
                !on_path.contains(b) && !cs.is_empty()
            });
            // Several next points (several uplinks) leave the path unknown.
            if next.len() != 1 {
                continue;
            }
            let Some((b, via)) = next.into_iter().next() else {
                continue;
            };
            if !self.capturing(b, last.first_ns) {
                continue;
            }
            let (aname, bname) = (self.name(a), self.name(b));
            let via: Vec<usize> = via.into_iter().collect();
            let (b0, b1) = self.span(b).unwrap_or_default();
            let whole = last.last_ns <= b1;
            let n = if whole { f.packets[0] } else { 1 };
            let syn_only = t.proto == Proto::Tcp
                && f.tcp.syn
                && !f.tcp.syn_ack
                && f.tcp.fin == [false, false]
                && f.tcp.rst == [false, false];
            let what = if syn_only {
                if f.packets[0] > 1 {
                    format!(
                        "{} SYNs (the first and {} retransmission{})",
                        f.packets[0],
                        f.packets[0] - 1,
                        if f.packets[0] == 2 { "" } else { "s" }
                    )
                } else {
                    "1 SYN".to_string()
                }
            } else {
                plural(f.packets[0], "initiator packet", "initiator packets")
            };
            let mut evidence = vec![
                self.hop_line(last),
                format!(
                    "{bname} was capturing from {} to {} and saw none of them{}",
                    rfc3339_ns(b0),
                    rfc3339_ns(b1),
                    if whole {
                        String::new()
                    } else {
                        " (it stopped before the last one: only the first is counted)".into()
                    }
                ),
                format!(
                    "{} {why} went {aname} > {bname}",
                    if via.len() > 4 {
                        format!("{} and {} more", ids(c, &via[..4]), via.len() - 4)
                    } else {
                        ids(c, &via)
                    }
                ),
            ];
            let mut conns = vec![ci];
            // A REJECT answers with an ICMP error quoting the blocked packet.
            for (ei, e) in c.connections.iter().enumerate() {
                for h in e.hops.iter().filter(|h| h.point == a) {
                    if let Some(err) = &h.flow.icmp_error {
                        if err.quoted.is_some_and(|q| q.canonical() == t.canonical()) {
                            conns.push(ei);
                            evidence.push(format!(
                                "{}: {} answered it ({}): rejected rather than dropped",
                                aname,
                                icmp_name(e.proto, err.icmp_type, err.code),
                                e.id
                            ));
                        }
                    }
                }
            }
            out.push(Finding {
                code: Code::Lost,
                severity: Severity::Error,
                conns,
                connections: Vec::new(),
                points: vec![aname.to_string(), bname.to_string()],
                tuples: vec![self.seen(last, "last-seen")],
                first_ns: Some(last.first_ns),
                last_ns: Some(last.last_ns),
                packets: n,
                message: format!(
                    "blocked: {what} from {} to {} reached {aname} and never left on {bname}; no reply",
                    src(&t),
                    dst(&t)
                ),
                check: format!(
                    "A rule dropping this traffic between {aname} and {bname}: FORWARD, DOCKER-USER or KUBE-FORWARD DROP/REJECT rules whose counters grew (`iptables -L FORWARD -v -n --line-numbers`); a full conntrack table or failed inserts (`conntrack -S`: insert_failed, drop, early_drop; `dmesg | grep conntrack`); the route (`ip route get {} from {} iif <{aname}'s interface>`).",
                    t.dst, t.src
                ),
                evidence,
                detail: Detail::Lost {
                    from: aname.to_string(),
                    to: bname.to_string(),
                    direction: Direction::Fwd,
                    blocked: true,
                    first_tcp_flags: syn_only.then(|| "S".to_string()),
                    path_from: via.iter().map(|&k| c.connections[k].id.clone()).collect(),
                },
            });
        }
    }

    /// `unsolicited` (FM-16 and stale replies): a connection seen only at a point
    /// where NAT gives packets a source address, made of packets sent to that NAT
    /// address that the host never forwarded inside and never answered except with a
    /// RST, and that look like replies: to a NAT endpoint some translation used, or
    /// addressed to the side that sent nothing.
    fn unsolicited(&self, out: &mut Vec<Finding>) {
        let (c, topo) = (self.c, self.topo);
        for (ci, conn) in c.connections.iter().enumerate() {
            let [h] = conn.hops.as_slice() else { continue };
            let f = &h.flow;
            if f.icmp_error.is_some() {
                continue;
            }
            let Some(nat) = topo.nat_addrs.get(&h.point) else {
                continue;
            };
            let t = f.tuple;
            let nat_is_src = nat.contains(&t.src) && !nat.contains(&t.dst);
            let nat_is_dst = nat.contains(&t.dst) && !nat.contains(&t.src);
            let (n_addr, n_port, r_addr, r_port, to_n, from_n, rst_from_n) = if nat_is_src {
                (
                    t.src,
                    t.sport,
                    t.dst,
                    t.dport,
                    f.packets[1],
                    f.packets[0],
                    f.tcp.rst[0],
                )
            } else if nat_is_dst {
                (
                    t.dst,
                    t.dport,
                    t.src,
                    t.sport,
                    f.packets[0],
                    f.packets[1],
                    f.tcp.rst[1],
                )
            } else {
                continue;
            };
            if to_n == 0 || (from_n > 0 && !(t.proto == Proto::Tcp && rst_from_n)) {
                // Nothing arrived, or a two-way conversation with the host itself.
                continue;
            }
            if topo
                .published
                .contains_key(&(h.point, t.proto, n_addr, n_port))
            {
                // Traffic to a DNAT'ed endpoint that went no further is `lost`.
                continue;
            }
            let ks: Vec<usize> = topo
                .endpoints
                .get(&(h.point, t.proto, n_addr, n_port))
                .into_iter()
                .flatten()
                .copied()
                .filter(|&k| {
                    k != ci
                        && c.connections[k].first_ns() <= h.last_ns
                        && h.first_ns <= c.connections[k].last_ns() + REPLY_HORIZON_NS
                })
                .collect();
            let reply_like = !ks.is_empty()
                || nat_is_src
                || (t.proto == Proto::Tcp && !f.tcp.syn && !f.tcp.syn_ack);
            if !reply_like {
                continue;
            }
            let pname = self.name(h.point);
            let (nat_ep, peer_ep) = (ep(t.proto, n_addr, n_port), ep(t.proto, r_addr, r_port));
            let mut tuples = vec![self.seen(h, "unsolicited")];
            let mut evidence = vec![format!(
                "{pname}: {} from {peer_ep} to {nat_ep} {}, none forwarded inside",
                plural(to_n, "packet", "packets"),
                if h.first_ns == h.last_ns {
                    format!("at {}", rfc3339_ns(h.first_ns))
                } else {
                    format!(
                        "from {} to {}",
                        rfc3339_ns(h.first_ns),
                        rfc3339_ns(h.last_ns)
                    )
                }
            )];
            let mut conns = vec![ci];
            let mut expected: Option<String> = None;
            for &k in &ks {
                let other = &c.connections[k];
                conns.push(k);
                if let Some(kh) = other.hops.iter().find(|x| x.point == h.point) {
                    tuples.push(self.seen(kh, "translation"));
                    expected.get_or_insert_with(|| dst(&kh.flow.tuple));
                    evidence.push(format!(
                        "{} ({}>/{}< packets at {pname})",
                        self.translation_line(other, h.point)
                            .unwrap_or_else(|| other.id.clone()),
                        kh.flow.packets[0],
                        kh.flow.packets[1]
                    ));
                }
            }
            for (ei, e) in c.connections.iter().enumerate() {
                for eh in e.hops.iter().filter(|x| x.point == h.point) {
                    if let Some(err) = &eh.flow.icmp_error {
                        if eh.flow.tuple.src == n_addr
                            && err.quoted.is_some_and(|q| q.canonical() == t.canonical())
                        {
                            conns.push(ei);
                            evidence.push(format!(
                                "the host answered with {} ({}; {}): nothing on the host expected them",
                                icmp_name(e.proto, err.icmp_type, err.code),
                                plural(eh.flow.packets[0] + eh.flow.packets[1], "packet", "packets"),
                                e.id
                            ));
                        }
                    }
                }
            }
            let (severity, message, check) = match (&expected, ks.first()) {
                (Some(exp), Some(&k)) => {
                    let kt = c.connections[k]
                        .hops
                        .iter()
                        .find(|x| x.point == h.point)
                        .map(|x| x.flow.tuple)
                        .unwrap_or(t);
                    let differs = if kt.dst != r_addr {
                        format!(
                            "from the address {r_addr}, not {}, where {} sent",
                            kt.dst, c.connections[k].id
                        )
                    } else {
                        format!(
                            "from {peer_ep}, not {exp}, where {} sent",
                            c.connections[k].id
                        )
                    };
                    (
                        Severity::Error,
                        format!(
                            "replies to {nat_ep} came {differs}: conntrack cannot match them to the translation, so they never reach the client"
                        ),
                        format!(
                            "The server answers from another address or port than the client sent to: a multi-homed server whose UDP socket is bound to the wildcard address (bind it to the service address, or reply with IP_PKTINFO / IPV6_RECVPKTINFO), or a DNAT or load balancer in front of {} that does not translate replies back (FM-16). `conntrack -L` shows a reverse [UNREPLIED] entry {} -> {nat_ep} for the stray replies.",
                            kt.dst, peer_ep
                        ),
                    )
                }
                _ => (
                    Severity::Warning,
                    format!(
                        "{} from {peer_ep} to the NAT address {nat_ep} belong to no translation seen in the captures",
                        plural(to_n, "packet", "packets")
                    ),
                    format!(
                        "Whether a translation for {nat_ep} existed before the captures and expired or was flushed (`conntrack -E`, UDP timeouts 30 s / 120 s, TCP per state); a conntrack snapshot (`--conntrack`) tells. Otherwise the traffic was never asked for (scan, spoofing, a peer with stale state)."
                    ),
                ),
            };
            out.push(Finding {
                code: Code::Unsolicited,
                severity,
                conns,
                connections: Vec::new(),
                points: vec![pname.to_string()],
                tuples,
                first_ns: Some(h.first_ns),
                last_ns: Some(h.last_ns),
                packets: to_n,
                message,
                check,
                evidence,
                detail: Detail::Unsolicited {
                    nat_address: n_addr,
                    nat_port: (t.proto.has_ports() || t.proto.is_icmp()).then_some(n_port),
                    from_address: r_addr,
                    from_port: t.proto.has_ports().then_some(r_port),
                    translations: ks.iter().map(|&k| c.connections[k].id.clone()).collect(),
                    expected_peer: expected,
                },
            });
        }
    }

    /// `port-reallocated` (FM-04, FM-05, FM-06): the source port changed at a hop.
    /// The allocator's mode is inferred from every source translation to the same NAT
    /// address at the same point: ports kept except where another connection held the
    /// tuple (the default), all ports moved with nobody holding them (`--random`,
    /// `--random-fully`), or all moved into a narrow span (`--to-ports` or
    /// `--to-source ADDR:LO-HI`).
    fn port_reallocated(&self, out: &mut Vec<Finding>) {
        let c = self.c;
        // (point, NAT address, ICMP?) → (connection, link) of every source translation.
        let mut groups: BTreeMap<(usize, IpAddr, bool), Vec<(usize, usize)>> = BTreeMap::new();
        for (ci, conn) in c.connections.iter().enumerate() {
            for (li, l) in conn.links.iter().enumerate() {
                if !(l.change.src_addr_changed || l.change.sport_changed) {
                    continue;
                }
                let down = &conn.hops[l.to];
                if !(conn.proto.has_ports() || conn.proto.is_icmp()) {
                    continue;
                }
                groups
                    .entry((down.point, down.flow.tuple.src, conn.proto.is_icmp()))
                    .or_default()
                    .push((ci, li));
            }
        }
        for ((point, nat, icmp), members) in groups {
            let mut kept = 0usize;
            let mut collided = 0usize;
            let mut free = 0usize;
            let mut ports: Vec<u16> = Vec::new();
            for &(ci, li) in &members {
                let conn = &c.connections[ci];
                let l = &conn.links[li];
                match &l.port_realloc {
                    None if !l.change.sport_changed => kept += 1,
                    Some(pr) => {
                        ports.push(pr.got_sport);
                        if pr.colliding.is_some() {
                            collided += 1;
                        } else {
                            free += 1;
                        }
                    }
                    None => {
                        ports.push(conn.hops[l.to].flow.tuple.sport);
                        free += 1;
                    }
                }
            }
            if ports.is_empty() {
                continue;
            }
            let lo = *ports.iter().min().expect("not empty");
            let hi = *ports.iter().max().expect("not empty");
            // Random ports over the 64512-port default range fall within 64 of each
            // other by chance with probability under 0.2 % for two, far less for more.
            let narrow = ports.len() >= 2 && u32::from(hi - lo) < 64;
            let (mode, range) = if free == 0 {
                ("collision", None)
            } else if kept == 0 && collided == 0 && narrow {
                ("range", Some([lo, hi]))
            } else if kept == 0 {
                ("random", None)
            } else {
                ("mixed", None)
            };
            let what = if icmp { "ICMP ids" } else { "source ports" };
            let pname = self.name(point);
            let census = format!(
                "{} to {nat} at {pname}: {kept} kept the {}, {collided} moved because another connection held the tuple, {free} moved with no holder captured{}",
                plural(members.len() as u64, "translation", "translations"),
                if icmp { "id" } else { "port" },
                if ports.len() > 1 {
                    format!("; new {what} {lo}-{hi}")
                } else {
                    String::new()
                }
            );
            for &(ci, li) in &members {
                let conn = &c.connections[ci];
                let l = &conn.links[li];
                let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
                let (wanted, got) = (up.flow.tuple.sport, down.flow.tuple.sport);
                if wanted == got {
                    continue;
                }
                let pr = l.port_realloc.as_ref();
                let holder = pr
                    .and_then(|p| p.colliding.as_deref())
                    .and_then(|id| self.idx.get(id).copied());
                let first = pr.and_then(|p| p.colliding_started_first);
                let mut conns = vec![ci];
                let mut tuples = vec![self.seen(up, "before"), self.seen(down, "after")];
                let mut evidence = vec![format!(
                    "{} {} => {} {}",
                    self.name(up.point),
                    tup(&up.flow.tuple),
                    pname,
                    tup(&down.flow.tuple)
                )];
                let wanted_t = Tuple {
                    sport: wanted,
                    ..down.flow.tuple
                };
                let why = match holder {
                    Some(k) => {
                        conns.push(k);
                        let kc = &c.connections[k];
                        if let Some(kh) = kc.hops.iter().find(|h| h.point == down.point) {
                            tuples.push(self.seen(kh, "holder"));
                        }
                        if let Some(line) = self.translation_line(kc, down.point) {
                            evidence.push(line);
                        }
                        if first == Some(false) {
                            format!(
                                "{} holds {} (it started later, so something not captured held it first)",
                                kc.id,
                                src(&wanted_t)
                            )
                        } else {
                            format!(
                                "{} already held {} -> {}",
                                kc.id,
                                src(&wanted_t),
                                dst(&wanted_t)
                            )
                        }
                    }
                    None => match mode {
                        "range" => format!(
                            "no connection held it; every port here comes from the range {lo}-{hi} (or a wider one)"
                        ),
                        "random" => "no connection held it; every port here was moved, so the rule picks ports at random (`--random`, `--random-fully`)".into(),
                        _ => "no connection holding it was captured".into(),
                    },
                };
                evidence.push(census.clone());
                let check = match mode {
                    "collision" => "Expected with the default allocator (MASQUERADE/SNAT keep the port unless the tuple is taken). It matters only to port-sensitive peers (SIP, STUN, allow-lists by port); two clients that must keep their ports to one destination need distinct NAT addresses.".to_string(),
                    "range" => format!("A port range ({lo}-{hi} or wider: `--to-ports` or `--to-source ADDR:LO-HI`). Small ranges run out under load (FM-06): watch `conntrack -S` (insert_failed, drop) and the number of entries per destination."),
                    "random" => "Expected with `--random` / `--random-fully` (kube-proxy, Calico, Flannel use it against insertion races). Nothing to fix unless a peer depends on the client's port.".to_string(),
                    _ => "Some translations kept their ports and this one moved with no holder in the captures: the holder predates the captures or crossed another point, or a different rule (with --random or a range) matched. `conntrack -L --src-nat` shows the holder.".to_string(),
                };
                out.push(Finding {
                    code: Code::PortReallocated,
                    severity: Severity::Info,
                    conns,
                    connections: Vec::new(),
                    points: vec![self.name(up.point).to_string(), pname.to_string()],
                    tuples,
                    first_ns: Some(down.first_ns),
                    last_ns: Some(down.last_ns),
                    packets: down.flow.packets[0] + down.flow.packets[1],
                    message: format!(
                        "{} {wanted} became {got} at {pname}: {why}",
                        if icmp { "ICMP id" } else { "source port" }
                    ),
                    check,
                    evidence,
                    detail: Detail::PortReallocated {
                        wanted_sport: wanted,
                        got_sport: got,
                        colliding: holder.map(|k| c.connections[k].id.clone()),
                        colliding_started_first: first,
                        mode,
                        range,
                    },
                });
            }
        }
    }
}
