//! The rules, one file per finding code, run in the order of [`RULES`].
//!
//! Order matters only through [`Explained`]: a rule may account for packets a link
//! did not carry (they left as another connection, the host answered them, they were
//! sent again and crossed, or they went around the host), for a path that stops short
//! (every NAT port to its destination was taken, or the conntrack table was full) or
//! for packets too large for the path, and every later rule sees that. `lost` runs
//! after `leak`, `snat-port-exhaustion`, `insert-race`, `conntrack-table-full`,
//! `hairpin-direct-reply`, `underlay-drop` and `pmtu-black-hole`, so that what those
//! explain is not also reported lost.
//! `underlay-drop` runs before `pmtu-black-hole`: segments lost in a tunnel between
//! two nodes are the underlay's, whatever their size.
//! `snat-port-exhaustion` runs before `conntrack-table-full`: connections to one
//! destination whose NAT ports were all held are explained by that, not by the table.
//! Correlation's own `related` matches explain packets before any rule runs
//! ([`explained_by_related`]).
//!
//! Rules that neither account for packets nor read what others accounted for
//! ([`Run::Alone`]) run beside the ordered ones; their findings still come out in the
//! order of [`RULES`].
//!
//! To add a finding: a file here with a `pub fn` that [`Run`] takes, a line in
//! [`RULES`], a code in `finding.rs`, and its words in `report/explain/`.

mod asymmetric_route;
mod client_address_lost;
mod conntrack_table_full;
mod ct_contradiction;
mod ct_duplicate;
mod ct_hairpin_no_masq;
mod ct_missing;
mod ct_unobserved;
mod ct_unreplied;
mod hairpin_direct_reply;
mod hairpin_no_masq;
mod input_bypassed;
mod insert_race;
mod leak;
mod loopback_exposed;
mod lost;
mod nat_before_capture;
mod nat_helper;
mod not_netfilter;
mod overlay_masq;
mod pmtu_black_hole;
mod port_reallocated;
mod remapped_after_idle;
mod rule_contradiction;
mod snat_port_exhaustion;
mod stale_entry;
mod state_lost;
mod underlay_drop;
mod unsolicited;
mod userland_proxy;

use rayon::prelude::*;

use super::{Code, Ctx, Direction, Explained, Finding, Role};
use crate::correlate::{Connection, Correlation, Hop};
use crate::model::Tuple;

/// The connections `link` finds a link of (never ICMP errors, which follow the
/// connection they quote), each with its index and the link's.
fn with_link<'a>(
    x: &Ctx<'a>,
    link: fn(&Connection) -> Option<usize>,
) -> impl Iterator<Item = (usize, &'a Connection, usize)> {
    let conns: &'a [Connection] = &x.c.connections;
    (conns.iter().enumerate())
        .filter(|(_, conn)| conn.icmp_error().is_none())
        .filter_map(move |(ci, conn)| Some((ci, conn, link(conn)?)))
}

/// What a rule found, and the lost packets it accounts for.
#[derive(Default)]
pub struct Detected {
    pub findings: Vec<Finding>,
    pub explains: Explained,
}

impl From<Vec<Finding>> for Detected {
    fn from(findings: Vec<Finding>) -> Detected {
        Detected {
            findings,
            explains: Explained::default(),
        }
    }
}

/// How a rule runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// It accounts for lost packets, or reads what the rules before it accounted for:
    /// it runs in the order of [`RULES`], after every rule before it.
    Accounting(fn(&Ctx, &Explained) -> Detected),
    /// It does neither: it runs beside the others, on whatever core is free.
    Alone(fn(&Ctx) -> Vec<Finding>),
}

/// One detector.
pub struct Rule {
    pub code: Code,
    /// Which of the code's mechanisms it detects.
    pub what: &'static str,
    pub run: Run,
}

/// Every rule, in the order they run.
pub const RULES: &[Rule] = &[
    Rule {
        code: Code::Leak,
        what: "an inside address at an outside point",
        run: Run::Alone(leak::inside_address),
    },
    Rule {
        code: Code::Leak,
        what: "the NAT host's own RST to an untranslated segment",
        run: Run::Accounting(leak::host_rst),
    },
    Rule {
        code: Code::SnatPortExhaustion,
        what: "new connections lost while every NAT port to their destination was held",
        run: Run::Accounting(snat_port_exhaustion::detect),
    },
    Rule {
        code: Code::InsertRace,
        what: "a connection's first packets lost once and sent again",
        run: Run::Accounting(insert_race::detect),
    },
    Rule {
        code: Code::ConntrackTableFull,
        what: "new connections to several destinations lost while the conntrack table was full",
        run: Run::Accounting(conntrack_table_full::detect),
    },
    Rule {
        code: Code::HairpinDirectReply,
        what: "DNAT back out of the interface it came in by, answered past the host",
        run: Run::Accounting(hairpin_direct_reply::detect),
    },
    Rule {
        code: Code::UnderlayDrop,
        what: "packets that left one node in a tunnel and never reached the other",
        run: Run::Accounting(underlay_drop::detect),
    },
    Rule {
        code: Code::PmtuBlackHole,
        what: "TCP segments too large for the path, lost again and again",
        run: Run::Accounting(pmtu_black_hole::detect),
    },
    Rule {
        code: Code::AsymmetricRoute,
        what: "replies that came back by another interface and went no further",
        run: Run::Alone(asymmetric_route::detect),
    },
    Rule {
        code: Code::Lost,
        what: "packets one hop carried and the next did not",
        run: Run::Accounting(lost::on_links),
    },
    Rule {
        code: Code::Lost,
        what: "a path that stops short of where such traffic goes",
        run: Run::Accounting(lost::stopped_short),
    },
    Rule {
        code: Code::Lost,
        what: "unanswered traffic to the host that its rules drop where it arrives",
        run: Run::Accounting(lost::dropped_by_rules),
    },
    Rule {
        code: Code::Lost,
        what: "unanswered traffic to the host that went no further",
        run: Run::Accounting(lost::unanswered_to_host),
    },
    Rule {
        code: Code::Unsolicited,
        what: "packets to a NAT address that belong to no translation",
        run: Run::Alone(unsolicited::detect),
    },
    Rule {
        code: Code::UserlandProxy,
        what: "a client's connection ended at a proxy that opened its own with the same bytes",
        run: Run::Alone(userland_proxy::detect),
    },
    Rule {
        code: Code::NatHelper,
        what: "a NAT helper that rewrote a payload or expected connections",
        run: Run::Alone(nat_helper::detect),
    },
    Rule {
        code: Code::LoopbackExposed,
        what: "a loopback address reached from the network",
        run: Run::Alone(loopback_exposed::detect),
    },
    Rule {
        code: Code::RemappedAfterIdle,
        what: "a UDP or ICMP tuple mapped otherwise after a quiet spell past its timeout",
        run: Run::Alone(remapped_after_idle::detect),
    },
    Rule {
        code: Code::StateLost,
        what: "a connection sent on under another tuple after its entry went",
        run: Run::Alone(state_lost::detect),
    },
    Rule {
        code: Code::NatBeforeCapture,
        what: "a connection every capture shows already translated, by its entry",
        run: Run::Alone(nat_before_capture::detect),
    },
    Rule {
        code: Code::PortReallocated,
        what: "a source port or ICMP id NAT moved",
        run: Run::Alone(port_reallocated::detect),
    },
    Rule {
        code: Code::HairpinNoMasq,
        what: "DNAT back to the client without masquerade, on the wire",
        run: Run::Alone(hairpin_no_masq::detect),
    },
    Rule {
        code: Code::CtHairpinNoMasq,
        what: "DNAT back to the client without masquerade, in an entry",
        run: Run::Alone(ct_hairpin_no_masq::detect),
    },
    Rule {
        code: Code::CtContradiction,
        what: "an entry whose translation the wire does not show",
        run: Run::Alone(ct_contradiction::detect),
    },
    Rule {
        code: Code::CtUnreplied,
        what: "[UNREPLIED] although replies were on the wire",
        run: Run::Alone(ct_unreplied::detect),
    },
    Rule {
        code: Code::CtUnobserved,
        what: "a NATed entry refreshed while no capture saw it",
        run: Run::Alone(ct_unobserved::detect),
    },
    Rule {
        code: Code::CtDuplicate,
        what: "entries sharing a reply tuple",
        run: Run::Alone(ct_duplicate::detect),
    },
    Rule {
        code: Code::CtMissing,
        what: "a translated connection alive across a snapshot with no entry",
        run: Run::Alone(ct_missing::detect),
    },
    Rule {
        code: Code::StaleEntry,
        what: "a flow left on a backend new flows no longer go to",
        run: Run::Alone(stale_entry::detect),
    },
    Rule {
        code: Code::NotNetfilter,
        what: "a translation no rule of the set can make",
        run: Run::Alone(not_netfilter::detect),
    },
    Rule {
        code: Code::RuleContradiction,
        what: "a rule set that translates or filters a connection otherwise than the wire",
        run: Run::Alone(rule_contradiction::detect),
    },
    Rule {
        code: Code::InputBypassed,
        what: "an INPUT rule that DNAT'ed traffic never meets",
        run: Run::Alone(input_bypassed::detect),
    },
    Rule {
        code: Code::ClientAddressLost,
        what: "connections SNATed to the host on their way to a backend",
        run: Run::Alone(client_address_lost::detect),
    },
    Rule {
        code: Code::OverlayMasq,
        what: "pod traffic masqueraded into an overlay tunnel, its destination kept",
        run: Run::Alone(overlay_masq::detect),
    },
];

/// Packets of link `A → B` that correlation found at `B` under another connection
/// left after all (leaked or re-translated): they are not lost. Initiator packets at A
/// explain `lost_fwd`; responder packets at B (related the other way round) explain
/// `lost_rev`.
pub fn explained_by_related(c: &Correlation) -> Explained {
    let mut out = Explained::default();
    for (ci, conn) in c.connections.iter().enumerate() {
        for (li, l) in conn.links.iter().enumerate() {
            let a = &c.points[conn.hops[l.from].point].name;
            let b = &c.points[conn.hops[l.to].point].name;
            for r in &conn.related {
                if &r.point == a && &r.other_point == b {
                    out.add(ci, li, Direction::Fwd, r.matched_packets);
                } else if &r.point == b && &r.other_point == a {
                    out.add(ci, li, Direction::Rev, r.matched_packets);
                }
            }
        }
    }
    out
}

/// A finding about one conntrack entry, about its connection when known.
fn entry_finding(
    x: &Ctx,
    code: Code,
    severity: super::Severity,
    e: &super::ct::CtEntry,
    conn: Option<usize>,
    facts: super::CtFacts,
) -> Finding {
    let mut f = Finding::new(
        code,
        severity,
        super::Detail::Conntrack {
            entry: e.place(),
            wire: None,
            conntrack: Some(e.post()),
            facts: super::CtFacts {
                orig: Some(e.orig),
                ..facts
            },
        },
    );
    if let Some(ci) = conn {
        let k = &x.c.connections[ci];
        f.conns = vec![ci];
        f.first_ns = Some(k.first_ns());
        f.last_ns = Some(k.last_ns());
    }
    f.evidence = vec![super::Evidence::Entry(e.facts())];
    f
}

/// Runs every rule: the accounting ones in turn on one core, each seeing what those
/// before it explained, the others beside them. Findings come out in the order of
/// [`RULES`] whatever ran where.
pub fn run_all(x: &Ctx) -> Vec<Finding> {
    let (accounting, alone) = rayon::join(
        || {
            let mut explained = explained_by_related(x.c);
            let mut out: Vec<Option<Vec<Finding>>> = Vec::with_capacity(RULES.len());
            for rule in RULES {
                out.push(match rule.run {
                    Run::Accounting(run) => {
                        let d = run(x, &explained);
                        explained.merge(d.explains);
                        Some(d.findings)
                    }
                    Run::Alone(_) => None,
                });
            }
            out
        },
        || {
            RULES
                .par_iter()
                .map(|rule| match rule.run {
                    Run::Alone(run) => Some(run(x)),
                    Run::Accounting(_) => None,
                })
                .collect::<Vec<_>>()
        },
    );
    let mut out = Vec::new();
    for ((rule, a), b) in RULES.iter().zip(accounting).zip(alone) {
        let found = a.or(b).unwrap_or_default();
        debug_assert!(found.iter().all(|f| f.code == rule.code));
        out.extend(found);
    }
    out
}

/// A finding about connections that went from `up` to `down` translated, the first of
/// them `ci`: the two tuples and points, and that connection's translation as evidence.
fn across(x: &Ctx, f: &mut Finding, ci: usize, up: &Hop, down: &Hop) {
    f.tuples = vec![x.seen(up, Role::Original), x.seen(down, Role::Translated)];
    f.points = vec![x.name(up.point).to_string(), x.name(down.point).to_string()];
    f.evidence.push(x.translation(ci, up, down));
}

/// A finding's connections: their time span, and one packet each (the findings that
/// group connections count connections).
fn of_connections(x: &Ctx, f: &mut Finding, conns: Vec<usize>) {
    let c = &x.c.connections;
    f.first_ns = conns.iter().map(|&k| c[k].first_ns()).min();
    f.last_ns = conns.iter().map(|&k| c[k].last_ns()).max();
    f.packets = conns.len() as u64;
    f.conns = conns;
}

/// A finding about connection `ci` walked through the rules: its hops carrying the
/// first packet as walked and as the wire shows it after the host (tuples and
/// evidence), its points, times and packets.
fn walked_finding(x: &Ctx, f: &mut Finding, ci: usize, walked: Tuple, wire: Tuple) {
    let conn = &x.c.connections[ci];
    f.conns = vec![ci];
    for (t, role) in [(walked, Role::Original), (wire, Role::Wire)] {
        if let Some(h) = conn.hops.iter().find(|h| h.flow.tuple == t) {
            f.tuples.push(x.seen(h, role));
            f.evidence.push(x.hop(h));
        }
    }
    f.points = f.tuples.iter().map(|s| s.point.clone()).collect();
    f.first_ns = Some(conn.first_ns());
    f.last_ns = Some(conn.last_ns());
    f.packets = conn.hops[0].flow.packets[0] + conn.hops[0].flow.packets[1];
}

#[cfg(test)]
pub(crate) mod testing {
    //! Lab recordings correlated for the rules' tests.
    use crate::audit::ct::Snapshot;
    use crate::audit::topology::Topology;
    use crate::audit::{Code, Ctx, Finding};
    use crate::capture::{InputSpec, ReadOptions};
    use crate::correlate::{self, Config, Correlation};
    use crate::witness::Witness;

    pub fn wire(scenario: &str) -> Correlation {
        wire_at(scenario, &["docker0", "eth0"])
    }

    /// A recording's captures at the points named.
    pub fn wire_at(scenario: &str, points: &[&str]) -> Correlation {
        let root = env!("CARGO_MANIFEST_DIR");
        let specs: Vec<InputSpec> = points
            .iter()
            .map(|p| {
                format!("{root}/samples/{scenario}/{p}.pcap")
                    .parse()
                    .unwrap()
            })
            .collect();
        correlate::run(&specs, &ReadOptions::default(), Config::default())
    }

    /// Every rule's findings on a correlation and snapshots.
    pub fn run_all(c: &Correlation, snaps: &[Snapshot]) -> Vec<Finding> {
        let topo = Topology::learn(c, &[]);
        super::run_all(&Ctx::new(c, &topo, snaps))
    }

    /// The findings of one code (its rules run after the ones before them).
    pub fn run(c: &Correlation, snaps: &[Snapshot], code: Code) -> Vec<Finding> {
        run_all(c, snaps)
            .into_iter()
            .filter(|f| f.code == code)
            .collect()
    }

    /// The findings of one code with some of the recording's own files as witnesses:
    /// `conntrack*`, `events.txt` and `sysctl.txt` as conntrack inputs, the others as
    /// the host's rules.
    pub fn run_with(c: &Correlation, scenario: &str, files: &[&str], code: Code) -> Vec<Finding> {
        let root = env!("CARGO_MANIFEST_DIR");
        let path = |f: &&str| format!("{root}/samples/{scenario}/{f}");
        let (ct, rules): (Vec<&str>, Vec<&str>) = files.iter().partition(|f| {
            f.starts_with("conntrack") || matches!(**f, "events.txt" | "sysctl.txt")
        });
        let mut w: Vec<Witness> = ct
            .iter()
            .map(|f| Witness::read_conntrack(&path(f)).unwrap())
            .collect();
        if !rules.is_empty() {
            let paths: Vec<String> = rules.iter().map(path).collect();
            w.push(Witness::Rules(crate::rules::read_all(&paths, &[]).unwrap()));
        }
        crate::audit::audit(c, &Default::default(), w)
            .findings
            .into_iter()
            .filter(|f| f.code == code)
            .collect()
    }
}
