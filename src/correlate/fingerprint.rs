//! Packet fingerprints: a 64-bit hash of the fields NAT leaves alone, so that the same
//! packet hashes the same on both sides of a translation point.
//!
//! NAT (nf_nat) rewrites addresses, ports, the ICMP echo identifier and checksums; it
//! keeps the IPv4 ID, TCP sequence and acknowledgement numbers, flags, the TCP
//! timestamp option and the payload (exception: ALG helpers that edit payloads, e.g.
//! FTP with seq adjustment). TTL is left out on purpose: forwarding decrements it, and
//! so is the identification of an IPv6 fragment header ([`invariant_id`]).

use serde::Serialize;
use smallvec::SmallVec;
use twox_hash::XxHash3_64;

use crate::model::{Packet, Proto, L4};

/// How much a single fingerprint match says about two packets being the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Strength {
    /// Few distinguishing bits (IPv6 UDP with a tiny payload, protocols without ports).
    Weak = 0,
    /// IPv4 ID plus payload, ICMP echo sequence plus payload.
    Medium = 1,
    /// TCP: 64 bits of seq/ack plus flags, timestamps and payload.
    Strong = 2,
}

impl Strength {
    /// The strength whose number (`as u32`) is the low two bits of `bits`.
    pub fn from_bits(bits: u32) -> Strength {
        match bits & 3 {
            0 => Strength::Weak,
            1 => Strength::Medium,
            _ => Strength::Strong,
        }
    }

    /// Probability-like weight used for connection-level confidence.
    pub fn weight(self) -> f64 {
        match self {
            Strength::Weak => 0.3,
            Strength::Medium => 0.7,
            Strength::Strong => 0.95,
        }
    }
}

/// The sets of invariant fields a fingerprint can be built from, for evidence output;
/// then those of TCP segments that carried the same bytes cut differently
/// ([`SEQ_RANGE_TS`], [`SEQ_RANGE`]), and of TCP segments whose sequence numbers a NAT
/// helper shifted ([`SHIFTED_TS`], [`SHIFTED`]).
pub const FIELD_SETS: [&[&str]; 14] = [
    &[
        "ip.id",
        "tcp.seq",
        "tcp.ack",
        "tcp.flags",
        "tcp.tsval",
        "payload",
    ],
    &["tcp.seq", "tcp.ack", "tcp.flags", "tcp.tsval", "payload"],
    &["ip.id", "tcp.seq", "tcp.ack", "tcp.flags", "payload"],
    &["tcp.seq", "tcp.ack", "tcp.flags", "payload"],
    &["ip.id", "icmp.seq", "payload"],
    &["icmp.seq", "payload"],
    &["ip.id", "icmp.type", "quoted"],
    &["icmp.type", "quoted"],
    &["ip.id", "payload"],
    &["payload"],
    &["tcp.seq", "tcp.ack", "tcp.tsval"],
    &["tcp.seq", "tcp.ack"],
    &["tcp.seq+shift", "tcp.ack+shift", "tcp.flags", "tcp.tsval"],
    &["tcp.seq+shift", "tcp.ack+shift", "tcp.flags"],
];

/// Index into [`FIELD_SETS`] of TCP segments with the timestamp option that carried
/// the same bytes at two points, cut differently.
pub const SEQ_RANGE_TS: u8 = 10;
/// The same without the timestamp option.
pub const SEQ_RANGE: u8 = 11;
/// Index into [`FIELD_SETS`] of TCP segments with the timestamp option matched at two
/// points by sequence numbers a NAT helper shifted (`rewrites`).
pub const SHIFTED_TS: u8 = 12;
/// The same without the timestamp option.
pub const SHIFTED: u8 = 13;

/// A set of [`FIELD_SETS`] (bit `i` for `FIELD_SETS[i]`): the invariant fields that
/// matched packets agreed on. Two bytes where the names would take a list each;
/// serialized as the list of names ([`FieldSets::names`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSets(pub u16);

impl FieldSets {
    /// The fields of its sets, each once, in first-seen order, the sets taken in
    /// index order.
    pub fn names(self) -> SmallVec<[&'static str; 11]> {
        let mut fields = SmallVec::new();
        let sets = FIELD_SETS.iter().enumerate();
        for (_, set) in sets.filter(|&(i, _)| self.0 & 1 << i != 0) {
            for f in *set {
                if !fields.contains(f) {
                    fields.push(*f);
                }
            }
        }
        fields
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `FIELD_SETS[set]`.
    pub fn add(&mut self, set: u8) {
        self.0 |= 1 << set;
    }
}

impl Serialize for FieldSets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// The IP identification that stays the same from point to point: the IPv4 ID, which
/// a host that fragments a forwarded datagram again keeps. Not the identification of
/// an IPv6 fragment header: conntrack reassembles IPv6 datagrams before NAT, and the
/// host fragments each again under an identification of its own (a bridge that
/// hands packets to netfilter passes them on reassembled, with none).
pub fn invariant_id(p: &Packet) -> Option<u32> {
    p.ip_id.filter(|_| p.tuple.src.is_ipv4())
}

/// Index into [`FIELD_SETS`] of the fields that identify `p`.
pub fn field_set(p: &Packet) -> u8 {
    let no_id = u8::from(invariant_id(p).is_none());
    match p.l4 {
        L4::Tcp { ts: Some(_), .. } => no_id,
        L4::Tcp { ts: None, .. } => 2 + no_id,
        L4::Icmp { echo: Some(_), .. } => 4 + no_id,
        L4::Icmp { .. } => 6 + no_id,
        _ => 8 + no_id,
    }
}

/// Whether a packet can be followed across points at all. Link-scope control traffic
/// never crosses a NAT and repeats the same bytes on every link: ICMPv6 neighbour
/// discovery, router discovery, redirects and multicast listener messages (RFC 4861,
/// RFC 3810), and IGMP. Their packets are counted in flows but never paired.
pub fn is_matchable(p: &Packet) -> bool {
    match (p.tuple.proto, p.l4) {
        (Proto::Icmpv6, L4::Icmp { icmp_type, .. }) => !matches!(icmp_type, 130..=137 | 143),
        (Proto::Other(2), _) => false,
        _ => true,
    }
}

/// The bits of a fingerprint: 48 keep two unrelated packets of a capture of tens of
/// millions from sharing one (about one pair in 2^48 / N² of them does, and only a
/// pair within the join's time window is ever compared), in 16 bits fewer than a
/// word, which a record ([`super::points::Rec`]) gives to other fields.
pub const FP_BITS: u32 = 48;

/// The largest fingerprint.
pub const FP_MAX: u64 = (1 << FP_BITS) - 1;

/// Fingerprint (below 2^[`FP_BITS`]) and strength of one packet.
pub fn fingerprint(p: &Packet) -> (u64, Strength) {
    let mut b = [0u8; 48];
    b[0] = p.tuple.proto.number();
    let (has_id, id) = match invariant_id(p) {
        Some(id) => (1u8, id),
        None => (0, 0),
    };
    b[1] = has_id;
    b[2..6].copy_from_slice(&id.to_be_bytes());
    b[6..10].copy_from_slice(&p.payload_len.to_be_bytes());
    b[10..18].copy_from_slice(&p.payload_digest.to_be_bytes());
    let strength = match p.l4 {
        L4::Tcp {
            seq,
            ack,
            flags,
            ts,
            ..
        } => {
            b[18..22].copy_from_slice(&seq.to_be_bytes());
            b[22..26].copy_from_slice(&ack.to_be_bytes());
            b[26] = flags;
            if let Some((tsval, tsecr)) = ts {
                b[27] = 1;
                b[28..32].copy_from_slice(&tsval.to_be_bytes());
                b[32..36].copy_from_slice(&tsecr.to_be_bytes());
            }
            Strength::Strong
        }
        L4::Icmp {
            icmp_type,
            code,
            echo,
            ..
        } => {
            b[18] = icmp_type;
            b[19] = code;
            if let Some((_id, seq)) = echo {
                b[20] = 1;
                b[21..23].copy_from_slice(&seq.to_be_bytes());
            }
            if has_id == 1 || p.payload_len >= 16 {
                Strength::Medium
            } else {
                Strength::Weak
            }
        }
        L4::Udp | L4::Other => {
            if has_id == 1 && p.payload_len > 0 || p.payload_len >= 16 {
                Strength::Medium
            } else {
                Strength::Weak
            }
        }
    };
    (XxHash3_64::oneshot(&b) >> (64 - FP_BITS), strength)
}

/// What a copy of `p` sent again by its sender repeats (a TCP retransmission, a
/// resent datagram): for TCP the sequence number, the payload's length and the SYN,
/// FIN and RST flags (the bytes at a sequence number are the stream's, so a segment
/// of the same length there is a copy; a retransmitted SYN may carry no ACK where
/// the first did), exactly; for anything else 32 bits of a hash of the protocol, the
/// payload and the ICMP type and echo sequence. The IPv4 ID, the TCP timestamps and
/// the acknowledgement change from one copy to the next and are left out, so a copy
/// does not fingerprint as the original, but has its resend key.
pub fn resend_key(p: &Packet) -> u64 {
    match p.l4 {
        L4::Tcp { seq, flags, .. } => tcp_resend_key(seq, p.payload_len, flags),
        _ => u64::from(datagram_resend_key(p)),
    }
}

/// [`resend_key`] of a TCP segment.
pub fn tcp_resend_key(seq: u32, len: u32, flags: u8) -> u64 {
    u64::from(seq) << 32 | u64::from(len.min(1 << 28)) << 3 | u64::from(flags & 0x07)
}

/// [`resend_key`] of anything but a TCP segment.
pub fn datagram_resend_key(p: &Packet) -> u32 {
    let mut b = [0u8; 16];
    b[0] = p.tuple.proto.number();
    b[1..5].copy_from_slice(&p.payload_len.to_be_bytes());
    b[5..13].copy_from_slice(&p.payload_digest.to_be_bytes());
    if let L4::Icmp {
        icmp_type, echo, ..
    } = p.l4
    {
        b[13] = icmp_type;
        if let Some((_, seq)) = echo {
            b[14..16].copy_from_slice(&seq.to_be_bytes());
        }
    }
    XxHash3_64::oneshot(&b) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tuple;

    #[test]
    fn field_sets_name_each_field_once_in_first_seen_order_and_serialize_as_the_names() {
        assert!(FieldSets(0).is_empty());
        assert!(FieldSets(0).names().is_empty());
        // TCP without IP ID (set 3), then ICMP echo with one (set 4), then the byte
        // ranges of segments (set 11): fields shared with an earlier set come once.
        let sets = FieldSets(1 << 3 | 1 << 4 | 1 << SEQ_RANGE);
        let want = [
            "tcp.seq",
            "tcp.ack",
            "tcp.flags",
            "payload",
            "ip.id",
            "icmp.seq",
        ];
        assert_eq!(sets.names().as_slice(), want);
        assert_eq!(
            serde_json::to_string(&sets).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
        // Every set at once: each of the eleven fields once.
        let all = FieldSets((1 << FIELD_SETS.len()) - 1).names();
        assert_eq!(all.len(), 11);
        assert!(!all.spilled(), "eleven names fit inline");
    }

    fn pkt(src: &str, sport: u16, dst: &str, dport: u16, l4: L4, ttl: u8) -> Packet {
        Packet {
            ts_ns: 0,
            point: 0,
            link_dir: None,
            tuple: Tuple {
                proto: match l4 {
                    L4::Tcp { .. } => Proto::Tcp,
                    L4::Icmp { .. } => Proto::Icmp,
                    _ => Proto::Udp,
                },
                src: src.parse().unwrap(),
                sport,
                dst: dst.parse().unwrap(),
                dport,
            },
            ip_id: Some(4242),
            ttl,
            ip_len: 100,
            l4,
            payload_len: 48,
            payload_digest: 0xdead_beef,
            payload_head: None,
            truncated: false,
            tunnel: None,
            df: true,
        }
    }

    #[test]
    fn nat_and_ttl_do_not_change_the_fingerprint() {
        let l4 = L4::Tcp {
            seq: 1,
            ack: 2,
            flags: 0x18,
            window: 502,
            ts: Some((7, 8)),
            mss: None,
        };
        let inside = pkt("172.17.0.2", 40000, "203.0.113.2", 80, l4, 64);
        let outside = pkt("203.0.113.1", 8942, "203.0.113.2", 80, l4, 63);
        assert_eq!(fingerprint(&inside), fingerprint(&outside));
        assert!(fingerprint(&inside).0 <= FP_MAX);
        let mut other = outside;
        other.l4 = L4::Tcp {
            seq: 2,
            ack: 2,
            flags: 0x18,
            window: 502,
            ts: Some((7, 8)),
            mss: None,
        };
        assert_ne!(fingerprint(&inside).0, fingerprint(&other).0);
    }

    #[test]
    fn only_the_ipv4_id_is_an_invariant() {
        // One datagram reassembled at two points: over IPv4 both carry its ID; over IPv6
        // the host fragmented it again under another identification (or passed it on
        // whole, with none).
        let v4 = pkt("172.17.0.2", 40000, "203.0.113.2", 53, L4::Udp, 64);
        let mut v4_out = pkt("203.0.113.1", 40000, "203.0.113.2", 53, L4::Udp, 63);
        assert_eq!(fingerprint(&v4), fingerprint(&v4_out));
        v4_out.ip_id = Some(4243);
        assert_ne!(fingerprint(&v4).0, fingerprint(&v4_out).0);
        let mut v6 = pkt("fd00:172:17::2", 40000, "2001:db8:113::2", 53, L4::Udp, 64);
        v6.ip_id = Some(0x0723_5a3d);
        let mut v6_out = pkt("2001:db8:113::1", 40000, "2001:db8:113::2", 53, L4::Udp, 63);
        v6_out.ip_id = Some(0x22b4_5d8d);
        assert_eq!(fingerprint(&v6), fingerprint(&v6_out));
        v6_out.ip_id = None;
        assert_eq!(fingerprint(&v6), fingerprint(&v6_out));
        assert_eq!(field_set(&v6), field_set(&v6_out));
        assert_eq!(
            FieldSets(1 << field_set(&v6)).names().as_slice(),
            ["payload"]
        );
        assert_eq!(fingerprint(&v6).1, Strength::Medium);
    }

    #[test]
    fn a_retransmission_has_the_resend_key_and_not_the_fingerprint() {
        // A segment at sequence number 1000 with these flags.
        let at_1000 = |tsval, flags| L4::Tcp {
            seq: 1000,
            ack: 0,
            flags,
            window: 64240,
            ts: Some((tsval, 0)),
            mss: None,
        };
        let syn = |tsval| at_1000(tsval, 0x02);
        let mut first = pkt("172.17.0.2", 40000, "203.0.113.2", 80, syn(7), 64);
        first.payload_len = 0;
        let mut again = pkt("172.17.0.2", 40000, "203.0.113.2", 80, syn(1007), 64);
        again.payload_len = 0;
        again.ip_id = Some(4243);
        assert_ne!(fingerprint(&first).0, fingerprint(&again).0);
        assert_eq!(resend_key(&first), resend_key(&again));
        // Another segment at that sequence number: another length, or a FIN.
        let mut longer = again;
        longer.payload_len = 1;
        assert_ne!(resend_key(&first), resend_key(&longer));
        let mut fin = again;
        fin.l4 = at_1000(1007, 0x11);
        assert_ne!(resend_key(&first), resend_key(&fin));
        // A datagram resent with the same bytes, and another datagram.
        let a = pkt("172.17.0.2", 40000, "203.0.113.2", 53, L4::Udp, 64);
        let mut b = a;
        b.ip_id = Some(9);
        assert_eq!(resend_key(&a), resend_key(&b));
        b.payload_digest ^= 1;
        assert_ne!(resend_key(&a), resend_key(&b));
    }

    #[test]
    fn icmp_echo_id_is_not_part_of_the_fingerprint() {
        let a = L4::Icmp {
            icmp_type: 8,
            code: 0,
            echo: Some((100, 1)),
            quoted: None,
            mtu: None,
        };
        let b = L4::Icmp {
            icmp_type: 8,
            code: 0,
            echo: Some((7, 1)),
            quoted: None,
            mtu: None,
        };
        let c = L4::Icmp {
            icmp_type: 8,
            code: 0,
            echo: Some((100, 2)),
            quoted: None,
            mtu: None,
        };
        let pa = pkt("172.17.0.2", 100, "203.0.113.2", 0, a, 64);
        let pb = pkt("203.0.113.1", 7, "203.0.113.2", 0, b, 63);
        let pc = pkt("172.17.0.2", 100, "203.0.113.2", 0, c, 64);
        assert_eq!(fingerprint(&pa), fingerprint(&pb));
        assert_ne!(fingerprint(&pa).0, fingerprint(&pc).0);
    }
}
