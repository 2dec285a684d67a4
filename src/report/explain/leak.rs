//! Words of `leak`.

use super::evidence::{flags, group_ids};
use super::unexplained;
use crate::audit::{Detail, Evidence, Finding, LeakKind};
use crate::model::{fmt_endpoint, Proto};
use crate::report::fmt::{plural, rfc3339_ns, short};

/// What the evidence given already says about the cause: the entry's destruction
/// from an event log, and the conntrack statistics (the start of the check).
pub fn cause(f: &Finding) -> Option<String> {
    let mut said = Vec::new();
    for e in &f.evidence {
        match e {
            Evidence::Destroyed {
                time_ns,
                before_ns,
                by,
                ..
            } => said.push(format!(
                "The event log shows the cause: conntrack's entry was destroyed at {} ({} before), {}; the packets after it met no entry and NAT skipped them.",
                rfc3339_ns(*time_ns),
                short(*before_ns),
                match by {
                    Some(b) => super::evidence::by_program(b),
                    None => "by the kernel, not a program (a timeout shorter than the idle gap, or the table evicting it)".to_string(),
                }
            )),
            Evidence::Stats { counters, .. } => {
                if let Some((_, n)) = counters.iter().find(|(k, _)| k == "invalid") {
                    said.push(format!(
                        "conntrack -S counts {n} INVALID packets{}.",
                        if *n == 0 { ": out-of-window segments are ruled out" } else { "" }
                    ));
                }
            }
            _ => {}
        }
    }
    (!said.is_empty()).then(|| said.join(" "))
}

/// The message and the advice (the check without [`cause`]).
pub fn explain(f: &Finding) -> (String, String) {
    let Detail::Leak {
        kind,
        inside_address,
        translated_by,
        host_rst,
    } = &f.detail
    else {
        return unexplained(f);
    };
    let Some(seen) = f.tuples.first() else {
        return unexplained(f);
    };
    let (t, point) = (&seen.tuple, &seen.point);
    match (kind, host_rst) {
        (LeakKind::HostRst, Some((outside_down, lost_flags))) => {
            let (s, d) = (
                fmt_endpoint(t.src, Some(t.sport)),
                fmt_endpoint(t.dst, Some(t.dport)),
            );
            let (nat, peer) = if *outside_down { (s, d) } else { (d, s) };
            (
                format!(
                    "the NAT host answered {peer}'s untranslated{} with its own RST from {nat}: the peer's side of {} is reset",
                    flags(*lost_flags),
                    f.connections.first().map_or("", String::as_str)
                ),
                "Conntrack no longer translated this connection (its entry was deleted or expired, or the segment was INVALID, e.g. out of window), so the segment went to the host's own stack. Check `conntrack -S` (invalid), `conntrack -E` for a DESTROY of the flow, and nf_conntrack_tcp_be_liberal; `-m conntrack --ctstate INVALID -j DROP` in INPUT stops the RST (FM-01).".to_string(),
            )
        }
        _ => {
            let whose = if translated_by.is_empty() {
                String::new()
            } else {
                format!(" (traffic of {})", group_ids(translated_by))
            };
            let inside = inside_address.map(|a| a.to_string()).unwrap_or_default();
            let message = format!(
                "{} left {point} untranslated, with the inside address {inside}{whose}: NAT skipped them",
                plural(f.packets, "packet", "packets")
            );
            let check = if translated_by.is_empty() {
                format!(
                    "No translation of {inside}'s traffic was captured: a MASQUERADE or SNAT rule that does not match this source (a rule limited to another subnet or host, Calico natOutgoing not set on the pool, a NAT rule in a table or tool the host does not use), or conntrack skipping it (entry deleted or INVALID, a NOTRACK rule). `iptables -t nat -S POSTROUTING` (or `--rules` with iptables-save) shows which rule should have matched; `conntrack -S` counts invalid packets."
                )
            } else if t.proto == Proto::Tcp {
                format!(
                    "Conntrack no longer tracked this connection (entry deleted, expired or the segments INVALID, e.g. out of window) and NAT skipped it. Check `conntrack -S` (invalid), `conntrack -E` for a DESTROY of the flow before {}, and the sysctls nf_conntrack_tcp_loose / nf_conntrack_tcp_be_liberal; a FORWARD rule `-m conntrack --ctstate INVALID -j DROP` (DOCKER-USER, KUBE-FORWARD) keeps such packets in.",
                    f.first_ns.map(rfc3339_ns).unwrap_or_default()
                )
            } else {
                "Conntrack had no entry for these packets when they left (expired, flushed, table full, or a NOTRACK rule in the raw table). Check `conntrack -E` around the first packet, `conntrack -S` (drop, insert_failed) and the raw table rules.".to_string()
            };
            (message, check)
        }
    }
}
