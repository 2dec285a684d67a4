//! The `natcheck.report/2` JSON document (documented in docs/json-schema.md). Field
//! names and meanings are a contract: add fields, never rename or repurpose them
//! (a change of meaning is a new schema version, and `diff` reads the older ones).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;

use rayon::prelude::*;
use serde::Serialize;

use super::explain::Words;
use super::fmt::{dst, Stamp};
use super::{pretty, Model, Render};
use crate::audit::{Detail, Direction, Finding, Seen, WitnessKind, WitnessSummary};
use crate::capture::InputStats;
use crate::correlate::{
    Connection, Correlation, Gap, Hop, Joined, Latency, Link, PortRealloc, Related, Resegmentation,
    ReturnHop, ReturnLink, Rewrites, Rewritten,
};
use crate::diag::Warning;
use crate::flows::InitiatorEvidence;
use crate::model::{tcp_flags, NatKind, Proto};

pub const SCHEMA: &str = "natcheck.report/2";

#[derive(Serialize)]
pub struct Report<'a> {
    pub schema: &'static str,
    pub generator: Generator,
    pub config: ConfigJson,
    pub inputs: Vec<InputJson<'a>>,
    pub points: Vec<PointJson<'a>>,
    pub connections: Vec<ConnectionJson<'a>>,
    pub findings: Vec<FindingJson<'a>>,
    pub warnings: &'a [Warning],
    /// What each `--conntrack` input contributed (absent without any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conntrack: Vec<WitnessJson<'a>>,
    /// What the `--rules` inputs contributed (absent without any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<WitnessJson<'a>>,
    /// The `natcheck collect` bundles the inputs came from (absent without any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<BundleJson<'a>>,
    pub summary: Summary<'a>,
}

/// A bundle: where and when it was collected, why it stopped, each point's packets
/// and kernel drops, and the files that could not be collected.
#[derive(Serialize)]
pub struct BundleJson<'a> {
    pub dir: &'a str,
    pub host: &'a str,
    pub kernel: &'a str,
    pub started: Option<Stamp>,
    pub stopped: Option<Stamp>,
    pub stop: &'a crate::bundle::manifest::Stop,
    pub points: Vec<BundlePointJson<'a>>,
    pub missing: Vec<BundleMissingJson<'a>>,
    /// The flight recorder (`--ring`), as the manifest says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring: Option<&'a crate::bundle::manifest::Ring>,
}

#[derive(Serialize)]
pub struct BundlePointJson<'a> {
    pub name: &'a str,
    pub packets: u64,
    pub kernel_drops: u64,
}

#[derive(Serialize)]
pub struct BundleMissingJson<'a> {
    pub file: &'a str,
    pub error: &'a str,
}

fn bundle(b: &crate::bundle::Summary) -> BundleJson<'_> {
    BundleJson {
        dir: &b.dir,
        host: &b.host,
        kernel: &b.kernel,
        started: b.started_ns.map(Stamp),
        stopped: b.stopped_ns.map(Stamp),
        stop: &b.stop,
        points: b
            .points
            .iter()
            .map(|(name, packets, drops)| BundlePointJson {
                name,
                packets: *packets,
                kernel_drops: *drops,
            })
            .collect(),
        missing: b
            .missing
            .iter()
            .map(|(file, error)| BundleMissingJson { file, error })
            .collect(),
        ring: b.ring.as_ref(),
    }
}

/// One witness input's summary.
#[derive(Serialize)]
pub struct WitnessJson<'a> {
    pub source: &'a str,
    /// `snapshot` (a table at one instant) or `events` (an event log's connections).
    pub kind: &'static str,
    pub entries: usize,
    pub on_wire: usize,
    pub agree: usize,
    /// The snapshot's time on the captures' clock.
    pub time_ns: Option<Stamp>,
    /// How `time_ns` is known: `recorded` when the table was taken (a bundle's
    /// manifest) or `estimated` from its entries; absent without a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_basis: Option<&'static str>,
}

/// A finding (see docs/findings.md): times as RFC 3339 strings.
#[derive(Serialize)]
pub struct FindingJson<'a> {
    pub code: &'static str,
    pub severity: &'static str,
    pub connections: &'a [String],
    pub points: &'a [String],
    pub tuples: &'a [Seen],
    pub first: Option<Stamp>,
    pub last: Option<Stamp>,
    pub packets: u64,
    pub message: &'a str,
    pub check: &'a str,
    pub evidence: &'a [String],
    pub detail: DetailJson<'a>,
}

/// Code-specific facts, for scripts.
#[derive(Serialize)]
#[serde(untagged)]
pub enum DetailJson<'a> {
    Lost {
        from: &'a str,
        to: &'a str,
        direction: Direction,
        blocked: bool,
        first_tcp_flags: Option<&'a str>,
        path_from: &'a [String],
        path_from_total: usize,
    },
    Leak {
        kind: &'static str,
        inside_address: Option<IpAddr>,
        translated_by: &'a [String],
    },
    Unsolicited {
        nat_address: IpAddr,
        nat_port: Option<u16>,
        from_address: IpAddr,
        from_port: Option<u16>,
        translations: &'a [String],
        expected_peer: Option<String>,
    },
    PortReallocated {
        wanted_sport: u16,
        got_sport: u16,
        colliding: Option<&'a str>,
        colliding_started_first: Option<bool>,
        mode: &'static str,
        range: Option<[u16; 2]>,
    },
    Conntrack {
        entry: &'a str,
        wire: Option<&'a crate::model::Tuple>,
        conntrack: Option<&'a crate::model::Tuple>,
    },
    HairpinNoMasq {
        client: &'a crate::model::Tuple,
        back_at: &'a str,
        delivered: u64,
        replies: u64,
    },
    ClientAddressLost {
        service: &'a crate::model::Tuple,
        seen_as: std::net::IpAddr,
        clients: &'a [std::net::IpAddr],
        external_cluster: bool,
    },
    StaleEntry {
        service: &'a crate::model::Tuple,
        stale: &'a crate::model::Tuple,
        now_by_rules: Option<&'a crate::model::Tuple>,
        now_on_wire: Option<&'a crate::model::Tuple>,
        newer: Option<&'a str>,
        error_packets: u64,
    },
    SnatPortExhaustion {
        proto: crate::model::Proto,
        destination: String,
        nat_addresses: &'a [IpAddr],
        range: [u16; 2],
        range_from: &'static str,
        usable: u64,
        held: u64,
        holders: &'a [String],
        entries: &'a [String],
        lost: &'a [String],
    },
    InsertRace {
        kind: &'static str,
        from: &'a str,
        to: &'a str,
        recovered_after_ns: i64,
        pair_gap_ns: Option<i64>,
    },
    PmtuBlackHole {
        from: &'a str,
        to: &'a str,
        direction: Direction,
        crossed_max: u32,
        failed: [u32; 2],
        resent: u64,
        mss_initiator: Option<u16>,
        mss_responder: Option<u16>,
        mtu: Option<u32>,
        mtu_range: [u32; 2],
        icmp_seen_at: &'a [String],
        /// The tunnel the segments were to enter, and the bytes its headers add
        /// (at least, for Geneve and GRE).
        tunnel: Option<&'a crate::model::Tunnel>,
        tunnel_overhead: Option<u32>,
    },
    NatHelper {
        helper: Option<&'a str>,
        rewritten: [u64; 2],
        shift: [i64; 2],
        expected: &'a [String],
    },
    HairpinDirectReply {
        client: &'a crate::model::Tuple,
        server: &'a crate::model::Tuple,
        at: &'a str,
        delivered: u64,
        answers: u64,
        answers_at: Option<&'a str>,
    },
    UnderlayDrop {
        from: &'a str,
        to: &'a str,
        tunnel: &'a crate::model::Tunnel,
        lost_len: [u32; 2],
        crossed: u64,
        crossed_max: u32,
        larger: bool,
        /// Whether nothing of the tunnel crossed that way amid the lost packets, and
        /// when the first crossed after them.
        window: bool,
        crossed_again: Option<Stamp>,
    },
    TableFull {
        lost: &'a [String],
        destinations: Vec<DestinationJson>,
        flowing: &'a [String],
        crossed: &'a [String],
        drops: Option<u64>,
        early_drop: Option<u64>,
        counted_since: Option<&'a str>,
        entries: Option<u64>,
        max: Option<u64>,
        buckets: Option<u64>,
    },
    UserlandProxy {
        outer: &'a str,
        inner: &'a str,
        client: String,
        listen: String,
        source: String,
        backend: String,
        client_address_lost: bool,
        local_client: bool,
    },
    LoopbackExposed {
        arrived: &'a crate::model::Tuple,
        backend: Option<&'a crate::model::Tuple>,
        clients: &'a [IpAddr],
        answers: u64,
        answered: bool,
    },
    StateLost {
        tuple: &'a crate::model::Tuple,
        before: &'a crate::model::Tuple,
        after: &'a crate::model::Tuple,
        idle_ns: Option<i64>,
        timeout_ns: i64,
        sysctl: &'a str,
        given_at: Option<&'a str>,
        replies: u64,
        reset: bool,
    },
    RemappedAfterIdle {
        tuple: &'a crate::model::Tuple,
        before: &'a crate::model::Tuple,
        after: &'a crate::model::Tuple,
        idle_ns: i64,
        timeout_ns: i64,
        sysctl: &'a str,
        given_at: Option<&'a str>,
    },
    OverlayMasq {
        original: &'a crate::model::Tuple,
        seen_as: IpAddr,
        clients: &'a [IpAddr],
        destinations: &'a [IpAddr],
        tunnel: &'a crate::model::Tunnel,
    },
    AsymmetricRoute {
        requests_at: &'a str,
        replies_at: &'a str,
        not_reached: &'a str,
        joined_by: Joined,
        replies_crossed: u64,
        translated: bool,
        conntrack_unreplied: Option<bool>,
    },
    Rules {
        walked: &'a crate::model::Tuple,
        wire: Option<&'a crate::model::Tuple>,
        rules: Option<&'a crate::model::Tuple>,
        stopped: bool,
        outcomes: usize,
        assumed: bool,
    },
}

/// A destination of `conntrack-table-full`: protocol, and address and port (ICMP: the
/// address).
#[derive(Serialize)]
pub struct DestinationJson {
    proto: crate::model::Proto,
    destination: String,
}

fn detail(d: &Detail) -> DetailJson<'_> {
    match d {
        Detail::Lost {
            from,
            to,
            direction,
            blocked,
            first_tcp_flags,
            path_from,
            path_from_total,
            ..
        } => DetailJson::Lost {
            from,
            to,
            direction: *direction,
            blocked: *blocked,
            first_tcp_flags: first_tcp_flags.as_deref(),
            path_from,
            path_from_total: *path_from_total,
        },
        Detail::Leak {
            kind,
            inside_address,
            translated_by,
            ..
        } => DetailJson::Leak {
            kind: kind.as_str(),
            inside_address: *inside_address,
            translated_by,
        },
        Detail::Unsolicited {
            nat_address,
            nat_port,
            from_address,
            from_port,
            translations,
            expected,
            ..
        } => DetailJson::Unsolicited {
            nat_address: *nat_address,
            nat_port: *nat_port,
            from_address: *from_address,
            from_port: *from_port,
            translations,
            expected_peer: expected.as_ref().map(dst),
        },
        Detail::PortReallocated {
            wanted_sport,
            got_sport,
            colliding,
            colliding_started_first,
            mode,
            range,
            ..
        } => DetailJson::PortReallocated {
            wanted_sport: *wanted_sport,
            got_sport: *got_sport,
            colliding: colliding.as_deref(),
            colliding_started_first: *colliding_started_first,
            mode: mode.as_str(),
            range: *range,
        },
        Detail::Rules {
            walked,
            wire,
            rules,
            stopped,
            outcomes,
            assumed,
        } => DetailJson::Rules {
            walked,
            wire: wire.as_ref(),
            rules: rules.as_ref(),
            stopped: *stopped,
            outcomes: *outcomes,
            assumed: *assumed,
        },
        Detail::StaleEntry {
            service,
            stale,
            now_by_rules,
            now_on_wire,
            newer,
            error_packets,
        } => DetailJson::StaleEntry {
            service,
            stale,
            now_by_rules: now_by_rules.as_ref(),
            now_on_wire: now_on_wire.as_ref(),
            newer: newer.as_deref(),
            error_packets: *error_packets,
        },
        Detail::HairpinNoMasq {
            client,
            back_at,
            delivered,
            replies,
        } => DetailJson::HairpinNoMasq {
            client,
            back_at,
            delivered: *delivered,
            replies: *replies,
        },
        Detail::ClientAddressLost {
            service,
            seen_as,
            clients,
            external_cluster,
        } => DetailJson::ClientAddressLost {
            service,
            seen_as: *seen_as,
            clients,
            external_cluster: *external_cluster,
        },
        Detail::SnatPortExhaustion {
            destination: (proto, addr, port),
            nat,
            range,
            range_from,
            usable,
            held,
            holders,
            entries,
            lost,
        } => DetailJson::SnatPortExhaustion {
            proto: *proto,
            destination: crate::report::fmt::endpoint(*proto, *addr, *port),
            nat_addresses: nat,
            range: *range,
            range_from: range_from.as_str(),
            usable: *usable,
            held: *held,
            holders,
            entries,
            lost,
        },
        Detail::InsertRace {
            kind,
            from,
            to,
            recovered_after_ns,
            pair_gap_ns,
        } => DetailJson::InsertRace {
            kind: kind.as_str(),
            from,
            to,
            recovered_after_ns: *recovered_after_ns,
            pair_gap_ns: *pair_gap_ns,
        },
        Detail::Conntrack {
            entry,
            wire,
            conntrack,
            ..
        } => DetailJson::Conntrack {
            entry,
            wire: wire.as_ref(),
            conntrack: conntrack.as_ref(),
        },
        Detail::PmtuBlackHole(d) => DetailJson::PmtuBlackHole {
            from: &d.from,
            to: &d.to,
            direction: d.direction,
            crossed_max: d.crossed_max,
            failed: [d.failed.0, d.failed.1],
            resent: d.resent,
            mss_initiator: d.mss[0],
            mss_responder: d.mss[1],
            mtu: d.icmp_mtu,
            mtu_range: [d.mtu().0, d.mtu().1],
            icmp_seen_at: &d.icmp_points,
            tunnel: d.tunnel.as_ref(),
            tunnel_overhead: d.tunnel.and_then(|t| t.overhead()).map(|(n, _)| n),
        },
        Detail::AsymmetricRoute(d) => DetailJson::AsymmetricRoute {
            requests_at: &d.requests,
            replies_at: &d.replies,
            not_reached: &d.not_reached,
            joined_by: d.joined,
            replies_crossed: d.crossed,
            translated: d.translated,
            conntrack_unreplied: d.unreplied,
        },
        Detail::NatHelper {
            helper,
            rewritten,
            shift,
            expected,
        } => DetailJson::NatHelper {
            helper: helper.as_deref(),
            rewritten: *rewritten,
            shift: *shift,
            expected,
        },
        Detail::HairpinDirectReply {
            client,
            server,
            at,
            delivered,
            answers,
            answers_at,
        } => DetailJson::HairpinDirectReply {
            client,
            server,
            at,
            delivered: *delivered,
            answers: *answers,
            answers_at: answers_at.as_deref(),
        },
        Detail::UnderlayDrop(d) => DetailJson::UnderlayDrop {
            from: &d.from,
            to: &d.to,
            tunnel: &d.tunnel,
            lost_len: [d.lost_len.0, d.lost_len.1],
            crossed: d.crossed,
            crossed_max: d.crossed_max,
            larger: d.larger,
            window: d.window.is_some(),
            crossed_again: d.window.flatten().map(Stamp),
        },
        Detail::TableFull(d) => DetailJson::TableFull {
            lost: &d.lost,
            destinations: d
                .destinations
                .iter()
                .map(|&(proto, addr, port)| DestinationJson {
                    proto,
                    destination: super::fmt::dst_endpoint(proto, addr, port),
                })
                .collect(),
            flowing: &d.flowing,
            crossed: &d.crossed,
            drops: d.drops,
            early_drop: d.early_drop,
            counted_since: d.since.as_deref(),
            entries: d.entries,
            max: d.max,
            buckets: d.buckets,
        },
        Detail::UserlandProxy(d) => DetailJson::UserlandProxy {
            outer: &d.outer,
            inner: &d.inner,
            client: super::fmt::src(&d.outer_tuple),
            listen: dst(&d.outer_tuple),
            source: super::fmt::src(&d.inner_tuple),
            backend: dst(&d.inner_tuple),
            client_address_lost: d.address_lost,
            local_client: d.local_client,
        },
        Detail::LoopbackExposed {
            arrived,
            backend,
            clients,
            answers,
            answered,
        } => DetailJson::LoopbackExposed {
            arrived,
            backend: backend.as_ref(),
            clients,
            answers: *answers,
            answered: *answered,
        },
        Detail::StateLost {
            tuple,
            before,
            after,
            idle_ns,
            timeout_ns,
            sysctl,
            given_at,
            replies,
            reset,
        } => DetailJson::StateLost {
            tuple,
            before,
            after,
            idle_ns: *idle_ns,
            timeout_ns: *timeout_ns,
            sysctl,
            given_at: given_at.as_deref(),
            replies: *replies,
            reset: *reset,
        },
        Detail::RemappedAfterIdle {
            tuple,
            before,
            after,
            idle_ns,
            timeout_ns,
            sysctl,
            given_at,
        } => DetailJson::RemappedAfterIdle {
            tuple,
            before,
            after,
            idle_ns: *idle_ns,
            timeout_ns: *timeout_ns,
            sysctl,
            given_at: given_at.as_deref(),
        },
        Detail::OverlayMasq {
            original,
            seen_as,
            clients,
            destinations,
            tunnel,
        } => DetailJson::OverlayMasq {
            original,
            seen_as: *seen_as,
            clients,
            destinations,
            tunnel,
        },
    }
}

pub fn finding<'a>(f: &'a Finding, w: &'a Words) -> FindingJson<'a> {
    FindingJson {
        code: f.code.as_str(),
        severity: f.severity.as_str(),
        connections: &f.connections,
        points: &f.points,
        tuples: &f.tuples,
        first: f.first_ns.map(Stamp),
        last: f.last_ns.map(Stamp),
        packets: f.packets,
        message: &w.message,
        check: &w.check,
        evidence: &w.evidence,
        detail: detail(&f.detail),
    }
}

fn witness(w: &WitnessSummary) -> WitnessJson<'_> {
    WitnessJson {
        source: &w.source,
        kind: w.kind.as_str(),
        entries: w.entries,
        on_wire: w.on_wire,
        agree: w.agree,
        time_ns: w.time_ns.map(Stamp),
        time_basis: w.time_ns.map(|_| {
            if w.time_recorded {
                "recorded"
            } else {
                "estimated"
            }
        }),
    }
}

#[derive(Serialize)]
pub struct Generator {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Serialize)]
pub struct ConfigJson {
    pub window_ns: i64,
    /// `--since`, `--until`: only the frames captured in this range were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Stamp>,
}

#[derive(Serialize)]
pub struct InputJson<'a> {
    pub source: &'a str,
    #[serde(flatten)]
    pub stats: &'a InputStats,
}

#[derive(Serialize)]
pub struct PointJson<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub linktype: &'a str,
    pub interface: Option<&'a str>,
    pub packets: u64,
    pub flows: usize,
    pub first_seen: Option<Stamp>,
    pub last_seen: Option<Stamp>,
    /// This point's clock minus the reference point's clock.
    pub clock_offset_ns: i64,
    pub clock_reference: &'a str,
    pub clock_samples: usize,
    pub clock_basis: crate::correlate::offset::OffsetBasis,
}

#[derive(Serialize)]
pub struct HopJson<'a> {
    pub point: &'a str,
    /// The tuple, as [`crate::model::Tuple`] writes it (its fields written here, not
    /// flattened: a flattened struct is written through a map of its own).
    pub proto: Proto,
    pub src: IpAddr,
    pub sport: Option<u16>,
    pub dst: IpAddr,
    pub dport: Option<u16>,
    /// The Community ID of the tuple here (null for ICMP other than echo and errors).
    pub community_id: Option<String>,
    pub first_seen: Stamp,
    pub last_seen: Stamp,
    pub packets_fwd: u64,
    pub packets_rev: u64,
    pub bytes_fwd: u64,
    pub bytes_rev: u64,
    /// Transport payload bytes each way, for connections whose hops saw the TCP
    /// stream cut differently (their packet counts differ from hop to hop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes_fwd: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes_rev: Option<u64>,
    pub ttl_fwd: Option<u8>,
    /// The tuple responder packets carried here when it is not the reverse of this
    /// hop's tuple (replies already translated back at this point).
    pub reply_tuple: Option<&'a crate::model::Tuple>,
    /// ICMP error flows: `{icmp_type, code, quoted}` (quoted: the tuple of the packet the
    /// errors quote, in its own direction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_error: Option<&'a crate::flows::IcmpError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_state: Option<&'static str>,
    /// The tunnel the packets travelled in at this point (VXLAN between nodes, ...):
    /// `{kind, id, depth, src, dst, sport, dport}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<&'a crate::model::Tunnel>,
    /// The tunnel the replies came back in, when its outer tuple is not the reverse of
    /// `tunnel`'s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_tunnel: Option<&'a crate::model::Tunnel>,
}

#[derive(Serialize)]
pub struct RewrittenJson {
    pub packets: u64,
    pub shifted: u64,
    pub shift: i64,
    /// The first rewritten packet, at the sending hop.
    pub first: Option<Stamp>,
}

#[derive(Serialize)]
pub struct RewritesJson {
    pub fwd: RewrittenJson,
    pub rev: RewrittenJson,
}

fn rewrites(r: &Rewrites) -> Option<RewritesJson> {
    let one = |d: &Rewritten| RewrittenJson {
        packets: d.packets,
        shifted: d.shifted,
        shift: d.shift,
        first: d.first_ns.map(Stamp),
    };
    (!r.is_none()).then(|| RewritesJson {
        fwd: one(&r.fwd),
        rev: one(&r.rev),
    })
}

#[derive(Serialize)]
pub struct GapJson {
    pub packets: u64,
    pub first: Option<Stamp>,
    pub last: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_tcp_flags: Option<String>,
}

#[derive(Serialize)]
pub struct UnmatchedJson {
    pub lost_fwd: GapJson,
    pub lost_rev: GapJson,
    pub appeared_fwd: GapJson,
    pub appeared_rev: GapJson,
}

#[derive(Serialize)]
pub struct TranslationJson<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub kind: NatKind,
    pub port_reallocated: bool,
    pub src_addr_changed: bool,
    pub sport_changed: bool,
    pub dst_addr_changed: bool,
    pub dport_changed: bool,
    pub confidence: f64,
    pub evidence: &'a crate::correlate::LinkEvidence,
    pub latency: Option<&'a Latency>,
    pub unmatched: UnmatchedJson,
    /// Packets accounted for by their bytes (TCP segments cut differently at the two
    /// hops) or by a later ACK, per direction; absent when there are none.
    #[serde(skip_serializing_if = "Resegmentation::is_none")]
    pub resegmented: &'a Resegmentation,
    /// Packets a NAT helper rewrote and those matched by the sequence numbers it
    /// shifted, per direction; absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<RewritesJson>,
    pub port_realloc: Option<&'a PortRealloc>,
}

/// Replies crossing between a return hop and a hop of the path.
#[derive(Serialize)]
pub struct ReturnLinkJson<'a> {
    pub point: &'a str,
    pub matched: u64,
    pub unmatched: GapJson,
}

/// A connection's replies at a point beside its path.
#[derive(Serialize)]
pub struct ReturnJson<'a> {
    #[serde(flatten)]
    pub hop: HopJson<'a>,
    pub beside: &'a str,
    pub joined_by: Joined,
    pub toward: Option<ReturnLinkJson<'a>>,
    pub from: Option<ReturnLinkJson<'a>>,
}

#[derive(Serialize)]
pub struct ConnectionJson<'a> {
    pub id: &'a str,
    pub proto: Proto,
    pub initiator_evidence: InitiatorEvidence,
    pub first_seen: Stamp,
    pub last_seen: Stamp,
    pub hops: Vec<HopJson<'a>>,
    pub translations: Vec<TranslationJson<'a>>,
    pub returns: Vec<ReturnJson<'a>>,
    pub related: &'a [Related],
    /// For ICMP errors: the connection whose packet they quote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// Positions of the connection's findings in the document's `findings` (from 0):
    /// a finding names every connection of its group, so a copy in each of them
    /// would make the document grow with the square of the group.
    pub findings: &'a [usize],
    /// The connection's way through the host's rules (with `--rules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<super::rules::AttributionJson<'a>>,
}

#[derive(Serialize, Default)]
pub struct Summary<'a> {
    pub points: usize,
    pub connections: usize,
    /// Connections seen at two or more points.
    pub correlated: usize,
    /// Connections seen at one point only.
    pub single_point: usize,
    /// Connections by the translation between their first and last hop; ICMP errors,
    /// translated as the connection they quote, as `icmp-error`.
    pub by_kind: BTreeMap<&'static str, usize>,
    pub port_reallocations: usize,
    pub findings_by_severity: BTreeMap<String, usize>,
    /// `--filter`: the expression, and the connections it kept of how many (absent
    /// without a filter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterJson<'a>>,
}

#[derive(Serialize)]
pub struct FilterJson<'a> {
    pub expression: &'a str,
    pub kept: usize,
    pub total: usize,
}

fn gap(g: &Gap) -> GapJson {
    GapJson {
        packets: g.packets,
        first: g.first_ns.map(Stamp),
        last: g.last_ns.map(Stamp),
        first_tcp_flags: g.first_tcp_flags.map(tcp_flags::to_string),
    }
}

fn hop<'a>(
    c: &'a Correlation,
    h: &'a Hop,
    tcp_state: Option<&'static str>,
    resegmented: bool,
) -> HopJson<'a> {
    let f = &h.flow;
    let payload = resegmented.then_some(f.payload);
    let (sport, dport) = f.tuple.shown_ports();
    HopJson {
        point: &c.points[h.point].name,
        proto: f.tuple.proto,
        src: f.tuple.src,
        sport,
        dst: f.tuple.dst,
        dport,
        community_id: f.community_id(),
        first_seen: Stamp(h.first_ns),
        last_seen: Stamp(h.last_ns),
        packets_fwd: f.packets[0],
        packets_rev: f.packets[1],
        bytes_fwd: f.bytes[0],
        bytes_rev: f.bytes[1],
        payload_bytes_fwd: payload.map(|p| p[0]),
        payload_bytes_rev: payload.map(|p| p[1]),
        ttl_fwd: h.fwd_ttl,
        reply_tuple: h.reply_tuple.as_deref(),
        icmp_error: f.icmp_error.as_deref(),
        tcp_state,
        tunnel: f.tunnel(),
        reply_tunnel: f.reply_tunnel(),
    }
}

fn translation<'a>(c: &'a Correlation, conn: &'a Connection, l: &'a Link) -> TranslationJson<'a> {
    TranslationJson {
        from: &c.points[conn.hops[l.from].point].name,
        to: &c.points[conn.hops[l.to].point].name,
        kind: l.change.kind,
        port_reallocated: l.change.port_reallocated,
        src_addr_changed: l.change.src_addr_changed,
        sport_changed: l.change.sport_changed,
        dst_addr_changed: l.change.dst_addr_changed,
        dport_changed: l.change.dport_changed,
        confidence: l.confidence,
        evidence: &l.evidence,
        latency: l.latency.as_ref(),
        unmatched: UnmatchedJson {
            lost_fwd: gap(&l.unmatched.lost_fwd),
            lost_rev: gap(&l.unmatched.lost_rev),
            appeared_fwd: gap(&l.unmatched.appeared_fwd),
            appeared_rev: gap(&l.unmatched.appeared_rev),
        },
        resegmented: &l.resegmented,
        rewritten: rewrites(&l.rewritten),
        port_realloc: l.port_realloc.as_ref(),
    }
}

fn return_hop<'a>(
    c: &'a Correlation,
    conn: &'a Connection,
    r: &'a ReturnHop,
    tcp_state: Option<&'static str>,
) -> ReturnJson<'a> {
    let name = |i: usize| c.points[conn.hops[i].point].name.as_str();
    let link = |l: &Option<ReturnLink>| {
        l.map(|l| ReturnLinkJson {
            point: name(l.hop),
            matched: l.matched,
            unmatched: gap(&l.unmatched),
        })
    };
    ReturnJson {
        hop: hop(c, &r.hop, tcp_state, conn.resegmented()),
        beside: name(r.beside),
        joined_by: r.joined,
        toward: link(&r.toward),
        from: link(&r.from),
    }
}

/// Builds the report document.
pub fn document(m: &Model) -> Report<'_> {
    let mut doc = outline(m);
    doc.connections = (0..m.correlation.connections.len())
        .map(|i| connection(m, i))
        .collect();
    doc.findings = m.findings().map(|(f, w)| finding(f, w)).collect();
    doc
}

/// Connection `i` of the document.
fn connection(m: &Model, i: usize) -> ConnectionJson<'_> {
    let c = &m.correlation;
    let conn = &c.connections[i];
    ConnectionJson {
        id: &conn.id,
        proto: conn.proto,
        initiator_evidence: conn.initiator,
        first_seen: Stamp(conn.first_ns()),
        last_seen: Stamp(conn.last_ns()),
        hops: conn
            .hops
            .iter()
            .map(|h| hop(c, h, m.tcp_state(i, h), conn.resegmented()))
            .collect(),
        translations: conn.links.iter().map(|l| translation(c, conn, l)).collect(),
        returns: conn
            .returns
            .iter()
            .map(|r| return_hop(c, conn, r, m.tcp_state(i, &r.hop)))
            .collect(),
        related: &conn.related,
        about: conn.about_id(),
        findings: m.finding_indices(i),
        rules: m
            .audit
            .rules
            .as_ref()
            .zip(m.attribution(i))
            .map(|(r, a)| super::rules::attribution_json(r, a)),
    }
}

/// The document without its connections and findings.
fn outline(m: &Model) -> Report<'_> {
    let c = &m.correlation;
    let mut summary = Summary {
        points: c.points.len(),
        connections: c.connections.len(),
        findings_by_severity: m.severities(),
        filter: m.selection.as_ref().map(|s| FilterJson {
            expression: &s.expression,
            kept: s.kept,
            total: s.total,
        }),
        ..Default::default()
    };
    for conn in &c.connections {
        match conn.kind_token() {
            "single-point" => summary.single_point += 1,
            kind => {
                summary.correlated += 1;
                *summary.by_kind.entry(kind).or_insert(0) += 1;
            }
        }
        summary.port_reallocations += conn
            .links
            .iter()
            .filter(|l| l.change.port_reallocated)
            .count();
    }
    Report {
        schema: SCHEMA,
        generator: Generator {
            name: "natcheck",
            version: env!("CARGO_PKG_VERSION"),
        },
        config: ConfigJson {
            window_ns: c.config.window_ns,
            since: c.range.since.map(Stamp),
            until: c.range.until.map(Stamp),
        },
        inputs: c
            .inputs
            .iter()
            .map(|i| InputJson {
                source: &i.source,
                stats: &i.stats,
            })
            .collect(),
        points: c.points.iter().map(|p| point(c, p)).collect(),
        connections: Vec::new(),
        findings: Vec::new(),
        warnings: &m.warnings,
        conntrack: m
            .audit
            .witnesses
            .iter()
            .filter(|w| w.kind != WitnessKind::Rules)
            .map(witness)
            .collect(),
        rules: m
            .audit
            .witnesses
            .iter()
            .filter(|w| w.kind == WitnessKind::Rules)
            .map(witness)
            .collect(),
        bundles: m.bundles.iter().map(bundle).collect(),
        summary,
    }
}

fn point<'a>(c: &'a Correlation, p: &'a crate::correlate::PointSummary) -> PointJson<'a> {
    PointJson {
        name: &p.name,
        source: &p.source,
        linktype: &p.linktype,
        interface: p.interface.as_deref(),
        packets: p.packets,
        flows: p.flows,
        first_seen: p.first_ns.map(Stamp),
        last_seen: p.last_ns.map(Stamp),
        clock_offset_ns: p.clock.offset_ns,
        clock_reference: &c.points[p.clock.reference].name,
        clock_samples: p.clock.samples,
        clock_basis: p.clock.basis,
    }
}

/// `--format json`: the document, pretty-printed, with a trailing newline.
pub struct Json;

impl Render for Json {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        // Written in large pieces only (the outline's, each batch of connections at
        // once): straight to `out`, whose buffer, if any, lets them through.
        write_pretty(m, out, 1024)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }
}

/// What `serde_json::to_writer_pretty` writes of [`document`], byte for byte, with
/// the connections and the findings serialized in parallel, a batch at a time: the
/// outline is written with both lists empty, and each list is put in its place.
fn write_pretty(m: &Model, w: &mut (impl Write + ?Sized), batch: usize) -> anyhow::Result<()> {
    /// The empty lists as the outline has them: a key at depth 1 is the only thing
    /// after a newline and two spaces (a string holds no raw newline).
    const CONNECTIONS: &[u8] = b"\n  \"connections\": []";
    const FINDINGS: &[u8] = b"\n  \"findings\": []";
    let conns = &m.correlation.connections;
    let findings = &m.audit.findings;
    let mut whole = Vec::new();
    pretty::write_at(&mut whole, &outline(m), 0)?;
    let (before, rest) = split_at_list(&whole, CONNECTIONS);
    w.write_all(before)?;
    write_list(w, b"connections", conns.len(), batch, |i| {
        // Each connection written while the parts of the next that lie elsewhere in
        // memory (its name, hops and links) are fetched into the cache.
        if let Some(next) = conns.get(i + 1) {
            crate::mem::prefetch_first(next.id.as_bytes());
            crate::mem::prefetch_first(&next.hops);
            crate::mem::prefetch_first(&next.links);
        }
        connection(m, i)
    })?;
    let (between, rest) = split_at_list(rest, FINDINGS);
    w.write_all(between)?;
    write_list(w, b"findings", findings.len(), batch, |i| {
        finding(&findings[i], &m.words[i])
    })?;
    w.write_all(rest)?;
    Ok(())
}

/// `outline` cut at the empty list `empty` and past it: what comes before it, and
/// what comes after it.
fn split_at_list<'o>(outline: &'o [u8], empty: &[u8]) -> (&'o [u8], &'o [u8]) {
    let at = memchr::memmem::find(outline, empty).expect("the outline holds the list");
    (&outline[..at], &outline[at + empty.len()..])
}

/// The list `key` at depth 1 of the document, as `serde_json`'s pretty printer
/// writes it, of `n` elements `item` makes. Each batch of `batch` elements is
/// serialized on the pool's threads while the one before is written out (`w` stays
/// on this thread). A batch is written into the buffers of the one written before
/// the last (three sets in all, kept rather than given back to the allocator and
/// asked for again).
fn write_list<T: Serialize>(
    w: &mut (impl Write + ?Sized),
    key: &[u8],
    n: usize,
    batch: usize,
    item: impl Fn(usize) -> T + Sync,
) -> anyhow::Result<()> {
    w.write_all(b"\n  \"")?;
    w.write_all(key)?;
    if n == 0 {
        w.write_all(b"\": []")?;
        return Ok(());
    }
    w.write_all(b"\": [")?;
    let serialize = |start: usize, mut bufs: Vec<Vec<u8>>| -> serde_json::Result<Vec<Vec<u8>>> {
        let end = n.min(start + batch);
        // Room for a connection of a few hops without findings or a finding with a
        // few lines of evidence, so that most are written without growing their buffer.
        bufs.resize_with(end - start, || Vec::with_capacity(4096));
        // In runs of `mem::RUN`, so that each core takes neighbours.
        bufs.par_chunks_mut(crate::mem::RUN)
            .zip((start..end).into_par_iter().step_by(crate::mem::RUN))
            .try_for_each(|(run, first)| {
                run.iter_mut().zip(first..).try_for_each(|(buf, i)| {
                    buf.clear();
                    buf.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
                    // An element of the list sits at depth 2.
                    pretty::write_at(buf, &item(i), 2)
                })
            })?;
        Ok(bufs)
    };
    let mut parts = serialize(0, Vec::new())?;
    let mut spare = Vec::new();
    for start in (batch..n).step_by(batch) {
        let mut next = None;
        let written = rayon::in_place_scope(|s| {
            let bufs = std::mem::take(&mut spare);
            s.spawn(|_| next = Some(serialize(start, bufs)));
            write_parts(w, &parts)
        });
        written?;
        spare = std::mem::replace(&mut parts, next.expect("the scope waits for the batch")?);
    }
    write_parts(w, &parts)?;
    w.write_all(b"\n  ]")?;
    Ok(())
}

/// Writes `parts` one after the other, handed to the writer together (a thousand at
/// a time: one `writev` where the output is a file or a pipe) rather than each copied
/// into its buffer.
fn write_parts(w: &mut (impl Write + ?Sized), parts: &[Vec<u8>]) -> std::io::Result<()> {
    use std::io::{ErrorKind, IoSlice};
    for run in parts.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = run.iter().map(|p| IoSlice::new(p)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            match w.write_vectored(left) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::InputSpec;
    use crate::pipeline::{self, Config};

    fn model(dir: &str, captures: &[&str], with: &[&str]) -> Model {
        let at = |f: &str| format!("{}/samples/{dir}/{f}", env!("CARGO_MANIFEST_DIR"));
        let cfg = Config {
            captures: (captures.iter())
                .map(|f| InputSpec {
                    label: None,
                    path: at(f).into(),
                    prefix: None,
                })
                .collect(),
            witnesses: with.iter().map(|f| at(f)).collect(),
            rules: vec![at("iptables.txt")],
            ..Config::default()
        };
        pipeline::run(&cfg).unwrap()
    }

    #[test]
    fn connections_and_findings_written_in_parallel_are_what_serde_writes() {
        let models = [
            model(
                "kube-rules",
                &["docker0.pcap", "eth0.pcap"],
                &["conntrack.txt"],
            ),
            model(
                "masquerade6",
                &["docker0.pcap", "eth0.pcap"],
                &["conntrack.txt"],
            ),
            model("masquerade", &[], &[]),
            model(
                "fault-snat-exhaustion",
                &["docker0.pcap", "eth0.pcap"],
                &["conntrack.txt", "events.txt"],
            ),
            model("fault-masq-miss", &["docker0.pcap", "eth0.pcap"], &[]),
        ];
        for m in &models {
            let whole = serde_json::to_vec_pretty(&document(m)).unwrap();
            for batch in [1, 2, 7, 1024] {
                let mut out = Vec::new();
                write_pretty(m, &mut out, batch).unwrap();
                assert!(out == whole, "batch {batch}");
            }
        }
        assert!(models[0].correlation.connections.len() > 7);
        assert!(models[2].correlation.connections.is_empty());
        assert!(models[0].audit.findings.len() > 7);
        assert!(models[3].audit.findings.len() > 2);
        assert!(!models[4].audit.findings.is_empty());
    }

    /// A writer that takes at most `most` bytes a call, of the first piece only.
    struct Dribble {
        out: Vec<u8>,
        most: usize,
        interrupt: bool,
    }

    impl Write for Dribble {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            // Every other call is interrupted, as a signal would.
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = b.len().min(self.most);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parts_written_together_arrive_whole_and_in_order_through_short_writes() {
        let parts: Vec<Vec<u8>> = (0..2500u32)
            .map(|i| format!("{i},").repeat(i as usize % 5 + 1).into_bytes())
            .collect();
        let whole = parts.concat();
        for most in [1, 3, 4096, usize::MAX] {
            let mut w = Dribble {
                out: Vec::new(),
                most,
                interrupt: false,
            };
            write_parts(&mut w, &parts).unwrap();
            assert!(w.out == whole, "{most} bytes a write");
        }
        let mut v = Vec::new();
        write_parts(&mut v, &parts).unwrap();
        assert!(v == whole);
    }
}
