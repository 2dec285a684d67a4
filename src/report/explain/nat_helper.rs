//! Words of `nat-helper`.

use super::evidence::ids;
use super::unexplained;
use crate::audit::{Detail, Finding};
use crate::report::fmt::{plural, tuple_proto};

/// A helper rewriting an address and translating what it announced is NAT working as
/// configured.
pub fn expected(f: &Finding) -> Option<(&'static str, &'static str)> {
    matches!(f.detail, Detail::NatHelper { .. }).then_some((
        "connection handled by a NAT helper",
        "connections handled by NAT helpers",
    ))
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::NatHelper {
        helper,
        rewritten,
        shift,
        expected,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let who = match helper {
        Some(h) => format!("the NAT helper `{h}`"),
        None => "a NAT helper".to_string(),
    };
    let (from, to) = match f.points.as_slice() {
        [a, b, ..] => (a.as_str(), b.as_str()),
        _ => ("", ""),
    };
    let conn = f.tuples.first().map(|s| tuple_proto(&s.tuple));
    let mut did = Vec::new();
    for (side, n, by, at) in [
        ("initiator", rewritten[0], shift[0], to),
        ("responder", rewritten[1], shift[1], from),
    ] {
        if n == 0 {
            continue;
        }
        let moved = match by {
            0 => String::new(),
            s => format!(", moving the {side}'s later sequence numbers by {s:+} at {at}"),
        };
        did.push(format!(
            "rewrote the payload of {} between {from} and {to}{moved}",
            plural(n, &format!("{side} packet"), &format!("{side} packets"))
        ));
    }
    if !expected.is_empty() {
        did.push(format!(
            "expected {}, which NAT translated as it translated this connection, with no rule of {}",
            ids(expected),
            if expected.len() == 1 { "its own" } else { "their own" }
        ));
    }
    (
        format!(
            "{}: {who} {}",
            conn.unwrap_or_default(),
            did.join(", and ")
        ),
        "Expected where a NAT helper is assigned (a raw-table `-j CT --helper NAME` rule, an nft `ct helper set`): the helper writes the translated address in place of the original in the payload (FTP's PORT, EPRT and 227, SIP's headers and SDP), shifts the sequence numbers after a change of length, and registers the connections the payload announces, which conntrack marks RELATED and NAT translates as their master, past the nat rules. `conntrack -L -o extended` names the helper (`helper=`), `conntrack -L expect` lists what it expects. A helper that breaks a protocol (payloads it misreads, encrypted control traffic it cannot read) is removed by its `CT --helper` rule.".to_string(),
    )
}
