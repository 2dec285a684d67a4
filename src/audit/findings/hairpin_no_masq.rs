//! `hairpin-no-masq` (FM-07), from the wire: a connection DNATed back to its own
//! client (a container to its own published port, a pod to its own service) with its
//! source left as it was. The translated packets reach the client carrying its own
//! address as source and destination: it drops them (a packet from itself arriving
//! on its interface) or answers itself directly, never back through NAT, so the
//! connection cannot complete. Whatever the protocol, and wherever the capture
//! points are: the link that changed the destination to the client's own address
//! and kept its source is the evidence.

use foldhash::{HashMap, HashMapExt};

use super::with_link;
use crate::audit::ct::CtEntry;
use crate::audit::{Code, Ctx, Detail, Evidence, Finding, Role, Severity};
use crate::correlate::Connection;
use crate::model::Tuple;

/// The connection's link that DNATed it back to its own client without changing its
/// source, if any.
pub fn link(conn: &Connection) -> Option<usize> {
    conn.links.iter().position(|l| {
        let after = &conn.hops[l.to].flow.tuple;
        l.change.dst_addr_changed && !l.change.src_addr_changed && after.src == after.dst
    })
}

/// How long conntrack keeps an unanswered entry at least (UDP's 30 s; a TCP entry in
/// SYN_SENT lasts 120 s): a snapshot taken sooner after a connection's last packet
/// holds its entry, if the kernel ever confirmed one.
const UNREPLIED_LIFE_NS: i64 = 30_000_000_000;

/// What conntrack says of the hairpin connections `conns`: the first entry, in input
/// order, whose tuples (ORIGINAL, or the one after NAT) are one of a connection's hops',
/// either way round, by connection.
fn entries<'a>(x: &Ctx<'a>, conns: &[usize]) -> HashMap<usize, &'a CtEntry> {
    let mut found = HashMap::new();
    if conns.is_empty() {
        return found;
    }
    let mut of: HashMap<Tuple, usize> = HashMap::new();
    for &ci in conns {
        for h in x.c.connections[ci].all_hops() {
            of.entry(h.flow.tuple.canonical()).or_insert(ci);
        }
    }
    for snap in x.snapshots {
        for e in &snap.entries {
            let hit = [e.orig, e.post()]
                .iter()
                .find_map(|t| of.get(&t.canonical()).copied());
            if let Some(ci) = hit {
                found.entry(ci).or_insert(e);
            }
        }
    }
    found
}

/// The conntrack evidence of a hairpin: its entry (the DNAT back to the client, no
/// masquerade), or a snapshot taken within an unanswered entry's life after its last
/// packet that holds none: the kernel never confirmed one.
fn conntrack_evidence(x: &Ctx, conn: &Connection, entry: Option<&CtEntry>) -> Option<Evidence> {
    if let Some(e) = entry {
        return Some(Evidence::Entry(e.facts()));
    }
    let (first, last) = (conn.first_ns(), conn.last_ns());
    x.snapshots
        .iter()
        .zip(x.snap_times())
        .find_map(|(snap, t)| {
            let t = (*t)?;
            (t.ns - t.slack_ns > first && t.ns + t.slack_ns < last + UNREPLIED_LIFE_NS).then(|| {
                Evidence::NoEntry {
                    snapshot: snap.source.clone(),
                    ns: t.ns,
                    after_ns: t.ns - last,
                }
            })
        })
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    let hairpins: Vec<usize> = with_link(x, link).map(|(ci, ..)| ci).collect();
    let entries = entries(x, &hairpins);
    for (ci, conn, li) in with_link(x, link) {
        let l = &conn.links[li];
        let first = &conn.hops[0];
        // Where the translated packets went last: the point they came back to.
        let back = &conn.hops[conn.hops.len() - 1];
        let [delivered, replies] = back.flow.packets;
        let mut f = Finding::new(
            Code::HairpinNoMasq,
            Severity::Error,
            Detail::HairpinNoMasq {
                client: first.flow.tuple,
                back_at: x.name(back.point).to_string(),
                delivered,
                replies,
            },
        );
        f.tuples = vec![
            x.seen(first, Role::Original),
            x.seen(back, Role::Translated),
        ];
        f.points = vec![x.name(first.point).to_string()];
        if back.point != first.point {
            f.points.push(x.name(back.point).to_string());
        }
        let to = &conn.hops[l.to];
        f.evidence.push(x.translation(ci, &conn.hops[l.from], to));
        f.evidence.push(x.hop(back));
        let entry = entries.get(&ci).copied();
        f.evidence.extend(conntrack_evidence(x, conn, entry));
        f.first_ns = Some(conn.first_ns());
        f.last_ns = Some(conn.last_ns());
        f.packets = delivered;
        f.conns = vec![ci];
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::findings::testing::*;
    use crate::model::Proto;

    /// Over TCP and over UDP: the container's own point, the bridge and the uplink.
    #[test]
    fn a_client_dnated_to_itself_is_one_error() {
        for s in ["fault-hairpin-no-masq", "fault-hairpin-udp"] {
            let c = wire_at(s, &["veth-c1", "docker0", "eth0"]);
            let got = run(&c, &[], Code::HairpinNoMasq);
            assert_eq!(got.len(), 1, "{s}: {got:?}");
            let Detail::HairpinNoMasq {
                client,
                back_at,
                delivered,
                replies,
            } = &got[0].detail
            else {
                panic!("{s}: {:?}", got[0].detail);
            };
            // The client spoke to an address of the host, and was sent back to itself.
            assert_ne!(client.dst, client.src, "{s}");
            assert_eq!(back_at, "veth-c1", "{s}");
            assert!(*delivered > 0, "{s}");
            assert_eq!(*replies, 0, "{s}");
            assert_eq!(got[0].severity, Severity::Error);
        }
    }

    /// conntrack tells the causes apart: an entry with the DNAT back to the client and
    /// no masquerade (no rule matched: TCP and UDP), or none at all in a snapshot taken
    /// soon after (the kernel never confirmed one: a bridge port with hairpin mode
    /// off, the masquerade rules in place; TCP and UDP, over IPv4 and IPv6).
    #[test]
    fn conntrack_says_whether_no_rule_masqueraded_or_no_entry_was_made() {
        for (s, entry) in [
            ("fault-hairpin-no-masq", true),
            ("fault-hairpin-udp", true),
            ("fault-hairpin-mode-off", false),
            ("fault-hairpin-mode-off6", false),
        ] {
            let c = wire_at(s, &["veth-c1", "docker0", "eth0"]);
            let got = run_with(&c, s, &["conntrack.txt"], Code::HairpinNoMasq);
            assert!(!got.is_empty(), "{s}");
            let mut protos: Vec<Proto> = Vec::new();
            for f in &got {
                let said = f.evidence.iter().find_map(|e| match e {
                    Evidence::Entry(e) => Some(e.reply.dst == e.orig.src),
                    Evidence::NoEntry { after_ns, .. } => {
                        assert!(*after_ns > 0, "{s}");
                        Some(false)
                    }
                    _ => None,
                });
                let no_entry = (f.evidence.iter()).any(|e| matches!(e, Evidence::NoEntry { .. }));
                assert_eq!(said, Some(entry), "{s}: {:?}", f.evidence);
                assert_eq!(no_entry, !entry, "{s}");
                protos.push(f.tuples[0].tuple.proto);
            }
            if !entry {
                protos.sort();
                assert_eq!(protos, [Proto::Tcp, Proto::Udp], "{s}");
            }
            // Without a snapshot, the wire alone.
            let plain = run(&c, &[], Code::HairpinNoMasq);
            assert_eq!(plain.len(), got.len(), "{s}");
            assert!(plain.iter().all(|f| !f
                .evidence
                .iter()
                .any(|e| matches!(e, Evidence::Entry(_) | Evidence::NoEntry { .. }))));
        }
    }

    /// Without the client's own point the hairpin is not on the wire (the bridge
    /// shows the packets already DNATed), and nothing is said from the captures.
    #[test]
    fn silent_without_the_clients_point_and_on_translations_elsewhere() {
        for s in ["fault-hairpin-no-masq", "published-port", "nodeport"] {
            assert!(run(&wire(s), &[], Code::HairpinNoMasq).is_empty(), "{s}");
        }
    }
}
