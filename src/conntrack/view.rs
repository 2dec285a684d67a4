//! One conntrack input as the `natcheck conntrack` and `natcheck snapshot` reports
//! show it: its entries and event timelines, each with the translation it implies,
//! filtered by the NAT kinds asked for.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{timelines, Dump, Entry, Implied, Timeline};
use crate::model::NatKind;

/// One input with its entries and timelines, filtered and with their translations.
pub struct View<'a> {
    pub dump: &'a Dump,
    pub entries: Vec<(&'a Entry, Implied)>,
    pub timelines: Vec<(Timeline, Implied)>,
}

impl<'a> View<'a> {
    /// The entries and timelines of `dump` whose implied translation `keep` accepts;
    /// DNAT to an address in `host` reads as REDIRECT.
    pub fn of(dump: &'a Dump, host: &BTreeSet<IpAddr>, keep: impl Fn(NatKind) -> bool) -> View<'a> {
        let entries = dump
            .entries
            .iter()
            .map(|e| (e, Implied::of(e, host)))
            .filter(|(_, i)| keep(i.change.kind))
            .collect();
        let timelines = timelines(&dump.events)
            .into_iter()
            .map(|t| {
                let i = Implied::of(&t.last(&dump.events).entry, host);
                (t, i)
            })
            .filter(|(_, i)| keep(i.change.kind))
            .collect();
        View {
            dump,
            entries,
            timelines,
        }
    }
}
