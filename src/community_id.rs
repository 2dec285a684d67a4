//! community_id: the Community ID (version 1) of a flow, the string Zeek, Suricata,
//! Arkime and Wireshark write for it, so that a natcheck connection can be joined with
//! their records on either side of the NAT: the SHA-1 of the seed, the two endpoints in
//! a canonical order, the protocol and the ports (ICMP: type and counterpart type, or
//! type and code), base64-encoded after `1:`.

use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// What the flow carries besides addresses and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ports {
    /// TCP, UDP, SCTP.
    Transport { src: u16, dst: u16 },
    /// ICMP or ICMPv6 message type and code, in the direction `src` → `dst`.
    Icmp { icmp_type: u8, code: u8 },
    /// Any other IP protocol: the addresses and the protocol only.
    None,
}

/// The Community ID of a flow from `src` to `dst`, with `seed` (0 unless the sites
/// joining their records agreed on another). `proto` is the IP protocol number.
/// `None` when the two addresses are of different families.
pub fn v1(seed: u16, src: IpAddr, dst: IpAddr, proto: u8, ports: Ports) -> Option<String> {
    // The addresses' bytes, in place: four or sixteen of each.
    let (mut a, mut b, len) = ([0u8; 16], [0u8; 16], if src.is_ipv4() { 4 } else { 16 });
    match (src, dst) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            a[..4].copy_from_slice(&x.octets());
            b[..4].copy_from_slice(&y.octets());
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            a = x.octets();
            b = y.octets();
        }
        _ => return None,
    }
    let (a, b) = (&a[..len], &b[..len]);
    let (ports, one_way) = match ports {
        Ports::Transport { src, dst } => (Some((src, dst)), false),
        Ports::Icmp { icmp_type, code } => {
            let v6 = matches!(src, IpAddr::V6(_));
            match counterpart(v6, icmp_type) {
                Some(other) => (Some((u16::from(icmp_type), u16::from(other))), false),
                None => (Some((u16::from(icmp_type), u16::from(code))), true),
            }
        }
        Ports::None => (None, false),
    };
    let (sp, dp) = ports.unwrap_or((0, 0));
    // The smaller endpoint first (address, then port), except for one-way ICMP
    // messages, which keep their direction.
    let flip = !one_way && (b, dp) < (a, sp);
    let (a, b, sp, dp) = if flip { (b, a, dp, sp) } else { (a, b, sp, dp) };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(a);
    h.update(b);
    h.update([proto, 0]);
    if ports.is_some() {
        h.update(sp.to_be_bytes());
        h.update(dp.to_be_bytes());
    }
    let digest = h.finalize();
    // "1:" and the 28 characters of a 20-byte digest in base64, in one string.
    let mut id = String::with_capacity(30);
    id.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut id);
    Some(id)
}

/// The message type that answers (or asks) ICMP type `t`, for the request/reply pairs
/// that form two-way flows (Zeek's mapping); `None` for one-way messages (errors and
/// the rest), whose code stands in for the destination port.
fn counterpart(v6: bool, t: u8) -> Option<u8> {
    // Request and reply both ways, except that an IPv4 router advertisement (9)
    // answers no one in particular: only the solicitation (10) maps to it.
    let pairs: &[(u8, u8)] = if v6 {
        &[
            (128, 129), // echo request, reply
            (133, 134), // router solicitation, advertisement
            (135, 136), // neighbor solicitation, advertisement
            (130, 131), // multicast listener query, report
            (139, 140), // node information query, reply (who-are-you)
            (144, 145), // home agent address discovery request, reply
        ]
    } else {
        &[
            (8, 0),   // echo request, reply
            (13, 14), // timestamp request, reply
            (15, 16), // information request, reply
            (17, 18), // address mask request, reply
        ]
    };
    if !v6 && t == 10 {
        return Some(9);
    }
    pairs.iter().find_map(|&(q, r)| match t {
        _ if t == q => Some(r),
        _ if t == r => Some(q),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The published baseline of the Community ID specification (seed 0 and seed 1),
    /// each flow in both directions: the ICMP rows give the message's own type and code
    /// (the baseline lists them already mapped to port equivalents).
    #[test]
    fn specification_baseline() {
        let t = |s: u16, d: u16| Ports::Transport { src: s, dst: d };
        let icmp = |ty: u8, code: u8| Ports::Icmp {
            icmp_type: ty,
            code,
        };
        #[rustfmt::skip]
        let cases: &[(&str, &str, u8, Ports, &str, &str)] = &[
            ("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 58, icmp(135, 0), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
            ("fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 58, icmp(136, 0), "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
            ("fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 58, icmp(135, 0), "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
            ("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 58, icmp(136, 0), "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
            ("3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 58, icmp(3, 0), "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="),
            ("3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 58, icmp(1, 4), "1:hLZd0XGWojozrvxqE0dWB1iM6R0=", "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8="),
            ("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 58, icmp(128, 0), "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
            ("3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 58, icmp(129, 0), "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
            ("fe80::200:86ff:fe05:80da", "ff02::2", 58, icmp(133, 0), "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
            ("fe80::260:97ff:fe07:69ea", "ff02::1", 58, icmp(134, 0), "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
            ("192.168.0.89", "192.168.0.1", 1, icmp(8, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
            ("192.168.0.1", "192.168.0.89", 1, icmp(0, 0), "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
            ("10.0.0.1", "10.0.0.2", 1, icmp(11, 0), "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
            ("2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 6, t(63943, 25), "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
            ("2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 6, t(25, 63943), "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
            ("192.168.170.8", "192.168.170.56", 132, t(7, 7), "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
            ("192.168.170.56", "192.168.170.8", 132, t(7, 7), "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
            ("128.232.110.120", "66.35.250.204", 6, t(34855, 80), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
            ("66.35.250.204", "128.232.110.120", 6, t(80, 34855), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
            ("192.168.1.52", "8.8.8.8", 17, t(54585, 53), "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
            ("8.8.8.8", "192.168.1.52", 17, t(53, 54585), "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
            ("10.1.12.1", "10.1.12.2", 46, Ports::None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
            ("10.1.12.2", "10.1.12.1", 46, Ports::None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
        ];
        for (s, d, proto, ports, seed0, seed1) in cases {
            for (seed, want) in [(0, seed0), (1, seed1)] {
                let got = v1(seed, ip(s), ip(d), *proto, *ports);
                assert_eq!(
                    got.as_deref(),
                    Some(*want),
                    "{s} -> {d} {proto} {ports:?} seed {seed}"
                );
            }
        }
    }

    #[test]
    fn mixed_families_have_none() {
        assert_eq!(v1(0, ip("10.0.0.1"), ip("::1"), 6, Ports::None), None);
    }
}
