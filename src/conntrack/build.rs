//! Building an [`Entry`] from what a reader found, shared by the text reader
//! (`conntrack -L`/`-E` lines) and the ctnetlink reader so that both follow the same
//! rules and neither writes the entry's fields by hand.
//!
//! A reader gathers each tuple's raw fields into [`TupleParts`] and everything else
//! into [`EntryParts`], in whatever order its input has them; [`TupleParts::build`]
//! checks a tuple and keys it the model's way, and [`EntryParts::into_entry`] puts the
//! entry together. The rules, in one place:
//!
//! - a tuple has both addresses, of one family;
//! - TCP, UDP, UDP-Lite, SCTP and DCCP tuples have both ports; other protocols have
//!   both port fields or neither (GRE keys are read into them), neither being 0 and 0;
//! - ICMP and ICMPv6 tuples carry the echo identifier in `sport` (0 without one) and 0
//!   in `dport`, whatever ports were read; their type and code make an [`IcmpKey`]
//!   when a type was read, the code being 0 when absent. Other protocols have no key.

use std::net::IpAddr;

use super::{Counters, Entry, Flags, IcmpKey};
use crate::model::{Proto, Tuple};

/// Protocols whose conntrack tuples always carry ports (libnetfilter_conntrack's list:
/// TCP, UDP, SCTP, DCCP, UDP-Lite).
pub(super) fn carries_ports(p: Proto) -> bool {
    matches!(
        p,
        Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Other(33 | 136)
    )
}

impl IcmpKey {
    /// The key of an ICMP tuple as read: none without a type, code 0 when absent.
    pub(super) fn from_parts(icmp_type: Option<u8>, code: Option<u8>) -> Option<IcmpKey> {
        icmp_type.map(|icmp_type| IcmpKey {
            icmp_type,
            code: code.unwrap_or(0),
        })
    }
}

/// The fields of one tuple as read, before its protocol decides what they mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TupleParts {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Source port, or GRE source key.
    pub sport: Option<u16>,
    /// Destination port, or GRE destination key.
    pub dport: Option<u16>,
    pub icmp_id: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

/// Why [`TupleParts`] do not make a tuple. Each reader words it for its own input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TupleError {
    /// `src` or `dst` is missing.
    NoAddresses,
    /// `src` and `dst` are of different address families.
    MixedFamilies,
    /// A protocol with ports lacks one or both; or another protocol has only one.
    MissingPort,
}

/// One direction of an entry: the model's tuple and, for ICMP, its type and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CtTuple {
    pub tuple: Tuple,
    pub icmp: Option<IcmpKey>,
}

impl TupleParts {
    /// Checks the tuple and keys it by `proto` (see the module's rules).
    pub(super) fn build(&self, proto: Proto) -> Result<CtTuple, TupleError> {
        let (Some(src), Some(dst)) = (self.src, self.dst) else {
            return Err(TupleError::NoAddresses);
        };
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(TupleError::MixedFamilies);
        }
        let (sport, dport, icmp) = if proto.is_icmp() {
            let icmp = IcmpKey::from_parts(self.icmp_type, self.icmp_code);
            (self.icmp_id.unwrap_or(0), 0, icmp)
        } else {
            let (sport, dport) = self.ports(proto)?;
            (sport, dport, None)
        };
        Ok(CtTuple {
            tuple: Tuple {
                proto,
                src,
                sport,
                dst,
                dport,
            },
            icmp,
        })
    }

    /// The port fields of a protocol other than ICMP: both, or neither (0, 0) for a
    /// protocol that does not always carry them.
    fn ports(&self, proto: Proto) -> Result<(u16, u16), TupleError> {
        match (self.sport, self.dport) {
            (Some(s), Some(d)) => Ok((s, d)),
            (None, None) if !carries_ports(proto) => Ok((0, 0)),
            _ => Err(TupleError::MissingPort),
        }
    }
}

/// Everything of an entry but its two tuples, gathered in any order. The default is
/// an entry with nothing printed besides its tuples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct EntryParts {
    pub l3num: Option<u8>,
    pub timeout_s: Option<u64>,
    pub state: Option<String>,
    pub orig_counters: Option<Counters>,
    pub reply_counters: Option<Counters>,
    pub flags: Flags,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub zone_orig: Option<u16>,
    pub zone_reply: Option<u16>,
    pub secctx: Option<String>,
    pub labels: Vec<String>,
    pub use_count: Option<u32>,
    pub id: Option<u32>,
    pub delta_time_s: Option<u64>,
    pub start: Option<String>,
    pub stop: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl EntryParts {
    /// The entry read at `line` (0 for netlink) with these tuples.
    pub(super) fn into_entry(self, line: u64, orig: CtTuple, reply: CtTuple) -> Entry {
        Entry {
            line,
            l3num: self.l3num,
            timeout_s: self.timeout_s,
            state: self.state,
            orig: orig.tuple,
            reply: reply.tuple,
            orig_icmp: orig.icmp,
            reply_icmp: reply.icmp,
            orig_counters: self.orig_counters,
            reply_counters: self.reply_counters,
            flags: self.flags,
            mark: self.mark,
            zone: self.zone,
            zone_orig: self.zone_orig,
            zone_reply: self.zone_reply,
            secctx: self.secctx,
            labels: self.labels,
            use_count: self.use_count,
            id: self.id,
            delta_time_s: self.delta_time_s,
            start: self.start,
            stop: self.stop,
            extra: self.extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn addrs(src: &str, dst: &str) -> TupleParts {
        TupleParts {
            src: ip(src),
            dst: ip(dst),
            ..TupleParts::default()
        }
    }

    #[test]
    fn tcp_tuple() {
        let t = TupleParts {
            sport: Some(40000),
            dport: Some(8080),
            ..addrs("10.0.1.3", "192.0.2.2")
        }
        .build(Proto::Tcp)
        .unwrap();
        assert_eq!(
            t.tuple,
            Tuple {
                proto: Proto::Tcp,
                src: "10.0.1.3".parse().unwrap(),
                sport: 40000,
                dst: "192.0.2.2".parse().unwrap(),
                dport: 8080,
            }
        );
        assert_eq!(t.icmp, None);
    }

    #[test]
    fn icmp_key_with_and_without_identifier() {
        let echo = TupleParts {
            icmp_type: Some(8),
            icmp_code: Some(0),
            icmp_id: Some(3073),
            // Ports read for an ICMP tuple are not ports.
            sport: Some(1),
            dport: Some(2),
            ..addrs("172.17.0.2", "203.0.113.2")
        }
        .build(Proto::Icmp)
        .unwrap();
        assert_eq!((echo.tuple.sport, echo.tuple.dport), (3073, 0));
        assert_eq!(
            echo.icmp,
            Some(IcmpKey {
                icmp_type: 8,
                code: 0
            })
        );
        let no_id = TupleParts {
            icmp_type: Some(13),
            ..addrs("172.17.0.2", "203.0.113.2")
        }
        .build(Proto::Icmp)
        .unwrap();
        assert_eq!((no_id.tuple.sport, no_id.tuple.dport), (0, 0));
        assert_eq!(
            no_id.icmp,
            Some(IcmpKey {
                icmp_type: 13,
                code: 0
            })
        );
        // No type, no key; and a key belongs to ICMP tuples only.
        let bare = addrs("10.0.0.1", "10.0.0.2");
        assert_eq!(bare.build(Proto::Icmp).unwrap().icmp, None);
        let typed_gre = TupleParts {
            icmp_type: Some(8),
            ..bare
        };
        assert_eq!(typed_gre.build(Proto::Gre).unwrap().icmp, None);
        assert_eq!(IcmpKey::from_parts(None, Some(3)), None);
    }

    #[test]
    fn missing_port() {
        let one_port = TupleParts {
            sport: Some(53),
            ..addrs("10.0.0.1", "10.0.0.2")
        };
        let none = addrs("10.0.0.1", "10.0.0.2");
        for p in [
            Proto::Tcp,
            Proto::Udp,
            Proto::Sctp,
            Proto::Other(33),
            Proto::Other(136),
        ] {
            assert_eq!(one_port.build(p), Err(TupleError::MissingPort), "{p}");
            assert_eq!(none.build(p), Err(TupleError::MissingPort), "{p}");
        }
        // Protocols without ports: both port fields (GRE keys) or neither.
        assert_eq!(one_port.build(Proto::Gre), Err(TupleError::MissingPort));
        let t = none.build(Proto::Other(253)).unwrap().tuple;
        assert_eq!((t.sport, t.dport), (0, 0));
        let keys = TupleParts {
            dport: Some(0x1a),
            ..one_port
        };
        let t = keys.build(Proto::Gre).unwrap().tuple;
        assert_eq!((t.sport, t.dport), (53, 0x1a));
    }

    #[test]
    fn ipv6_tuple_and_bad_addresses() {
        let t = TupleParts {
            sport: Some(546),
            dport: Some(547),
            ..addrs("fe80::f03e:b3ff:fe46:64c4", "ff02::1:2")
        }
        .build(Proto::Udp)
        .unwrap()
        .tuple;
        assert_eq!(
            t.src,
            "fe80::f03e:b3ff:fe46:64c4".parse::<IpAddr>().unwrap()
        );
        assert_eq!((t.sport, t.dport), (546, 547));
        let mixed = addrs("10.0.0.1", "::1");
        assert_eq!(mixed.build(Proto::Udp), Err(TupleError::MixedFamilies));
        let half = TupleParts { dst: None, ..mixed };
        assert_eq!(half.build(Proto::Udp), Err(TupleError::NoAddresses));
        // Addresses are checked before ports.
        assert_eq!(
            TupleParts::default().build(Proto::Tcp),
            Err(TupleError::NoAddresses)
        );
    }

    #[test]
    fn every_part_lands_in_its_field() {
        let orig = TupleParts {
            sport: Some(1),
            dport: Some(2),
            ..addrs("10.0.0.1", "10.0.0.2")
        }
        .build(Proto::Udp)
        .unwrap();
        let reply = CtTuple {
            tuple: orig.tuple.reversed(),
            icmp: None,
        };
        let parts = EntryParts {
            l3num: Some(2),
            timeout_s: Some(29),
            state: Some("X".into()),
            orig_counters: Some(Counters {
                packets: 1,
                bytes: 2,
            }),
            reply_counters: Some(Counters {
                packets: 3,
                bytes: 4,
            }),
            flags: Flags {
                assured: true,
                ..Flags::default()
            },
            mark: Some(5),
            zone: Some(6),
            zone_orig: Some(7),
            zone_reply: Some(8),
            secctx: Some("ctx".into()),
            labels: vec!["a".into()],
            use_count: Some(9),
            id: Some(10),
            delta_time_s: Some(11),
            start: Some("s".into()),
            stop: Some("t".into()),
            extra: vec![("k".into(), "v".into())],
        };
        let e = parts.clone().into_entry(12, orig, reply);
        assert_eq!((e.line, e.orig, e.reply), (12, orig.tuple, reply.tuple));
        let back = EntryParts {
            l3num: e.l3num,
            timeout_s: e.timeout_s,
            state: e.state,
            orig_counters: e.orig_counters,
            reply_counters: e.reply_counters,
            flags: e.flags,
            mark: e.mark,
            zone: e.zone,
            zone_orig: e.zone_orig,
            zone_reply: e.zone_reply,
            secctx: e.secctx,
            labels: e.labels,
            use_count: e.use_count,
            id: e.id,
            delta_time_s: e.delta_time_s,
            start: e.start,
            stop: e.stop,
            extra: e.extra,
        };
        assert_eq!(back, parts);
    }
}
