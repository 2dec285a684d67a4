//! Words of `asymmetric-route`, and of its facts ([`RouteFact`]).

use super::unexplained;
use crate::audit::{Detail, Evidence, Finding, RouteFact};
use crate::correlate::{Joined, REPLY_WINDOW_NS};
use crate::report::fmt::{dst, plural, src};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::AsymmetricRoute(d) = &f.detail else {
        return unexplained(f);
    };
    let (a, b, near) = (&d.requests, &d.replies, &d.not_reached);
    let peer = d.reply.src;
    let first = f.evidence.iter().find_map(|e| match e {
        Evidence::NeverReached { gap, .. } => gap.first_tcp_flags,
        _ => None,
    });
    let what = format!(
        "{}{}",
        plural(f.packets, "responder packet", "responder packets"),
        super::evidence::flags(first)
    );
    let others = if d.crossed > 0 {
        format!(
            ", while {} of the connection reached {near}",
            plural(d.crossed, "other reply", "other replies")
        )
    } else {
        String::new()
    };
    let nat = if d.translated {
        format!("the requests were translated and left by {a}, and the replies came back to the translated address and port")
    } else {
        format!("the requests left by {a}, and the replies came back to their address and port")
    };
    let message = format!(
        "replies came back by {b}, not by {a} where the requests went, and never reached {near}: {what} from {} to {} arrived at {b} and went no further{others}. The host routes {peer} out {a} (its requests went there): what strict reverse-path filtering does to packets that arrive by an interface the route back to their source does not use. Not a NAT rule that failed, nor NAT ports run out: {nat}",
        src(&d.reply),
        dst(&d.reply),
    );
    let (filter, loose) = if peer.is_ipv4() {
        (
            format!("`sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.IFACE.rp_filter` for the interface {b} was captured on (the higher applies: 1 is strict, 2 loose lets these replies through) and `nstat -az TcpExtIPReversePathFilter`, which counts its drops; rules that drop on a failed check: `iptables -t raw -S PREROUTING`, `iptables -t mangle -S PREROUTING` (`-m rpfilter --invert -j DROP`), `nft list ruleset | grep 'fib saddr'`"),
            "loose filtering (`rp_filter=2`)",
        )
    } else {
        (
            "IPv6 has no rp_filter sysctl, rules do it: `ip6tables -t raw -S PREROUTING`, `ip6tables -t mangle -S PREROUTING` (`-m rpfilter --invert -j DROP`, firewalld's `IPv6_rpfilter`), `nft list ruleset | grep 'fib saddr'`".to_string(),
            "a loose check (`-m rpfilter --loose`, firewalld's `IPv6_rpfilter=loose`)",
        )
    };
    let check = format!(
        "Reverse-path filtering where {b} arrives: {filter}. Then why the far side answers by {b}: its route back to {} (`ip route get {}` there: a more specific or a policy route, ECMP over both links). Make the two ways agree: the requests out by {b} or the replies back by {a} (`ip route get {peer}` here gives the way out), a policy route per link (`ip rule add from ADDR table N`), or {loose} where {b} arrives.",
        d.reply.dst, d.reply.dst,
    );
    (message, check)
}

/// One line of evidence for a [`RouteFact`].
pub fn fact(f: &RouteFact) -> String {
    match f {
        RouteFact::Answer {
            joined,
            requests,
            replies,
        } => format!(
            "the packets at {replies} answer the requests that went by {requests}: {}",
            match joined {
                Joined::Acknowledgement => "the same tuple reversed, and their acknowledgement numbers acknowledge what the initiator sent there (a SYN-ACK acknowledges the SYN's sequence number + 1)".to_string(),
                Joined::Tuple => format!(
                    "the same tuple reversed, after the first request and within {} s of the last",
                    REPLY_WINDOW_NS / 1_000_000_000
                ),
                Joined::Packets => "the same tuple reversed, and some of them reached the initiator's side".to_string(),
            }
        ),
        RouteFact::Conntrack { unreplied: true } => "conntrack never took them for replies (the entry is still [UNREPLIED] after them): dropped before conntrack saw them (a reverse-path rule in raw PREROUTING), or found INVALID".to_string(),
        RouteFact::Conntrack { unreplied: false } => "conntrack saw replies (the entry is not [UNREPLIED]): dropped after conntrack, at the routing decision (the rp_filter sysctl) or by a later rule".to_string(),
        RouteFact::NoRule { v6: false } => "no rule given drops on a reverse-path check: the kernel's own (the rp_filter sysctl) is the one to look at".to_string(),
        RouteFact::RpFilter {
            iface,
            at_iface,
            all,
        } => {
            let effective = all.as_ref().map_or(at_iface.value, |a| a.value.max(at_iface.value));
            let meaning = match effective {
                1 => "strict: the kernel drops what arrives on it from a source it routes out by another interface, as these replies did",
                2 => "loose: it drops only what comes from a source it has no route to at all, so not these replies; look for a rule",
                0 => "off: not what dropped these replies; look for a rule",
                _ => "a value the kernel does not define",
            };
            let all = all.as_ref().map_or(String::new(), |a| {
                format!(", net.ipv4.conf.all.rp_filter = {} ({})", a.value, a.place)
            });
            format!(
                "reverse-path filtering on {iface} is {effective}, {meaning} (net.ipv4.conf.{iface}.rp_filter = {} ({}){all}; the higher applies)",
                at_iface.value, at_iface.place
            )
        }
        RouteFact::NoRule { v6: true } => "no rule given drops on a reverse-path check, and IPv6 has no rp_filter sysctl: look for rules not given (nft, another table or host)".to_string(),
    }
}
