//! What an entry says NAT did, in `correlate`'s vocabulary: the change from ORIGINAL
//! to the reverse of REPLY (see [`NatChange`]), plus the two cases the tuples alone
//! name: REDIRECT (DNAT to an address of the host itself) and hairpin (DNAT back to
//! the client that sent the packet).
//!
//! REDIRECT cannot be told from DNAT by the entry alone: the kernel picks the primary
//! address of the incoming interface (or loopback for locally generated packets). An
//! address counts as the host's when it is loopback or when some entry of the same
//! input shows the host using it as a NAT source (MASQUERADE and SNAT only pick the
//! host's addresses); callers can add the addresses they know.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use super::Entry;
use crate::model::{NatChange, NatKind, Proto, Tuple};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Implied {
    #[serde(flatten)]
    pub change: NatChange,
    /// The tuple after NAT, in the initiator's direction (reverse of REPLY).
    pub post: Tuple,
    /// DNAT to an address of the host (REDIRECT, or DNAT to a local address).
    pub redirect: bool,
    /// DNAT back to the address the connection came from.
    pub hairpin: bool,
}

impl Implied {
    pub fn of(e: &Entry, host: &BTreeSet<IpAddr>) -> Implied {
        let post = e.post();
        // GRE keys sit in the port fields but are not ports: PPTP call ids differ
        // between the directions without any NAT, so only addresses are compared.
        let change = if e.orig.proto == Proto::Gre {
            let bare = |t: &Tuple| Tuple {
                sport: 0,
                dport: 0,
                ..*t
            };
            NatChange::between(&bare(&e.orig), &bare(&post))
        } else {
            NatChange::between(&e.orig, &post)
        };
        let dnat = change.kind.has_dnat();
        Implied {
            change,
            post,
            redirect: dnat && (post.dst.is_loopback() || host.contains(&post.dst)),
            hairpin: dnat && change.dst_addr_changed && post.dst == e.orig.src,
        }
    }

    pub fn is_nat(&self) -> bool {
        self.change.kind != NatKind::None
    }

    /// `snat`, `dnat (redirect)`, `snat+dnat (hairpin, port reallocated)`, ...
    pub fn label(&self) -> String {
        let mut notes = Vec::new();
        if self.redirect {
            notes.push("redirect");
        }
        if self.hairpin {
            notes.push("hairpin");
        }
        if self.change.port_reallocated {
            notes.push("port reallocated");
        }
        if notes.is_empty() {
            self.change.kind.to_string()
        } else {
            format!("{} ({})", self.change.kind, notes.join(", "))
        }
    }
}

/// Addresses the entries show the host translating to as a source: the host's own.
pub fn host_addresses<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> BTreeSet<IpAddr> {
    entries
        .into_iter()
        .filter_map(|e| {
            let post = e.post();
            (post.src != e.orig.src).then_some(post.src)
        })
        .collect()
}
