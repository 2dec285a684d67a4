//! The rule-set witness as the audit sees it: for every connection NAT translated
//! (and every one whose path stops short at the NAT host), its first packet walked
//! through the host's rules as it arrived, and the way through them that the wire
//! confirms: the rule that made each translation, the chains that led there, which
//! filter hook it met (INPUT or FORWARD), or the rule that dropped it.
//!
//! The first packet is the connection's tuple at the point before the translation,
//! arriving on that point's interface and leaving on the next point's. A way through
//! the rules agrees with the wire when it ends where the wire shows the packet went:
//! the same destination and source after NAT (a masquerade to an address the rules
//! cannot know, or a source port NAT moved, agree with any), delivered or forwarded
//! for a connection that crossed, dropped or rejected for one that stopped short.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use super::topology::{Topology, Via};
use super::{WitnessKind, WitnessSummary};
use rayon::prelude::*;

use crate::correlate::{Connection, Correlation, Hop};
use crate::model::{NatKind, Tuple};
use crate::rules::eval::{self, Fate, Outcome, Packet, Walk};
use crate::rules::{HostAddr, RuleSet, Target};

/// One connection's walk through the rules and what the wire says of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub conn: usize,
    /// The first packet as walked.
    pub packet: Packet,
    /// Every way the rules allow, most likely first.
    pub walk: Walk,
    /// The tuple the wire shows after the host (`None` for a connection that stopped
    /// at it).
    pub wire: Option<Tuple>,
    /// The outcome the wire confirms (index into `walk.outcomes`), the most likely
    /// when several do.
    pub chosen: Option<usize>,
}

impl Attribution {
    pub fn outcome(&self) -> Option<&Outcome> {
        self.chosen.and_then(|i| self.walk.outcomes.get(i))
    }
}

/// The interface name of a point: the capture's own, else the point's name.
fn iface(c: &Correlation, p: usize) -> String {
    let pt = &c.points[p];
    pt.interface.clone().unwrap_or_else(|| pt.name.clone())
}

/// The host addresses the captures show when no `ip addr` input gave them: the
/// addresses SNAT gave packets at each point, as that point's interface's.
pub fn learned_addrs(c: &Correlation, topo: &Topology) -> Vec<HostAddr> {
    let mut out = Vec::new();
    for (&p, addrs) in &topo.nat_addrs {
        for &a in addrs {
            out.push(HostAddr {
                iface: iface(c, p),
                prefix: eval::host(a),
            });
        }
    }
    for &a in &topo.host_addrs {
        if !out.iter().any(|h: &HostAddr| h.prefix.addr == a) {
            out.push(HostAddr {
                iface: String::new(),
                prefix: eval::host(a),
            });
        }
    }
    out
}

/// Whether `o`'s translation is what the wire shows: `before` became `after`.
fn agrees(o: &Outcome, before: &Tuple, after: &Tuple) -> bool {
    let crossed = matches!(o.fate, Fate::Delivered | Fate::Forwarded | Fate::Sent);
    if !crossed {
        return false;
    }
    let end = o
        .snat
        .as_ref()
        .or(o.dnat.as_ref())
        .map_or(*before, |n| n.after);
    // What the wire shows is one the rule could give: any address of the target's
    // range (the kernel picks one by a hash of the connection's addresses), any port
    // of its port range; the wire's address where the rule takes an interface's that
    // no input gave.
    fn one_of<T: PartialOrd>(range: Option<(T, T)>, wire: T, walked: T) -> bool {
        match range {
            Some((lo, hi)) => lo <= wire && wire <= hi,
            None => wire == walked,
        }
    }
    let ports = before.proto.has_ports();
    let dst_ok = match &o.dnat {
        Some(n) => {
            (n.to_iface.is_some() || one_of(n.to.addrs, after.dst, end.dst))
                && (!ports || one_of(n.to.ports, after.dport, end.dport))
        }
        None => end.dst == after.dst && (!ports || end.dport == after.dport),
    };
    // SNAT may move the port anywhere (to keep the tuple unique), whatever the rule.
    let src_ok = match &o.snat {
        Some(n) => n.to_iface.is_some() || one_of(n.to.addrs, after.src, end.src),
        None => end.src == after.src && (!ports || end.sport == after.sport),
    };
    dst_ok && src_ok
}

/// The target of a rule by its place.
pub fn rule_target<'a>(rules: &'a RuleSet, r: &eval::RuleRef) -> Option<&'a Target> {
    r.rule(rules).map(|x| &x.target)
}

/// Where the host translated the connection: (the hop whose interface the packet came
/// in by, the hop before the translation, the hop with the whole translation). One
/// link usually; two when a bridge with bridge netfilter shows the packet already
/// DNATed (its PREROUTING ran as the bridge received it from a port) and the uplink
/// shows the SNAT: the packet then came in by the bridge, not by the port.
///
/// With one link, the packet came in by the point before it, unless no router lies
/// between the two points (the same TTL at both): a bridge port and its bridge, whose
/// PREROUTING ran as the bridge received the packet, so the bridge is the interface it
/// came in by (a REDIRECT or DNAT of a container's traffic shows at `docker0`).
fn translating_links(conn: &Connection) -> Option<(usize, usize, usize)> {
    let mut nat = conn.links.iter().filter(|l| l.change.kind != NatKind::None);
    let first = nat.next()?;
    match nat.next_back() {
        Some(last) => Some((first.to, first.from, last.to)),
        None => {
            let (a, b) = (&conn.hops[first.from], &conn.hops[first.to]);
            let bridged = a.fwd_ttl.is_some() && a.fwd_ttl == b.fwd_ttl;
            let by = if bridged { first.to } else { first.from };
            Some((by, first.from, first.to))
        }
    }
}

/// When point `b` is the bridge that point `a` is a port of, the point packets from
/// `a` met the rules by and the one they left by: bridge netfilter runs PREROUTING as
/// the bridge receives a packet from its port, with the bridge as the interface it
/// came in by (`-i docker0`), and FORWARD routes it out where the connections that went
/// `a` > `b` went next. Known from those connections: the same TTL at `a` and `b` (no
/// router between them), and the point after `b`, when one was captured.
///
/// Asked for every connection that stops short at `a`, and the answer is the same for
/// all whose traffic goes the same way (the connections in `via` are those of the
/// topology's lists, less one that never reached `b`): it is kept by the lists, so a
/// bridge port where thousands stop costs one walk of them.
fn bridged_into(
    c: &Correlation,
    a: usize,
    b: usize,
    via: Via,
    known: &Mutex<HashMap<BridgedKey, Bridged>>,
) -> Bridged {
    let key = (a, b, via.key());
    if let Some(&found) = known.lock().expect("no panic holds it").get(&key) {
        return found;
    }
    let found = bridged_walk(c, a, b, via);
    known.lock().expect("no panic holds it").insert(key, found);
    found
}

/// Where a bridge's traffic met the rules and left ([`bridged_into`]).
type Bridged = Option<(usize, Option<usize>)>;

/// The points and the lists of the connections that went from one to the other.
type BridgedKey = (usize, usize, [(usize, usize); 2]);

fn bridged_walk(c: &Correlation, a: usize, b: usize, via: Via) -> Bridged {
    let mut bridged = false;
    for k in via.iter() {
        let hops = &c.connections[k].hops;
        let Some(i) = hops
            .windows(2)
            .position(|w| w[0].point == a && w[1].point == b)
        else {
            continue;
        };
        if hops[i].fwd_ttl.is_none() || hops[i].fwd_ttl != hops[i + 1].fwd_ttl {
            return None;
        }
        bridged = true;
        if let Some(after) = hops.get(i + 2) {
            return Some((b, Some(after.point)));
        }
    }
    bridged.then_some((b, None))
}

/// A connection seen at one point only, to an address of the host, that got no
/// answer: where else it should have gone only the rules can say.
fn unanswered_to_host<'a>(
    rules: &RuleSet,
    conn: &'a Connection,
) -> Option<&'a crate::correlate::Hop> {
    let [h] = conn.hops.as_slice() else {
        return None;
    };
    let f = &h.flow;
    // Link-local control traffic (neighbour discovery, MLD, DHCP) is not a connection
    // anything was meant to answer through the rules.
    (f.packets[0] > 0
        && f.packets[1] == 0
        && f.icmp_error.is_none()
        && !f.is_control()
        && rules.is_local(f.tuple.dst))
    .then_some(h)
}

/// Where a connection that stops short was going: the next point its kind of traffic
/// reaches, and the connections that went there.
pub type Next<'a> = &'a (dyn Fn(usize) -> Option<(usize, Via<'a>)> + Sync);

/// Walks through `rules` every translated connection, every one that stops short
/// with `next(ci)` naming where its kind of traffic goes, every unanswered one to an
/// address of the host, and every one the host sent itself whose tuple before NAT no
/// capture shows (`sent`: connection → the tuple it was sent with, from its entry),
/// from OUTPUT.
pub fn attribute(
    c: &Correlation,
    rules: &RuleSet,
    next: Next,
    sent: &BTreeMap<usize, Tuple>,
) -> Vec<Attribution> {
    let index = eval::Index::new(rules);
    let ifaces: Vec<Arc<str>> = (0..c.points.len())
        .map(|p| Arc::from(iface(c, p)))
        .collect();
    let onward = Onward {
        next,
        bridged: Mutex::new(HashMap::default()),
    };
    // Each connection's walk is independent of the others': in parallel, in
    // connection order.
    c.connections
        .par_iter()
        .enumerate()
        .filter_map(|(ci, conn)| {
            let sent = sent.get(&ci).copied();
            attribute_one(c, rules, &index, &ifaces, &onward, (ci, conn, sent))
        })
        .collect()
}

/// Where connections that stop short were going ([`Next`]), and where a bridge's
/// traffic met the rules and left, kept per list of connections that went that way
/// ([`bridged_into`]).
struct Onward<'a> {
    next: Next<'a>,
    bridged: Mutex<HashMap<BridgedKey, Bridged>>,
}

/// The walk of connection `ci`'s first packet, if it was translated, stopped at the
/// host, went unanswered to a host address, or was `sent` by the host with a tuple no
/// capture shows.
fn attribute_one(
    c: &Correlation,
    rules: &RuleSet,
    index: &eval::Index,
    ifaces: &[Arc<str>],
    onward: &Onward,
    (ci, conn, sent): (usize, &Connection, Option<Tuple>),
) -> Option<Attribution> {
    let iface = |p: usize| Some(ifaces[p].clone());
    // The interface a hop's packets met the rules by: its point's, unless the point
    // saw them inside a tunnel (its outer headers): the host took them in by, or sent
    // them out by, the tunnel's own device (vxlan0, tunl0), which no point names.
    let tunnelled = |h: &Hop| h.flow.tunnels()[0].is_some();
    let by = |h: &Hop| iface(h.point).filter(|_| !tunnelled(h));
    // An ICMP error is RELATED to the connection it quotes: NAT follows that
    // connection's entry, and no nat rule ever sees it as a first packet.
    if conn.icmp_error().is_some() {
        return None;
    }
    // The first packet, the tuple the wire shows after the rules (where a link
    // translated it), the tuple before, and whether the connection, seen no further
    // than its last point, was answered there: then the host took it in (a local
    // socket, a REDIRECT), it was not stopped.
    let (packet, wire, before, answered) = if let Some((by_hop, from, to)) = translating_links(conn)
    {
        let (a, b) = (&conn.hops[from], &conn.hops[to]);
        let p = Packet::first(a.flow.tuple, by(&conn.hops[by_hop]), by(b));
        (p, Some(b.flow.tuple), a.flow.tuple, false)
    } else if let (Some((b, via)), Some(last)) = ((onward.next)(ci), conn.hops.last()) {
        let (entry, out) =
            bridged_into(c, last.point, b, via, &onward.bridged).unwrap_or((last.point, Some(b)));
        let p = Packet::first(
            last.flow.tuple,
            iface(entry).filter(|_| !tunnelled(last)),
            out.and_then(iface),
        );
        (p, None, last.flow.tuple, last.flow.packets[1] > 0)
    } else if let Some(h) = unanswered_to_host(rules, conn) {
        let p = Packet::first(h.flow.tuple, by(h), None);
        (p, None, h.flow.tuple, false)
    } else if let (Some(orig), Some(first)) = (sent, conn.hops.first()) {
        // Sent by the host (no interface in), out by the first point's.
        let p = Packet::first(orig, None, by(first));
        (p, Some(first.flow.tuple), orig, false)
    } else {
        return None;
    };
    if !rules.tables.iter().any(|t| t.family.sees(packet.tuple.dst)) {
        // No rules of this address family were given: nothing to walk.
        return None;
    }
    let walk = eval::walk_indexed(rules, index, &packet);
    // Of the ways the wire confirms, the one that rests on the fewest assumptions,
    // then the most likely (the outcomes are sorted by probability).
    let chosen = walk
        .outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| match &wire {
            Some(after) => agrees(o, &before, after),
            None if answered => o.fate == Fate::Delivered,
            None => matches!(o.fate, Fate::Dropped { .. } | Fate::Rejected { .. }),
        })
        .min_by_key(|(i, o)| (o.assumptions(), *i))
        .map(|(i, _)| i);
    Some(Attribution {
        conn: ci,
        packet,
        walk,
        wire,
        chosen,
    })
}

/// DROP and REJECT rules of filter INPUT chains that would have stopped the packet's
/// original tuple had it been delivered locally: the rules a user expects to apply to
/// traffic the host forwards after DNAT.
pub fn unseen_input_rules(rules: &RuleSet, packet: &Packet) -> Vec<eval::RuleRef> {
    let mut out = Vec::new();
    for (ti, t) in rules.tables.iter().enumerate() {
        if !t.family.sees(packet.tuple.dst) {
            continue;
        }
        for (ci, ch) in t.chains.iter().enumerate() {
            let Some(b) = &ch.base else { continue };
            if b.hook != crate::rules::Hook::Input || b.kind != crate::rules::ChainType::Filter {
                continue;
            }
            for (i, r) in ch.rules.iter().enumerate() {
                if matches!(r.target, Target::Drop | Target::Reject { .. })
                    && eval::matches_plainly(rules, r, packet)
                {
                    out.push(eval::RuleRef {
                        table: ti,
                        chain_index: ci,
                        chain: ch.name.as_str().into(),
                        index: i,
                    });
                }
            }
        }
    }
    out
}

/// What the rule set contributed: rules read, connections walked, walks the wire
/// confirms.
pub fn summary(rules: &RuleSet, attributions: &[Attribution]) -> WitnessSummary {
    WitnessSummary {
        source: rules.source.clone(),
        kind: WitnessKind::Rules,
        entries: rules
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum(),
        on_wire: attributions.len(),
        agree: attributions.iter().filter(|a| a.chosen.is_some()).count(),
        time_ns: None,
        time_recorded: false,
    }
}

/// What the targets of a rule set can do to a packet's addresses, gathered once: a
/// connection the rules do not explain is asked about ([`Reach::beyond`]) without a
/// pass over every rule (a kube-proxy host has thousands, and a dump from before a
/// rollout explains none of its connections).
pub struct Reach<'a> {
    rules: &'a RuleSet,
    /// A target natcheck cannot read: it might do anything.
    unknown: bool,
    snat: bool,
    redirect: bool,
    /// A DNAT with no address (a port only): any destination.
    dnat_any: bool,
    /// The DNAT targets' single addresses, sorted, and their ranges of more.
    dnat_addrs: Vec<std::net::IpAddr>,
    dnat_ranges: Vec<(std::net::IpAddr, std::net::IpAddr)>,
    netmaps: Vec<crate::rules::Prefix>,
}

impl<'a> Reach<'a> {
    pub fn of(rules: &'a RuleSet) -> Reach<'a> {
        let mut r = Reach {
            rules,
            unknown: false,
            snat: false,
            redirect: false,
            dnat_any: false,
            dnat_addrs: Vec::new(),
            dnat_ranges: Vec::new(),
            netmaps: Vec::new(),
        };
        let mut visit = |t: &Target| match t {
            Target::Dnat { to, .. } => match to.addrs {
                None => r.dnat_any = true,
                Some((lo, hi)) if lo == hi => r.dnat_addrs.push(lo),
                Some(range) => r.dnat_ranges.push(range),
            },
            Target::Redirect { .. } => r.redirect = true,
            Target::Snat { .. } | Target::Masquerade { .. } => r.snat = true,
            Target::Netmap { to } => r.netmaps.push(*to),
            Target::Unknown { .. } => r.unknown = true,
            _ => {}
        };
        for t in (rules.tables.iter())
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
        {
            each_target(&t.target, &mut visit);
        }
        r.dnat_addrs.sort_unstable();
        r.dnat_addrs.dedup();
        r
    }

    /// Whether no rule of the set can make the translation from `walked` to `wire`: a
    /// new destination that no DNAT (or REDIRECT, for a host address or where the
    /// host's addresses are not all known) target names, or a new source with no SNAT
    /// or MASQUERADE rule anywhere. A target natcheck cannot read might, so a set with
    /// one never counts as unable. Such a translation was made outside these rules
    /// (IPVS, an eBPF datapath) or by rules not given.
    pub fn beyond(&self, walked: &Tuple, wire: &Tuple) -> bool {
        let dnat = walked.dst != wire.dst || walked.dport != wire.dport;
        let snat = walked.src != wire.src;
        if self.unknown || !(dnat || snat) {
            return false;
        }
        let to = |a| self.netmaps.iter().any(|n| n.contains(a));
        let can_dnat = || {
            self.dnat_any
                || self.dnat_addrs.binary_search(&wire.dst).is_ok()
                || (self.dnat_ranges.iter()).any(|&(lo, hi)| lo <= wire.dst && wire.dst <= hi)
                || self.redirect && (self.rules.addrs_learned || self.rules.is_local(wire.dst))
                || to(wire.dst)
        };
        let can_snat = || self.snat || to(wire.src);
        (dnat && !can_dnat()) || (snat && !can_snat())
    }
}

/// `t` and, for a map, every branch's target.
fn each_target(t: &Target, f: &mut impl FnMut(&Target)) {
    f(t);
    if let Target::Map { branches, .. } = t {
        for b in branches {
            each_target(&b.target, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;

    fn t(src: &str, dst: &str, dport: u16) -> Tuple {
        Tuple {
            proto: Proto::Tcp,
            src: src.parse().unwrap(),
            sport: 40000,
            dst: dst.parse().unwrap(),
            dport,
        }
    }

    fn reach_of(nat: &str) -> RuleSet {
        let text =
            format!("*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{nat}COMMIT\n");
        crate::rules::iptables::parse("rules.txt", &text)
    }

    #[test]
    fn a_translation_is_beyond_the_rules_only_where_no_target_can_make_it() {
        let client = t("192.0.2.9", "198.51.100.1", 80);
        let dnat = |to: &str, port| t("192.0.2.9", to, port);
        let snat = t("203.0.113.1", "198.51.100.1", 80);
        let set = reach_of(concat!(
            "-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5:8080\n",
            "-A PREROUTING -p tcp --dport 81 -j DNAT --to-destination 10.0.1.1-10.0.1.9\n",
        ));
        let r = Reach::of(&set);
        assert!(!r.beyond(&client, &client), "nothing changed");
        assert!(!r.beyond(&client, &dnat("10.0.0.5", 8080)));
        assert!(!r.beyond(&client, &dnat("10.0.1.4", 80)), "in a range");
        assert!(r.beyond(&client, &dnat("10.0.1.10", 80)), "past the range");
        assert!(r.beyond(&client, &dnat("10.0.0.6", 8080)));
        assert!(r.beyond(&client, &snat), "no SNAT rule");

        let set = reach_of("-A POSTROUTING -o eth0 -j MASQUERADE\n");
        let r = Reach::of(&set);
        assert!(!r.beyond(&client, &snat));
        assert!(r.beyond(&client, &dnat("10.0.0.5", 8080)));

        let set = reach_of("-A PREROUTING -p tcp -j DNAT --to-destination :8080\n");
        assert!(
            !Reach::of(&set).beyond(&client, &dnat("10.9.9.9", 8080)),
            "any"
        );

        let set = reach_of("-A PREROUTING -d 198.51.100.0/24 -j NETMAP --to 10.2.0.0/24\n");
        let r = Reach::of(&set);
        assert!(!r.beyond(&client, &dnat("10.2.0.1", 80)));
        assert!(r.beyond(&client, &dnat("10.3.0.1", 80)));
        assert!(
            !r.beyond(&client, &t("10.2.0.7", "198.51.100.1", 80)),
            "both ways"
        );

        let set = reach_of("-A PREROUTING -p tcp -j FROBNICATE --weird\n");
        assert!(!Reach::of(&set).beyond(&client, &snat), "an unread target");
    }
}
