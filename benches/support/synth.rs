//! synth: deterministic synthetic capture pairs of a Docker host doing MASQUERADE, for
//! natcheck's benchmarks (`benches/`) and `examples/gen_pair.rs`.
//!
//! The modelled host has containers on `docker0` (172.17.0.0/16, the addresses Docker
//! hands out from 172.17.0.2 on) talking to servers in 198.51.100.0/24 and
//! 203.0.113.0/24 through `eth0`, whose address 203.0.113.1 MASQUERADE puts on every
//! outgoing connection. Connections are a mix of TCP (handshake, one to three
//! request/response exchanges with MSS-sized segments and delayed ACKs, then a FIN
//! exchange from either side or an abortive RST; HTTP/1.1 to ports 80 and 8080, opaque
//! bytes to 443 and 8443), UDP request/response (DNS queries, NTP polls) and ICMP echo,
//! with well-formed application payloads so that Wireshark dissects the files cleanly.
//! Every packet is written twice, as `docker0` and `eth0` saw it:
//!
//! - `eth0` carries the translated tuple (source 203.0.113.1; the source port, or the
//!   echo identifier, moved when the tuple it would keep was already taken, as
//!   netfilter's `nf_nat_l4proto_unique_tuple` does), `docker0` the inside one, for
//!   replies too (de-NATed on the way in);
//! - the TTL is one lower after forwarding, in both directions;
//! - IPv4 ID, TCP sequence/acknowledgement numbers, flags, timestamp option and every
//!   payload byte are identical on both sides (the invariants natcheck matches on);
//!   Ethernet addresses differ per link and checksums are computed per side;
//! - `eth0` sees outbound packets a few tens of µs after `docker0` and inbound ones as
//!   long before (forwarding latency, constant per connection plus up to 7 µs jitter,
//!   never reordering packets of one direction), plus an optional constant clock skew.
//!
//! Collisions are made on purpose: a configurable share of new connections reuses the
//! source port and destination of a recent connection from another container, the
//! situation of `samples/port-collision`. An outside tuple is never given twice within a
//! capture (conntrack would still hold the old entry for UDP's 30 s or TCP's TIME_WAIT;
//! a generated capture is short), so every move is explained by an earlier holder.
//!
//! Determinism: a seeded SplitMix64 and integer arithmetic only (no floating point, no
//! hash-order iteration), so one configuration gives byte-identical files anywhere.
//! Files are pcap with nanosecond timestamps, Ethernet link type, packets in time order.
//! Generation streams: memory holds the connections' ground truth plus the packets of
//! connections still open, whatever the capture size.

// Each includer (the benchmark, `examples/gen_pair.rs`,
// `tests/integration/bench_synth.rs`) uses a different part of this file.
#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use etherparse::{IpHeaders, Ipv4Header, PacketBuilder, TcpOptionElement};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapTsResolution, PcapWriter};
use pcap_file::{DataLink, Endianness};

/// The NAT address MASQUERADE puts on outgoing connections.
pub const NAT_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Packets per capture side: connections are started until at least this many are
    /// scheduled, then the open ones finish (so the files hold slightly more).
    pub packets: u64,
    /// Containers on docker0, at 172.17.0.2 onwards (at most 65 000).
    pub containers: u32,
    /// New connections per second (mean; arrival gaps are uniform around it).
    pub conns_per_sec: u64,
    /// Per mille of new connections that deliberately reuse a recent connection's
    /// source port and destination from another container, forcing a reallocation.
    pub collision_permille: u32,
    /// Added to every eth0 timestamp: a second capture host whose clock is off.
    pub skew_ns: i64,
    /// Time of the first connection, nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// Each connection's exchanges (TCP requests and responses, DNS queries, pings)
    /// repeated this many times: more packets per connection, the same connections.
    pub exchanges: u32,
    /// Stop after this many connections instead of at `packets`.
    pub connections: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            packets: 100_000,
            containers: 200,
            conns_per_sec: 2_000,
            collision_permille: 5,
            skew_ns: 0,
            // 2026-01-10T00:00:00Z.
            start_ns: 1_768_003_200_000_000_000,
            exchanges: 1,
            connections: None,
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and good enough for traffic
/// shapes; every draw is integer so results do not depend on the platform's libm.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` for `n > 0` (multiply-shift; bias below n / 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn permille(&mut self, p: u32) -> bool {
        self.below(1000) < u64::from(p)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// A connection's tuple in the initiator's direction, with natcheck's convention for
/// ICMP echo: `sport` is the echo identifier and `dport` is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ends {
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// Ground truth for one connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// As docker0 sees it.
    pub inside: Ends,
    /// As eth0 sees it (after MASQUERADE).
    pub outside: Ends,
    /// docker0 time of the first packet.
    pub start_ns: i64,
    /// Packets from the container, and from the server.
    pub packets_out: u32,
    pub packets_in: u32,
    /// Made to collide with an earlier connection on purpose.
    pub collided: bool,
    /// When the source port moved: the connection (index in [`Truth::conns`]) that
    /// already held the outside tuple this one would have kept.
    pub holder: Option<u32>,
}

impl Conn {
    pub fn port_reallocated(&self) -> bool {
        self.inside.sport != self.outside.sport
    }
}

/// Ground truth for a generated pair.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    /// In start order.
    pub conns: Vec<Conn>,
    /// Packets per side (both files hold the same packets).
    pub packets: u64,
}

impl Truth {
    pub fn reallocated(&self) -> usize {
        self.conns.iter().filter(|c| c.port_reallocated()).count()
    }

    pub fn count(&self, proto: Proto) -> usize {
        self.conns
            .iter()
            .filter(|c| c.inside.proto == proto)
            .count()
    }
}

/// Which capture a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Docker0,
    Eth0,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Payload bytes per full TCP segment: MSS 1460 less the 12 bytes of timestamp option.
const SEG: u64 = 1448;

const US: i64 = 1_000;
const MS: i64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
enum Body {
    Tcp {
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        tsval: u32,
        tsecr: u32,
    },
    Udp,
    Echo {
        reply: bool,
        seq: u16,
    },
}

/// One packet, independent of the side it is written for.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    conn: u32,
    /// Sent by the container (initiator).
    out: bool,
    ip_id: u16,
    /// TTL as its sender set it (the second capture point sees one less).
    ttl: u8,
    body: Body,
    payload_len: u16,
    /// What the payload holds.
    app: App,
}

/// A packet's payload, rebuilt from this small description for each side (both sides
/// carry the same bytes). Shapes follow the destination port so that dissectors (and
/// people looking at the files in Wireshark) see well-formed DNS, NTP and HTTP; what
/// goes to 443 is opaque, like TLS application data.
#[derive(Clone, Copy, Debug)]
enum App {
    /// Seeded random bytes.
    Opaque(u64),
    /// An HTTP/1.1 GET, padded to the segment's length with a header.
    HttpGet(u64),
    /// The first segment of an HTTP/1.1 response with a `body`-byte body: the header,
    /// then seeded body bytes.
    HttpHead { seed: u64, body: u32 },
    /// A DNS A query (`answer: false`) or its answer, from the same seed.
    Dns { seed: u64, answer: bool },
    /// An NTPv4 client request sent at `client_ns`, or the server's answer received and
    /// sent at `server_ns`.
    Ntp {
        client_ns: i64,
        server_ns: Option<i64>,
    },
    /// iputils ping: the request's send time as a struct timeval, then counting bytes.
    Echo { sent_ns: i64 },
}

/// A packet scheduled at one side, ordered by time then by scheduling order.
struct Sched {
    ts: i64,
    serial: u64,
    pkt: Pkt,
}

impl PartialEq for Sched {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.serial) == (o.ts, o.serial)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sched {
    // Reversed: BinaryHeap is a max-heap and the earliest packet must come out first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.ts, o.serial).cmp(&(self.ts, self.serial))
    }
}

struct Server {
    addr: Ipv4Addr,
    rtt_ns: i64,
    /// TTL of its packets when they reach eth0.
    ttl: u8,
}

fn servers(rng: &mut Rng) -> Vec<Server> {
    (0..48u8)
        .map(|i| {
            // 198.51.100.10.. and 203.0.113.10..: never the NAT address 203.0.113.1.
            let addr = if i % 2 == 0 {
                Ipv4Addr::new(198, 51, 100, 10 + i)
            } else {
                Ipv4Addr::new(203, 0, 113, 10 + i)
            };
            // Same datacentre, same region, another continent.
            let rtt_ns = match i % 3 {
                0 => rng.range(300, 900) as i64 * US,
                1 => rng.range(4, 15) as i64 * MS,
                _ => rng.range(30, 90) as i64 * MS,
            };
            let ttl = 64 - rng.range(3, 18) as u8;
            Server { addr, rtt_ns, ttl }
        })
        .collect()
}

fn container_addr(i: u32) -> Ipv4Addr {
    let n = i + 2;
    Ipv4Addr::new(172, 17, (n >> 8) as u8, n as u8)
}

/// MASQUERADE's port choice: keep the source port when the outside tuple is free,
/// else take a free one (1024-65535 for ports, any identifier for ICMP echo).
#[derive(Default)]
struct Nat {
    inside: HashSet<Ends>,
    /// Outside tuples given so far (protocol, source port, destination, destination
    /// port), each with the connection it went to.
    outside: HashMap<(Proto, u16, Ipv4Addr, u16), u32>,
}

impl Nat {
    /// The outside tuple for connection `conn`, and the connection that already held
    /// the one it wanted, if any.
    fn masquerade(&mut self, rng: &mut Rng, inside: &Ends, conn: u32) -> (Ends, Option<u32>) {
        let key = |sport: u16| (inside.proto, sport, inside.dst, inside.dport);
        let holder = self.outside.get(&key(inside.sport)).copied();
        let mut sport = inside.sport;
        while self.outside.contains_key(&key(sport)) {
            sport = match inside.proto {
                Proto::Icmp => rng.below(65536) as u16,
                _ => rng.range(1024, 65535) as u16,
            };
        }
        self.outside.insert(key(sport), conn);
        let outside = Ends {
            src: NAT_ADDR,
            sport,
            ..*inside
        };
        (outside, holder)
    }
}

/// Builds one connection's packets with their times at both sides.
struct Conv {
    conn: u32,
    /// Forwarding latency through the host for this connection.
    lat: i64,
    skew: i64,
    ip_id: [u16; 2],
    ttl: [u8; 2],
    /// Last second-point time per direction (client, server), so that jitter never
    /// reorders packets of one direction.
    last_second: [i64; 2],
    /// (docker0 time, eth0 time, packet).
    pkts: Vec<(i64, i64, Pkt)>,
}

impl Conv {
    /// Schedules a packet first seen by the host at `t`: on docker0 when the container
    /// sent it, on eth0 when the server did.
    fn send(&mut self, rng: &mut Rng, t: i64, out: bool, body: Body, len: u64, app: App) {
        let d = usize::from(!out);
        let second = (t + self.lat + rng.below(8) as i64 * US).max(self.last_second[d] + US);
        self.last_second[d] = second;
        let (docker0, eth0) = if out { (t, second) } else { (second, t) };
        let pkt = Pkt {
            conn: self.conn,
            out,
            ip_id: self.ip_id[d],
            ttl: self.ttl[d],
            body,
            payload_len: len as u16,
            app,
        };
        self.ip_id[d] = self.ip_id[d].wrapping_add(1);
        self.pkts.push((docker0, eth0 + self.skew, pkt));
    }

    /// When the container can react to a packet the host first saw at `t` (inbound):
    /// after it crossed docker0, plus processing time.
    fn client_reacts(&self, rng: &mut Rng, t: i64) -> i64 {
        t + self.lat + 8 * US + rng.range(15, 120) as i64 * US
    }
}

/// TCP endpoint state.
struct Tcp {
    seq: [u32; 2],
    ts_base: [u32; 2],
    last_tsval: [u32; 2],
}

impl Tcp {
    fn tsval(&mut self, d: usize, t: i64) -> (u32, u32) {
        let v = self.ts_base[d].wrapping_add((t / MS) as u32);
        self.last_tsval[d] = v;
        (v, self.last_tsval[1 - d])
    }

    /// A segment without payload from side `d` (0 container, 1 server).
    fn seg(&mut self, conv: &mut Conv, rng: &mut Rng, t: i64, d: usize, flags: u8) {
        self.data(conv, rng, t, d, flags, 0, App::Opaque(0));
    }

    /// A segment from side `d` with `len` payload bytes.
    #[allow(clippy::too_many_arguments)]
    fn data(
        &mut self,
        conv: &mut Conv,
        rng: &mut Rng,
        t: i64,
        d: usize,
        flags: u8,
        len: u64,
        app: App,
    ) {
        let (tsval, tsecr) = self.tsval(d, t);
        let ack = if flags & ACK != 0 { self.seq[1 - d] } else { 0 };
        let body = Body::Tcp {
            seq: self.seq[d],
            ack,
            flags,
            window: if flags & SYN != 0 {
                [64240, 65160][d]
            } else {
                [502, 509][d]
            },
            tsval,
            tsecr,
        };
        conv.send(rng, t, d == 0, body, len, app);
        let consumed = len as u32 + u32::from(flags & (SYN | FIN) != 0);
        self.seq[d] = self.seq[d].wrapping_add(consumed);
    }
}

/// A TCP connection: handshake, one to three request/response exchanges (HTTP/1.1 when
/// `http`, opaque bytes otherwise), then a close.
fn tcp_conv(conv: &mut Conv, rng: &mut Rng, t0: i64, rtt: i64, http: bool, times: u32) {
    let mut tcp = Tcp {
        seq: [rng.next_u64() as u32, rng.next_u64() as u32],
        ts_base: [rng.next_u64() as u32, rng.next_u64() as u32],
        last_tsval: [0, 0],
    };
    // The server answers a packet the container sent at `t` one round trip after it
    // crossed eth0.
    let lat = conv.lat;
    let server_reacts = |rng: &mut Rng, t: i64| t + lat + rtt + rng.range(5, 60) as i64 * US;

    let mut t = t0;
    tcp.seg(conv, rng, t, 0, SYN);
    let ts = server_reacts(rng, t);
    tcp.seg(conv, rng, ts, 1, SYN | ACK);
    t = conv.client_reacts(rng, ts);
    tcp.seg(conv, rng, t, 0, ACK);

    let mut last_server = ts;
    for _ in 0..(1 + rng.below(3)) * u64::from(times) {
        t += rng.range(20, 3_000) as i64 * US;
        // Requests always fit one segment; an HTTP one is never shorter than its
        // fixed lines (`HTTP_GET_MIN`).
        let request = rng.range(120, 700);
        let seed = rng.next_u64();
        let app = if http {
            App::HttpGet(seed)
        } else {
            App::Opaque(seed)
        };
        tcp.data(conv, rng, t, 0, PSH | ACK, request, app);
        let mut ts = server_reacts(rng, t) + rng.range(20, 1_500) as i64 * US;
        // Mostly small responses, sometimes a few tens of kilobytes.
        let body = if rng.permille(80) {
            rng.range(8_000, 60_000)
        } else {
            rng.range(100, 5_000)
        };
        let size = if http {
            http_head_len(body as u32) as u64 + body
        } else {
            body
        };
        let seed = rng.next_u64();
        let segs = size.div_ceil(SEG);
        let mut client_t = t;
        for k in 0..segs {
            let len = if k + 1 == segs {
                size - SEG * (segs - 1)
            } else {
                SEG
            };
            let flags = if k + 1 == segs { PSH | ACK } else { ACK };
            let app = if http && k == 0 {
                App::HttpHead {
                    seed,
                    body: body as u32,
                }
            } else {
                App::Opaque(seed.wrapping_add(k))
            };
            tcp.data(conv, rng, ts, 1, flags, len, app);
            last_server = ts;
            // Delayed ACK: every second full segment, and the last one.
            if k % 2 == 1 || k + 1 == segs {
                client_t = conv.client_reacts(rng, ts).max(client_t + US);
                tcp.seg(conv, rng, client_t, 0, ACK);
            }
            // Back to back at about 1 Gbit/s.
            ts += rng.range(12, 40) as i64 * US;
        }
        t = client_t;
    }

    match rng.below(100) {
        0..=79 => {
            // The container closes.
            t += rng.range(20, 500) as i64 * US;
            tcp.seg(conv, rng, t, 0, FIN | ACK);
            let ts = server_reacts(rng, t);
            tcp.seg(conv, rng, ts, 1, FIN | ACK);
            let t = conv.client_reacts(rng, ts);
            tcp.seg(conv, rng, t, 0, ACK);
        }
        80..=94 => {
            // The server closes an idle keep-alive connection.
            let ts = last_server.max(t) + rng.range(1, 50) as i64 * MS;
            tcp.seg(conv, rng, ts, 1, FIN | ACK);
            let t = conv.client_reacts(rng, ts);
            tcp.seg(conv, rng, t, 0, FIN | ACK);
            let ts = server_reacts(rng, t);
            tcp.seg(conv, rng, ts, 1, ACK);
        }
        _ => {
            // The container aborts.
            t += rng.range(20, 500) as i64 * US;
            tcp.seg(conv, rng, t, 0, RST | ACK);
        }
    }
}

/// A UDP exchange: one or two DNS queries with their answers, or an NTP poll.
fn udp_conv(conv: &mut Conv, rng: &mut Rng, t0: i64, rtt: i64, dport: u16, times: u32) {
    let mut t = t0;
    let exchanges = if dport == 123 || rng.permille(800) {
        1
    } else {
        2
    };
    for _ in 0..exchanges * times {
        let ts = t + conv.lat + rtt + rng.range(10, 400) as i64 * US;
        let (ask, answer) = if dport == 123 {
            let ask = App::Ntp {
                client_ns: t,
                server_ns: None,
            };
            // The server stamps the request as it answers (its clock is ours).
            let answer = App::Ntp {
                client_ns: t,
                server_ns: Some(ts - 10 * US),
            };
            (ask, answer)
        } else {
            let seed = rng.next_u64();
            let ask = App::Dns {
                seed,
                answer: false,
            };
            (ask, App::Dns { seed, answer: true })
        };
        conv.send(rng, t, true, Body::Udp, app_len(&ask), ask);
        conv.send(rng, ts, false, Body::Udp, app_len(&answer), answer);
        t = conv.client_reacts(rng, ts) + rng.range(0, 5_000) as i64 * US;
    }
}

/// ping: one to four echo requests 200 ms apart, each answered.
fn echo_conv(conv: &mut Conv, rng: &mut Rng, t0: i64, rtt: i64, times: u32) {
    let mut t = t0;
    for seq in 1..=rng.range(1, 4) as u16 * times as u16 {
        let app = App::Echo { sent_ns: t };
        let request = Body::Echo { reply: false, seq };
        conv.send(rng, t, true, request, 56, app);
        let ts = t + conv.lat + rtt + rng.range(5, 50) as i64 * US;
        let reply = Body::Echo { reply: true, seq };
        conv.send(rng, ts, false, reply, 56, app);
        t += 200 * MS + rng.range(0, 500) as i64 * US;
    }
}

/// Generates the pair, handing every frame to `emit(side, ts_ns, bytes)`: each side's
/// frames in time order, the two sides interleaved.
pub fn generate(cfg: &Config, mut emit: impl FnMut(Side, i64, &[u8])) -> Truth {
    assert!(cfg.containers >= 1 && cfg.containers <= 65_000);
    assert!(cfg.conns_per_sec >= 1);
    assert!((1..=1000).contains(&cfg.exchanges));
    let mut rng = Rng::new(cfg.seed);
    let servers = servers(&mut rng);
    let mut nat = Nat::default();
    let mut truth = Truth::default();
    // docker0, eth0.
    let mut heaps: [BinaryHeap<Sched>; 2] = [BinaryHeap::new(), BinaryHeap::new()];
    let mut frame = FrameBuf::default();
    let mut serial = 0u64;
    let mut recent: Vec<u32> = Vec::new();
    let mean_gap = 1_000_000_000 / cfg.conns_per_sec as i64;
    let mut t = cfg.start_ns;

    let mut flush = |heap: &mut BinaryHeap<Sched>, side: Side, until: i64, conns: &[Conn]| {
        while heap.peek().is_some_and(|s| s.ts < until) {
            let s = heap.pop().expect("peeked");
            frame.build(&conns[s.pkt.conn as usize], &s.pkt, side);
            emit(side, s.ts, &frame.buf);
        }
    };

    let more = |truth: &Truth| match cfg.connections {
        Some(n) => (truth.conns.len() as u64) < n,
        None => truth.packets < cfg.packets,
    };
    while more(&truth) {
        t += rng.range(1, 2 * mean_gap as u64) as i64;
        // Nothing planned from now on is earlier than `t` on docker0, or `t + skew` on
        // eth0 (a connection opens outbound, and replies cross eth0 before docker0
        // but after the request crossed it).
        flush(&mut heaps[0], Side::Docker0, t, &truth.conns);
        flush(&mut heaps[1], Side::Eth0, t + cfg.skew_ns, &truth.conns);

        let container = rng.below(u64::from(cfg.containers)) as u32;
        let server = &servers[rng.below(servers.len() as u64) as usize];
        let proto = match rng.below(100) {
            0..=69 => Proto::Tcp,
            70..=94 => Proto::Udp,
            _ => Proto::Icmp,
        };
        let mut inside = Ends {
            proto,
            src: container_addr(container),
            sport: match proto {
                Proto::Icmp => rng.range(1, 65535) as u16,
                _ => rng.range(32768, 60999) as u16,
            },
            dst: server.addr,
            dport: match proto {
                Proto::Tcp => [443, 443, 443, 80, 80, 8080, 8443][rng.below(7) as usize],
                Proto::Udp => [53, 53, 53, 53, 123][rng.below(5) as usize],
                Proto::Icmp => 0,
            },
        };
        let mut collided = false;
        if cfg.containers > 1 && !recent.is_empty() && rng.permille(cfg.collision_permille) {
            let other = &truth.conns[recent[rng.below(recent.len() as u64) as usize] as usize];
            if other.inside.src != inside.src {
                inside = Ends {
                    src: inside.src,
                    ..other.inside
                };
                collided = true;
            }
        }
        let proto = inside.proto;
        while !nat.inside.insert(inside) {
            collided = false;
            inside.sport = match proto {
                Proto::Icmp => rng.range(1, 65535) as u16,
                _ => rng.range(32768, 60999) as u16,
            };
        }
        // The server of a collision copy is the other connection's: look it up again.
        let server = servers
            .iter()
            .find(|s| s.addr == inside.dst)
            .expect("destinations come from the server list");
        let conn = truth.conns.len() as u32;
        let (outside, holder) = nat.masquerade(&mut rng, &inside, conn);

        let mut conv = Conv {
            conn,
            lat: rng.range(20, 60) as i64 * US,
            skew: cfg.skew_ns,
            ip_id: [rng.next_u64() as u16, rng.next_u64() as u16],
            ttl: [64, server.ttl],
            last_second: [i64::MIN / 2; 2],
            pkts: Vec::new(),
        };
        // Round trips vary by a few percent around the server's.
        let rtt = server.rtt_ns + rng.below((server.rtt_ns / 20) as u64 + 1) as i64;
        match proto {
            Proto::Tcp => {
                let http = matches!(inside.dport, 80 | 8080);
                tcp_conv(&mut conv, &mut rng, t, rtt, http, cfg.exchanges)
            }
            Proto::Udp => udp_conv(&mut conv, &mut rng, t, rtt, inside.dport, cfg.exchanges),
            Proto::Icmp => echo_conv(&mut conv, &mut rng, t, rtt, cfg.exchanges),
        }
        let packets_out = conv.pkts.iter().filter(|p| p.2.out).count() as u32;
        truth.conns.push(Conn {
            inside,
            outside,
            start_ns: t,
            packets_out,
            packets_in: conv.pkts.len() as u32 - packets_out,
            collided,
            holder,
        });
        truth.packets += conv.pkts.len() as u64;
        for (docker0, eth0, pkt) in conv.pkts {
            heaps[0].push(Sched {
                ts: docker0,
                serial,
                pkt,
            });
            heaps[1].push(Sched {
                ts: eth0,
                serial,
                pkt,
            });
            serial += 1;
        }
        if outside.sport == inside.sport {
            if recent.len() < 256 {
                recent.push(conn);
            } else {
                recent[(conn % 256) as usize] = conn;
            }
        }
    }
    flush(&mut heaps[0], Side::Docker0, i64::MAX, &truth.conns);
    flush(&mut heaps[1], Side::Eth0, i64::MAX, &truth.conns);
    truth
}

/// Reused buffers for building frames.
#[derive(Default)]
struct FrameBuf {
    buf: Vec<u8>,
    payload: Vec<u8>,
}

// Locally administered MACs: Docker derives a container's from its address.
const BRIDGE_MAC: [u8; 6] = [0x02, 0x42, 0x5e, 0x7b, 0x1c, 0x01];
const HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GATEWAY_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];

impl FrameBuf {
    fn build(&mut self, conn: &Conn, p: &Pkt, side: Side) {
        let ends = match side {
            Side::Docker0 => conn.inside,
            Side::Eth0 => conn.outside,
        };
        let (src, sport, dst, dport) = if p.out {
            (ends.src, ends.sport, ends.dst, ends.dport)
        } else {
            (ends.dst, ends.dport, ends.src, ends.sport)
        };
        let (local, remote) = match side {
            Side::Docker0 => {
                let [_, _, a, b] = conn.inside.src.octets();
                ([0x02, 0x42, 0xac, 0x11, a, b], BRIDGE_MAC)
            }
            Side::Eth0 => (HOST_MAC, GATEWAY_MAC),
        };
        // On docker0 the container is the local end; on eth0 the host is.
        let (smac, dmac) = if p.out {
            (local, remote)
        } else {
            (remote, local)
        };
        // The sender's own link sees its TTL; the link after forwarding one less.
        let first = matches!((side, p.out), (Side::Docker0, true) | (Side::Eth0, false));
        let ttl = if first { p.ttl } else { p.ttl - 1 };
        let ip = Ipv4Header {
            identification: p.ip_id,
            dont_fragment: ends.proto == Proto::Tcp,
            time_to_live: ttl,
            source: src.octets(),
            destination: dst.octets(),
            ..Default::default()
        };
        fill_payload(&mut self.payload, p);
        self.buf.clear();
        let base = PacketBuilder::ethernet2(smac, dmac).ip(IpHeaders::Ipv4(ip, Default::default()));
        let written = match p.body {
            Body::Tcp {
                seq,
                ack,
                flags,
                window,
                tsval,
                tsecr,
            } => {
                let mut b = base.tcp(sport, dport, seq, window);
                if flags & ACK != 0 {
                    b = b.ack(ack);
                }
                if flags & SYN != 0 {
                    b = b.syn();
                }
                if flags & FIN != 0 {
                    b = b.fin();
                }
                if flags & RST != 0 {
                    b = b.rst();
                }
                if flags & PSH != 0 {
                    b = b.psh();
                }
                // Linux's option layouts: SYN and SYN-ACK announce MSS, SACK, the
                // timestamp and window scaling; later segments carry the timestamp only.
                let syn_opts = [
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                    TcpOptionElement::Timestamp(tsval, tsecr),
                    TcpOptionElement::Noop,
                    TcpOptionElement::WindowScale(7),
                ];
                let opts = [
                    TcpOptionElement::Noop,
                    TcpOptionElement::Noop,
                    TcpOptionElement::Timestamp(tsval, tsecr),
                ];
                let b = if flags & SYN != 0 {
                    b.options(&syn_opts)
                } else {
                    b.options(&opts)
                };
                b.expect("fixed TCP options fit")
                    .write(&mut self.buf, &self.payload)
            }
            Body::Udp => base.udp(sport, dport).write(&mut self.buf, &self.payload),
            Body::Echo { reply, seq } => {
                // The identifier is the "port": `sport` of the tuple in either direction.
                let id = ends.sport;
                let b = if reply {
                    base.icmpv4_echo_reply(id, seq)
                } else {
                    base.icmpv4_echo_request(id, seq)
                };
                b.write(&mut self.buf, &self.payload)
            }
        };
        written.expect("generated frames are well-formed");
    }
}

fn fill_payload(out: &mut Vec<u8>, p: &Pkt) {
    out.clear();
    let len = usize::from(p.payload_len);
    write_app(out, &p.app, len);
    assert_eq!(
        out.len(),
        len,
        "payload shape and length disagree: {:?}",
        p.app
    );
}

/// Appends the bytes `app` describes. `len` is the payload length the packet was given:
/// it sizes opaque bytes, padded requests and response heads; DNS and NTP have their
/// own length ([`app_len`]).
fn write_app(out: &mut Vec<u8>, app: &App, len: usize) {
    match *app {
        App::Opaque(seed) => fill_random(out, seed, len),
        App::HttpGet(seed) => {
            let _ = write!(
                out,
                "GET /objects/{seed:016x} HTTP/1.1\r\nHost: example.net\r\n\
                 User-Agent: synth/1\r\nAccept: */*\r\nX-Pad: "
            );
            // Pad with a header so the request has the length drawn for it.
            let pad = len.saturating_sub(out.len() + 4);
            out.resize(out.len() + pad, b'a');
            out.extend_from_slice(b"\r\n\r\n");
        }
        App::HttpHead { seed, body } => {
            out.extend_from_slice(http_head(body).as_bytes());
            fill_random(out, seed, len);
        }
        App::Dns { seed, answer } => {
            let flags: u16 = if answer { 0x8180 } else { 0x0100 };
            out.extend_from_slice(&((seed >> 48) as u16).to_be_bytes());
            out.extend_from_slice(&flags.to_be_bytes());
            // One question; one answer in the response.
            out.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
            // h<letters>.example.net, 4 to 15 letters from the seed.
            let letters = 4 + (seed % 12) as usize;
            out.push(letters as u8 + 1);
            out.push(b'h');
            out.extend((0..letters).map(|i| b'a' + ((seed >> (i * 5 % 60)) % 26) as u8));
            out.extend_from_slice(b"\x07example\x03net\x00");
            // QTYPE A, QCLASS IN.
            out.extend_from_slice(&[0, 1, 0, 1]);
            if answer {
                // Name pointer to the question, A, IN, TTL 300, 192.0.2.x.
                out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
                out.extend_from_slice(&[192, 0, 2, (seed >> 8) as u8]);
            }
        }
        App::Ntp {
            client_ns,
            server_ns,
        } => match server_ns {
            None => {
                // Version 4, client mode, poll 2^6 s, precision 2^-23 s; only the
                // transmit time is set (the last of the four timestamps).
                out.extend_from_slice(&[0x23, 0, 6, 0xe9]);
                out.resize(out.len() + 40, 0);
                out.extend_from_slice(&ntp_time(client_ns));
            }
            Some(server) => {
                // Version 4, server mode, stratum 2, root delay and dispersion of a
                // few milliseconds, reference 192.0.2.123 set a minute ago.
                out.extend_from_slice(&[0x24, 2, 6, 0xe9]);
                out.extend_from_slice(&[0, 0, 0x01, 0x10, 0, 0, 0x00, 0x40]);
                out.extend_from_slice(&[192, 0, 2, 123]);
                out.extend_from_slice(&ntp_time(server - 60_000 * MS));
                out.extend_from_slice(&ntp_time(client_ns));
                out.extend_from_slice(&ntp_time(server));
                out.extend_from_slice(&ntp_time(server + 5 * US));
            }
        },
        App::Echo { sent_ns } => {
            let start = out.len();
            out.extend_from_slice(&sent_ns.div_euclid(1_000_000_000).to_le_bytes());
            out.extend_from_slice(&(sent_ns.rem_euclid(1_000_000_000) / 1_000).to_le_bytes());
            // ping fills the rest with bytes equal to their offset.
            out.extend((out.len() - start..len).map(|i| i as u8));
            out.truncate(start + len);
        }
    }
}

/// Seeded random bytes up to `len` bytes in `out`.
fn fill_random(out: &mut Vec<u8>, seed: u64, len: usize) {
    let mut r = Rng::new(seed);
    while out.len() < len {
        out.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    out.truncate(len);
}

/// Length of the payloads whose format fixes it (DNS, NTP).
fn app_len(app: &App) -> u64 {
    let mut v = Vec::new();
    write_app(&mut v, app, 0);
    v.len() as u64
}

/// The header of an HTTP response with a `body`-byte body.
fn http_head(body: u32) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {body}\r\n\r\n"
    )
}

fn http_head_len(body: u32) -> usize {
    http_head(body).len()
}

/// NTP timestamp: seconds since 1900 and a binary fraction.
fn ntp_time(ns: i64) -> [u8; 8] {
    let secs = (ns.div_euclid(1_000_000_000) + 2_208_988_800) as u32;
    let frac = ((ns.rem_euclid(1_000_000_000) as u64) << 32) / 1_000_000_000;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&secs.to_be_bytes());
    b[4..].copy_from_slice(&(frac as u32).to_be_bytes());
    b
}

/// Writes `docker0.pcap` and `eth0.pcap` into `dir` (created if missing).
pub fn write_pair(cfg: &Config, dir: &Path) -> io::Result<Truth> {
    std::fs::create_dir_all(dir)?;
    let header = PcapHeader {
        snaplen: 262_144,
        datalink: DataLink::ETHERNET,
        ts_resolution: PcapTsResolution::NanoSecond,
        endianness: Endianness::Little,
        ..Default::default()
    };
    let open = |name: &str| -> io::Result<PcapWriter<BufWriter<File>>> {
        let file = BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?);
        PcapWriter::with_header(file, header).map_err(io::Error::other)
    };
    let mut writers = [open("docker0.pcap")?, open("eth0.pcap")?];
    let mut failed: Option<io::Error> = None;
    let truth = generate(cfg, |side, ts, bytes| {
        if failed.is_some() {
            return;
        }
        let w = &mut writers[side as usize];
        let ts = Duration::from_nanos(ts as u64);
        let res = PcapPacket::new(ts, bytes.len() as u32, bytes)
            .map_err(io::Error::other)
            .and_then(|p| w.write_packet(&p).map(drop).map_err(io::Error::other));
        if let Err(e) = res {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    for w in writers {
        w.into_inner().into_inner()?;
    }
    Ok(truth)
}

/// One side's frames held in memory: `data[spans[i].0..][..spans[i].1]` is frame i.
pub struct Frames {
    pub data: Vec<u8>,
    pub spans: Vec<(usize, usize)>,
}

impl Frames {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(at, len)| &self.data[at..at + len])
    }
}

/// Generates and keeps one side's frames in memory.
pub fn frames(cfg: &Config, side: Side) -> (Frames, Truth) {
    let mut f = Frames {
        data: Vec::new(),
        spans: Vec::new(),
    };
    let truth = generate(cfg, |s, _, bytes| {
        if s == side {
            f.spans.push((f.data.len(), bytes.len()));
            f.data.extend_from_slice(bytes);
        }
    });
    (f, truth)
}

/// Writes the ground truth as TSV: one line per connection.
pub fn write_truth(truth: &Truth, path: &Path) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(
        w,
        "proto\tinside\toutside\tstart_ns\tpackets_out\tpackets_in\tport_reallocated\tcollided\tholder"
    )?;
    for c in &truth.conns {
        // The holder by its inside tuple, which names it in natcheck's output too.
        let holder = c
            .holder
            .map_or("-".into(), |h| fmt_ends(&truth.conns[h as usize].inside));
        writeln!(
            w,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            proto_name(c.inside.proto),
            fmt_ends(&c.inside),
            fmt_ends(&c.outside),
            c.start_ns,
            c.packets_out,
            c.packets_in,
            c.port_reallocated(),
            c.collided,
            holder
        )?;
    }
    w.flush()
}

pub fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
    }
}

/// `172.17.0.2:40000->203.0.113.2:443`, or `172.17.0.2 id=77->203.0.113.2` for ICMP.
pub fn fmt_ends(e: &Ends) -> String {
    match e.proto {
        Proto::Icmp => format!("{} id={}->{}", e.src, e.sport, e.dst),
        _ => format!("{}:{}->{}:{}", e.src, e.sport, e.dst, e.dport),
    }
}
