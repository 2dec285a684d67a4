//! Words of `port-reallocated`.

use super::unexplained;
use crate::audit::{AllocatorMode, Detail, Evidence, Finding, RuleRole};
use crate::model::Tuple;
use crate::report::fmt::{dst, src};

/// The default allocator moving a port off a taken tuple, and a rule that picks ports
/// at random, are NAT working as configured.
pub fn expected(f: &Finding) -> Option<(&'static str, &'static str)> {
    match f.detail {
        Detail::PortReallocated {
            mode: AllocatorMode::Collision,
            ..
        } => Some((
            "source port moved to avoid a clash",
            "source ports moved to avoid a clash",
        )),
        Detail::PortReallocated {
            mode: AllocatorMode::Random,
            ..
        } => Some((
            "source port picked at random (`--random`, `--random-fully`)",
            "source ports picked at random (`--random`, `--random-fully`)",
        )),
        _ => None,
    }
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::PortReallocated {
        wanted_sport,
        got_sport,
        colliding,
        colliding_started_first,
        mode,
        range,
        moved: (icmp, after),
    } = &f.detail
    else {
        return unexplained(f);
    };
    let (lo, hi) = range.map_or((0, 0), |[lo, hi]| (lo, hi));
    let wanted_t = Tuple {
        sport: *wanted_sport,
        ..*after
    };
    let point = f.points.last().map_or("", String::as_str);
    let why = match colliding {
        Some(k) if *colliding_started_first == Some(false) => format!(
            "{k} holds {} (it started later, so something not captured held it first)",
            src(&wanted_t)
        ),
        Some(k) => format!("{k} already held {} -> {}", src(&wanted_t), dst(&wanted_t)),
        None if by_rule(f) => match mode {
            AllocatorMode::Range => format!(
                "no connection held it; the rule's port range {lo}-{hi} does not hold {}",
                wanted_sport
            ),
            _ => "no connection held it; the rule picks ports at random (`--random`, `--random-fully`)".into(),
        },
        None => match mode {
            AllocatorMode::Range => format!(
                "no connection held it; every port here comes from the range {lo}-{hi} (or a wider one)"
            ),
            AllocatorMode::Random => "no connection held it; every port here was moved, so the rule picks ports at random (`--random`, `--random-fully`)".into(),
            AllocatorMode::Undetermined => "no connection holding it was captured, and it is the only translation to this address here: a port range, a random pick and a holder the captures missed look alike".into(),
            _ => "no connection holding it was captured".into(),
        },
    };
    let check = match mode {
        AllocatorMode::Collision => "Expected with the default allocator (MASQUERADE/SNAT keep the port unless the tuple is taken). It matters only to port-sensitive peers (SIP, STUN, allow-lists by port); two clients that must keep their ports to one destination need distinct NAT addresses.".to_string(),
        AllocatorMode::Range if by_rule(f) => format!("The rule's port range ({lo}-{hi}) moves every port outside it. Small ranges run out under load (FM-06): watch `conntrack -S` (insert_failed, drop) and the number of entries per destination."),
        AllocatorMode::Range => format!("A port range ({lo}-{hi} or wider: `--to-ports` or `--to-source ADDR:LO-HI`). Small ranges run out under load (FM-06): watch `conntrack -S` (insert_failed, drop) and the number of entries per destination."),
        AllocatorMode::Random => "Expected with `--random` / `--random-fully` (kube-proxy, Calico, Flannel use it against insertion races). Nothing to fix unless a peer depends on the client's port.".to_string(),
        AllocatorMode::Undetermined => "Whether an entry held the tuple: `conntrack -L --src-nat` (an entry older than the captures); whether the rule moves every port: its port range or `--random`/`--random-fully` (`iptables-save -t nat`, `nft list ruleset`; given with --rules, natcheck reads it).".to_string(),
        AllocatorMode::Mixed => "Some translations kept their ports and this one moved with no holder in the captures: the holder predates the captures or crossed another point, or a different rule (with --random or a range) matched. `conntrack -L --src-nat` shows the holder.".to_string(),
    };
    (
        format!(
            "{} {wanted_sport} became {got_sport} at {point}: {why}",
            if *icmp { "ICMP id" } else { "source port" }
        ),
        check,
    )
}

/// Whether the mode comes from the rule that made the translation (its evidence).
fn by_rule(f: &Finding) -> bool {
    f.evidence.iter().any(|e| {
        matches!(
            e,
            Evidence::Rule {
                role: RuleRole::Allocates,
                ..
            }
        )
    })
}
