//! `unsolicited` (FM-16 and stale replies): a connection seen only at a point where NAT
//! gives packets a source address, made of packets sent to that NAT address that the
//! host never forwarded inside and never answered except with a RST, and that look
//! like replies: to a NAT endpoint some translation used, or addressed to the side
//! that sent nothing. An error when a translation to that endpoint exists (the replies
//! come from another address or port than the one it sent to), else a warning.

use crate::audit::{Code, Ctx, Detail, Evidence, Finding, Role, Severity};
use crate::correlate::Hop;
use std::net::IpAddr;

use crate::model::{Proto, Tuple};

/// A reply later than this after its translation's last packet is not linked to it
/// (conntrack's UDP stream timeout is 120 s; unreplied entries live 30 s).
const REPLY_HORIZON_NS: i64 = 120_000_000_000;

pub fn detect(x: &Ctx) -> Vec<Finding> {
    let mut out = Vec::new();
    for ci in 0..x.c.connections.len() {
        out.extend(one(x, ci));
    }
    out
}

/// Which side of a one-point flow is a NAT address of the host there: the initiator
/// (`true`: the flow's source) or the responder.
fn nat_is_src(x: &Ctx, h: &Hop) -> Option<bool> {
    let nat = x.topo.nat_addrs.get(&h.point)?;
    let t = h.flow.tuple;
    if nat.contains(&t.src) && !nat.contains(&t.dst) {
        Some(true)
    } else if nat.contains(&t.dst) && !nat.contains(&t.src) {
        Some(false)
    } else {
        None
    }
}

/// ICMP errors the host sent from `nat` at `point` quoting the packets of tuple `t`:
/// (connection, evidence).
fn host_answers(x: &Ctx, point: usize, nat: IpAddr, t: &Tuple) -> Vec<(usize, Evidence)> {
    let mut out = Vec::new();
    for q in x.errors_quoting(point, t) {
        let (e, eh) = (&x.c.connections[q.conn], q.at);
        if eh.flow.tuple.src == nat {
            out.push((
                q.conn,
                Evidence::HostIcmp {
                    proto: e.proto,
                    icmp_type: q.error.icmp_type,
                    code: q.error.code,
                    packets: eh.flow.packets[0] + eh.flow.packets[1],
                    conn: e.id.clone(),
                },
            ));
        }
    }
    out
}

/// Connections translated to the NAT endpoint `key` at the hop's point that were alive
/// (or recently so) while the hop's packets arrived.
fn translations_to(x: &Ctx, ci: usize, h: &Hop, key: (usize, Proto, IpAddr, u16)) -> Vec<usize> {
    let c = x.c;
    x.topo
        .translated_to(key)
        .filter(|&k| {
            k != ci
                && c.connections[k].first_ns() <= h.last_ns
                && h.first_ns <= c.connections[k].last_ns() + REPLY_HORIZON_NS
        })
        .collect()
}

fn one(x: &Ctx, ci: usize) -> Option<Finding> {
    let (c, topo) = (x.c, x.topo);
    let conn = &c.connections[ci];
    let [h] = conn.hops.as_slice() else {
        return None;
    };
    let f = &h.flow;
    if f.icmp_error.is_some() {
        return None;
    }
    let t = f.tuple;
    let nat_is_src = nat_is_src(x, h)?;
    // (NAT side, peer side, index of the NAT side's direction).
    let ((n_addr, n_port), (r_addr, r_port), d) = if nat_is_src {
        ((t.src, t.sport), (t.dst, t.dport), 0)
    } else {
        ((t.dst, t.dport), (t.src, t.sport), 1)
    };
    let (to_n, from_n, rst_from_n) = (f.packets[1 - d], f.packets[d], f.tcp.rst[d]);
    if to_n == 0 || (from_n > 0 && !(t.proto == Proto::Tcp && rst_from_n)) {
        // Nothing arrived, or a two-way conversation with the host itself.
        return None;
    }
    let key = (h.point, t.proto, n_addr, n_port);
    if topo.published.contains_key(&key) {
        // Traffic to a DNAT'ed endpoint that went no further is `lost`.
        return None;
    }
    let ks = translations_to(x, ci, h, key);
    let reply_like =
        !ks.is_empty() || nat_is_src || (t.proto == Proto::Tcp && !f.tcp.syn && !f.tcp.syn_ack);
    if !reply_like {
        return None;
    }
    let at = |k: usize| c.connections[k].hops.iter().find(|o| o.point == h.point);
    let mut finding = Finding::new(
        Code::Unsolicited,
        Severity::Warning,
        Detail::Unsolicited {
            nat_address: n_addr,
            nat_port: (t.proto.has_ports() || t.proto.is_icmp()).then_some(n_port),
            from_address: r_addr,
            from_port: t.proto.has_ports().then_some(r_port),
            translations: x.ids(&ks),
            expected: ks.iter().find_map(|&k| at(k)).map(|kh| kh.flow.tuple),
            seen: t,
            first_translation: ks.first().and_then(|&k| at(k)).map(|kh| kh.flow.tuple),
        },
    );
    // The stray packets as they travelled: from the peer to the NAT endpoint.
    finding.tuples = vec![crate::audit::Seen {
        point: x.name(h.point).to_string(),
        role: Role::Unsolicited,
        tuple: if nat_is_src { t.reversed() } else { t },
    }];
    finding.evidence = vec![Evidence::Arrived {
        point: x.name(h.point).to_string(),
        packets: to_n,
        peer: (t.proto, r_addr, r_port),
        nat: (t.proto, n_addr, n_port),
        first_ns: h.first_ns,
        last_ns: h.last_ns,
    }];
    finding.conns = vec![ci];
    for &k in &ks {
        let other = &c.connections[k];
        finding.conns.push(k);
        if let Some(kh) = at(k) {
            finding.tuples.push(x.seen(kh, Role::Translation));
            finding.evidence.push(Evidence::TranslationAt {
                translated: x.translated(other, h.point).map(Box::new),
                conn: other.id.clone(),
                packets: kh.flow.packets,
                point: x.name(h.point).to_string(),
            });
        }
    }
    for (ei, answer) in host_answers(x, h.point, n_addr, &t) {
        finding.conns.push(ei);
        finding.evidence.push(answer);
    }
    if let Detail::Unsolicited {
        expected: Some(_), ..
    } = &finding.detail
    {
        if !ks.is_empty() {
            finding.severity = Severity::Error;
        }
    }
    finding.points = vec![x.name(h.point).to_string()];
    finding.first_ns = Some(h.first_ns);
    finding.last_ns = Some(h.last_ns);
    finding.packets = to_n;
    Some(finding)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, wire};
    use crate::audit::{Code, Detail, Severity};

    #[test]
    fn replies_from_another_address_are_unsolicited() {
        let c = wire("fault-wrong-source-udp");
        let f = run(&c, &[], Code::Unsolicited);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Error);
        let Detail::Unsolicited { translations, .. } = &f[0].detail else {
            panic!("{:?}", f[0].detail)
        };
        assert_eq!(translations.len(), 1);
    }

    #[test]
    fn answered_translations_are_not_unsolicited() {
        for s in ["masquerade", "port-collision", "nodeport"] {
            assert!(run(&wire(s), &[], Code::Unsolicited).is_empty(), "{s}");
        }
    }
}
