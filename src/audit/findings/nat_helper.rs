//! `nat-helper`: a NAT helper (an ALG) at work. FTP, SIP, TFTP, IRC and H.323 carry
//! addresses in their payload; the kernel's helper for the protocol (assigned by a
//! raw-table `CT --helper` rule or an nft `ct helper set`) writes the translated
//! address in place of the original and, where the length changes, shifts the
//! connection's later sequence numbers; it also expects the connections the payload
//! announces (FTP's data connections, SIP's media) and NAT translates them as it
//! translated their master, without a rule of their own (`audit::helpers`).
//!
//! One finding per master whose payload the correlation saw rewritten or whose
//! expected connections it saw: which packets were rewritten, the shift, the
//! connections expected. Info: NAT working as configured; it says why those
//! connections carry a translation no nat rule makes, and why the master's packets
//! differ from hop to hop.

use crate::audit::helpers;
use crate::audit::{Code, Ctx, Detail, Evidence, Finding, Role, RuleRole, Severity};
use crate::model::NatKind;

/// The link of `conn` the helper worked at: the first that rewrote a payload, else
/// the first that translated.
fn link(conn: &crate::correlate::Connection) -> Option<usize> {
    let rewrote = |l: &crate::correlate::Link| !l.rewritten.is_none();
    (conn.links.iter().position(rewrote)).or_else(|| {
        conn.links
            .iter()
            .position(|l| l.change.kind != NatKind::None)
    })
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    // Each master's expected connections, in connection order.
    let mut expected: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (&k, &m) in &x.expected {
        expected.entry(m).or_default().push(k);
    }
    let masters: Vec<usize> = (0..c.connections.len())
        .filter(|&ci| expected.contains_key(&ci) || helpers::rewrote(&c.connections[ci]))
        .collect();
    let mut out = Vec::new();
    for ci in masters {
        let conn = &c.connections[ci];
        let Some(li) = link(conn) else { continue };
        let l = &conn.links[li];
        let (before, after) = (&conn.hops[l.from], &conn.hops[l.to]);
        let theirs = expected.remove(&ci).unwrap_or_default();
        let entry = x
            .entries_of(ci)
            .map(|(_, e)| e)
            .find(|e| e.helper.is_some());
        let rule =
            (x.rules.zip(x.attribution(ci))).and_then(|(rules, a)| helpers::assigned(rules, a));
        let helper = (entry.and_then(|e| e.helper.clone()))
            .or_else(|| rule.map(|(name, _)| name.to_string()));
        let mut f = Finding::new(
            Code::NatHelper,
            Severity::Info,
            Detail::NatHelper {
                helper,
                rewritten: [l.rewritten.fwd.packets, l.rewritten.rev.packets],
                shift: [l.rewritten.fwd.shift, l.rewritten.rev.shift],
                expected: theirs.iter().map(|&k| x.id(k)).collect(),
            },
        );
        f.tuples = vec![
            x.seen(before, Role::Original),
            x.seen(after, Role::Translated),
        ];
        f.points = vec![
            x.name(before.point).to_string(),
            x.name(after.point).to_string(),
        ];
        f.evidence.push(x.translation(ci, before, after));
        if let Some(e) = entry {
            f.evidence.push(Evidence::Entry(e.facts()));
        }
        if let Some(e) = rule.and_then(|(_, r)| x.rule(r, RuleRole::AssignsHelper)) {
            f.evidence.push(e);
        }
        for &k in &theirs {
            let other = &c.connections[k];
            if let Some(n) = link(other).map(|i| &other.links[i]) {
                f.evidence
                    .push(x.translation(k, &other.hops[n.from], &other.hops[n.to]));
            }
        }
        f.first_ns = Some(conn.first_ns());
        f.last_ns = Some(conn.last_ns());
        f.packets = l.rewritten.fwd.shifted + l.rewritten.rev.shifted;
        f.conns = std::iter::once(ci).chain(theirs).collect();
        out.push(f);
    }
    out
}
