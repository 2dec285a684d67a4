//! One line per piece of evidence.

use crate::audit::{
    Direction, EntryFacts, Evidence, GapFacts, HopFacts, PathReason, RaceKind, RangeFrom,
    RuleFacts, RuleRole,
};
use crate::model::tcp_flags;
use crate::report::fmt::{
    at_or_span, before_or_after, ct_tuple, dst, endpoint, error_tuple, icmp_error, plural,
    rfc3339_ns, secs, short, tuple_proto,
};

/// Who sends packets going `d`: "initiator", "responder".
pub(super) fn who(d: Direction) -> &'static str {
    match d {
        Direction::Fwd => "initiator",
        Direction::Rev => "responder",
    }
}

fn packets(n: u64) -> &'static str {
    if n == 1 {
        "packet"
    } else {
        "packets"
    }
}

/// `from A to B`, `at A`, or nothing, for a gap's packets.
fn gap_times(g: &GapFacts) -> String {
    match (g.first_ns, g.last_ns) {
        (Some(a), Some(b)) if a != b => format!("from {} to {}", rfc3339_ns(a), rfc3339_ns(b)),
        (Some(a), _) => format!("at {}", rfc3339_ns(a)),
        _ => String::new(),
    }
}

/// Who removed a conntrack entry, as an event log's `[DESTROY]` says when a program did
/// (`[USERSPACE]` with its `progname=` or `portid=`).
pub(super) fn by_program(by: &str) -> String {
    format!("by a program ([USERSPACE] {by}: a `conntrack -D`, a flush, or a proxy or CNI cleaning up entries)")
}

/// ` [S]`: the first packet's TCP flags, when known.
pub fn flags(f: Option<u8>) -> String {
    f.map(|f| format!(" [{}]", tcp_flags::to_string(f)))
        .unwrap_or_default()
}

fn hop(h: &HopFacts) -> String {
    let state = h
        .tcp_state
        .map(|s| format!(", {}", s.as_str()))
        .unwrap_or_default();
    let flow = match h.icmp_error {
        Some((ty, code)) => format!("{} {}", h.tuple.proto, error_tuple(&h.tuple, ty, code)),
        None => tuple_proto(&h.tuple),
    };
    format!(
        "{}: {flow}  {}>/{}< packets {}{state}",
        h.point,
        h.packets[0],
        h.packets[1],
        at_or_span(h.first_ns, h.last_ns)
    )
}

/// A conntrack entry as `conntrack -L` shows its tuples, with where it was read.
/// A conntrack entry as evidence: `file:line: tcp ESTABLISHED src=... [ASSURED]`.
pub fn entry(e: &EntryFacts) -> String {
    format!(
        "{}:{}: {}{} {}{} {}{}",
        e.source,
        e.line,
        e.orig.proto,
        e.state
            .as_deref()
            .map(|s| format!(" {s}"))
            .unwrap_or_default(),
        ct_tuple(&e.orig),
        if e.unreplied { " [UNREPLIED]" } else { "" },
        ct_tuple(&e.reply),
        if e.assured { " [ASSURED]" } else { "" }
    )
}

pub(super) fn ids(conns: &[String]) -> String {
    ids_of(conns, conns.len())
}

/// [`ids`] of the first of `total` connections.
fn ids_of(first: &[String], total: usize) -> String {
    few(first.iter().take(4), total)
}

/// `a, b, c and 5 more`: the items `shown` (the first of them) and how many of the
/// `total` are left, so that words naming a group stay short however large it is.
pub(super) fn few(shown: impl Iterator<Item = impl std::fmt::Display>, total: usize) -> String {
    let shown: Vec<String> = shown.map(|s| s.to_string()).collect();
    if total > shown.len() {
        format!("{} and {} more", shown.join(", "), total - shown.len())
    } else {
        shown.join(", ")
    }
}

/// How many connections of a group a finding's words name.
pub(super) const GROUP: usize = 16;

/// The connections of a finding's group as its words name them: the first [`GROUP`].
pub(super) fn group_ids(conns: &[String]) -> String {
    few(conns.iter().take(GROUP), conns.len())
}

/// Addresses as [`few`] names them: the first eight.
pub(super) fn few_addrs(v: &[std::net::IpAddr]) -> String {
    few(v.iter().take(8), v.len())
}

/// One line of evidence.
/// `dropped by filter FORWARD (iptables.txt:12): -A FORWARD -p tcp ... -j DROP`; an
/// nft rule read from text has its line and handle (`nft.txt:40, handle 12`).
fn rule(role: RuleRole, r: &RuleFacts) -> String {
    let what = match role {
        RuleRole::Dropped => "dropped by",
        RuleRole::Rejected => "rejected by",
        RuleRole::Policy => "dropped by the policy of",
        RuleRole::Translated => "translated by",
        RuleRole::Disagrees => "the rules decide with",
        RuleRole::NeverSaw => "never seen by",
        RuleRole::Marked => "marked for masquerade by",
        RuleRole::Allocates => "source NAT by",
        RuleRole::AssignsHelper => "NAT helper assigned by",
        RuleRole::MayDrop => "some ways through the rules drop it:",
        RuleRole::ReversePath => "a reverse-path filter in",
    };
    let place = match (r.line, r.handle) {
        (0, Some(h)) => format!("{} handle {h}", r.source),
        (line, Some(h)) => format!("{}:{line}, handle {h}", r.source),
        (line, None) => format!("{}:{line}", r.source),
    };
    let counted = crate::report::rules::counted(r.counters, r.change, &r.baseline);
    format!(
        "{what} {} {} ({place}): {}{counted}",
        r.table, r.chain, r.text
    )
}

pub fn line(e: &Evidence) -> String {
    match e {
        Evidence::Rule { role, rule: r } => rule(*role, r),
        Evidence::Hop(h) => hop(h),
        Evidence::Translated {
            conn,
            from_point,
            from,
            to_point,
            to,
        } => format!(
            "{conn} was translated: {from_point} {} => {to_point} {}",
            tuple_proto(from),
            tuple_proto(to)
        ),
        Evidence::TranslationAt {
            translated,
            conn,
            packets,
            point,
        } => format!(
            "{} ({}>/{}< packets at {point})",
            translated.as_deref().map_or_else(|| conn.clone(), line),
            packets[0],
            packets[1]
        ),
        Evidence::Moved {
            from_point,
            from,
            to_point,
            to,
        } => format!(
            "{from_point} {} => {to_point} {}",
            tuple_proto(from),
            tuple_proto(to)
        ),
        Evidence::SamePackets {
            packets,
            conn,
            point,
        } => format!(
            "{packets} packets of {conn} at {point} are these packets (same invariant fields)"
        ),
        Evidence::WireChange {
            from_point,
            from,
            to_point,
            to,
        } => format!(
            "{from_point}: {} => {to_point}: {}",
            tuple_proto(from),
            tuple_proto(to)
        ),
        Evidence::Size(f) => super::pmtu_black_hole::fact(f),
        Evidence::Underlay(f) => super::underlay_drop::fact(f),
        Evidence::Splice(f) => super::userland_proxy::fact(f),
        Evidence::Route(f) => super::asymmetric_route::fact(f),
        Evidence::Table(f) => super::conntrack_table_full::fact(f),
        _ => loss_line(e)
            .or_else(|| arrival_line(e))
            .or_else(|| ct_line(e))
            .or_else(|| nat_line(e))
            .unwrap_or_default(),
    }
}

/// Evidence of packets that went missing or were answered by the host.
fn loss_line(e: &Evidence) -> Option<String> {
    let s = match e {
        Evidence::Untranslated {
            gap,
            peer,
            nat,
            outside,
            inside,
        } => format!(
            "{}{} from {} to {} reached {outside} and never {inside}, {}",
            plural(gap.packets, "packet", "packets"),
            flags(gap.first_tcp_flags),
            endpoint(peer.0, peer.1, peer.2),
            endpoint(nat.0, nat.1, nat.2),
            gap_times(gap)
        ),
        Evidence::HostRst {
            gap,
            nat,
            peer,
            outside,
            delay_ns,
        } => format!(
            "{} from {} to {} left {outside} {}, {} after it, seen nowhere inside: made by the NAT host",
            plural(gap.packets, "RST", "RSTs"),
            endpoint(nat.0, nat.1, nat.2),
            endpoint(peer.0, peer.1, peer.2),
            gap_times(gap),
            short(*delay_ns)
        ),
        Evidence::NeverReached {
            gap,
            direction,
            from,
            to,
        } => format!(
            "{} {} {} seen at {from} never reached {to}, {}{}",
            gap.packets,
            who(*direction),
            packets(gap.packets),
            gap_times(gap),
            gap.first_tcp_flags
                .map(|f| format!(", the first [{}]", tcp_flags::to_string(f)))
                .unwrap_or_default()
        ),
        Evidence::LeftAsAnother { packets, point } => {
            format!("{packets} of them left {point} as another connection (see related)")
        }
        Evidence::OthersCrossed { packets: n, direction } => {
            format!("{n} other {} {} crossed", who(*direction), packets(*n))
        }
        Evidence::Resegmented {
            direction,
            sent,
            received,
            bytes,
            from,
            to,
        } => format!(
            "of those, {} at {from} ({}) reached {to} as {}: the two points saw the stream cut differently (segmentation offloads), so packet counts differ there",
            plural(*sent, &format!("{} segment", who(*direction)), &format!("{} segments", who(*direction))),
            plural(*bytes, "payload byte", "payload bytes"),
            plural(*received, "segment", "segments"),
        ),
        Evidence::NoneSeen {
            point,
            from_ns,
            to_ns,
            whole,
        } => format!(
            "{point} was capturing from {} to {} and saw none of them{}",
            rfc3339_ns(*from_ns),
            rfc3339_ns(*to_ns),
            if *whole {
                ""
            } else {
                " (it stopped before the last one: only the first is counted)"
            }
        ),
        Evidence::OthersWent {
            conns,
            total,
            reason,
            from,
            to,
        } => format!(
            "{} {} went {from} > {to}",
            ids_of(conns, *total),
            match reason {
                PathReason::Egress(p) => format!("from {p} to outside destinations"),
                PathReason::Published(t) => format!("to {}", dst(t)),
                PathReason::HostRules | PathReason::Unanswered(_) => "like it".to_string(),
            }
        ),
        Evidence::Rejected {
            point,
            proto,
            icmp_type,
            code,
            conn,
        } => format!(
            "{point}: {} answered it ({conn}): rejected rather than dropped",
            icmp_error(*proto, *icmp_type, *code)
        ),
        _ => return None,
    };
    Some(s)
}

/// Evidence of packets arriving at a NAT address, and of the allocator.
fn arrival_line(e: &Evidence) -> Option<String> {
    let s = match e {
        Evidence::Arrived {
            point,
            packets,
            peer,
            nat,
            first_ns,
            last_ns,
        } => format!(
            "{point}: {} from {} to {} {}, none forwarded inside",
            plural(*packets, "packet", "packets"),
            endpoint(peer.0, peer.1, peer.2),
            endpoint(nat.0, nat.1, nat.2),
            at_or_span(*first_ns, *last_ns)
        ),
        Evidence::HostIcmp {
            proto,
            icmp_type,
            code,
            packets,
            conn,
        } => format!(
            "the host answered with {} ({}; {conn}): nothing on the host expected them",
            icmp_error(*proto, *icmp_type, *code),
            plural(*packets, "packet", "packets")
        ),
        Evidence::Census {
            translations,
            nat,
            point,
            kept,
            collided,
            free,
            icmp,
            span,
        } => format!(
            "{} to {nat} at {point}: {kept} kept the {}, {collided} moved because another connection held the tuple, {free} moved with no holder captured{}",
            plural(*translations, "translation", "translations"),
            if *icmp { "id" } else { "port" },
            span.map(|(lo, hi)| format!(
                "; new {} {lo}-{hi}",
                if *icmp { "ICMP ids" } else { "source ports" }
            ))
            .unwrap_or_default()
        ),
        _ => return None,
    };
    Some(s)
}

/// Evidence from a conntrack witness.
fn ct_line(e: &Evidence) -> Option<String> {
    let s = match e {
        Evidence::Destroyed {
            source,
            line,
            time_ns,
            before_ns,
            by,
        } => format!(
            "conntrack -E ({source}:{line}): the entry was destroyed at {}, {}{}",
            rfc3339_ns(*time_ns),
            before_or_after(*before_ns),
            by.as_deref()
                .map(|b| format!(", by a program ([USERSPACE] {b})"))
                .unwrap_or_else(|| ", by the kernel (a timeout or a clash)".to_string())
        ),
        Evidence::Stats { counters, since } => format!(
            "conntrack -S: {}{}",
            counters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            since
                .as_deref()
                .map(|s| format!(" (grown since {s})"))
                .unwrap_or_default()
        ),
        Evidence::Entry(e) => entry(e),
        Evidence::Lines(places) => format!("lines {}", places.join(", ")),
        Evidence::SnapshotTime {
            ns,
            source,
            recorded: true,
        } => format!("snapshot taken at {} ({source})", rfc3339_ns(*ns)),
        Evidence::SnapshotTime { ns, source, .. } => {
            format!("snapshot time estimated at {} ({source})", rfc3339_ns(*ns))
        }
        Evidence::SnapshotVsCaptures {
            source,
            ns,
            slack_ns,
            from_ns,
            to_ns,
        } => format!(
            "snapshot {source} at {} (±{}); captures ran from {} to {}",
            rfc3339_ns(*ns),
            secs(*slack_ns),
            rfc3339_ns(*from_ns),
            rfc3339_ns(*to_ns)
        ),
        Evidence::SnapshotVsConnection {
            ns,
            slack_ns,
            conn,
            from_ns,
            to_ns,
        } => format!(
            "snapshot at {} (±{}); {conn} has packets from {} to {}",
            rfc3339_ns(*ns),
            secs(*slack_ns),
            rfc3339_ns(*from_ns),
            rfc3339_ns(*to_ns)
        ),
        Evidence::NoEntry {
            snapshot,
            ns,
            after_ns,
        } => format!(
            "{snapshot}: no entry for it in the snapshot taken about {}, {} after its last packet",
            rfc3339_ns(*ns),
            secs(*after_ns)
        ),
        _ => return None,
    };
    Some(s)
}

/// `203.0.113.1` or `203.0.113.1, 203.0.113.2 (2 addresses)`, short for many.
fn addrs(nat: &[std::net::IpAddr]) -> String {
    let shown: Vec<String> = nat.iter().take(4).map(|a| a.to_string()).collect();
    match nat.len() {
        0 | 1 => shown.join(""),
        n if n > 4 => format!("{} and {} more ({n} addresses)", shown.join(", "), n - 4),
        n => format!("{} ({n} addresses)", shown.join(", ")),
    }
}

/// Where a NAT port range came from, in words.
pub fn range_from(from: RangeFrom) -> &'static str {
    match from {
        RangeFrom::Rule => "the rule's range",
        RangeFrom::KernelDefault => {
            "the kernel's default: the rule gives no port range (`ip_local_port_range` does not apply to NAT)"
        }
        RangeFrom::Assumed => {
            "assumed: the kernel's default for a rule without a port range, as no rules were given (`--rules` with the host's iptables-save or nft ruleset names the rule's)"
        }
    }
}

/// Evidence of NAT's port allocation and of packets sent again.
fn nat_line(e: &Evidence) -> Option<String> {
    let s = match e {
        Evidence::PortRange {
            destination: (proto, addr, port),
            nat,
            lo,
            hi,
            from,
        } => format!(
            "usable for {proto} to {}: source ports {lo}-{hi} of {}, {} ({})",
            endpoint(*proto, *addr, *port),
            addrs(nat),
            plural(
                nat.len() as u64 * (u64::from(hi - lo) + 1),
                "tuple",
                "tuples"
            ),
            range_from(*from)
        ),
        Evidence::PortsHeld {
            from_ns,
            to_ns,
            held,
            usable,
            by,
        } => format!(
            "{held} of {usable} held {} by live connections: {}",
            at_or_span(*from_ns, *to_ns),
            held_by(by)
        ),
        Evidence::Recovered {
            kind,
            packets,
            first_lost_ns,
            crossed_ns,
            tcp_flags: f,
            from,
            to,
        } => format!(
            "{} seen at {from} at {} never reached {to}; {} at {} did, {} later",
            match (kind, packets) {
                (RaceKind::Syn, 1) => "the first SYN".to_string(),
                (RaceKind::Syn, n) => format!("the first {n} SYNs"),
                (RaceKind::DatagramPair, 1) => "the datagram".to_string(),
                (_, n) => plural(*n, "packet", "packets"),
            },
            rfc3339_ns(*first_lost_ns),
            match kind {
                RaceKind::Syn => format!("its retransmission{}", flags(*f)),
                RaceKind::DatagramPair => "the same datagram sent again".to_string(),
            },
            rfc3339_ns(*crossed_ns),
            secs(crossed_ns - first_lost_ns)
        ),
        Evidence::Pair {
            point,
            first_ns,
            gap_ns,
            lost_second,
        } => format!(
            "{point}: two datagrams of one socket {} apart, from {}; the {} one was lost",
            short(*gap_ns),
            rfc3339_ns(*first_ns),
            if *lost_second { "second" } else { "first" }
        ),
        _ => return None,
    };
    Some(s)
}

/// `c1 (203.0.113.1:20000), c2 (203.0.113.1:20001)`, short for many.
fn held_by(by: &[(String, std::net::IpAddr, u16)]) -> String {
    // Any protocol with ports writes an address and port alike.
    let one = |(who, a, p): &(String, std::net::IpAddr, u16)| {
        format!("{who} ({})", endpoint(crate::model::Proto::Tcp, *a, *p))
    };
    few(by.iter().take(8).map(one), by.len())
}
