//! Words of `pmtu-black-hole`, and of its facts ([`SizeFact`]).

use super::evidence::who;
use super::unexplained;
use crate::audit::{Detail, Finding, PmtuFacts, SizeFact};
use crate::report::fmt::{at_or_span, dst, plural, rfc3339_ns, src};

/// "ICMP fragmentation needed" or "ICMPv6 packet too big".
fn too_big(v6: bool) -> &'static str {
    if v6 {
        "ICMPv6 packet too big"
    } else {
        "ICMP fragmentation needed"
    }
}

/// Bytes of IP and TCP headers around an MSS-sized payload: an MSS of `mss` means
/// packets of `mss + headers` bytes.
fn headers(v6: bool) -> u32 {
    if v6 {
        60
    } else {
        40
    }
}

/// `1500 bytes`, `1500 to 14480 bytes`.
pub(super) fn sizes(lo: u32, hi: u32) -> String {
    if lo == hi {
        format!("{lo} bytes")
    } else {
        format!("{lo} to {hi} bytes")
    }
}

/// What the evidence says the path carries.
fn mtu(d: &PmtuFacts) -> String {
    match (d.icmp_mtu, d.mtu()) {
        (Some(m), _) => format!("packets of at most {m} bytes (the ICMP error's MTU)"),
        (None, (_, hi)) => format!("packets of at most {hi} bytes"),
    }
}

/// The tunnel the segments were to enter and what its headers make of the largest:
/// `VXLAN VNI 1 from ... (UDP port 4789), whose headers add 50 bytes (1550-byte
/// packets on the underlay)`.
fn into(t: &crate::model::Tunnel, largest: u32) -> String {
    let add = match t.overhead() {
        Some((n, true)) => format!(
            ", whose headers add {n} bytes ({}-byte packets on the underlay)",
            largest + n
        ),
        Some((n, false)) => format!(
            ", whose headers add at least {n} bytes (at least {}-byte packets on the underlay)",
            largest + n
        ),
        None => String::new(),
    };
    format!("{}{add}", super::underlay_drop::tunnel(t))
}

/// What the ends announced in their SYNs, and the packet size that means.
fn announced(d: &PmtuFacts) -> String {
    match d.mss {
        [Some(a), Some(b)] => format!(
            "the ends announced MSS {a} and {b} in their SYNs ({}-byte packets)",
            a.min(b) as u32 + headers(d.v6)
        ),
        [Some(m), None] | [None, Some(m)] => format!(
            "one end announced MSS {m} ({}-byte packets)",
            m as u32 + headers(d.v6)
        ),
        [None, None] => "the SYNs were not captured".to_string(),
    }
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::PmtuBlackHole(d) = &f.detail else {
        return unexplained(f);
    };
    let what = f
        .tuples
        .first()
        .map(|s| format!(" from {} to {}", src(&s.tuple), dst(&s.tuple)))
        .unwrap_or_default();
    let icmp = if d.icmp_points.is_empty() {
        format!("no {} about them was captured", too_big(d.v6))
    } else {
        format!(
            "the {} seen at {} never made the sender send smaller",
            too_big(d.v6),
            d.icmp_points.join(", ")
        )
    };
    let message = format!(
        "PMTU black hole between {} and {}: {} of {}{what}, not to be fragmented, never got through and were sent again unchanged, while packets of up to {} bytes did; the path carries {}, {}, and {icmp}{}",
        d.from,
        d.to,
        plural(f.packets, "segment", "segments"),
        sizes(d.failed.0, d.failed.1),
        d.crossed_max,
        mtu(d),
        announced(d),
        d.tunnel
            .map(|t| format!("; at {} they were to enter {}", d.to, into(&t, d.failed.1)))
            .unwrap_or_default(),
    );
    let seen = if d.icmp_points.is_empty() {
        format!(
            "Nothing told the sender: if a hop makes the {} (the host itself for a smaller link it forwards to), a rule drops it (OUTPUT for the host's own errors, FORWARD for a router's, INPUT on the sender).",
            too_big(d.v6)
        )
    } else {
        format!(
            "The {} was captured at {}: find what drops it on its way to the sender (FORWARD on this host, the sender's INPUT rules, a firewall in between).",
            too_big(d.v6),
            d.icmp_points.join(", ")
        )
    };
    let tunnel = if d.tunnel.is_some() {
        " A tunnel device must leave room for its headers: its MTU and that of the links into it at most the underlay's less them (`ip -d link show`: an MTU set by hand). A tunnel whose outer packets may not be fragmented (`df set`) drops what does not fit, and a node forwarding into it judges packets by the device's MTU, not by the path MTU it learned, so it sends no ICMP error (`net.ipv4.ip_forward_use_pmtu` 0)."
    } else {
        ""
    };
    let check = format!(
        "The MTU of the links between {} and {} (`ip link`, `ip route get`; tunnels take their overhead: VXLAN 50 bytes, IPIP 20, WireGuard 60) against the packets the ends send.{tunnel} {seen} Fix by letting {} through, clamping the MSS to the path (`{} -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu`) or giving the links one MTU; `net.ipv4.tcp_mtu_probing=1` on the sender (IPv4 and IPv6) works around it.",
        d.from,
        d.to,
        too_big(d.v6),
        if d.v6 { "ip6tables" } else { "iptables" }
    );
    (message, check)
}

/// One line of evidence for a [`SizeFact`].
pub fn fact(f: &SizeFact) -> String {
    match f {
        SizeFact::TooBig {
            direction,
            packets,
            df,
            v6,
            min_len,
            max_len,
            first_ns,
            last_ns,
            from,
            to,
        } => format!(
            "{} of {}{} reached {from} and never {to}, {}",
            plural(*packets, &format!("{} data segment", who(*direction)), &format!("{} data segments", who(*direction))),
            sizes(*min_len, *max_len),
            match (*v6, df == packets) {
                (true, _) => " (IPv6: never fragmented on the way)".to_string(),
                (false, true) => " with DF set".to_string(),
                (false, false) => format!(" ({df} with DF set)"),
            },
            at_or_span(*first_ns, *last_ns)
        ),
        SizeFact::SentAgain { copies, to } => format!(
            "{} of them carried bytes sent before, whole again, and none of those bytes reached {to} in a smaller segment",
            copies
        ),
        SizeFact::SmallerCrossed {
            direction,
            packets,
            max_len,
        } => format!(
            "{} of up to {max_len} bytes crossed",
            plural(*packets, &format!("{} packet", who(*direction)), &format!("{} packets", who(*direction)))
        ),
        SizeFact::Mss { point, mss, v6 } => {
            let one = |m: Option<u16>| {
                m.map_or("no MSS option (or no SYN captured)".to_string(), |m| {
                    format!("MSS {m} ({}-byte packets)", m as u32 + headers(*v6))
                })
            };
            format!(
                "{point}: the initiator's SYN announced {}, the responder's SYN-ACK {}",
                one(mss[0]),
                one(mss[1])
            )
        }
        SizeFact::NoIcmp { points, v6 } => format!(
            "no {} about this connection in any capture ({})",
            too_big(*v6),
            points.join(", ")
        ),
        SizeFact::Icmp {
            point,
            conn,
            sender,
            packets,
            mtu,
            v6,
            first_ns,
            later,
        } => format!(
            "{point}: {}{} from {sender} about this connection ({conn}), the first at {}; {}",
            plural(
                *packets,
                &format!("{} error", too_big(*v6)),
                &format!("{} errors", too_big(*v6))
            ),
            mtu.map(|m| format!(" (mtu {m})")).unwrap_or_default(),
            rfc3339_ns(*first_ns),
            if *later {
                "segments of the same size went on after it: it never reached the sender, or the sender ignored it"
            } else {
                "no segment that size followed it"
            }
        ),
    }
}
