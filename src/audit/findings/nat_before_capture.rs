//! `nat-before-capture`: a connection every capture shows already translated. Its
//! conntrack entry holds the tuple before NAT, and no capture point saw that tuple:
//! the tuple after NAT is the connection's first hop ([`ct::upstream`]). Either the
//! interface the connection came in by was not captured (only the bridge, only the
//! uplink), or the host opened the connection itself and NAT translated it in
//! OUTPUT, before any interface: a host process reaching a published port by the
//! host's own address (Docker without its userland proxy), a node reaching a
//! Kubernetes ClusterIP. Without the entry the path reads as untranslated.
//!
//! One finding per connection, from the first table (then event log) in input order
//! that has its entry. Info: NAT working; it says what the captures cannot show. An
//! entry that DNATs its client back to itself is `ct-hairpin-no-masq`'s, not this.

use super::entry_finding;
use crate::audit::{ct, Code, CtFacts, Ctx, Detail, Finding, Role, Seen, Severity};

pub fn detect(x: &Ctx) -> Vec<Finding> {
    ct::upstream_entries(&x.hops_by_tuple, x.snapshots)
        .into_iter()
        .filter(|(_, e)| !super::ct_hairpin_no_masq::back_to_client(e))
        .map(|(ci, e)| {
            let conn = &x.c.connections[ci];
            let hop = &conn.hops[0];
            let point = x.c.points[hop.point].name.clone();
            let local = x.sent_by_host(ci, &e.orig);
            let mut f = entry_finding(
                x,
                Code::NatBeforeCapture,
                Severity::Info,
                e,
                Some(ci),
                CtFacts {
                    local,
                    ..CtFacts::default()
                },
            );
            if let Detail::Conntrack { wire, .. } = &mut f.detail {
                *wire = Some(hop.flow.tuple);
            }
            f.points = vec![point.clone()];
            f.tuples = vec![Seen {
                point,
                role: Role::Wire,
                tuple: hop.flow.tuple,
            }];
            f.packets = hop.flow.packets[0] + hop.flow.packets[1];
            f
        })
        .collect()
}
