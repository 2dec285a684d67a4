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
    /// The entries and timelines of `dump` that `keep` accepts, given the entry (a
    /// timeline's last) and its implied translation; DNAT to an address in `host`
    /// reads as REDIRECT.
    pub fn of(
        dump: &'a Dump,
        host: &BTreeSet<IpAddr>,
        keep: impl Fn(&Entry, NatKind) -> bool,
    ) -> View<'a> {
        let entries = dump
            .entries
            .iter()
            .map(|e| (e, Implied::of(e, host)))
            .filter(|(e, i)| keep(e, i.change.kind))
            .collect();
        let timelines = timelines(&dump.events)
            .into_iter()
            .filter_map(|t| {
                let last = &t.last(&dump.events).entry;
                let i = Implied::of(last, host);
                keep(last, i.change.kind).then_some((t, i))
            })
            .collect();
        View {
            dump,
            entries,
            timelines,
        }
    }
}
