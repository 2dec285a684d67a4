//! `natcheck explain --rules FILE... --packet SPEC`: one packet's way through the
//! host's rules: the hooks, chains and rules it meets, every rule that matches with
//! its line, the verdict, and the translations it gets, with each `statistic` branch
//! and its probability.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use super::{print_warnings, ExitStatus, Format, OutputArgs};
use crate::model::{Proto, Tuple};
use crate::report;
use crate::rules::eval::{self, Packet};
use crate::rules::CtState;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The host's rules: iptables-save, iptables -S, iptables -L, nft list ruleset, nft
    /// -j list ruleset, ipset save, ip addr (repeatable; recognised by content, read as
    /// one rule set). A bundle directory of `natcheck collect` (or a `.tar.gz` of one)
    /// stands for its rules,
    /// ipsets and addresses after the capture (and for --rules-before, its rules
    /// before the capture, unless that is given).
    #[arg(long = "rules", value_name = "FILE|BUNDLE", required = true)]
    pub rules: Vec<String>,

    /// An earlier dump of the same rules with counters: each rule the packet matches
    /// then shows how much its counter grew in between.
    #[arg(long = "rules-before", value_name = "FILE")]
    pub rules_before: Vec<String>,

    /// The packet: `PROTO SRC[:PORT] > DST[:PORT] in IFACE [out IFACE]`, or `local`
    /// instead of `in IFACE` for a packet the host sends (OUTPUT). IPv6 with ports in
    /// brackets: `[2001:db8::1]:80`. Example: `tcp 198.51.100.20:40000 > 203.0.113.1:30080 in eth0`.
    #[arg(long, value_name = "SPEC")]
    pub packet: String,

    /// conntrack state of the packet: `new` (the first packet of a connection: nat
    /// rules apply), `established`, `related`, `invalid`.
    #[arg(long = "ct-state", value_name = "STATE", default_value = "new", value_parser = parse_state)]
    pub ct_state: CtState,

    /// The packet's mark as it arrives (decimal or 0x hex).
    #[arg(long, value_name = "MARK", default_value = "0", value_parser = parse_mark)]
    pub mark: u32,

    #[command(flatten)]
    pub output: OutputArgs<Format>,
}

fn parse_state(s: &str) -> Result<CtState, String> {
    match s.to_ascii_lowercase().as_str() {
        "new" => Ok(CtState::New),
        "established" => Ok(CtState::Established),
        "related" => Ok(CtState::Related),
        "invalid" => Ok(CtState::Invalid),
        "untracked" => Ok(CtState::Untracked),
        _ => Err(format!(
            "`{s}`: expected new, established, related, invalid or untracked"
        )),
    }
}

fn parse_mark(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("`{s}`: {e}"))
}

/// `10.0.0.1:80`, `[2001:db8::1]:80`, `10.0.0.1`, `2001:db8::1`: address and port.
fn endpoint(s: &str) -> Result<(IpAddr, u16), String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, 0));
    }
    let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{s}`: expected [ADDRESS]:PORT"))?;
        (a, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("`{s}`: expected ADDRESS[:PORT]"))?
    };
    let a = addr
        .parse::<IpAddr>()
        .map_err(|e| format!("`{addr}`: {e}"))?;
    let p = port.parse::<u16>().map_err(|e| format!("`{port}`: {e}"))?;
    Ok((a, p))
}

/// Parses the packet specification.
pub fn parse_packet(spec: &str, ct: CtState, mark: u32) -> Result<Packet, String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let [proto, src, arrow, dst, rest @ ..] = words.as_slice() else {
        return Err(format!(
            "`{spec}`: expected PROTO SRC[:PORT] > DST[:PORT] in IFACE (or local)"
        ));
    };
    if *arrow != ">" && *arrow != "->" {
        return Err(format!(
            "`{arrow}`: expected `>` between source and destination"
        ));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv6" | "ipv6-icmp" => Proto::Icmpv6,
        "sctp" => Proto::Sctp,
        "gre" => Proto::Gre,
        other => Proto::from_number(other.parse().map_err(|_| {
            format!("`{other}`: expected tcp, udp, icmp, icmpv6, sctp, gre or a number")
        })?),
    };
    let ((sa, sp), (da, dp)) = (endpoint(src)?, endpoint(dst)?);
    if sa.is_ipv4() != da.is_ipv4() {
        return Err(format!(
            "`{spec}`: source and destination are of different families"
        ));
    }
    let (mut in_iface, mut out_iface, mut local) = (None, None, false);
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        match *w {
            "in" => in_iface = Some(it.next().ok_or("`in` needs an interface name")?.to_string()),
            "out" => {
                out_iface = Some(
                    it.next()
                        .ok_or("`out` needs an interface name")?
                        .to_string(),
                )
            }
            "local" => local = true,
            other => {
                return Err(format!(
                    "`{other}`: expected `in IFACE`, `out IFACE` or `local`"
                ))
            }
        }
    }
    if local == in_iface.is_some() {
        return Err(format!(
            "`{spec}`: say where the packet comes from: `in IFACE` (it arrives) or `local` (the host sends it)"
        ));
    }
    let tuple = Tuple {
        proto,
        src: sa,
        sport: sp,
        dst: da,
        dport: dp,
    };
    let mut p = Packet::first(tuple, in_iface.map(Arc::from), out_iface.map(Arc::from));
    p.ct = ct;
    p.mark = mark;
    if ct != CtState::New {
        p.tcp_flags = (proto == Proto::Tcp).then_some(crate::model::tcp_flags::ACK);
    }
    Ok(p)
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let format = args.output.format()?;
    let packet = parse_packet(&args.packet, args.ct_state, args.mark)
        .map_err(|e| anyhow::anyhow!("--packet {e}"))?;
    let mut out = args.output.open(&format)?;
    let (files, mut warnings) = super::expand_files(&args.rules, |b| b.rules())?;
    let before = if args.rules_before.is_empty() {
        let (before, _) = super::expand_files(&args.rules, |b| b.rules_before())?;
        before
            .into_iter()
            .filter(|f| !args.rules.contains(f))
            .collect()
    } else {
        let (before, w) = super::expand_files(&args.rules_before, |b| b.rules_before())?;
        warnings.extend(w);
        before
    };
    let rules = crate::rules::read_all(&files, &before)?;
    warnings.extend(rules.warnings.iter().cloned());
    let walk = eval::walk(&rules, &packet);
    match format {
        Format::Table => out.write_all(report::rules::trace(&rules, &packet, &walk).as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &report::rules::explain_json(&rules, &packet, &walk),
            )?;
            writeln!(out)?;
        }
    }
    out.finish()?;
    Ok(if print_warnings(&warnings) {
        ExitStatus::Error
    } else {
        ExitStatus::Clean
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_specs() {
        let p = parse_packet(
            "tcp 198.51.100.20:40000 > 203.0.113.1:30080 in eth0",
            CtState::New,
            0,
        )
        .unwrap();
        assert_eq!(p.tuple.dport, 30080);
        assert_eq!(p.in_iface.as_deref(), Some("eth0"));
        assert_eq!(p.tcp_flags, Some(crate::model::tcp_flags::SYN));
        let p = parse_packet(
            "udp [2001:db8::1]:53 -> [2001:db8::2]:53 local out eth0",
            CtState::New,
            7,
        )
        .unwrap();
        assert!(p.in_iface.is_none() && p.out_iface.as_deref() == Some("eth0"));
        assert_eq!(p.mark, 7);
        let p = parse_packet("icmp 10.0.0.1 > 10.0.0.2 in eth0", CtState::New, 0).unwrap();
        assert_eq!(p.tuple.proto, Proto::Icmp);
        for bad in [
            "tcp 1.2.3.4:1 5.6.7.8:2 in eth0",
            "tcp 1.2.3.4:1 > 5.6.7.8:2",
            "tcp 1.2.3.4:1 > 5.6.7.8:2 in eth0 local",
            "tcp 1.2.3.4:1 > [::1]:2 in eth0",
            "bogus 1.2.3.4 > 5.6.7.8 in eth0",
            "tcp 1.2.3.4:99999 > 5.6.7.8:2 in eth0",
        ] {
            assert!(parse_packet(bad, CtState::New, 0).is_err(), "{bad}");
        }
        assert_eq!(parse_mark("0x4000"), Ok(0x4000));
        assert!(parse_state("bogus").is_err());
    }
}
