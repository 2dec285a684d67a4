//! `ct-contradiction`: an entry whose ORIGINAL tuple is a hop on the wire, and whose
//! translation (ORIGINAL → reverse of REPLY) is the tuple of no later hop (a
//! translation may show in steps across three points). The snapshot does not describe
//! the captured traffic. Where every later hop shows the ORIGINAL tuple unchanged, that
//! is a contradiction only if the last of them is past the NAT for this traffic (a
//! point where other connections show NAT hiding the address the entry changes):
//! else the captures hold no packet of it that reached the NAT (dropped before it, or
//! cut away by the capture's start or `--since`).

use super::entry_finding;
use crate::audit::ct::{locate, translated_downstream};
use crate::audit::{Code, CtFacts, Ctx, Detail, Evidence, Finding, Role, Seen, Severity};
use crate::correlate::Connection;
use crate::model::{NatChange, Tuple};

/// Whether the wire shows connection `conn` untranslated at a point past the NAT that
/// would have made `post` of the hop `hi` tuple: every later hop keeps that tuple, and
/// the last is at a point where NAT hides the source the entry replaces (SNAT), or
/// where traffic to the destination it replaces went on to (DNAT), as other
/// connections show. Then the entry's translation should show there, and does not.
fn untranslated_past_nat(x: &Ctx, conn: &Connection, hi: usize, post: &Tuple) -> bool {
    let (here, last) = (&conn.hops[hi], &conn.hops[conn.hops.len() - 1]);
    let orig = here.flow.tuple;
    if conn.hops[hi + 1..].iter().any(|h| h.flow.tuple != orig) {
        // A translation other than the entry's shows: that contradicts it wherever.
        return true;
    }
    let snat = orig.src != post.src && x.topo.hides(last.point, orig.src);
    let dnat = orig.dst != post.dst
        && x.topo
            .published
            .get(&(here.point, orig.proto, orig.dst, orig.dport))
            .is_some_and(|next| next.contains_key(&last.point));
    snat || dnat
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for snap in x.snapshots {
        for e in &snap.entries {
            let Some((ci, hi)) = locate(x.c, &x.hops_by_tuple, e) else {
                continue;
            };
            let conn = &x.c.connections[ci];
            let post = e.post();
            if translated_downstream(conn, hi, &post) || !untranslated_past_nat(x, conn, hi, &post)
            {
                continue;
            }
            // The whole translation the wire shows: up to the last hop.
            let Some(next) = conn.hops.last() else {
                continue;
            };
            let here = &conn.hops[hi];
            let (hname, nname) = (x.name(here.point), x.name(next.point));
            let mut f = entry_finding(
                x,
                Code::CtContradiction,
                Severity::Error,
                e,
                Some(ci),
                CtFacts {
                    wire_point: Some(nname.to_string()),
                    wire_change: Some(NatChange::between(&here.flow.tuple, &next.flow.tuple)),
                    ..CtFacts::default()
                },
            );
            f.points = vec![hname.to_string(), nname.to_string()];
            f.tuples = vec![
                Seen {
                    point: hname.to_string(),
                    role: Role::Original,
                    tuple: here.flow.tuple,
                },
                Seen {
                    point: nname.to_string(),
                    role: Role::Wire,
                    tuple: next.flow.tuple,
                },
            ];
            f.packets = next.flow.packets[0] + next.flow.packets[1];
            f.evidence.push(Evidence::WireChange {
                from_point: hname.to_string(),
                from: here.flow.tuple,
                to_point: nname.to_string(),
                to: next.flow.tuple,
            });
            if let Detail::Conntrack { wire, .. } = &mut f.detail {
                *wire = Some(next.flow.tuple);
            }
            out.push(f);
        }
    }
    out
}
