//! One line per piece of evidence.

use crate::audit::{
    Direction, EntryFacts, Evidence, GapFacts, HopFacts, PathReason, RuleFacts, RuleRole,
};
use crate::model::tcp_flags;
use crate::report::fmt::{
    at_or_span, ct_tuple, dst, endpoint, icmp_error, plural, rfc3339_ns, secs, short, tuple_proto,
};

fn who(d: Direction) -> &'static str {
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
    format!(
        "{}: {}  {}>/{}< packets {}{state}",
        h.point,
        tuple_proto(&h.tuple),
        h.packets[0],
        h.packets[1],
        at_or_span(h.first_ns, h.last_ns)
    )
}

/// A conntrack entry as `conntrack -L` shows its tuples, with where it was read.
fn entry(e: &EntryFacts) -> String {
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

fn ids(conns: &[String]) -> String {
    if conns.len() > 4 {
        format!("{} and {} more", conns[..4].join(", "), conns.len() - 4)
    } else {
        conns.join(", ")
    }
}

/// One line of evidence.
/// `dropped by filter FORWARD (iptables.txt:12): -A FORWARD -p tcp ... -j DROP`.
fn rule(role: RuleRole, r: &RuleFacts) -> String {
    let what = match role {
        RuleRole::Dropped => "dropped by",
        RuleRole::Rejected => "rejected by",
        RuleRole::Policy => "dropped by the policy of",
        RuleRole::Translated => "translated by",
        RuleRole::Disagrees => "the rules decide with",
        RuleRole::NeverSaw => "never seen by",
    };
    let place = match (r.line, r.handle) {
        (0, Some(h)) => format!("{} handle {h}", r.source),
        (line, _) => format!("{}:{line}", r.source),
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
        Evidence::Splice(f) => super::userland_proxy::fact(f),
        _ => loss_line(e)
            .or_else(|| arrival_line(e))
            .or_else(|| ct_line(e))
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
            reason,
            from,
            to,
        } => format!(
            "{} {} went {from} > {to}",
            ids(conns),
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
            "conntrack -E ({source}:{line}): the entry was destroyed at {}, {} before{}",
            rfc3339_ns(*time_ns),
            short(*before_ns),
            by.as_deref()
                .map(|b| format!(", by a program ([USERSPACE] {b})"))
                .unwrap_or_else(|| ", by the kernel (a timeout or a clash)".to_string())
        ),
        Evidence::Stats(counters) => format!(
            "conntrack -S: {}",
            counters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Evidence::Entry(e) => entry(e),
        Evidence::Lines(places) => format!("lines {}", places.join(", ")),
        Evidence::SnapshotEstimated { ns, source } => {
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
        _ => return None,
    };
    Some(s)
}
