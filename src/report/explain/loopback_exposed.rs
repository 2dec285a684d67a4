//! Words of `loopback-exposed`.

use super::evidence::{few_addrs, group_ids};
use super::unexplained;
use crate::audit::{Detail, Evidence, Finding};
use crate::report::fmt::{dst, plural};

pub fn explain(f: &Finding) -> (String, String) {
    let Detail::LoopbackExposed {
        arrived,
        backend,
        clients,
        answers,
        answered,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let point = f.points.first().map_or("a capture point", String::as_str);
    let reached = dst(arrived);
    let proto = arrived.proto;
    let who = format!(
        "{} from {} ({})",
        plural(f.connections.len() as u64, "connection", "connections"),
        few_addrs(clients),
        group_ids(&f.connections),
    );
    let them = if f.connections.len() == 1 {
        "it"
    } else {
        "them"
    };
    let left = match answers {
        0 => String::new(),
        n => format!(
            " ({} left {point} from {reached})",
            plural(*n, "answer", "answers")
        ),
    };
    // Without a backend on the wire, an entry that kept the destination says the host
    // took the packets itself; with no entry either, the answers may come from both.
    let entry = f.evidence.iter().any(|e| matches!(e, Evidence::Entry(_)));
    let message = match (backend, answered) {
        (Some(b), true) => format!(
            "{who} came in from the network at {point} for {proto} {reached}, a loopback address, and DNAT sent {them} on to {}, which answered{left}: a port published on the loopback address alone is reachable by any neighbour that routes it to this host",
            dst(b)
        ),
        (Some(b), false) => format!(
            "{who} came in from the network at {point} for {proto} {reached}, a loopback address, and DNAT sent {them} on to {}; no answer was captured: a port published on the loopback address alone is reachable by any neighbour that routes it to this host",
            dst(b)
        ),
        (None, _) if entry => format!(
            "{who} came in from the network at {point} for {proto} {reached}, a loopback address, and the host answered {them} itself{left}: a service bound to the loopback address is reachable by any neighbour that routes it to this host (route_localnet)"
        ),
        (None, _) => format!(
            "{who} came in from the network at {point} for {proto} {reached}, a loopback address, and {} answered from it{left}: a service bound to the loopback address, or a backend a DNAT rule for it sends to past the captures, is reachable by any neighbour that routes it to this host",
            if them == "it" { "was" } else { "were" }
        ),
    };
    let drop_martians = "drop loopback destinations from the network before NAT sees them: `iptables -t raw -I PREROUTING ! -i lo -d 127.0.0.0/8 -j DROP` (nft: `iifname != \"lo\" ip daddr 127.0.0.0/8 drop` in a prerouting chain of raw priority, -300)";
    let dnat = format!(
            "A DNAT rule matches {} on every interface: Docker before 28 publishes `-p {}:PORT` so (`-A DOCKER -d {}/32 ! -i docker0 ... -j DNAT`, moby/moby#45610; Docker 28 adds a raw-table drop), and kube-proxy's localhost NodePorts do (a NodePort is open on the node's other addresses anyway; `--iptables-localhost-nodeports=false` turns them off). Upgrade Docker, or {drop_martians}. `iptables -t nat -S | grep -F {}` lists the rules (with --rules, the DNAT rule is named below).",
            arrived.dst, arrived.dst, arrived.dst, arrived.dst,
        );
    let localnet = format!(
            "route_localnet is on for the interface {point} captured (`sysctl net.ipv4.conf.all.route_localnet net.ipv4.conf.IFACE.route_localnet`: kube-proxy sets it for its localhost NodePorts, and before 1.18 nothing dropped the rest, CVE-2020-8558; Docker sets it on its bridges with the userland proxy off): set it to 0 where nothing needs it, or {drop_martians}. `ss -lntup src {}` lists the services a neighbour reaches.",
            arrived.dst,
        );
    let check = match (backend, entry) {
        (Some(_), _) => dnat,
        (None, true) => localnet,
        (None, false) => format!(
            "No capture past {point} and no conntrack entry says which answered. {localnet} {dnat}"
        ),
    };
    (message, check)
}
