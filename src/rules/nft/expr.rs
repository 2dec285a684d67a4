//! `match` expressions → [`Match`]es: what a packet field is compared with, and how.

use serde_json::Value;

use super::render::{self, single};
use super::value::{self, members, num_u32, unwrap_elem};
use super::{str_of, RuleCtx};
use crate::model::Proto;
use crate::rules::{
    AddrType, CtState, Family, Iface, Match, MatchKind, Ports, Prefix, Set, SetDim, SetMember,
};

/// What the left-hand side of a match reads from the packet.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Left {
    Saddr,
    Daddr,
    Sport,
    Dport,
    Proto,
    /// `meta nfproto`, `meta protocol`: the address family.
    Family,
    InIface,
    OutIface,
    Mark(u32),
    CtMark(u32),
    CtState,
    CtStatus,
    CtDirection,
    CtOrigSrc,
    CtOrigDst,
    CtOrigDstPort,
    Fib {
        src: bool,
        limit_in: bool,
        limit_out: bool,
    },
    TcpFlags(Option<u8>),
    IcmpType {
        v6: bool,
    },
    /// `meta random`, read through a mask (`& 2147483647`, as iptables-nft writes
    /// `-m statistic --mode random`).
    Random(u32),
    /// `numgen random|inc mod N [offset O]` compared with values.
    Numgen {
        inc: bool,
        modulus: u64,
        offset: u64,
    },
    Concat(Vec<Left>),
    Other,
}

/// The part of a set element a component of the key stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Addr,
    Proto,
    Port,
}

impl Left {
    fn role(&self) -> Option<Role> {
        match self {
            Left::Saddr | Left::Daddr => Some(Role::Addr),
            Left::Sport | Left::Dport => Some(Role::Port),
            Left::Proto => Some(Role::Proto),
            _ => None,
        }
    }

    /// The `-m set` dimensions of a set lookup keyed by this expression; the protocol
    /// of an `addr . proto . port` key is part of the member, not a dimension.
    fn dims(&self) -> Option<Vec<SetDim>> {
        let one = |l: &Left| match l {
            Left::Saddr | Left::Sport => Some(Some(SetDim::Src)),
            Left::Daddr | Left::Dport => Some(Some(SetDim::Dst)),
            Left::Proto => Some(None),
            _ => None,
        };
        let dims: Vec<SetDim> = match self {
            Left::Concat(parts) => parts
                .iter()
                .map(one)
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
            other => one(other)?.into_iter().collect(),
        };
        if dims.is_empty() {
            None
        } else {
            Some(dims)
        }
    }
}

/// Reads a left-hand side; the second value is the protocol a transport header
/// implies (`tcp dport` reads TCP packets only).
pub(super) fn left(v: &Value) -> (Left, Option<Proto>) {
    let Some((key, val)) = single(v) else {
        return (Left::Other, None);
    };
    match key {
        "payload" => payload_left(val),
        "meta" => (meta_left(val), None),
        "ct" => (ct_left(val), None),
        "fib" => (fib_left(val), None),
        "numgen" => (numgen_left(val), None),
        "&" => masked_left(val),
        "concat" => concat_left(val),
        _ => (Left::Other, None),
    }
}

/// A header field (`ip saddr`, `tcp dport`, `tcp flags`), and the protocol its header
/// implies.
fn payload_left(val: &Value) -> (Left, Option<Proto>) {
    let (Some(p), Some(f)) = (str_of(val, "protocol"), str_of(val, "field")) else {
        return (Left::Other, None);
    };
    let implied = value::header_proto(p);
    let l = match (p, f) {
        ("ip" | "ip6", "saddr") => Left::Saddr,
        ("ip" | "ip6", "daddr") => Left::Daddr,
        ("ip", "protocol") | ("ip6", "nexthdr") => Left::Proto,
        ("tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th", "sport") => Left::Sport,
        ("tcp" | "udp" | "sctp" | "dccp" | "udplite" | "th", "dport") => Left::Dport,
        ("tcp", "flags") => Left::TcpFlags(None),
        ("icmp", "type") => Left::IcmpType { v6: false },
        ("icmpv6", "type") => Left::IcmpType { v6: true },
        _ => Left::Other,
    };
    (l, implied)
}

/// A `meta` key: the protocol, an interface, the packet mark.
fn meta_left(val: &Value) -> Left {
    match str_of(val, "key").or(val.as_str()) {
        Some("l4proto") => Left::Proto,
        Some("nfproto" | "protocol") => Left::Family,
        Some("iifname" | "iif") => Left::InIface,
        Some("oifname" | "oif") => Left::OutIface,
        Some("mark") => Left::Mark(u32::MAX),
        Some("random") => Left::Random(u32::MAX),
        _ => Left::Other,
    }
}

/// `numgen random mod 3`, `numgen inc mod 2 offset 1`.
fn numgen_left(val: &Value) -> Left {
    let inc = match str_of(val, "mode") {
        Some("inc") => true,
        Some("random") => false,
        _ => return Left::Other,
    };
    let offset = val.get("offset").map_or(Some(0), value::num);
    match (val.get("mod").and_then(value::num), offset) {
        (Some(modulus), Some(offset)) if modulus > 0 => Left::Numgen {
            inc,
            modulus,
            offset,
        },
        _ => Left::Other,
    }
}

/// A `ct` key: state, status, direction, mark, or the original tuple's addresses and
/// destination port.
fn ct_left(val: &Value) -> Left {
    match (str_of(val, "key"), str_of(val, "dir")) {
        (Some("state"), None) => Left::CtState,
        (Some("status"), None) => Left::CtStatus,
        (Some("direction"), None) => Left::CtDirection,
        (Some("mark"), None) => Left::CtMark(u32::MAX),
        (Some("saddr" | "ip saddr" | "ip6 saddr"), Some("original")) => Left::CtOrigSrc,
        (Some("daddr" | "ip daddr" | "ip6 daddr"), Some("original")) => Left::CtOrigDst,
        (Some("proto-dst"), Some("original")) => Left::CtOrigDstPort,
        _ => Left::Other,
    }
}

/// `fib saddr type` / `fib daddr . iif type`: the address type of one address, the
/// lookup maybe limited to an interface; other lookups are [`Left::Other`].
fn fib_left(val: &Value) -> Left {
    let flags: Vec<&str> = match val.get("flags") {
        Some(Value::Array(f)) => f.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(f)) => vec![f.as_str()],
        _ => Vec::new(),
    };
    if str_of(val, "result") == Some("type")
        && (flags.contains(&"saddr") != flags.contains(&"daddr"))
        && flags
            .iter()
            .all(|f| ["saddr", "daddr", "iif", "oif"].contains(f))
    {
        Left::Fib {
            src: flags.contains(&"saddr"),
            limit_in: flags.contains(&"iif"),
            limit_out: flags.contains(&"oif"),
        }
    } else {
        Left::Other
    }
}

/// `meta mark & 0x4000`, `ct mark & 0xff`, `tcp flags & (syn | ack)`: a field read
/// through a mask.
fn masked_left(val: &Value) -> (Left, Option<Proto>) {
    let Value::Array(ops) = val else {
        return (Left::Other, None);
    };
    if ops.len() != 2 {
        return (Left::Other, None);
    }
    let (inner, implied) = left(&ops[0]);
    let l = match inner {
        Left::Mark(_) => num_u32(&ops[1]).map_or(Left::Other, Left::Mark),
        Left::CtMark(_) => num_u32(&ops[1]).map_or(Left::Other, Left::CtMark),
        Left::Random(_) => num_u32(&ops[1]).map_or(Left::Other, Left::Random),
        Left::TcpFlags(None) => {
            value::tcp_flags(&ops[1]).map_or(Left::Other, |m| Left::TcpFlags(Some(m)))
        }
        _ => Left::Other,
    };
    (l, implied)
}

/// `ip daddr . meta l4proto . th dport`: each part read on its own; the first protocol
/// a part implies is the whole key's.
fn concat_left(val: &Value) -> (Left, Option<Proto>) {
    let Value::Array(parts) = val else {
        return (Left::Other, None);
    };
    let mut implied = None;
    let mut ls = Vec::new();
    for p in parts {
        let (l, i) = left(p);
        implied = implied.or(i);
        ls.push(l);
    }
    (Left::Concat(ls), implied)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `in`: for flag fields, "any of these bits set"; otherwise membership.
    In,
}

impl Op {
    /// A comparison with values (`==`, `!=`, `in`) rather than an order.
    fn eq_like(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::In)
    }

    /// `==` or `!=`.
    fn exact(self) -> bool {
        matches!(self, Op::Eq | Op::Ne)
    }
}

fn op(s: &str) -> Option<Op> {
    Some(match s {
        "==" | "eq" => Op::Eq,
        "!=" | "ne" => Op::Ne,
        "<" | "lt" => Op::Lt,
        ">" | "gt" => Op::Gt,
        "<=" | "le" => Op::Le,
        ">=" | "ge" => Op::Ge,
        "in" => Op::In,
        _ => return None,
    })
}

fn ct_state(name: &str) -> Option<CtState> {
    Some(match name {
        "new" => CtState::New,
        "established" => CtState::Established,
        "related" => CtState::Related,
        "invalid" => CtState::Invalid,
        "untracked" => CtState::Untracked,
        _ => return None,
    })
}

/// A `ct status` bit that stands for a [`CtState`].
fn ct_status(name: &str) -> Option<CtState> {
    Some(match name {
        "snat" => CtState::Snat,
        "dnat" => CtState::Dnat,
        _ => return None,
    })
}

fn addr_type(name: &str) -> AddrType {
    match name {
        "local" => AddrType::Local,
        "unicast" => AddrType::Unicast,
        "broadcast" => AddrType::Broadcast,
        "multicast" => AddrType::Multicast,
        _ => AddrType::Other,
    }
}

/// Most members a set is read with (a range of addresses is its prefixes, a range of
/// ports one member).
pub(super) const MAX_MEMBERS: usize = 65_536;

/// The set members one element stands for, its parts read by `roles` (`ip daddr .
/// meta l4proto . th dport` → address, protocol, port); `None` when the element does
/// not have that shape or the shape has no [`SetMember`].
pub(super) fn element_members(roles: &[Role], elem: &Value) -> Option<Vec<SetMember>> {
    let elem = unwrap_elem(elem);
    let parts: Vec<&Value> = match elem.get("concat") {
        Some(Value::Array(p)) => p.iter().map(unwrap_elem).collect(),
        _ => vec![elem],
    };
    if parts.len() != roles.len() {
        return None;
    }
    let mut addrs: Option<Vec<Prefix>> = None;
    let mut proto: Option<Proto> = None;
    let mut ports: Option<Vec<(u16, u16)>> = None;
    for (role, part) in roles.iter().zip(&parts) {
        match role {
            Role::Addr if addrs.is_none() => addrs = Some(value::prefixes(part)?),
            Role::Proto if proto.is_none() => proto = Some(value::proto(part)?),
            Role::Port if ports.is_none() => ports = Some(value::port_ranges(part)?),
            _ => return None,
        }
    }
    let out: Vec<SetMember> = match (addrs, proto, ports) {
        (Some(a), None, None) => a.into_iter().map(SetMember::Addr).collect(),
        (Some(a), pr, Some(ps)) => a
            .iter()
            .flat_map(|&p| ps.iter().map(move |&r| SetMember::AddrPort(p, pr, r)))
            .take(MAX_MEMBERS)
            .collect(),
        (None, pr, Some(ps)) => ps.into_iter().map(|r| SetMember::Port(pr, r)).collect(),
        _ => return None,
    };
    Some(out)
}

/// Roles of a named set's parts from its declared type (`ipv4_addr . inet_proto .
/// inet_service`); `None` for types with no [`SetMember`] (interface names, marks...).
pub(super) fn roles_of_type(ty: &Value) -> Option<Vec<Role>> {
    let names: Vec<&str> = match ty {
        Value::String(s) => s.split(" . ").collect(),
        Value::Array(a) => a.iter().map(|t| t.as_str()).collect::<Option<_>>()?,
        _ => return None,
    };
    names
        .iter()
        .map(|n| match n.trim() {
            "ipv4_addr" | "ipv6_addr" => Some(Role::Addr),
            "inet_proto" => Some(Role::Proto),
            "inet_service" => Some(Role::Port),
            _ => None,
        })
        .collect()
}

/// A single match, negated by `!=`.
fn one(o: Op, kind: MatchKind) -> Option<Vec<Match>> {
    Some(vec![Match {
        negated: o == Op::Ne,
        kind,
    }])
}

/// `tcp dport 80`, `th sport { 53, 1000-2000 }`, `ct original proto-dst < 1024`:
/// port ranges.
fn port_match(field: &Left, o: Op, r: &Value) -> Option<Vec<Match>> {
    let ranges = match o {
        Op::Eq | Op::Ne | Op::In => value::port_ranges(r)?,
        _ => {
            let p = value::port(r)?;
            let (lo, hi) = match o {
                Op::Lt => (0, p.checked_sub(1)?),
                Op::Le => (0, p),
                Op::Gt => (p.checked_add(1)?, u16::MAX),
                _ => (p, u16::MAX),
            };
            vec![(lo, hi)]
        }
    };
    let ports = Ports(ranges);
    one(
        o,
        match field {
            Left::Sport => MatchKind::Sport(ports),
            Left::Dport => MatchKind::Dport(ports),
            _ => MatchKind::CtOrigDstPort(ports),
        },
    )
}

/// `meta l4proto tcp`, `ip protocol 17`: one protocol; `meta l4proto { tcp, udp }`:
/// any of them (`!=`: none of them, one negated match each).
fn proto_match(o: Op, r: &Value) -> Option<Vec<Match>> {
    let protos = members(r)
        .into_iter()
        .map(value::proto)
        .collect::<Option<Vec<Proto>>>()?;
    match (protos.as_slice(), o) {
        ([p], _) => one(o, MatchKind::Proto(*p)),
        ([], _) => None,
        (_, Op::Ne) => Some(
            protos
                .into_iter()
                .map(|p| Match {
                    negated: true,
                    kind: MatchKind::Proto(p),
                })
                .collect(),
        ),
        (_, Op::Eq | Op::In) => one(o, MatchKind::AnyProto(protos)),
        _ => None,
    }
}

/// `meta nfproto ipv6`, `meta protocol ip`, `meta nfproto { ipv4, ipv6 }`: the address
/// family, by name or number (nfproto 2 and 10, ethertypes 0x0800 and 0x86dd); another
/// protocol (`arp`) is a family no IP packet is of.
fn family_match(o: Op, r: &Value) -> Option<Vec<Match>> {
    let (mut v4, mut v6) = (false, false);
    for m in members(r) {
        let name = match m {
            Value::String(name) => name.as_str(),
            _ => match value::num(m)? {
                2 | 0x0800 => "ipv4",
                10 | 0x86dd => "ipv6",
                _ => "",
            },
        };
        match name {
            "ipv4" | "ip" => v4 = true,
            "ipv6" | "ip6" => v6 = true,
            _ => {}
        }
    }
    let family = match (v4, v6) {
        (true, true) => Family::Inet,
        (true, false) => Family::Ip,
        (false, true) => Family::Ip6,
        (false, false) => Family::Arp,
    };
    one(o, MatchKind::Family(family))
}

/// `tcp flags syn`, `tcp flags & (syn | ack) == syn`: the bits under a mask.
fn tcp_flags_match(mask: Option<u8>, o: Op, r: &Value) -> Option<Vec<Match>> {
    let flags = value::tcp_flags(r)?;
    let (mask, comp) = match (mask, o) {
        (Some(m), Op::Eq | Op::Ne) => (m, flags),
        // `tcp flags syn`: that bit set; several bits would mean "any".
        (None, Op::In) if flags.count_ones() == 1 => (flags, flags),
        (None, Op::Eq | Op::Ne) => (0xff, flags),
        _ => return None,
    };
    one(o, MatchKind::TcpFlags { mask, comp })
}

/// `icmp type echo-request`: one type, any code.
fn icmp_type_match(v6: bool, o: Op, r: &Value) -> Option<Vec<Match>> {
    let [t] = members(r)[..] else {
        return None;
    };
    one(
        o,
        MatchKind::IcmpType {
            icmp_type: value::icmp_type(t, v6)?,
            code: None,
        },
    )
}

/// `iifname "eth0"`, `oifname "veth*"`: one interface name, a trailing `*` a prefix
/// (`\*` a literal star).
fn iface_match(field: &Left, o: Op, r: &Value) -> Option<Vec<Match>> {
    let ms = members(r);
    let [name] = ms.as_slice() else {
        return None;
    };
    let name = name.as_str()?;
    let iface = match name.strip_suffix('*') {
        Some(stem) if !stem.ends_with('\\') => Iface {
            name: stem.to_string(),
            prefix: true,
        },
        Some(stem) => Iface {
            name: format!("{}*", stem.trim_end_matches('\\')),
            prefix: false,
        },
        None => Iface {
            name: name.to_string(),
            prefix: false,
        },
    };
    one(
        o,
        if *field == Left::InIface {
            MatchKind::InIface(iface)
        } else {
            MatchKind::OutIface(iface)
        },
    )
}

/// `meta mark & 0x4000 == 0x4000`, `ct mark 0x1`: the bits under a mask.
fn mark_match(field: &Left, mask: u32, o: Op, r: &Value) -> Option<Vec<Match>> {
    let value = num_u32(r)? & mask;
    one(
        o,
        if matches!(field, Left::Mark(_)) {
            MatchKind::Mark { value, mask }
        } else {
            MatchKind::ConnMark { value, mask }
        },
    )
}

/// `ct state established,related`, `ct status dnat`: states, each read by `state`.
fn ct_state_match(o: Op, r: &Value, state: fn(&str) -> Option<CtState>) -> Option<Vec<Match>> {
    let states = members(r)
        .iter()
        .map(|s| s.as_str().and_then(state))
        .collect::<Option<Vec<_>>>()?;
    one(o, MatchKind::CtState(states))
}

/// `ct direction reply`: a reply-direction match, negated for `original`.
fn ct_direction_match(o: Op, r: &Value) -> Option<Vec<Match>> {
    let reply = match r.as_str()? {
        "reply" => true,
        "original" => false,
        _ => return None,
    };
    Some(vec![Match {
        negated: (o == Op::Ne) == reply,
        kind: MatchKind::CtDirReply,
    }])
}

/// `ct original ip daddr 10.96.0.10`: one prefix of the original tuple.
fn ct_orig_addr_match(field: &Left, o: Op, r: &Value) -> Option<Vec<Match>> {
    let [p] = value::all_prefixes(r)?[..] else {
        return None;
    };
    one(
        o,
        if *field == Left::CtOrigSrc {
            MatchKind::CtOrigSrc(p)
        } else {
            MatchKind::CtOrigDst(p)
        },
    )
}

/// `meta random & 2147483647 < 715827883`: iptables-nft's `-m statistic --mode random
/// --probability 0.33333333349`, the mask keeping 31 bits.
fn random_match(mask: u32, o: Op, r: &Value) -> Option<Vec<Match>> {
    if mask != 0x7fff_ffff {
        return None;
    }
    let n = value::num(r)? as f64;
    let below = match o {
        Op::Lt => n,
        Op::Le => n + 1.0,
        _ => return None,
    };
    one(
        o,
        MatchKind::Random {
            probability: (below / 2_147_483_648.0).min(1.0),
        },
    )
}

/// `numgen inc mod 3 0` (iptables-nft's `-m statistic --mode nth --every 3`), `numgen
/// random mod 4 { 0, 1 }`: the share of the generator's values compared with.
fn numgen_match(inc: bool, modulus: u64, offset: u64, o: Op, r: &Value) -> Option<Vec<Match>> {
    let mut values = Vec::new();
    for m in members(r) {
        let v = value::num(m)?;
        if v >= offset && v - offset < modulus {
            values.push(v - offset);
        }
    }
    values.sort_unstable();
    values.dedup();
    let kind = match (inc, values.as_slice()) {
        (true, [k]) => MatchKind::Nth {
            every: u32::try_from(modulus).ok()?,
            packet: u32::try_from(*k).ok()?,
        },
        _ => MatchKind::Random {
            probability: values.len() as f64 / modulus as f64,
        },
    };
    one(o, kind)
}

/// `fib daddr type local`: the address type of the source or the destination.
fn fib_match(field: &Left, o: Op, r: &Value) -> Option<Vec<Match>> {
    let Left::Fib {
        src,
        limit_in,
        limit_out,
    } = *field
    else {
        return None;
    };
    // `fib daddr type local`, or a set: `fib daddr type { local, broadcast }`.
    let t: Vec<AddrType> = match r {
        Value::String(s) => vec![addr_type(s)],
        _ => r
            .get("set")?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(addr_type))
            .collect::<Option<_>>()?,
    };
    one(
        o,
        MatchKind::AddrType {
            src: if src { t.clone() } else { Vec::new() },
            dst: if src { Vec::new() } else { t },
            limit_in,
            limit_out,
        },
    )
}

impl RuleCtx<'_> {
    /// One `match` statement as matches: the comparison itself and the protocol its
    /// header implies; what cannot be decided from a packet is an Unknown match.
    pub(super) fn matches(&mut self, m: &Value) -> Vec<Match> {
        let null = Value::Null;
        let l = m.get("left").unwrap_or(&null);
        let r = m.get("right").unwrap_or(&null);
        let op_s = m.get("op").and_then(Value::as_str).unwrap_or("==");
        let (field, implied) = left(l);
        let mut out = Vec::new();
        if let Some(p) = implied {
            if field != Left::Proto {
                out.push(Match {
                    negated: false,
                    kind: MatchKind::Proto(p),
                });
            }
        }
        let converted = op(op_s).and_then(|o| self.kind(&field, o, r));
        match converted {
            Some(ms) => out.extend(ms),
            None => out.push(Match {
                negated: false,
                kind: MatchKind::Unknown {
                    name: render::expr(l),
                    text: render::statement(&serde_json::json!({ "match": m })),
                },
            }),
        }
        out
    }

    /// The matches a comparison of `field` with `r` stands for; `None` when it has
    /// none (an order on an address, a field not modelled).
    fn kind(&mut self, field: &Left, o: Op, r: &Value) -> Option<Vec<Match>> {
        // A named set: `ip saddr @blocked`, `ip daddr . meta l4proto . th dport @svc`.
        if let Some(name) = r.as_str().and_then(|s| s.strip_prefix('@')) {
            return self.named_set_match(field, o, name);
        }
        let eq_like = o.eq_like();
        match field {
            Left::Saddr | Left::Daddr if eq_like => self.addr_match(field, o, r),
            Left::Sport | Left::Dport | Left::CtOrigDstPort => port_match(field, o, r),
            Left::Proto if eq_like => proto_match(o, r),
            Left::Family if eq_like => family_match(o, r),
            Left::TcpFlags(mask) => tcp_flags_match(*mask, o, r),
            Left::IcmpType { v6 } if eq_like => icmp_type_match(*v6, o, r),
            Left::InIface | Left::OutIface if eq_like => iface_match(field, o, r),
            Left::Mark(mask) | Left::CtMark(mask) if o.exact() => mark_match(field, *mask, o, r),
            Left::CtState if eq_like => ct_state_match(o, r, ct_state),
            Left::CtStatus if eq_like => ct_state_match(o, r, ct_status),
            Left::CtDirection if o.exact() => ct_direction_match(o, r),
            Left::CtOrigSrc | Left::CtOrigDst if eq_like => ct_orig_addr_match(field, o, r),
            Left::Fib { .. } if o.exact() => fib_match(field, o, r),
            Left::Random(mask) => random_match(*mask, o, r),
            Left::Numgen {
                inc,
                modulus,
                offset,
            } if eq_like => numgen_match(*inc, *modulus, *offset, o, r),
            Left::Concat(parts) if eq_like => self.concat_match(field, parts, o, r),
            _ => None,
        }
    }

    /// `ip saddr @blocked`: a lookup in a named set of this rule's table.
    fn named_set_match(&self, field: &Left, o: Op, name: &str) -> Option<Vec<Match>> {
        if !o.eq_like() {
            return None;
        }
        let dims = field.dims()?;
        one(
            o,
            MatchKind::Set {
                name: self.set_key(name),
                dims,
            },
        )
    }

    /// `ip saddr 10.0.0.0/8`: one prefix, or an anonymous set of several.
    fn addr_match(&mut self, field: &Left, o: Op, r: &Value) -> Option<Vec<Match>> {
        let ps = value::all_prefixes(r)?;
        let src = *field == Left::Saddr;
        match ps.as_slice() {
            [p] => one(
                o,
                if src {
                    MatchKind::Src(*p)
                } else {
                    MatchKind::Dst(*p)
                },
            ),
            _ => {
                let name = self.anonymous_set(ps.into_iter().map(SetMember::Addr).collect());
                one(
                    o,
                    MatchKind::Set {
                        name,
                        dims: vec![if src { SetDim::Src } else { SetDim::Dst }],
                    },
                )
            }
        }
    }

    /// `ip daddr . tcp dport { 10.0.0.1 . 80, ... }`: an anonymous set of
    /// concatenations, or a single one read as a match per part.
    fn concat_match(
        &mut self,
        field: &Left,
        parts: &[Left],
        o: Op,
        r: &Value,
    ) -> Option<Vec<Match>> {
        let roles = parts.iter().map(Left::role).collect::<Option<Vec<_>>>()?;
        let elems = members(r);
        let is_set = r.get("set").is_some();
        if !is_set && elems.len() == 1 && o != Op::Ne {
            // `ip daddr . tcp dport 10.0.0.1 . 80`: each part on its own.
            let Some(Value::Array(values)) = elems[0].get("concat") else {
                return None;
            };
            if values.len() != parts.len() {
                return None;
            }
            let mut out = Vec::new();
            for (p, v) in parts.iter().zip(values) {
                out.extend(self.kind(p, Op::Eq, v)?);
            }
            return Some(out);
        }
        let mut set = Vec::new();
        for e in elems {
            set.extend(element_members(&roles, e)?);
            set.truncate(MAX_MEMBERS);
        }
        let name = self.anonymous_set(set);
        one(
            o,
            MatchKind::Set {
                name,
                dims: field.dims()?,
            },
        )
    }

    /// Registers an anonymous set of a rule under a name of its own and returns it.
    fn anonymous_set(&mut self, members: Vec<SetMember>) -> String {
        self.anon += 1;
        let name = format!(
            "{} {} __{}_set{}",
            self.family, self.table, self.tag, self.anon
        );
        self.sets.insert(
            name.clone(),
            Set {
                kind: "anonymous".into(),
                members,
            },
        );
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn left_hand_sides() {
        assert_eq!(
            left(&json!({"payload": {"protocol": "tcp", "field": "dport"}})),
            (Left::Dport, Some(Proto::Tcp))
        );
        assert_eq!(
            left(&json!({"payload": {"protocol": "th", "field": "dport"}})),
            (Left::Dport, None)
        );
        assert_eq!(
            left(&json!({"&": [{"meta": {"key": "mark"}}, 16384]})),
            (Left::Mark(0x4000), None)
        );
        assert_eq!(
            left(&json!({"ct": {"key": "ip daddr", "dir": "original"}})),
            (Left::CtOrigDst, None)
        );
        assert_eq!(
            left(&json!({"ct": {"key": "daddr", "dir": "reply"}})),
            (Left::Other, None)
        );
        assert_eq!(
            left(&json!({"fib": {"result": "type", "flags": ["daddr", "iif"]}})),
            (
                Left::Fib {
                    src: false,
                    limit_in: true,
                    limit_out: false
                },
                None
            )
        );
        assert_eq!(
            left(&json!({"fib": {"result": "oif", "flags": ["daddr", "iif"]}})),
            (Left::Other, None)
        );
        assert_eq!(
            Left::Concat(vec![Left::Daddr, Left::Proto, Left::Dport]).dims(),
            Some(vec![SetDim::Dst, SetDim::Dst])
        );
        assert_eq!(
            left(&json!({"&": [{"meta": {"key": "random"}}, 2147483647u32]})),
            (Left::Random(0x7fff_ffff), None)
        );
        assert_eq!(
            left(&json!({"numgen": {"mode": "inc", "mod": 3, "offset": 0}})),
            (
                Left::Numgen {
                    inc: true,
                    modulus: 3,
                    offset: 0
                },
                None
            )
        );
        assert_eq!(Left::Concat(vec![Left::Proto]).dims(), None);
        assert_eq!(Left::InIface.dims(), None);
    }

    #[test]
    fn set_elements_of_every_shape() {
        let p = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            Prefix {
                addr: a.parse().unwrap(),
                len: l.parse().unwrap(),
            }
        };
        let roles = [Role::Addr, Role::Proto, Role::Port];
        assert_eq!(
            element_members(
                &roles,
                &json!({"elem": {"val": {"concat": ["10.96.0.46", "tcp", 80]}, "comment": "x"}})
            ),
            Some(vec![SetMember::AddrPort(
                p("10.96.0.46/32"),
                Some(Proto::Tcp),
                (80, 80)
            )])
        );
        assert_eq!(
            element_members(
                &[Role::Proto, Role::Port],
                &json!({"concat": ["udp", {"range": [53, 54]}]})
            ),
            Some(vec![SetMember::Port(Some(Proto::Udp), (53, 54))])
        );
        assert_eq!(
            element_members(&[Role::Addr], &json!({"range": ["10.0.0.0", "10.0.0.3"]})),
            Some(vec![SetMember::Addr(p("10.0.0.0/30"))])
        );
        assert_eq!(element_members(&[Role::Addr], &json!("eth0")), None);
        assert_eq!(
            element_members(&roles, &json!({"concat": ["10.0.0.1", "tcp"]})),
            None
        );
        assert_eq!(
            roles_of_type(&json!(["ipv4_addr", "inet_proto", "inet_service"])),
            Some(roles.to_vec())
        );
        assert_eq!(roles_of_type(&json!("ifname")), None);
    }
}
