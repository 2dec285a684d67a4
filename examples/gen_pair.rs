//! gen_pair: writes a large synthetic Docker MASQUERADE capture pair (`docker0.pcap`,
//! `eth0.pcap`) and its ground truth (`truth.tsv`, one line per connection) to a
//! directory, for `bench/compare.sh` and for trying natcheck on big inputs:
//!
//! ```sh
//! cargo run --release --example gen_pair -- --out /tmp/pair --packets 2000000
//! natcheck correlate /tmp/pair/docker0.pcap /tmp/pair/eth0.pcap
//! ```
//!
//! `--kube-services N` also writes `rules.txt`, the kube-proxy style rule set of the
//! `--rules` benchmark, for `natcheck correlate --rules`.
//!
//! The same options give the same bytes on any machine. The traffic model is described in
//! `benches/support/synth.rs`, shared with the benchmarks.

#[path = "../benches/support/kube.rs"]
mod kube;
#[path = "../benches/support/synth.rs"]
mod synth;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Write a synthetic docker0/eth0 MASQUERADE capture pair")]
struct Args {
    /// Directory to write docker0.pcap, eth0.pcap and truth.tsv into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Packets per capture (at least; open connections are finished).
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Containers on docker0.
    #[arg(long, default_value_t = 200)]
    containers: u32,
    /// New connections per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Per mille of connections made to collide with a recent one (port reallocation).
    #[arg(long, default_value_t = 5)]
    collisions: u32,
    /// Clock skew of eth0 against docker0, in milliseconds (may be negative).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    skew_ms: i64,
    /// Repeat each connection's exchanges (TCP requests, DNS queries, pings) K times:
    /// K times the packets per connection.
    #[arg(long, default_value_t = 1, value_name = "K")]
    exchanges: u32,
    /// Write this many connections, whatever the packets (instead of --packets).
    #[arg(long, value_name = "N", conflicts_with = "packets")]
    connections: Option<u64>,
    /// Skip truth.tsv.
    #[arg(long)]
    no_truth: bool,
    /// Also write rules.txt: the benchmark's kube-proxy style iptables-save rule set
    /// with this many services (2000 in `cargo bench`), for `correlate --rules`.
    #[arg(long)]
    kube_services: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=65_000).contains(&args.containers),
        "--containers must be 1 to 65000"
    );
    anyhow::ensure!(args.rate >= 1, "--rate must be at least 1");
    anyhow::ensure!(
        (1..=1000).contains(&args.exchanges),
        "--exchanges must be 1 to 1000"
    );
    anyhow::ensure!(
        args.collisions <= 1000,
        "--collisions is per mille (0 to 1000)"
    );
    let cfg = synth::Config {
        seed: args.seed,
        packets: args.packets,
        containers: args.containers,
        conns_per_sec: args.rate,
        collision_permille: args.collisions,
        skew_ns: args.skew_ms * 1_000_000,
        exchanges: args.exchanges,
        connections: args.connections,
        ..Default::default()
    };
    let started = Instant::now();
    let truth = synth::write_pair(&cfg, &args.out)?;
    if !args.no_truth {
        synth::write_truth(&truth, &args.out.join("truth.tsv"))?;
    }
    if let Some(n) = args.kube_services {
        std::fs::write(args.out.join("rules.txt"), kube::kube_rules(n))?;
    }
    let size = |name: &str| std::fs::metadata(args.out.join(name)).map_or(0, |m| m.len());
    let span = truth.conns.last().map_or(0, |c| c.start_ns - cfg.start_ns);
    println!(
        "{}: {} packets per side ({} and {} bytes), {} connections over {:.1}s \
         ({} tcp, {} udp, {} icmp), {} source ports reallocated; {:.1}s",
        args.out.display(),
        truth.packets,
        size("docker0.pcap"),
        size("eth0.pcap"),
        truth.conns.len(),
        span as f64 / 1e9,
        truth.count(synth::Proto::Tcp),
        truth.count(synth::Proto::Udp),
        truth.count(synth::Proto::Icmp),
        truth.reallocated(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
