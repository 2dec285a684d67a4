//! Words of `snat-port-exhaustion`.

use super::evidence::{group_ids, GROUP};
use super::{stat, unexplained};
use crate::audit::{Detail, Finding};
use crate::report::fmt::{endpoint, plural};

/// The lost connections and their packets: `4 SYNs of c4`, `3 datagrams of c9 and c10`;
/// of more than sixteen, the first sixteen and how many more (the words are repeated
/// under every connection the finding names: the holders and the lost).
fn what_was_lost(f: &Finding, lost: &[String]) -> String {
    let (one, many) = match f.proto() {
        Some(crate::model::Proto::Tcp) => ("SYN", "SYNs"),
        Some(crate::model::Proto::Udp) => ("datagram", "datagrams"),
        _ => ("packet", "packets"),
    };
    format!(
        "{} of {}",
        plural(f.packets, one, many),
        match lost {
            [one] => one.clone(),
            _ if lost.len() > GROUP => group_ids(lost),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
            [] => String::new(),
        }
    )
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::SnatPortExhaustion {
        destination: (proto, addr, port),
        nat,
        range: [lo, hi],
        usable,
        held,
        lost,
        ..
    } = &f.detail
    else {
        return unexplained(f);
    };
    let dst = endpoint(*proto, *addr, *port);
    let (from, to) = match f.points.as_slice() {
        [a, b, ..] => (a.as_str(), b.as_str()),
        _ => ("", ""),
    };
    let nat_words = match nat.as_slice() {
        [one] => one.to_string(),
        many => format!("{} NAT addresses", many.len()),
    };
    let message = format!(
        "{proto} to {dst} ran out of NAT ports: {held} of {usable} (ports {lo}-{hi} of {nat_words}) were held while {} were lost between {from} and {to}",
        what_was_lost(f, lost)
    );
    let counted = match (stat(f, "insert_failed"), stat(f, "drop")) {
        (Some(0), _) => " `conntrack -S` counts no failed insert (insert_failed=0): if these counters are from the same host and time, something else dropped them.".to_string(),
        (Some(n), d) => format!(
            " `conntrack -S` counts {n} failed inserts{}: each lost packet is one.",
            d.map(|d| format!(" and {d} drops")).unwrap_or_default()
        ),
        (None, _) => " `conntrack -S` counts each lost packet in insert_failed and drop.".to_string(),
    };
    let check = format!(
        "Source NAT had no free port for this destination (FM-06): the tuple space is per destination address and port, {lo}-{hi} here, and every port was held, so conntrack refused each new entry.{counted} Widen the range or add NAT addresses (`--to-ports`, `--to-source ADDR:LO-HI`, nft `snat to` / `masquerade to`), hold fewer connections to one destination (pooling, keep-alive), and list the holders with `conntrack -L -p {proto} --reply-src {addr} --reply-port-src {port}`."
    );
    (message, check)
}
