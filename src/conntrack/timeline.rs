//! An event log (`conntrack -E`) as one timeline per connection: when it was created,
//! each state change, and when it was destroyed.
//!
//! Events belong to the same connection when they share zone, ORIGINAL tuple and (when
//! printed) entry id. A `[NEW]` for a key that already has an open timeline starts a
//! new one (the old entry was destroyed without an event, e.g. lost to a full socket
//! buffer); a `[DESTROY]` closes its timeline. Timelines are listed in the order of
//! their first event.

use foldhash::{HashMap, HashMapExt};

use serde::Serialize;

use super::{Event, EventKind};
use crate::model::Tuple;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub zone: u16,
    pub orig: Tuple,
    pub id: Option<u32>,
    /// Time of the `[NEW]` event, when it was logged with `-o timestamp`.
    pub created_ns: Option<i64>,
    pub destroyed_ns: Option<i64>,
    /// Whether the log holds this connection's `[NEW]` / `[DESTROY]`.
    pub saw_new: bool,
    pub saw_destroy: bool,
    /// Indices into the input's events, in order.
    pub events: Vec<usize>,
}

impl Timeline {
    /// The latest event of this connection.
    pub fn last<'a>(&self, events: &'a [Event]) -> &'a Event {
        &events[*self
            .events
            .last()
            .expect("a timeline holds at least one event")]
    }
}

pub fn timelines(events: &[Event]) -> Vec<Timeline> {
    let mut out: Vec<Timeline> = Vec::new();
    let mut open: HashMap<(u16, Tuple, Option<u32>), usize> = HashMap::new();
    for (i, ev) in events.iter().enumerate() {
        let e = &ev.entry;
        let key = (e.zone_id(), e.orig, e.id);
        let current = match open.get(&key) {
            Some(&t) if ev.kind != EventKind::New => t,
            _ => {
                out.push(Timeline {
                    zone: key.0,
                    orig: key.1,
                    id: key.2,
                    created_ns: None,
                    destroyed_ns: None,
                    saw_new: false,
                    saw_destroy: false,
                    events: Vec::new(),
                });
                open.insert(key, out.len() - 1);
                out.len() - 1
            }
        };
        let t = &mut out[current];
        t.events.push(i);
        match ev.kind {
            EventKind::New => {
                t.saw_new = true;
                t.created_ns = ev.time_ns;
            }
            EventKind::Update => {}
            EventKind::Destroy => {
                t.saw_destroy = true;
                t.destroyed_ns = ev.time_ns;
                open.remove(&key);
            }
        }
    }
    out
}
