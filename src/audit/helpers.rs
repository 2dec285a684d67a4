//! NAT helpers (ALGs) and the connections they expect.
//!
//! A helper (`nf_conntrack_ftp`, `_tftp`, `_sip`, `_irc`, `_h323`, ...; assigned by a
//! raw-table `CT --helper` rule or an nft `ct helper set`) reads a control connection's
//! payload for the address and port of a connection to come (FTP's PORT and 227
//! reply, SIP's SDP) and registers an expectation for it. The connection that comes is
//! RELATED to its master: conntrack gives it the master's NAT (`nf_nat_follow_master`:
//! the master's addresses, the port the payload named), and no nat rule sees its
//! first packet.
//!
//! A connection has a helper when the correlation saw its payload rewritten between
//! two hops (`Link::rewritten`), a conntrack entry of it names one (`helper=`), or its
//! way through the rule set given meets a rule that assigns one ([`assigned`]). A
//! translated connection without a helper of its own is expected by such a master when
//! it began while the master was open (a TCP master: FTP, IRC, H.323 keep their
//! control connection open while the connections they announced start), or at most
//! [`UDP_AFTER_NS`] after its last packet (a UDP master: a TFTP request is one
//! datagram, and the transfer follows it), every address it carried, before and after
//! the translation, is one of the master's, and it went to another port than the
//! master did (another control connection to the same server is not one the helper
//! announced). Where several masters qualify, the one that began last before it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt};

use super::rules::{rule_target, Attribution};
use crate::correlate::{Connection, Correlation};
use crate::model::NatKind;
use crate::rules::eval::{Event, RuleRef};
use crate::rules::{RuleSet, Target};

/// How long after a UDP master's last packet an expected connection may begin.
pub const UDP_AFTER_NS: i64 = 5_000_000_000;

/// Whether the correlation saw a helper rewrite connection `conn`'s payload.
pub fn rewrote(conn: &Connection) -> bool {
    (conn.links.iter()).any(|l| l.rewritten.fwd.packets + l.rewritten.rev.packets > 0)
}

/// The helper a connection's way through the rules assigns (the way the wire
/// confirms, else any): the name its rule gives, and the rule.
pub fn assigned<'r, 'a>(rules: &'r RuleSet, a: &'a Attribution) -> Option<(&'r str, &'a RuleRef)> {
    let confirmed = a.outcome();
    let others = a.walk.outcomes.iter().filter(|_| confirmed.is_none());
    (confirmed.into_iter().chain(others))
        .flat_map(|o| &o.events)
        .find_map(|e| match e {
            Event::Matched(r) => match rule_target(rules, r) {
                Some(Target::Helper { name }) => Some((name.as_str(), r)),
                _ => None,
            },
            _ => None,
        })
}

/// Every address connection `conn` carried at any hop, sorted, each once.
fn addresses(conn: &Connection) -> Vec<IpAddr> {
    let mut a: Vec<IpAddr> = (conn.hops.iter())
        .flat_map(|h| [h.flow.tuple.src, h.flow.tuple.dst])
        .collect();
    a.sort_unstable();
    a.dedup();
    a
}

/// When a connection began and ended (its hops' first and last packets).
fn span(conn: &Connection) -> Option<(i64, i64)> {
    let first = conn.hops.iter().map(|h| h.first_ns).min()?;
    let last = conn.hops.iter().map(|h| h.last_ns).max()?;
    Some((first, last))
}

/// The connections helpers expected: expected connection → its master (indices),
/// given which connections have a helper.
pub fn expected(c: &Correlation, has_helper: impl Fn(usize) -> bool) -> BTreeMap<usize, usize> {
    let mut out = BTreeMap::new();
    let masters: Vec<usize> = (0..c.connections.len())
        .filter(|&i| has_helper(i))
        .collect();
    if masters.is_empty() {
        return out;
    }
    // Translated connections by the two addresses of their first hop, in order.
    let mut by_pair: HashMap<(IpAddr, IpAddr), Vec<usize>> = HashMap::new();
    for (i, conn) in c.connections.iter().enumerate() {
        let translated = conn.links.iter().any(|l| l.change.kind != NatKind::None);
        if !translated || conn.icmp_error().is_some() {
            continue;
        }
        if let Some(h) = conn.hops.first() {
            let (a, b) = (h.flow.tuple.src, h.flow.tuple.dst);
            by_pair.entry((a.min(b), a.max(b))).or_default().push(i);
        }
    }
    // (master's first packet, master) for every expected connection, the latest kept.
    let mut best: BTreeMap<usize, (i64, usize)> = BTreeMap::new();
    for &m in &masters {
        let master = &c.connections[m];
        let (Some((start, end)), Some(h), addrs) =
            (span(master), master.hops.first(), addresses(master))
        else {
            continue;
        };
        let port = h.flow.tuple.dport;
        let deadline = match master.proto {
            crate::model::Proto::Tcp => end,
            _ => end.saturating_add(UDP_AFTER_NS),
        };
        for (i, &a) in addrs.iter().enumerate() {
            for &b in &addrs[i + 1..] {
                for &x in by_pair.get(&(a, b)).map_or(&[][..], Vec::as_slice) {
                    let conn = &c.connections[x];
                    let Some((begun, _)) = span(conn) else {
                        continue;
                    };
                    let fits = !has_helper(x)
                        && conn
                            .hops
                            .first()
                            .is_some_and(|h| h.flow.tuple.dport != port)
                        && begun > start
                        && begun <= deadline
                        && addresses(conn)
                            .iter()
                            .all(|a| addrs.binary_search(a).is_ok());
                    let later = best.get(&x).is_none_or(|&(s, _)| start > s);
                    if fits && later {
                        best.insert(x, (start, m));
                    }
                }
            }
        }
    }
    out.extend(best.into_iter().map(|(x, (_, m))| (x, m)));
    out
}
