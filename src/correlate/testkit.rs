//! Hand-built capture points for the tests of the correlation steps: packets made up
//! field by field, read into flows and records the way [`super::points::read_points`]
//! reads a capture.

use std::net::SocketAddr;

use super::fingerprint::{is_matchable, Strength};
use super::points::{Fields, PointData, Rec};
use crate::capture::PointInfo;
use crate::flows::{FlowTable, Side};
use crate::model::{tcp_flags, Packet, Proto, Tuple, L4};

pub const US: i64 = 1_000;
pub const MS: i64 = 1_000_000;

/// A small deterministic generator (xorshift64) for the randomised tests: a seed gives
/// the same draws on every machine.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A draw in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n
    }
}

fn tuple(proto: Proto, src: &str, dst: &str) -> Tuple {
    let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    Tuple {
        proto,
        src: s.ip(),
        sport: s.port(),
        dst: d.ip(),
        dport: d.port(),
    }
}

/// A record of fingerprint `fp` at `ts`, of flow 0, strong, without TCP fields (IPv4 ID
/// and payload): for the steps that read no more than that.
pub fn rec(fp: u64, ts: i64) -> Rec {
    let f = Fields {
        side: Side::A,
        strength: Strength::Strong,
        fields: 8,
        ttl: 64,
        tcp_flags: 0,
        ip_len: 40,
        df: true,
        seg: None,
    };
    Rec::new(fp, ts, 0, 0, f)
}

/// A TCP packet from `src` to `dst` (`address:port`), no payload and no timestamp
/// option; `seq` tells packets apart (it is also the IPv4 ID).
pub fn tcp(ts_ns: i64, src: &str, dst: &str, seq: u32, flags: u8, ttl: u8) -> Packet {
    Packet {
        ts_ns,
        point: 0,
        link_dir: None,
        tuple: tuple(Proto::Tcp, src, dst),
        ip_id: Some(seq & 0xffff),
        ttl,
        ip_len: 40,
        l4: L4::Tcp {
            seq,
            ack: 0,
            flags,
            window: 64_240,
            ts: None,
            mss: None,
        },
        payload_len: 0,
        payload_digest: 0,
        payload_head: None,
        truncated: false,
        tunnel: None,
        df: true,
    }
}

/// Header fields of a TCP data segment ([`data`]) that every piece of one
/// transmission shares, however offloads cut it.
#[derive(Clone, Copy, Debug)]
pub struct Hdr {
    pub ack: u32,
    /// TSval of the timestamp option (TSecr 1), none when `None`.
    pub tsval: Option<u32>,
    pub flags: u8,
}

/// A TCP segment from `src` to `dst` carrying `len` payload bytes from `seq`, with the
/// shared fields `h`; the IPv4 ID is the low bits of `seq` (GSO numbers pieces on, so
/// pieces of one transmission differ in it), the payload digest depends on the
/// range, so that equal ranges cut equally share a fingerprint, and the payload's
/// first bytes on where it starts.
pub fn data(ts_ns: i64, src: &str, dst: &str, seq: u32, len: u32, h: Hdr) -> Packet {
    let mut p = tcp(ts_ns, src, dst, seq, h.flags, 64);
    p.l4 = L4::Tcp {
        seq,
        ack: h.ack,
        flags: h.flags,
        window: 64_240,
        ts: h.tsval.map(|v| (v, 1)),
        mss: None,
    };
    p.ip_len = 52 + len;
    p.payload_len = len;
    p.payload_digest = (u64::from(seq) << 32) | u64::from(len);
    p.payload_head = (len >= 16).then_some(seq.wrapping_mul(0x9e37_79b1));
    p
}

/// A UDP packet with a 32-byte payload of digest `payload`.
pub fn udp(ts_ns: i64, src: &str, dst: &str, ip_id: Option<u32>, payload: u64) -> Packet {
    Packet {
        ts_ns,
        point: 0,
        link_dir: None,
        tuple: tuple(Proto::Udp, src, dst),
        ip_id,
        ttl: 64,
        ip_len: 60,
        l4: L4::Udp,
        payload_len: 32,
        payload_digest: payload,
        payload_head: None,
        truncated: false,
        tunnel: None,
        df: true,
    }
}

/// A UDP datagram of `len` payload bytes without an IP ID (as over IPv6), its bytes
/// told apart by `payload`: the same `payload` and `len` from any sender are the same
/// bytes.
pub fn datagram(ts_ns: i64, src: &str, dst: &str, len: u32, payload: u64) -> Packet {
    let mut p = udp(ts_ns, src, dst, None, payload);
    p.payload_len = len;
    p
}

/// A short TCP connection from `client` to `server` starting at `t0`, one packet a
/// millisecond: handshake, a one-byte request, its acknowledgement, and the client's
/// FIN. Sequence numbers start at `isn`, so connections with different `isn` never
/// share a fingerprint.
pub fn tcp_conv(t0: i64, client: &str, server: &str, isn: u32) -> Vec<Packet> {
    use tcp_flags::{ACK, FIN, PSH, SYN};
    let steps = [
        (true, SYN),
        (false, SYN | ACK),
        (true, ACK),
        (true, PSH | ACK),
        (false, ACK),
        (true, FIN | ACK),
    ];
    steps
        .iter()
        .enumerate()
        .map(|(i, &(from_client, flags))| {
            let (s, d) = if from_client {
                (client, server)
            } else {
                (server, client)
            };
            let mut p = tcp(t0 + i as i64 * MS, s, d, isn + i as u32, flags, 64);
            if flags & PSH != 0 {
                p.payload_len = 1;
                p.ip_len += 1;
                p.payload_digest = u64::from(isn);
            }
            p
        })
        .collect()
}

/// The packets of `tcp_conv(.., client, server, ..)` as a point `latency` further on
/// the client's way saw them, one routed hop (`hops` = 1) or none further: addressed
/// between `client` and `server` as given here, initiator packets `latency` later and
/// with their TTL lowered by `hops`, responder packets `latency` earlier.
pub fn view(packets: &[Packet], client: &str, server: &str, latency: i64, hops: u8) -> Vec<Packet> {
    let first_src = packets[0].tuple.src;
    packets
        .iter()
        .map(|p| {
            let mut q = *p;
            if p.tuple.src == first_src {
                q.tuple = tuple(p.tuple.proto, client, server);
                q.ts_ns += latency;
                q.ttl -= hops;
            } else {
                q.tuple = tuple(p.tuple.proto, server, client);
                q.ts_ns -= latency;
            }
            q
        })
        .collect()
}

/// A connection through SNAT as its two sides saw it, `latency` apart: its request
/// never left, and the host answered the client with a reset itself.
pub fn lost_request(latency: i64) -> (Vec<Packet>, Vec<Packet>) {
    let mut inside = tcp_conv(0, "172.17.0.2:40000", "198.51.100.7:443", 1000);
    let mut outside = view(&inside, "203.0.113.1:40000", "198.51.100.7:443", latency, 1);
    outside.remove(3);
    inside.push(tcp(
        6 * MS,
        "198.51.100.7:443",
        "172.17.0.2:40000",
        1006,
        tcp_flags::RST,
        64,
    ));
    (inside, outside)
}

/// A capture point of input `input` that saw `packets`, in that order.
pub fn point(name: &str, input: usize, packets: &[Packet]) -> PointData {
    let frames: Vec<u64> = (0..packets.len() as u64).collect();
    point_of_frames(name, input, packets, &frames)
}

/// The capture points of one input (`tcpdump -i any`) that wrote `frames` in this
/// order, each frame with the name of the point it was taken at; the points in the
/// order their first frames come.
pub fn one_input(input: usize, frames: &[(&str, Packet)]) -> Vec<PointData> {
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in frames {
        if !names.contains(n) {
            names.push(n);
        }
    }
    names
        .iter()
        .map(|&name| {
            let (at, packets): (Vec<u64>, Vec<Packet>) = (frames.iter().enumerate())
                .filter(|(_, (n, _))| *n == name)
                .map(|(i, (_, p))| (i as u64, *p))
                .unzip();
            point_of_frames(name, input, &packets, &at)
        })
        .collect()
}

/// A point that saw `packets`, the `i`th of them as frame `frames[i]` of its input.
fn point_of_frames(name: &str, input: usize, packets: &[Packet], frames: &[u64]) -> PointData {
    let mut table = FlowTable::default();
    let mut recs = Vec::new();
    let mut first_frame = Vec::new();
    for (p, &frame) in packets.iter().zip(frames) {
        let (flow, side) = table.push(p);
        if flow == first_frame.len() {
            first_frame.push(frame);
        }
        if !is_matchable(p) {
            continue;
        }
        recs.push(Rec::of(p, flow, side));
    }
    let info = PointInfo {
        name: name.to_string(),
        source: format!("{name}.pcap"),
        linktype: "ETHERNET".to_string(),
        interface: None,
        packets: packets.len() as u64,
        first_ns: packets.iter().map(|p| p.ts_ns).min(),
        last_ns: packets.iter().map(|p| p.ts_ns).max(),
        range: Default::default(),
        master: None,
    };
    PointData::new(info, input, table.finish(), recs, first_frame)
}

/// Index of the flow whose tuple (either way round) is `src` -> `dst`.
pub fn flow_of(p: &PointData, src: &str, dst: &str) -> u32 {
    p.flows
        .iter()
        .position(|f| {
            let t = tuple(f.tuple.proto, src, dst);
            f.tuple == t || f.tuple == t.reversed()
        })
        .unwrap_or_else(|| panic!("no flow {src} -> {dst} at {}", p.info.name)) as u32
}
