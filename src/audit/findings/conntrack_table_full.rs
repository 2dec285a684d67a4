//! `conntrack-table-full` (FM-13): new connections to several unrelated destinations
//! lost at the host while its conntrack table was full, and its existing connections
//! kept crossing.
//!
//! Conntrack makes an entry for the first packet of every connection it does not know.
//! When the namespace's entries reach `nf_conntrack_max`, it first tries to evict an
//! entry that never became ASSURED from the hash buckets next to the new one's
//! (`early_drop`), and when there is none it drops the packet (`drop`, and the kernel
//! logs "nf_conntrack: table full, dropping packet", with "in netns N" on recent
//! kernels). Packets of entries that exist pass as before. So the signature is on the
//! wire: first packets of new connections, whatever their destination, protocol or
//! direction, going no further than where the host received them, while connections
//! opened earlier keep crossing; and in the kernel's word, which the captures alone
//! cannot replace (a rule that drops every new connection looks the same on the wire):
//!
//! * `conntrack -S`: `drop` beyond `insert_failed` (a failed insert also counts a drop:
//!   insert races and exhausted NAT ports are the other findings' business). Grown
//!   between two readings, it dates the drops; a single reading counts since the
//!   namespace's conntrack started, so then no new connection may have crossed while
//!   the others were lost. No such drop at all rules the table out.
//! * or an entry count at 95 % of `nf_conntrack_max` or more (a listing's entries, the
//!   `nf_conntrack_count` setting, `/proc/net/stat/nf_conntrack`'s `entries`).
//!
//! A lost connection is a new one (TCP: SYNs only) whose path stops short where other
//! connections show it goes on (as `lost` decides), or that came from outside to an
//! address of the host and went no further, that no earlier rule explained and that
//! the host's rules, when given, do not drop (`lost` names the rule then; the finding
//! says the rules forward the others). Their destinations (as last seen) must be
//! at least two: one destination lost alone is a rule or its NAT ports running out.
//! One finding for all of them, which `lost` then leaves out.

use std::collections::BTreeSet;

use super::lost::{stopped_at, syn_only, unanswered_at_host};
use super::Detected;
use crate::audit::{
    Code, Ctx, Detail, Endpoint, Evidence, Explained, Finding, Role, Severity, TableFact,
    TableFullFacts,
};
use crate::correlate::Hop;
use crate::model::Proto;

/// A new connection lost at the host: its index, its last hop, and the point it
/// never reached when other connections show it.
struct Lost<'a> {
    conn: usize,
    hop: &'a Hop,
    next: Option<usize>,
}

fn lost_new<'a>(x: &'a Ctx, explained: &Explained) -> Vec<Lost<'a>> {
    let mut out = Vec::new();
    for ci in 0..x.c.connections.len() {
        if explained.stopped(ci) || x.stopped_by(ci).is_some() {
            continue;
        }
        let lost = match stopped_at(x, ci) {
            Some((hop, b, _, _)) => Lost {
                conn: ci,
                hop,
                next: Some(b),
            },
            None => match unanswered_at_host(x, ci) {
                Some((hop, _)) => Lost {
                    conn: ci,
                    hop,
                    next: None,
                },
                None => continue,
            },
        };
        let f = &lost.hop.flow;
        if f.tuple.proto != Proto::Tcp || syn_only(f) {
            out.push(lost);
        }
    }
    out
}

/// What the kernel says of the table: dropped packets no failed insert explains and
/// evictions (`conntrack -S`), and a count at its limit.
struct Kernel<'a> {
    drops: Option<u64>,
    early_drop: Option<u64>,
    at_limit: Option<&'a crate::audit::ct::Setting>,
}

impl<'a> Kernel<'a> {
    fn of(x: &'a Ctx) -> Kernel<'a> {
        let c = &x.stats.counts;
        Kernel {
            drops: c
                .get("drop")
                .map(|d| d.saturating_sub(c.get("insert_failed").copied().unwrap_or(0))),
            early_drop: c.get("early_drop").copied(),
            at_limit: x.table.at_limit(),
        }
    }

    /// Whether it says the table was full while `crossed` new connections got
    /// through: counters that grew between two readings (`grown`) or a count at the
    /// limit say so; counters since boot only when nothing new got through; no drop
    /// says not.
    fn full(&self, grown: bool, crossed: usize) -> bool {
        match self.drops {
            Some(0) => false,
            Some(_) => grown || self.at_limit.is_some() || crossed == 0,
            None => self.at_limit.is_some(),
        }
    }
}

/// Connections that crossed the host while others were lost.
struct Crossing {
    /// Opened before the first lost packet and seen past their first point after it.
    existing: Vec<usize>,
    /// Opened while the others were lost.
    new: Vec<usize>,
}

impl Crossing {
    fn of(x: &Ctx, lost: &[Lost], (t0, t1): (i64, i64)) -> Crossing {
        let mut out = Crossing {
            existing: Vec::new(),
            new: Vec::new(),
        };
        let lost: BTreeSet<usize> = lost.iter().map(|l| l.conn).collect();
        for (k, conn) in x.c.connections.iter().enumerate() {
            if conn.hops.len() < 2 || lost.contains(&k) {
                continue;
            }
            let first = conn.first_ns();
            let beyond = conn.hops[1..].iter().map(|h| h.last_ns).max().unwrap_or(0);
            if first < t0 && beyond >= t0 {
                out.existing.push(k);
            } else if (t0..=t1).contains(&first) {
                out.new.push(k);
            }
        }
        out
    }
}

pub fn detect(x: &Ctx, explained: &Explained) -> Detected {
    let mut out = Detected::default();
    let kernel = Kernel::of(x);
    if !kernel.full(true, 0) {
        // Nothing the kernel says could mean a full table, or it rules one out.
        return out;
    }
    let lost = lost_new(x, explained);
    let destinations: BTreeSet<Endpoint> = lost
        .iter()
        .map(|l| {
            let t = l.hop.flow.tuple;
            (t.proto, t.dst, t.dport)
        })
        .collect();
    if destinations.len() < 2 {
        return out;
    }
    let t0 = lost.iter().map(|l| l.hop.first_ns).min().unwrap_or(0);
    let t1 = lost.iter().map(|l| l.hop.last_ns).max().unwrap_or(0);
    let crossing = Crossing::of(x, &lost, (t0, t1));
    if crossing.existing.is_empty() || !kernel.full(x.stats.since.is_some(), crossing.new.len()) {
        return out;
    }
    for l in &lost {
        out.explains.add_stopped(l.conn);
    }
    out.findings.push(finding(
        x,
        &lost,
        destinations,
        (t0, t1),
        &crossing,
        &kernel,
    ));
    out
}

fn finding(
    x: &Ctx,
    lost: &[Lost],
    destinations: BTreeSet<Endpoint>,
    (t0, t1): (i64, i64),
    Crossing { existing, new }: &Crossing,
    kernel: &Kernel,
) -> Finding {
    // As `lost` counts: every packet while the point they never reached was capturing
    // past the last of them, else the first.
    let packets = lost
        .iter()
        .map(|l| match l.next.and_then(|b| x.span(b)) {
            Some((_, s1)) if l.hop.last_ns > s1 => 1,
            _ => l.hop.flow.packets[0],
        })
        .sum();
    let table = &x.table;
    let place = |s: &crate::audit::ct::Setting| (s.value, s.place.clone());
    let entries = table.counts.iter().max_by_key(|s| s.value);
    let mut f = Finding::new(
        Code::ConntrackTableFull,
        Severity::Error,
        Detail::TableFull(TableFullFacts {
            lost: lost.iter().map(|l| x.id(l.conn)).collect(),
            destinations: destinations.iter().copied().collect(),
            flowing: x.ids(existing),
            crossed: x.ids(new),
            drops: kernel.drops,
            early_drop: kernel.early_drop,
            since: x.stats.since.clone(),
            entries: entries.map(|s| s.value),
            max: table.max.as_ref().map(|s| s.value),
            buckets: table.buckets.as_ref().map(|s| s.value),
        }),
    );
    f.evidence = vec![Evidence::Table(TableFact::NewLost {
        conns: lost.len(),
        packets,
        destinations: destinations.into_iter().collect(),
        from_ns: t0,
        to_ns: t1,
    })];
    f.evidence.extend(lost.iter().map(|l| x.hop(l.hop)));
    let mut points: Vec<usize> = Vec::new();
    for l in lost {
        for p in [Some(l.hop.point), l.next].into_iter().flatten() {
            if !points.contains(&p) {
                points.push(p);
            }
        }
    }
    for &p in &points {
        let last = lost
            .iter()
            .filter(|l| l.next == Some(p))
            .map(|l| l.hop.last_ns)
            .max();
        if let (Some(last), Some((s0, s1))) = (last, x.span(p)) {
            f.evidence.push(Evidence::NoneSeen {
                point: x.name(p).to_string(),
                from_ns: s0,
                to_ns: s1,
                whole: last <= s1,
            });
        }
    }
    f.evidence.push(Evidence::Table(TableFact::KeptCrossing {
        existing: x.ids(existing),
        new: x.ids(new),
    }));
    let walked = lost
        .iter()
        .filter(|l| x.attribution(l.conn).is_some())
        .count();
    if walked > 0 {
        f.evidence.push(Evidence::Table(TableFact::RulesForward {
            walked,
            lost: lost.len(),
        }));
    }
    f.evidence
        .extend(x.stats_of(&["drop", "insert_failed", "early_drop"]));
    if table.max.is_some() || entries.is_some() {
        f.evidence.push(Evidence::Table(TableFact::Size {
            entries: entries.map(place),
            max: table.max.as_ref().map(place),
            buckets: table.buckets.as_ref().map(place),
        }));
    }
    f.conns = lost
        .iter()
        .map(|l| l.conn)
        .chain(existing.iter().copied())
        .collect();
    f.points = points.iter().map(|&p| x.name(p).to_string()).collect();
    f.tuples = lost.iter().map(|l| x.seen(l.hop, Role::LastSeen)).collect();
    f.first_ns = Some(t0);
    f.last_ns = Some(t1);
    f.packets = packets;
    f
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run_with, wire, wire_at};
    use super::*;
    use crate::audit::ct::Setting;
    use crate::correlate::Correlation;
    use crate::witness::Witness;

    const RECORDINGS: [&str; 2] = ["fault-ct-table-full", "fault-ct-table-full6"];

    /// The recordings lose their new connections on the container's veth, before
    /// docker0: conntrack sees the packets as the bridge forwards them.
    fn recording(s: &str) -> Correlation {
        wire_at(s, &["veth-c1", "docker0", "eth0"])
    }

    const STATS: [&str; 2] = ["conntrack-stats-before.txt", "conntrack-stats.txt"];

    #[test]
    fn new_connections_to_every_destination_lost_while_old_ones_cross() {
        for s in RECORDINGS {
            let c = recording(s);
            let f = run_with(&c, s, &STATS, Code::ConntrackTableFull);
            assert_eq!(f.len(), 1, "{s}: {f:#?}");
            let f = &f[0];
            assert_eq!(f.severity, Severity::Error);
            let Detail::TableFull(d) = &f.detail else {
                panic!("{:?}", f.detail)
            };
            let shape = (d.lost.len(), d.destinations.len(), d.flowing.len());
            assert_eq!(shape, (3, 3, 2), "{s}");
            assert!(d.crossed.is_empty(), "{s}");
            // The kernel counted a drop for every lost packet, and no failed insert.
            assert_eq!(d.drops, Some(f.packets), "{s}");
            assert!(d.since.as_deref().is_some_and(|p| p.ends_with(STATS[0])));
            let protos: BTreeSet<Proto> = d.destinations.iter().map(|e| e.0).collect();
            assert_eq!(protos, [Proto::Tcp, Proto::Udp].into(), "{s}");
            // The lost are not reported again.
            assert!(run_with(&c, s, &STATS, Code::Lost).is_empty(), "{s}");
        }
        // Over IPv6 the host lost connections both ways: from c1 at its veth, and from
        // outside at eth0, to the published port.
        let c = recording("fault-ct-table-full6");
        let f = run_with(&c, "fault-ct-table-full6", &STATS, Code::ConntrackTableFull);
        let at: BTreeSet<&str> = f[0].tuples.iter().map(|t| t.point.as_str()).collect();
        assert_eq!(at, ["eth0", "veth-c1"].into());
    }

    #[test]
    fn the_kernels_word_decides() {
        for s in RECORDINGS {
            let c = recording(s);
            let full = |files: &[&str]| run_with(&c, s, files, Code::ConntrackTableFull).len();
            // The captures alone cannot tell a full table from a rule that drops every
            // new connection: each is `lost`.
            assert_eq!(full(&[]), 0, "{s}");
            assert_eq!(run_with(&c, s, &[], Code::Lost).len(), 3, "{s}");
            // One reading counts since boot: it dates nothing, but no new connection
            // crossed meanwhile.
            assert_eq!(full(&["conntrack-stats.txt"]), 1, "{s}");
            // No counters: the count at the limit (the listing's entries, or the
            // nf_conntrack_count setting).
            assert_eq!(full(&["conntrack.txt", "sysctl.txt"]), 1, "{s}");
            assert_eq!(full(&["sysctl.txt"]), 1, "{s}");
            assert_eq!(full(&["conntrack.txt"]), 0, "{s}: no limit");
            // Counters that saw no drop rule it out, whatever the count.
            let quiet = ["conntrack-stats-before.txt", "conntrack.txt", "sysctl.txt"];
            assert_eq!(full(&quiet), 0, "{s}");
        }
    }

    #[test]
    fn counters_since_boot_need_nothing_new_to_cross() {
        let limit = Setting {
            value: 62,
            place: "sysctl.txt:7".into(),
        };
        let k = |drops, at_limit| Kernel {
            drops,
            early_drop: None,
            at_limit,
        };
        assert!(!k(Some(0), Some(&limit)).full(true, 0));
        assert!(k(Some(3), None).full(true, 5));
        assert!(k(Some(3), None).full(false, 0));
        assert!(!k(Some(3), None).full(false, 1));
        assert!(k(Some(3), Some(&limit)).full(false, 1));
        assert!(k(None, Some(&limit)).full(false, 7));
        assert!(!k(None, None).full(true, 0));
    }

    #[test]
    fn the_rules_forward_what_the_table_dropped_and_a_rule_keeps_its_own() {
        let s = "fault-ct-table-full";
        let c = recording(s);
        let files = ["iptables.txt", STATS[0], STATS[1]];
        let f = run_with(&c, s, &files, Code::ConntrackTableFull);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(f[0]
            .evidence
            .contains(&Evidence::Table(TableFact::RulesForward {
                walked: 3,
                lost: 3
            })));
        // A rule that drops the connection to 8443: `lost` names it, and the other
        // two destinations are still the table's.
        let root = env!("CARGO_MANIFEST_DIR");
        let text = std::fs::read_to_string(format!("{root}/samples/{s}/iptables.txt"))
            .unwrap()
            .replace(
                "-A DOCKER-USER -j RETURN",
                "-A DOCKER-USER -p tcp -m tcp --dport 8443 -j DROP\n-A DOCKER-USER -j RETURN",
            );
        assert!(text.contains("--dport 8443 -j DROP"));
        let mut w = vec![Witness::Rules(crate::rules::parse("iptables.txt", &text))];
        for f in STATS {
            let path = format!("{root}/samples/{s}/{f}");
            w.push(Witness::read_conntrack(&path).unwrap());
        }
        let audit = crate::audit::audit(&c, &Default::default(), w);
        let of = |code| audit.findings.iter().filter(move |f| f.code == code);
        let full: Vec<&Finding> = of(Code::ConntrackTableFull).collect();
        assert_eq!(full.len(), 1);
        let Detail::TableFull(d) = &full[0].detail else {
            panic!()
        };
        assert_eq!((d.lost.len(), d.destinations.len()), (2, 2));
        let lost: Vec<&Finding> = of(Code::Lost).collect();
        assert_eq!(lost.len(), 1, "{lost:#?}");
        assert_eq!(lost[0].tuples[0].tuple.dport, 8443);
        assert!(lost[0].evidence.iter().any(|e| matches!(e,
            Evidence::Rule { rule, .. } if rule.text.contains("--dport 8443 -j DROP"))));
    }

    /// The audit's findings of `code` with conntrack text as the only witness.
    fn with_stats(c: &Correlation, text: &str, code: Code) -> Vec<Finding> {
        let w = Witness::Conntrack(crate::conntrack::parse_str("stats.txt", text));
        crate::audit::audit(c, &Default::default(), vec![w])
            .findings
            .into_iter()
            .filter(|f| f.code == code)
            .collect()
    }

    #[test]
    fn one_destination_is_a_rule_or_its_nat_ports() {
        // One connection blocked: whatever the counters say, not a full table.
        let c = wire("fault-forward-drop");
        let drops = "cpu=0 found=0 invalid=0 insert=0 insert_failed=0 drop=3 early_drop=0\n";
        assert!(with_stats(&c, drops, Code::ConntrackTableFull).is_empty());
        assert_eq!(with_stats(&c, drops, Code::Lost).len(), 1);
        // Every NAT port to one destination held: the kernel's drops are its failed
        // inserts, and snat-port-exhaustion explains the loss.
        for s in ["fault-snat-exhaustion", "fault-snat-exhaustion-udp6"] {
            let c = wire(s);
            let mut files = vec!["iptables.txt", "conntrack-stats.txt", "sysctl.txt"];
            if s.ends_with('6') {
                files.push("ip6tables.txt");
            }
            assert!(run_with(&c, s, &files, Code::ConntrackTableFull).is_empty());
            assert_eq!(run_with(&c, s, &files, Code::SnatPortExhaustion).len(), 1);
        }
    }
}
