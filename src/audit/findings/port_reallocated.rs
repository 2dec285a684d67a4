//! `port-reallocated` (FM-04, FM-05, FM-06): NAT changed the source port (or ICMP id)
//! at a hop. The allocator's mode is inferred from every source translation to the
//! same NAT address at the same point: ports kept except where another connection held
//! the tuple (the default), all ports moved with nobody holding them (`--random`,
//! `--random-fully`), or all moved into a narrow span (`--to-ports` or
//! `--to-source ADDR:LO-HI`). Info: a fact, not a fault.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::audit::rules::rule_target;
use crate::audit::{AllocatorMode, Code, Ctx, Detail, Evidence, Finding, Role, RuleRole, Severity};
use crate::correlate::Correlation;
use crate::rules::Target;

/// The source translations of one NAT address at one point: (connection, link).
type Group = Vec<(usize, usize)>;

/// Source translations grouped by (point, NAT address, ICMP?).
fn groups(c: &Correlation) -> BTreeMap<(usize, IpAddr, bool), Group> {
    let mut groups: BTreeMap<(usize, IpAddr, bool), Group> = BTreeMap::new();
    for (ci, conn) in c.connections.iter().enumerate() {
        if !(conn.proto.has_ports() || conn.proto.is_icmp()) {
            continue;
        }
        for (li, l) in conn.links.iter().enumerate() {
            if !(l.change.src_addr_changed || l.change.sport_changed) {
                continue;
            }
            let down = &conn.hops[l.to];
            groups
                .entry((down.point, down.flow.tuple.src, conn.proto.is_icmp()))
                .or_default()
                .push((ci, li));
        }
    }
    groups
}

/// How the translations of a group chose their ports.
struct Census {
    kept: usize,
    collided: usize,
    free: usize,
    ports: Vec<u16>,
}

impl Census {
    fn of(c: &Correlation, members: &Group) -> Census {
        let mut s = Census {
            kept: 0,
            collided: 0,
            free: 0,
            ports: Vec::new(),
        };
        for &(ci, li) in members {
            let conn = &c.connections[ci];
            let l = &conn.links[li];
            match &l.port_realloc {
                None if !l.change.sport_changed => s.kept += 1,
                Some(pr) => {
                    s.ports.push(pr.got_sport);
                    if pr.colliding.is_some() {
                        s.collided += 1;
                    } else {
                        s.free += 1;
                    }
                }
                None => {
                    s.ports.push(conn.hops[l.to].flow.tuple.sport);
                    s.free += 1;
                }
            }
        }
        s
    }

    /// The allocator's mode, and the span of new ports (lowest, highest).
    fn mode(&self) -> Option<(AllocatorMode, u16, u16)> {
        let lo = *self.ports.iter().min()?;
        let hi = *self.ports.iter().max()?;
        // Random ports over the 64512-port default range fall within 64 of each
        // other by chance with probability under 0.2 % for two, far less for more.
        let narrow = self.ports.len() >= 2 && u32::from(hi - lo) < 64;
        let mode = if self.free == 0 {
            AllocatorMode::Collision
        } else if self.kept == 0 && self.collided == 0 && narrow {
            AllocatorMode::Range
        } else if self.kept == 0 && self.ports.len() >= 2 {
            AllocatorMode::Random
        } else if self.kept == 0 {
            AllocatorMode::Undetermined
        } else {
            AllocatorMode::Mixed
        };
        Some((mode, lo, hi))
    }
}

/// A port's allocator mode, the port range it was taken from, and the rule that says
/// so.
type ByRule = (AllocatorMode, Option<[u16; 2]>, Option<Evidence>);

/// How the source NAT rule the wire confirms for connection `ci` chose its port, when
/// it says: into its port range, which the wanted port lies outside of, or at random
/// (`--random`, `--random-fully`).
fn by_rule(x: &Ctx, ci: usize, wanted: u16) -> Option<ByRule> {
    let rules = x.rules?;
    let n = x.attribution(ci)?.outcome()?.snat.as_ref()?;
    let (ports, flags) = match rule_target(rules, &n.rule)? {
        Target::Snat { to, flags } => (to.ports, *flags),
        Target::Masquerade { ports, flags } => (*ports, *flags),
        _ => return None,
    };
    let (mode, range) = match ports {
        Some((a, b)) if !(a.min(b)..=a.max(b)).contains(&wanted) => {
            (AllocatorMode::Range, Some([a.min(b), a.max(b)]))
        }
        _ if flags.random || flags.random_fully => (AllocatorMode::Random, None),
        _ => return None,
    };
    Some((mode, range, x.rule(&n.rule, RuleRole::Allocates)))
}

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let c = x.c;
    let mut out = Vec::new();
    for ((point, nat, icmp), members) in groups(c) {
        let census = Census::of(c, &members);
        let Some((mode, lo, hi)) = census.mode() else {
            continue;
        };
        let pname = x.name(point);
        let census_fact = Evidence::Census {
            translations: members.len() as u64,
            nat,
            point: pname.to_string(),
            kept: census.kept,
            collided: census.collided,
            free: census.free,
            icmp,
            span: (census.ports.len() > 1).then_some((lo, hi)),
        };
        for &(ci, li) in &members {
            let conn = &c.connections[ci];
            let l = &conn.links[li];
            let (up, down) = (&conn.hops[l.from], &conn.hops[l.to]);
            let (wanted, got) = (up.flow.tuple.sport, down.flow.tuple.sport);
            if wanted == got {
                continue;
            }
            let pr = l.port_realloc.as_ref();
            let holder = pr
                .and_then(|p| p.colliding.as_deref())
                .and_then(|id| x.conn_index(id));
            // A port moved with nobody holding it: the rule that made the translation,
            // when the rules were walked for it, says why better than the census.
            let group = (
                mode,
                (mode == AllocatorMode::Range).then_some([lo, hi]),
                None,
            );
            let (mode, range, rule) = match holder {
                None => by_rule(x, ci, wanted).unwrap_or(group),
                Some(_) => group,
            };
            let mut f = Finding::new(
                Code::PortReallocated,
                Severity::Info,
                Detail::PortReallocated {
                    wanted_sport: wanted,
                    got_sport: got,
                    colliding: holder.map(|k| x.id(k)),
                    colliding_started_first: pr.and_then(|p| p.colliding_started_first),
                    mode,
                    range,
                    moved: (icmp, down.flow.tuple),
                },
            );
            f.conns = vec![ci];
            f.tuples = vec![x.seen(up, Role::Before), x.seen(down, Role::After)];
            f.evidence = vec![Evidence::Moved {
                from_point: x.name(up.point).to_string(),
                from: up.flow.tuple,
                to_point: pname.to_string(),
                to: down.flow.tuple,
            }];
            if let Some(k) = holder {
                f.conns.push(k);
                let kc = &c.connections[k];
                if let Some(kh) = kc.hops.iter().find(|h| h.point == down.point) {
                    f.tuples.push(x.seen(kh, Role::Holder));
                }
                f.evidence.extend(x.translated(kc, down.point));
            }
            f.evidence.extend(rule);
            f.evidence.push(census_fact.clone());
            f.points = vec![x.name(up.point).to_string(), pname.to_string()];
            f.first_ns = Some(down.first_ns);
            f.last_ns = Some(down.last_ns);
            f.packets = down.flow.packets[0] + down.flow.packets[1];
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, run_with, wire};
    use crate::audit::{AllocatorMode, Code, Detail, Evidence, RuleRole};

    fn modes(scenario: &str) -> Vec<(AllocatorMode, bool)> {
        run(&wire(scenario), &[], Code::PortReallocated)
            .iter()
            .map(|f| match &f.detail {
                Detail::PortReallocated {
                    mode, colliding, ..
                } => (*mode, colliding.is_some()),
                d => panic!("{d:?}"),
            })
            .collect()
    }

    #[test]
    fn one_moved_port_alone_does_not_name_its_allocator() {
        // Calico's MASQUERADE --random-fully into an IP-in-IP tunnel: two datagrams
        // whose ports both moved with nobody holding them (random), and a ping whose
        // id moved, the only ICMP translation to that address: one move alone could be
        // a range, a random pick or a holder the captures missed.
        let mut m = modes("fault-overlay-masq-ipip");
        m.sort_by_key(|&(mode, _)| mode.as_str());
        assert_eq!(
            m,
            [
                (AllocatorMode::Random, false),
                (AllocatorMode::Random, false),
                (AllocatorMode::Undetermined, false),
            ]
        );
    }

    #[test]
    fn the_holder_is_the_last_to_take_the_port_before() {
        // c1's tuple used again after its entry expired, its port and identifier
        // taken meanwhile by c2: the holder is c2's connection, not c1's first life,
        // which used the same outside tuple before and went quiet.
        let c = super::super::testing::wire_at("reuse-after-expiry", &["docker0", "eth0"]);
        let found = run(&c, &[], Code::PortReallocated);
        assert_eq!(found.len(), 2);
        for f in &found {
            let Detail::PortReallocated {
                colliding: Some(id),
                colliding_started_first: Some(true),
                ..
            } = &f.detail
            else {
                panic!("{:?}", f.detail);
            };
            let holder = c.connections.iter().find(|k| k.id == *id).unwrap();
            let moved = &c.connections[f.conns[0]];
            assert_ne!(holder.hops[0].flow.tuple.src, moved.hops[0].flow.tuple.src);
            assert!(holder.last_ns() > moved.first_ns() - 30_000_000_000);
        }
    }

    #[test]
    fn the_allocator_mode_follows_the_rule() {
        // Same-port clients: the second of each pair moves, the first holds the port.
        let m = modes("port-collision");
        assert_eq!(m.len(), 3);
        assert!(m
            .iter()
            .all(|&(mode, holder)| mode == AllocatorMode::Collision && holder));
        // A narrow --to-source range: every port moved, nobody holding them.
        let m = modes("snat-random-fully");
        assert!(!m.is_empty());
        assert!(m
            .iter()
            .all(|&(mode, holder)| mode == AllocatorMode::Range && !holder));
        assert!(modes("masquerade").is_empty());
    }

    #[test]
    fn the_rule_that_made_the_translation_says_how_it_chose_the_port() {
        let of = |scenario: &str| {
            let found = run_with(
                &wire(scenario),
                scenario,
                &["iptables.txt"],
                Code::PortReallocated,
            );
            assert!(!found.is_empty(), "{scenario}");
            found
                .iter()
                .map(|f| match &f.detail {
                    Detail::PortReallocated {
                        mode,
                        range,
                        colliding,
                        ..
                    } => {
                        let rule = f.evidence.iter().any(|e| {
                            matches!(
                                e,
                                Evidence::Rule {
                                    role: RuleRole::Allocates,
                                    ..
                                }
                            )
                        });
                        (*mode, *range, colliding.is_some(), rule)
                    }
                    d => panic!("{d:?}"),
                })
                .collect::<Vec<_>>()
        };
        // `--to-source ADDR:20000-20003 --random-fully`: the range, the rule's own.
        for m in of("snat-random-fully") {
            assert_eq!(m, (AllocatorMode::Range, Some([20000, 20003]), false, true));
        }
        // kube-proxy's `MASQUERADE --random-fully`, no range.
        for m in of("nodeport") {
            assert_eq!(m, (AllocatorMode::Random, None, false, true));
        }
        // A port moved off a taken tuple: the holder says why, not the rule.
        for m in of("port-collision") {
            assert_eq!((m.0, m.2, m.3), (AllocatorMode::Collision, true, false));
        }
    }
}
