//! Words of `underlay-drop`, and of its facts ([`UnderlayFact`]).

use super::evidence::who;
use super::pmtu_black_hole::sizes;
use super::unexplained;
use crate::audit::{Detail, Finding, UnderlayFact, UnderlayFacts};
use crate::model::{Tunnel, TunnelKind};
use crate::report::fmt::{at_or_span, plural, rfc3339_ns};

/// The tunnel as an operator names it: `VXLAN VNI 1 from 203.0.113.2 to 203.0.113.1
/// (UDP port 4789)`, `IPIP from 10.0.0.1 to 10.0.0.2 (IP protocol 4)`.
pub(super) fn tunnel(t: &Tunnel) -> String {
    let name = match t.kind {
        TunnelKind::Vxlan => "VXLAN",
        TunnelKind::Geneve => "Geneve",
        TunnelKind::Gre => "GRE",
        TunnelKind::Erspan => "ERSPAN",
        TunnelKind::Ipip => "IPIP",
        TunnelKind::Sit => "SIT (IPv6 in IPv4)",
        TunnelKind::Ip6ip6 => "IPv6-in-IPv6",
        TunnelKind::Ip4ip6 => "IPv4-in-IPv6",
        TunnelKind::Teredo => "Teredo",
    };
    let id = t.id.zip(t.kind.id_name());
    let id = id.map(|(n, id)| format!(" {id} {n}")).unwrap_or_default();
    let o = &t.outer;
    format!("{name}{id} from {} to {} ({})", o.src, o.dst, carrier(t))
}

/// What the underlay sees of the tunnel: `UDP port 4789`, `IP protocol 47`.
fn carrier(t: &Tunnel) -> String {
    let o = &t.outer;
    if o.proto.has_ports() {
        format!("{} port {}", o.proto.name().to_uppercase(), o.dport)
    } else {
        format!("IP protocol {}", o.proto.number())
    }
}

/// What the lost packets have in common, when the evidence shows it.
fn common(d: &UnderlayFacts, first: i64) -> String {
    let size = format!(
        "every one of them was larger than every packet of the tunnel that crossed (at most {} bytes): the underlay drops by size",
        d.crossed_max
    );
    let time = match d.window {
        Some(Some(after)) => Some(format!(
            "nothing of the tunnel crossed that way from the first of them to the last, and packets crossed again from {}: the underlay dropped everything that way for a time",
            rfc3339_ns(after)
        )),
        Some(None) => Some(format!(
            "nothing of the tunnel crossed that way from {} on: the underlay blocks it from then",
            rfc3339_ns(first)
        )),
        None => None,
    };
    match (d.larger, time) {
        (true, None) => size,
        (false, Some(t)) => t,
        (true, Some(t)) => format!("{size}, or {t}"),
        (false, None) => "they have neither a size nor a time in common: the underlay drops some of the tunnel's packets".to_string(),
    }
}

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::UnderlayDrop(d) = &f.detail else {
        return unexplained(f);
    };
    let conns = plural(f.conns.len() as u64, "connection", "connections");
    let message = format!(
        "Underlay drop between {} and {}: {} of {conns} ({}) left {} inside {} and never reached {}, while {} of that tunnel crossed that way; {}",
        d.from,
        d.to,
        plural(f.packets, "packet", "packets"),
        sizes(d.lost_len.0, d.lost_len.1),
        d.from,
        tunnel(&d.tunnel),
        d.to,
        plural(d.crossed, "packet", "packets"),
        common(d, f.first_ns.unwrap_or_default()),
    );
    let (o, what) = (&d.tunnel.outer, carrier(&d.tunnel));
    let check = format!(
        "Netfilter on neither node is involved: the packets left {} and were lost on the underlay between {} and {}. Check what lies between them: security groups or firewalls for {what} between the two addresses, and the MTU of every link and switch on the way (the tunnel adds its headers to the packets inside: VXLAN and Geneve 50 bytes over IPv4, 70 over IPv6, GRE 24 or more, IPIP 20), with `ping -M do -s SIZE {}` from node to node; then lower the tunnel device's MTU or open the path.",
        d.from, o.src, o.dst, o.dst
    );
    (message, check)
}

/// One line of evidence for an [`UnderlayFact`].
pub fn fact(f: &UnderlayFact) -> String {
    match f {
        UnderlayFact::Lost {
            conn,
            direction,
            packets,
            min_len,
            max_len,
            first_ns,
            last_ns,
        } => format!(
            "{conn}: {} of {} lost in the tunnel, {}",
            plural(
                *packets,
                &format!("{} packet", who(*direction)),
                &format!("{} packets", who(*direction))
            ),
            sizes(*min_len, *max_len),
            at_or_span(*first_ns, *last_ns)
        ),
        UnderlayFact::Crossed {
            packets,
            max_len,
            before,
            window,
        } => {
            let before = before
                .map(|t| format!(", the last before the lost ones at {}", rfc3339_ns(t)))
                .unwrap_or_default();
            let amid = match window {
                Some(Some(t)) => format!(
                    "; none while they were lost, the next at {}",
                    rfc3339_ns(*t)
                ),
                Some(None) => "; none from the first lost one on".to_string(),
                None => "; some while they were lost".to_string(),
            };
            format!(
                "{} of the tunnel of up to {max_len} bytes crossed that way{before}{amid}",
                plural(*packets, "packet", "packets")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Proto, Tuple};

    fn t(kind: TunnelKind, id: Option<u32>, proto: Proto, dport: u16) -> Tunnel {
        Tunnel {
            kind,
            depth: 1,
            id,
            outer: Tuple {
                proto,
                src: "2001:db8::1".parse().unwrap(),
                sport: 0,
                dst: "2001:db8::2".parse().unwrap(),
                dport,
            },
        }
    }

    #[test]
    fn a_tunnel_reads_as_its_kind_id_ends_and_what_the_underlay_sees() {
        assert_eq!(
            tunnel(&t(TunnelKind::Geneve, Some(7), Proto::Udp, 6081)),
            "Geneve VNI 7 from 2001:db8::1 to 2001:db8::2 (UDP port 6081)"
        );
        assert_eq!(
            tunnel(&t(TunnelKind::Gre, Some(3), Proto::Gre, 0)),
            "GRE key 3 from 2001:db8::1 to 2001:db8::2 (IP protocol 47)"
        );
        assert_eq!(
            tunnel(&t(TunnelKind::Ip6ip6, None, Proto::Other(41), 0)),
            "IPv6-in-IPv6 from 2001:db8::1 to 2001:db8::2 (IP protocol 41)"
        );
    }

    #[test]
    fn what_the_lost_packets_share_is_said_only_when_shown() {
        let mut d = UnderlayFacts {
            from: "a".into(),
            to: "b".into(),
            tunnel: t(TunnelKind::Vxlan, Some(1), Proto::Udp, 4789),
            lost_len: (1500, 1500),
            crossed: 9,
            crossed_max: 100,
            larger: true,
            window: None,
        };
        assert!(common(&d, 0).ends_with("the underlay drops by size"));
        d.larger = false;
        d.window = Some(None);
        assert!(common(&d, 0).ends_with("the underlay blocks it from then"));
        d.window = None;
        assert!(common(&d, 0).starts_with("they have neither a size nor a time"));
        d.larger = true;
        d.window = Some(Some(5));
        let both = common(&d, 0);
        assert!(both.contains("by size, or nothing of the tunnel"), "{both}");
    }
}
