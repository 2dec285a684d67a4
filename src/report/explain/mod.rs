//! The words of every finding: its one-line message, what to check next, and each
//! piece of evidence as one line. Written here once, from the finding's data, so that
//! the table, JSON, Markdown and every later format say the same thing. One file per
//! finding code, beside the rule of the same name under `audit/findings/`.

mod asymmetric_route;
mod client_address_lost;
mod conntrack_table_full;
mod ct_contradiction;
mod ct_duplicate;
mod ct_hairpin_no_masq;
mod ct_missing;
mod ct_unobserved;
mod ct_unreplied;
mod evidence;

pub use evidence::entry;
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

use crate::audit::{Code, Finding};

/// A finding in words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Words {
    /// One line: what happened.
    pub message: String,
    /// What to check next: the advice, with what the evidence given says of the cause.
    pub check: String,
    /// The advice alone: what to check next for every finding of this cause.
    pub advice: String,
    /// What the evidence given (conntrack statistics, an event log) says of the cause,
    /// what it rules in or out, when it says anything.
    pub cause: Option<String>,
    /// The evidence, one fact per line.
    pub evidence: Vec<String>,
    /// For a finding that describes NAT working as configured (nothing to fix): what
    /// it is, said of one and of several (`source port moved to avoid a clash`).
    pub expected: Option<(&'static str, &'static str)>,
}

/// The words of a finding.
pub fn words(f: &Finding) -> Words {
    let (message, advice) = match f.code {
        Code::Lost => lost::explain(f),
        Code::Leak => leak::explain(f),
        Code::Unsolicited => unsolicited::explain(f),
        Code::PortReallocated => port_reallocated::explain(f),
        Code::CtContradiction => ct_contradiction::explain(f),
        Code::CtMissing => ct_missing::explain(f),
        Code::CtUnobserved => ct_unobserved::explain(f),
        Code::CtUnreplied => ct_unreplied::explain(f),
        Code::CtHairpinNoMasq => ct_hairpin_no_masq::explain(f),
        Code::CtDuplicate => ct_duplicate::explain(f),
        Code::RuleContradiction => rule_contradiction::explain(f),
        Code::InputBypassed => input_bypassed::explain(f),
        Code::ClientAddressLost => client_address_lost::explain(f),
        Code::StaleEntry => stale_entry::explain(f),
        Code::NotNetfilter => not_netfilter::explain(f),
        Code::SnatPortExhaustion => snat_port_exhaustion::explain(f),
        Code::InsertRace => insert_race::explain(f),
        Code::PmtuBlackHole => pmtu_black_hole::explain(f),
        Code::UserlandProxy => userland_proxy::explain(f),
        Code::AsymmetricRoute => asymmetric_route::explain(f),
        Code::HairpinNoMasq => hairpin_no_masq::explain(f),
        Code::ConntrackTableFull => conntrack_table_full::explain(f),
        Code::OverlayMasq => overlay_masq::explain(f),
        Code::UnderlayDrop => underlay_drop::explain(f),
        Code::HairpinDirectReply => hairpin_direct_reply::explain(f),
        Code::NatHelper => nat_helper::explain(f),
        Code::NatBeforeCapture => nat_before_capture::explain(f),
        Code::LoopbackExposed => loopback_exposed::explain(f),
        Code::RemappedAfterIdle => remapped_after_idle::explain(f),
        Code::StateLost => state_lost::explain(f),
    };
    let cause = match f.code {
        Code::Lost => lost::cause(f),
        Code::Leak => leak::cause(f),
        Code::HairpinNoMasq => hairpin_no_masq::cause(f),
        Code::StateLost => state_lost::cause(f),
        _ => None,
    };
    let check = match (&cause, f.code) {
        (None, _) => advice.clone(),
        // The event log and the statistics open leak's and state-lost's check and
        // close lost's.
        (Some(c), Code::Leak | Code::StateLost) => format!("{c} {advice}"),
        (Some(c), _) => format!("{advice} {c}"),
    };
    let expected = match f.code {
        Code::PortReallocated => port_reallocated::expected(f),
        Code::UserlandProxy => userland_proxy::expected(f),
        Code::NatHelper => nat_helper::expected(f),
        Code::NatBeforeCapture => nat_before_capture::expected(f),
        _ => None,
    };
    Words {
        message,
        check,
        advice,
        cause,
        evidence: f.evidence.iter().map(evidence::line).collect(),
        expected,
    }
}

/// What a `ct-*` finding's words are about: the entry's ORIGINAL tuple, the tuple
/// after NAT by conntrack, and the rule's facts.
struct CtWords<'a> {
    orig: crate::model::Tuple,
    post: crate::model::Tuple,
    facts: &'a crate::audit::CtFacts,
}

fn ct_words(f: &Finding) -> Option<CtWords<'_>> {
    match &f.detail {
        crate::audit::Detail::Conntrack {
            conntrack, facts, ..
        } => {
            let post = (*conntrack).or(facts.orig)?;
            Some(CtWords {
                orig: facts.orig.unwrap_or(post),
                post,
                facts,
            })
        }
        _ => None,
    }
}

/// The `conntrack -S` counters among the finding's evidence, when statistics were
/// given.
fn stats(f: &Finding) -> Option<&[(String, u64)]> {
    f.evidence.iter().find_map(|e| match e {
        crate::audit::Evidence::Stats { counters, .. } => Some(counters.as_slice()),
        _ => None,
    })
}

/// A `conntrack -S` counter among the finding's evidence, when statistics were given.
fn stat(f: &Finding, name: &str) -> Option<u64> {
    stats(f)?.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Words for a finding whose detail is not its code's (never made by the rules).
fn unexplained(f: &Finding) -> (String, String) {
    (f.code.to_string(), String::new())
}
