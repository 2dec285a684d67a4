//! `hairpin-no-masq` (FM-07), from the wire: a connection DNATed back to its own
//! client (a container to its own published port, a pod to its own service) with its
//! source left as it was. The translated packets reach the client carrying its own
//! address as source and destination: it drops them (a packet from itself arriving
//! on its interface) or answers itself directly, never back through NAT, so the
//! connection cannot complete. Whatever the protocol, and wherever the capture
//! points are: the link that changed the destination to the client's own address
//! and kept its source is the evidence.

use crate::audit::{Code, Ctx, Detail, Finding, Role, Severity};
use crate::correlate::Connection;

/// The connection's link that DNATed it back to its own client without changing its
/// source, if any.
pub fn link(conn: &Connection) -> Option<usize> {
    conn.links.iter().position(|l| {
        let after = &conn.hops[l.to].flow.tuple;
        l.change.dst_addr_changed && !l.change.src_addr_changed && after.src == after.dst
    })
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for (ci, conn) in x.c.connections.iter().enumerate() {
        if conn.icmp_error().is_some() {
            continue;
        }
        let Some(li) = link(conn) else {
            continue;
        };
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

    /// Without the client's own point the hairpin is not on the wire (the bridge
    /// shows the packets already DNATed), and nothing is said from the captures.
    #[test]
    fn silent_without_the_clients_point_and_on_translations_elsewhere() {
        for s in ["fault-hairpin-no-masq", "published-port", "nodeport"] {
            assert!(run(&wire(s), &[], Code::HairpinNoMasq).is_empty(), "{s}");
        }
    }
}
