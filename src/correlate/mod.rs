//! correlate: finds the same connection at every capture point and rebuilds what NAT
//! did to it between consecutive points, from the captures alone.
//!
//! [`correlate`] runs the steps in order, each in its own module and each deterministic
//! whatever the thread count:
//! 1. [`points`]: flows and one fingerprint record per packet, per point
//!    ([`points::read_points`], called by [`run`]).
//! 2. [`offset`]: clock offset of every point from packets unambiguous at two points.
//! 3. `pairing`: the cross-point join; matched packets vote for pairs of flows, and so
//!    do TCP segments that carried the same bytes cut differently (`segments`:
//!    segmentation offloads cut one stream differently at different points).
//! 4. `components`: flow pairs joined greedily, best evidence first, into one component
//!    per connection that holds at most one flow per point (except through a hairpin
//!    edge); pairs that would break that rule are kept for [`Related`], never silently
//!    dropped. Every flow of a component is then oriented alike (initiator first).
//!    `returns` then joins flows of replies seen nowhere else to the connection they
//!    answer, by the replies' own fields.
//! 5. `paths`: per connection (in parallel), its [`Hop`]s in the initiator's direction,
//!    and its replies at points beside the path ([`ReturnHop`]: asymmetric routes);
//!    once all are made, connections numbered in time order, refused pairs attached as
//!    [`Related`], and ICMP errors tied to the connection they quote
//!    ([`Connection::about`], `quoted`).
//! 6. `translations`: per connection (in parallel), a [`Link`] for each consecutive
//!    pair of hops: the translation, matched and unmatched packets per direction
//!    (TCP data by byte range, pure ACKs superseded by a later one: [`Resegmentation`]),
//!    each direction by packet size (`sizes`: the largest that crossed, the TCP data
//!    segments larger than that which did not: [`Sizing`]), forwarding latency; the
//!    replies each return hop exchanged with the path ([`ReturnLink`]), which count as
//!    crossed on the path's links; then, where the source port moved, the connection
//!    that held the wanted port ([`PortRealloc`]).
//! 7. `streams`: for TCP connections no link translated, the first bytes each side
//!    sent, by offset in its stream ([`Streams`]), so that the two connections a
//!    userland proxy splices can be told to carry the same bytes.
//!
//! With step 6, the connections [`Config::trace`] names keep their packets one by one
//! (`trace`: [`Packets`]) for the reports that list or draw them. Steps 5 to 7 run a
//! batch of connections at a time, in the order of their first packet, and give back
//! the packet records no connection still to go reads ([`points::Release`]); when the
//! trace names connections by number, steps 6 and 7 wait until all are numbered.
//!
//! This module holds the sequence and the result ([`Correlation`], [`Connection`],
//! [`PointSummary`]); the types of hops and links belong to their steps and are
//! re-exported here.

mod components;
pub mod fingerprint;
pub mod offset;
mod pairing;
mod paths;
pub mod points;
mod quoted;
mod returns;
mod rewrites;
mod segments;
mod sizes;
mod streams;
#[cfg(test)]
pub(crate) mod testkit;
pub mod trace;
mod translations;

use serde::Serialize;

use crate::capture::{InputResult, InputSpec, ReadOptions, TimeRange};
use crate::flows::InitiatorEvidence;
use crate::model::{NatChange, Proto};
use offset::Offset;
use points::PointData;

pub use paths::{Hop, Related};
pub use returns::{Joined, ReturnHop, ReturnLink, REPLY_WINDOW_NS};
pub use rewrites::{Rewrites, Rewritten};
pub use segments::{Resegmentation, Resegmented};
pub use sizes::{Missing, Oversize, Sizes, Sizing};
pub use streams::{Chunk, Stream, Streams};
pub use trace::{Cap, Packet, Packets, Sighting, Trace};
pub use translations::{
    Gap, Latency, Link, LinkEvidence, PortRealloc, Rare, Resent, Sparse, Unmatched, Unmatches,
};

/// Tunables of the correlation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Two packets with the same fingerprint at two points are the same packet only if
    /// their clock-corrected times are at most this far apart.
    pub window_ns: i64,
    /// The connections that keep their packets one by one (none by default).
    pub trace: Trace,
    /// Link-local control flows (neighbour discovery, MLD, IGMP, DHCP, multicast,
    /// ...: [`crate::flows::is_control`]) are connections too. By default they are
    /// not: NAT never handles them, and each input's `control_flows` counts them per
    /// point.
    pub control: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window_ns: 1_000_000_000,
            trace: Trace::default(),
            control: false,
        }
    }
}

/// Per-point facts for the report.
#[derive(Clone, Debug, Serialize)]
pub struct PointSummary {
    pub name: String,
    pub source: String,
    pub linktype: String,
    pub interface: Option<String>,
    pub packets: u64,
    pub flows: usize,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub clock: Offset,
}

/// One connection across every point it was seen at.
#[derive(Clone, Debug)]
pub struct Connection {
    pub id: String,
    pub proto: Proto,
    /// Hops in the initiator's direction.
    pub hops: Vec<Hop>,
    /// `links[i]` joins `hops[i]` and `hops[i + 1]`.
    pub links: Vec<Link>,
    /// The connection's replies at points beside its path (asymmetric routes).
    pub returns: Vec<ReturnHop>,
    pub related: Vec<Related>,
    /// How the initiator was decided, from the hop with the best evidence.
    pub initiator: InitiatorEvidence,
    /// TCP connections no link translated, whose handshake the first hop saw: the
    /// bytes each side sent there (`streams`).
    pub streams: Option<Box<Streams>>,
    /// Its packets one by one, when [`Config::trace`] names it (`trace`).
    pub packets: Option<Box<Packets>>,
    /// For a connection made of ICMP errors: the number `n` of the connection (id
    /// `cn`) whose packet the errors quote, when that connection was seen where the
    /// errors were (`quoted`).
    pub about: Option<u32>,
}

impl Connection {
    pub fn first_ns(&self) -> i64 {
        self.all_hops().map(|h| h.first_ns).min().unwrap_or(0)
    }

    pub fn last_ns(&self) -> i64 {
        self.all_hops().map(|h| h.last_ns).max().unwrap_or(0)
    }

    /// The flows its hops are made of, as (point, flow at the point).
    fn point_flows(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.all_hops()
            .flat_map(|h| h.flow_idx.iter().map(move |&f| (h.point, f)))
    }

    /// The hops of the path, then the return hops.
    pub fn all_hops(&self) -> impl Iterator<Item = &Hop> {
        self.hops.iter().chain(self.returns.iter().map(|r| &r.hop))
    }

    /// Whether two of the connection's hops saw its TCP stream cut differently: a link
    /// accounted for packets by their bytes or by a later ACK, so packet counts differ
    /// from hop to hop while the bytes agree.
    pub fn resegmented(&self) -> bool {
        self.links.iter().any(|l| !l.resegmented.is_none())
    }

    /// The ICMP error the connection is made of, when it is one (its first hop's).
    pub fn icmp_error(&self) -> Option<&crate::flows::IcmpError> {
        self.hops.iter().find_map(|h| h.flow.icmp_error.as_deref())
    }

    /// The id of the connection the errors quote ([`Connection::about`]).
    pub fn about_id(&self) -> Option<String> {
        self.about.map(|n| format!("c{n}"))
    }

    /// What reports count the connection as: `single-point`, `icmp-error` for ICMP
    /// errors seen at several points (their translation is the one of the connection
    /// they quote, not one of their own), else the kind of its translation from the
    /// first hop to the last.
    pub fn kind_token(&self) -> &'static str {
        match self.end_to_end() {
            None => "single-point",
            Some(_) if self.icmp_error().is_some() => "icmp-error",
            Some(ch) => ch.kind.as_str(),
        }
    }

    /// The translation from the first hop to the last; `None` for a connection seen
    /// at one point only.
    pub fn end_to_end(&self) -> Option<NatChange> {
        let (first, last) = (self.hops.first()?, self.hops.last()?);
        (self.hops.len() > 1).then(|| NatChange::between(&first.flow.tuple, &last.flow.tuple))
    }
}

/// Everything correlation found.
#[derive(Clone, Debug)]
pub struct Correlation {
    pub points: Vec<PointSummary>,
    pub connections: Vec<Connection>,
    pub inputs: Vec<InputResult>,
    pub config: Config,
    /// The time range the captures were read in (`--since`, `--until`).
    pub range: TimeRange,
}

/// Connections made and linked at once (in parallel) before the records they read are
/// given back.
const BATCH: usize = 4096;

/// Reads the inputs and correlates them.
pub fn run(specs: &[InputSpec], opts: &ReadOptions, config: Config) -> Correlation {
    crate::mem::step("start");
    let (points, inputs) = points::read_points(specs, opts);
    crate::mem::step("read");
    Correlation {
        range: opts.range,
        ..correlate(points, inputs, config)
    }
}

/// Leaves out of `members` (connections, as lists of nodes) those made of link-local
/// control flows only, and counts them per point in `hidden`. Such a flow is never
/// paired with another (its packets are not matched across points, and no reply is
/// joined to it), so each is a connection of its own.
fn hide_control(
    points: &[PointData],
    nodes: &[(usize, u32)],
    members: &mut Vec<Vec<usize>>,
    hidden: &mut [usize],
) {
    members.retain(|m| {
        let control = m.iter().all(|&n| {
            let (p, f) = nodes[n];
            points[p].flows[f as usize].is_control()
        });
        if control {
            for &n in m {
                hidden[nodes[n].0] += 1;
            }
        }
        !control
    });
}

/// Correlates points already read (see [`points::read_points`]).
pub fn correlate(
    mut points: Vec<PointData>,
    mut inputs: Vec<InputResult>,
    config: Config,
) -> Correlation {
    let window = config.window_ns;
    let range = points
        .first()
        .map_or_else(TimeRange::default, |p| p.info.range);
    let offsets = offset::estimate(&points);
    crate::mem::step("offsets");
    let off: Vec<i64> = offsets.iter().map(|o| o.offset_ns).collect();
    let flow_pairs = pairing::flow_pairs(&points, &off, window);
    crate::mem::step("join");
    // Nothing after the join reads the fingerprint order: its 4 bytes a packet are
    // given back before the steps that build the connections.
    for p in &mut points {
        p.by_fp = Vec::new();
        p.runs = Default::default();
    }
    let mut comps = components::group(&points, flow_pairs);
    crate::mem::step("group");
    components::orient(&mut points, &comps, &off, window);
    returns::attach(&mut points, &mut comps, &off);
    let rejected = std::mem::take(&mut comps.rejected);
    // The accepted flow pairs are not read again.
    comps.edges = Vec::new();
    // Connections are made a batch at a time in the order of their first packet, and
    // linked as they are made (steps 5 to 7); the records no connection still to go
    // reads are given back as they go, so that the records, the hops and the links
    // are never all held at once. Connections the trace names by number are linked
    // once all are made and numbered.
    let mut members = paths::in_time_order(&points, &mut comps, &off);
    let mut hidden = vec![0usize; points.len()];
    if !config.control {
        hide_control(&points, &comps.nodes, &mut members, &mut hidden);
        for (p, &n) in points.iter().zip(&hidden).filter(|(_, &n)| n > 0) {
            if let Some(input) = inputs.get_mut(p.input) {
                let counts = &mut input.stats.control_flows;
                *counts.entry(p.info.name.clone()).or_insert(0) += n as u64;
            }
        }
    }
    let leaves = paths::Leaves::of(&points, &comps, &members, (&off, window));
    crate::mem::step("orient, returns, order");
    let mut release = points::Release::new(
        &mut points,
        members.iter().flatten().map(|&n| {
            let (p, f) = comps.nodes[n];
            (p, f as usize)
        }),
    );
    let by_number = !config.trace.named.is_empty();
    let mut link = |points: &mut [PointData], batch: &mut [Connection]| {
        translations::link_all(points, batch, &off, window, &config.trace);
        streams::summarize(points, batch, &off);
        release.done(points, batch.iter().flat_map(Connection::point_flows));
    };
    let mut connections = Vec::with_capacity(members.len());
    let mut members = members.into_iter();
    loop {
        let batch: Vec<Vec<usize>> = members.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        // Each connection made while the flows and first records of the next are
        // fetched into the cache (they lie elsewhere in memory).
        let mut made: Vec<Connection> = crate::mem::map_fetching_ahead(
            &batch,
            |next| comps.fetch(&points, next),
            |_, m| paths::connection(&points, &comps, m, &leaves, (&off, window)),
        );
        if !by_number {
            link(&mut points, &mut made);
        }
        connections.append(&mut made);
    }
    drop(comps);
    crate::mem::step("made and linked");
    paths::number(&mut connections);
    paths::relate(&mut connections, &rejected, &points);
    quoted::attach(&mut connections);
    if by_number {
        for batch in connections.chunks_mut(BATCH) {
            link(&mut points, batch);
        }
    }
    // The last step reads connections only: the points' records and flows are given
    // back before it.
    let points: Vec<PointSummary> = (points.into_iter().zip(offsets).zip(hidden))
        .map(|((p, clock), hidden)| PointSummary {
            flows: p.flows.len() - hidden,
            ..p.summary(clock)
        })
        .collect();
    translations::port_reallocs(&mut connections);
    crate::mem::step("numbered, reallocations");
    Correlation {
        points,
        connections,
        inputs,
        config,
        range,
    }
}
