//! `hairpin-direct-reply` (FM-07 beyond the client itself): a connection DNATed back
//! out of the interface it came in by, to a server other than the client, with the
//! client's address kept as its source. A server that reaches the client without the
//! host (on the client's own link, or across the same bridge) answers it directly,
//! past the host's conntrack: the answer keeps the server's own address, which the
//! client never spoke to, and the client refuses it (a TCP reset) or takes a datagram
//! from an address it did not ask. A router's NAT loopback whose masquerade leaves
//! the LAN's own destinations alone, or a container reaching another's published port
//! on a bridge that does not call netfilter, both look so.
//!
//! From the wire: the link that changed the destination and kept the source starts
//! and ends at one point, the point saw the translated packets leave, and no answer
//! came back to the client's side of the translation. Answers from the server seen
//! after the translation (the bridge's capture, the server's own link) are the proof:
//! an error, and those packets are not also reported lost (they never came back
//! through the host to be translated). With no answer anywhere, a warning: the server
//! answered out of sight, or not at all. The client DNATed to itself is
//! `hairpin-no-masq`'s.

use super::{hairpin_no_masq, with_link, Detected};
use crate::audit::{Code, Ctx, Detail, Direction, Explained, Finding, Role, Severity};
use crate::correlate::Connection;

/// How long the point must have been capturing after the first translated packet for
/// the lack of any answer to count: far longer than a round trip on one link.
const ANSWER_WAIT_NS: i64 = 1_000_000_000;

/// The connection's link that sent it back out of the interface it came in by with a
/// new destination, other than the client, and its source kept, if any.
pub fn link(conn: &Connection) -> Option<usize> {
    if hairpin_no_masq::link(conn).is_some() {
        return None;
    }
    conn.links.iter().position(|l| {
        let (before, after) = (&conn.hops[l.from], &conn.hops[l.to]);
        l.change.dst_addr_changed
            && !l.change.src_addr_changed
            && before.point == after.point
            && after.flow.tuple.src != after.flow.tuple.dst
            && l.evidence.matched_fwd > 0
    })
}

pub fn detect(x: &Ctx, _: &Explained) -> Detected {
    let mut out = Detected::default();
    for (ci, conn, li) in with_link(x, link) {
        let l = &conn.links[li];
        let (before, after) = (&conn.hops[l.from], &conn.hops[l.to]);
        // The client's packets the translation sent on (at a bridge the point also
        // sees what the client then sends the server straight, its resets).
        let delivered = l.evidence.matched_fwd;
        // An answer that came back through the host was translated back: it works.
        if before.flow.packets[1] > 0 || delivered == 0 {
            continue;
        }
        // The server's answers as it sent them: the first point past the translation
        // that saw any.
        let answered = conn.hops[l.to..].iter().find(|h| h.flow.packets[1] > 0);
        let severity = if answered.is_some() {
            Severity::Error
        } else {
            let waited = (x.span(after.point))
                .is_some_and(|(_, end)| end - after.first_ns >= ANSWER_WAIT_NS);
            if !waited {
                continue;
            }
            Severity::Warning
        };
        let mut f = Finding::new(
            Code::HairpinDirectReply,
            severity,
            Detail::HairpinDirectReply {
                client: before.flow.tuple,
                server: after.flow.tuple,
                at: x.name(after.point).to_string(),
                delivered,
                answers: answered.map_or(0, |h| h.flow.packets[1]),
                answers_at: answered.map(|h| x.name(h.point).to_string()),
            },
        );
        f.tuples = vec![
            x.seen(before, Role::Original),
            x.seen(after, Role::Translated),
        ];
        f.points = vec![x.name(after.point).to_string()];
        if let Some(h) = answered.filter(|h| h.point != after.point) {
            f.points.push(x.name(h.point).to_string());
        }
        f.evidence.push(x.translation(ci, before, after));
        f.evidence.push(x.hop(before));
        f.evidence.push(x.hop(after));
        if let Some(h) = answered.filter(|h| h.point != after.point) {
            f.evidence.push(x.hop(h));
        }
        f.first_ns = Some(conn.first_ns());
        f.last_ns = Some(conn.last_ns());
        f.packets = delivered;
        f.conns = vec![ci];
        // The answers never came back through the host: not lost on the way back.
        // Where the client's own link was captured, it also shows the translated flow
        // (the answers, and what the client sends the server straight, its resets),
        // placed on the path before the translation: what its links miss either way
        // went around the host too.
        let around = |h: usize| h < l.to && conn.hops[h].flow.tuple == after.flow.tuple;
        for (k, lk) in conn.links.iter().enumerate().take(li + 1) {
            let (fwd, rev) = (lk.unmatched.lost_fwd.packets, lk.unmatched.lost_rev.packets);
            out.explains.add(ci, k, Direction::Rev, rev);
            if around(lk.from) || around(lk.to) {
                out.explains.add(ci, k, Direction::Fwd, fwd);
            }
        }
        out.explains.add_stopped(ci);
        out.findings.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;

    /// A router's NAT loopback over IPv4 and IPv6 (no answer in any capture: a
    /// warning) and a bridge that does not call netfilter (the answers seen
    /// untranslated: an error), over TCP and UDP each; the port forward answered
    /// through the host and the masqueraded connections beside them are left alone.
    #[test]
    fn a_connection_sent_back_out_with_its_source_kept_is_answered_past_the_host() {
        for (s, severity, answers_at) in [
            ("fault-hairpin-routed-no-masq", Severity::Warning, None),
            ("fault-hairpin-routed-no-masq6", Severity::Warning, None),
            (
                "fault-hairpin-no-br-netfilter",
                Severity::Error,
                Some("docker0"),
            ),
        ] {
            let c = wire_at(s, &["veth-c1", "docker0", "eth0"]);
            let got = run(&c, &[], Code::HairpinDirectReply);
            assert_eq!(got.len(), 2, "{s}: {got:?}");
            for f in &got {
                let Detail::HairpinDirectReply {
                    client,
                    server,
                    delivered,
                    answers,
                    answers_at: at,
                    ..
                } = &f.detail
                else {
                    panic!("{s}: {:?}", f.detail);
                };
                assert_eq!(f.severity, severity, "{s}");
                assert_eq!(client.src, server.src, "{s}: source kept");
                assert_ne!(client.dst, server.dst, "{s}: DNATed");
                assert!(*delivered > 0, "{s}");
                assert_eq!(at.as_deref(), answers_at, "{s}");
                assert_eq!(*answers > 0, answers_at.is_some(), "{s}");
            }
        }
    }

    /// Where the captures stop within a second of the translated packets, no answer is
    /// no evidence: nothing is said.
    #[test]
    fn silent_when_the_captures_stop_before_an_answer_could_come() {
        use crate::capture::{InputSpec, ReadOptions, TimeRange};
        use crate::correlate::{self, Config};
        let s = "fault-hairpin-routed-no-masq";
        let got = run(&wire(s), &[], Code::HairpinDirectReply);
        let first = got.iter().filter_map(|f| f.first_ns).min().unwrap();
        let root = env!("CARGO_MANIFEST_DIR");
        let specs: Vec<InputSpec> = (["docker0", "eth0"].iter())
            .map(|p| format!("{root}/samples/{s}/{p}.pcap").parse().unwrap())
            .collect();
        // The points' span ends a window (1 s) before the end of the range read.
        let opts = ReadOptions {
            range: TimeRange::new(None, Some(first + 1_500_000_000)).unwrap(),
            ..ReadOptions::default()
        };
        let cut = correlate::run(&specs, &opts, Config::default());
        assert!(cut.connections.iter().any(|c| link(c).is_some()));
        assert!(run(&cut, &[], Code::HairpinDirectReply).is_empty());
    }

    /// Hairpins that work (masqueraded back through the host, routed or bridged with
    /// netfilter) and a client DNATed to itself (`hairpin-no-masq`'s) are not this.
    #[test]
    fn silent_where_the_answers_come_back_through_the_host() {
        for s in [
            "hairpin-routed",
            "hairpin-routed6",
            "one-armed",
            "fault-hairpin-no-masq",
            "fault-hairpin-udp",
            "published-port",
        ] {
            let c = wire_at(s, &["veth-c1", "docker0", "eth0"]);
            assert!(run(&c, &[], Code::HairpinDirectReply).is_empty(), "{s}");
        }
    }
}
