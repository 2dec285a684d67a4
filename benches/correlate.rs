//! Throughput of natcheck's pipeline on a generated docker0/eth0 MASQUERADE pair
//! (`support/synth.rs`), in packets per second, stage by stage:
//!
//! - `decode`: one side's frames, already in memory, through `decode::decode`;
//! - `flows`: one capture file read into its flow table (`natcheck flows` without the
//!   output), then both files (`flows::read_all`, one rayon task per file);
//! - `correlate`: reading both files into correlation records, the join and path
//!   building on records already read, the whole of `correlate::run`, the same with
//!   the audit (`natcheck correlate` without the output), and `correlate::run` on one
//!   thread.
//!
//! - `rules`: the whole pipeline again with `--rules` a kube-proxy style rule set of
//!   22 000 rules (2 000 services with three endpoints and a NodePort each, Docker's
//!   masquerade), every translated connection walked through it: the cost of rule
//!   attribution, next to `correlate/run_audit`.
//!
//! - `threads`: each stage on one thread and on two (rayon pools of that size):
//!   reading both files into flows, into correlation records, the join, the audit
//!   with the report model (`pipeline::run`), and writing the JSON report; the
//!   speedup of a second core, stage by stage.
//!
//! - `identical`: `correlate::run` on one UDP flow of N identical packets (the same
//!   payload, IPv4 ID 0: one fingerprint for all) at each of two points, masqueraded
//!   between them, for N = 25 000, 50 000 and 100 000: the time per packet stays the
//!   same as N doubles (each packet pairs with its nearest unused twin, not by a scan
//!   of all of them).
//!
//! - `unanswered`: the whole pipeline with the audit on N one-datagram UDP connections
//!   from one container subnet to one collector, every other one masqueraded and the
//!   rest never leaving the host (a masquerade that misses, a full conntrack table), for
//!   N = 4 000, 8 000 and 16 000: each lost connection is a finding that names the
//!   connections that went the way it should have, and the findings of a failing host
//!   come by the thousand, so the time per connection stays the same as N doubles.
//!
//! - `exhausted`: the whole pipeline with `--rules` on a MASQUERADE whose port range
//!   (4 096 ports) is held by as many open TCP connections to one server, and N new
//!   connections to it whose SYNs (three each) never leave the host, for N = 1 000,
//!   2 000 and 4 000: one `snat-port-exhaustion` finding names them all, and the time
//!   per lost connection stays the same as N doubles (the held tuples are counted in
//!   one sweep, not asked of every holder for every lost connection).
//!
//! Files are read through the page cache: this measures CPU, not disk.
//! `bench/compare.sh` measures the binary end to end, beside tshark and tcpdump.
//!
//! Size: `NATCHECK_BENCH_PACKETS` packets per side (default 200 000, about 115 MB per
//! file). Under `cargo test --benches` (criterion's test mode, one run per benchmark)
//! the pair is small so that the check stays quick.

#[path = "support/kube.rs"]
mod kube;
#[path = "support/synth.rs"]
mod synth;

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{black_box, BatchSize, Criterion, Throughput};
use natcheck::capture::{InputSpec, ReadOptions};
use natcheck::correlate::{self, points, Config};
use natcheck::report::json::Json;
use natcheck::report::Render;
use natcheck::{decode, flows, pipeline};

/// LINKTYPE_ETHERNET: what the generator writes.
const ETHERNET: u32 = 1;

/// Packets per side in benchmark mode, unless `NATCHECK_BENCH_PACKETS` says otherwise.
const DEFAULT_PACKETS: u64 = 200_000;
/// Packets per side in test mode: enough for every kind of connection and a few
/// reallocations, small enough to run unoptimised in a second or two.
const TEST_PACKETS: u64 = 5_000;

/// The generated pair, on disk and (one side) in memory, removed when dropped.
struct Pair {
    dir: PathBuf,
    specs: Vec<InputSpec>,
    /// Packets per side.
    packets: u64,
    docker0_frames: synth::Frames,
}

impl Pair {
    /// `natcheck correlate` on the pair, with the default options.
    fn whole_run(&self) -> pipeline::Config {
        pipeline::Config {
            captures: self.specs.clone(),
            ..pipeline::Config::default()
        }
    }

    fn generate(packets: u64) -> Pair {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("natcheck-bench-{}", std::process::id()));
        let cfg = synth::Config {
            packets,
            ..synth::Config::default()
        };
        let truth = synth::write_pair(&cfg, &dir).expect("write the generated pair");
        let (docker0_frames, _) = synth::frames(&cfg, synth::Side::Docker0);
        eprintln!(
            "bench input: {} packets per side, {} connections, {} bytes per file",
            truth.packets,
            truth.conns.len(),
            std::fs::metadata(dir.join("eth0.pcap")).map_or(0, |m| m.len())
        );
        let specs = ["docker0.pcap", "eth0.pcap"]
            .iter()
            .map(|name| InputSpec {
                label: None,
                path: dir.join(name),
                prefix: None,
            })
            .collect();
        Pair {
            dir,
            specs,
            packets: truth.packets,
            docker0_frames,
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench_decode(c: &mut Criterion, pair: &Pair) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(pair.packets));
    g.bench_function("ethernet", |b| {
        b.iter(|| {
            let mut ok = 0u64;
            for frame in pair.docker0_frames.iter() {
                let len = frame.len() as u32;
                ok += u64::from(decode::decode(ETHERNET, black_box(frame), len).is_ok());
            }
            assert_eq!(ok, pair.packets, "every generated frame decodes");
            ok
        })
    });
    g.finish();
}

fn bench_flows(c: &mut Criterion, pair: &Pair) {
    let opts = ReadOptions::default();
    let mut g = c.benchmark_group("flows");
    g.sample_size(10);
    g.throughput(Throughput::Elements(pair.packets));
    g.bench_function("read_one", |b| {
        b.iter(|| flows::read_input_flows(&pair.specs[1], &opts, |_, _, _, _| {}))
    });
    g.throughput(Throughput::Elements(2 * pair.packets));
    g.bench_function("read_all", |b| {
        b.iter(|| flows::read_all(&pair.specs, &opts))
    });
    g.finish();
}

fn bench_correlate(c: &mut Criterion, pair: &Pair) {
    let opts = ReadOptions::default();
    let config = Config::default();
    let whole_run = pair.whole_run();
    // Checked once, outside the measurements: the benchmark must time the real job.
    let whole = correlate::run(&pair.specs, &opts, config.clone());
    assert!(
        whole.inputs.iter().all(|i| i.warnings.is_empty()),
        "warnings reading the generated pair"
    );
    let paired = whole
        .connections
        .iter()
        .filter(|c| c.hops.len() == 2)
        .count();
    assert_eq!(
        paired,
        whole.connections.len(),
        "every generated connection is seen at both points"
    );
    drop(whole);

    let mut g = c.benchmark_group("correlate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * pair.packets));
    g.bench_function("read_points", |b| {
        b.iter(|| points::read_points(&pair.specs, &opts))
    });
    let (pts, inputs) = points::read_points(&pair.specs, &opts);
    g.bench_function("join", |b| {
        b.iter_batched(
            || (pts.clone(), inputs.clone()),
            |(pts, inputs)| correlate::correlate(pts, inputs, config.clone()),
            BatchSize::PerIteration,
        )
    });
    drop((pts, inputs));
    g.bench_function("run", |b| {
        b.iter(|| correlate::run(&pair.specs, &opts, config.clone()))
    });
    // The library entry point: correlate, audit and the report model.
    // Its result is dropped outside the measurement, as `natcheck correlate` exits
    // without freeing it.
    g.bench_function("run_audit", |b| {
        b.iter_with_large_drop(|| pipeline::run(&whole_run).expect("the generated pair reads"))
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    g.bench_function("run_1_thread", |b| {
        b.iter(|| one.install(|| correlate::run(&pair.specs, &opts, config.clone())))
    });
    g.finish();
}

fn bench_threads(c: &mut Criterion, pair: &Pair) {
    let opts = ReadOptions::default();
    let config = Config::default();
    let whole_run = pair.whole_run();
    let (pts, inputs) = points::read_points(&pair.specs, &opts);
    let model = pipeline::run(&whole_run).expect("the generated pair reads");
    let mut g = c.benchmark_group("threads");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * pair.packets));
    for n in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("a thread pool");
        g.bench_function(format!("read_all/{n}"), |b| {
            b.iter(|| pool.install(|| flows::read_all(&pair.specs, &opts)))
        });
        g.bench_function(format!("read_points/{n}"), |b| {
            b.iter(|| pool.install(|| points::read_points(&pair.specs, &opts)))
        });
        g.bench_function(format!("join/{n}"), |b| {
            b.iter_batched(
                || (pts.clone(), inputs.clone()),
                |(pts, inputs)| pool.install(|| correlate::correlate(pts, inputs, config.clone())),
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("run_audit/{n}"), |b| {
            b.iter_with_large_drop(|| {
                pool.install(|| pipeline::run(&whole_run).expect("the generated pair reads"))
            })
        });
        g.bench_function(format!("json/{n}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    let mut out = std::io::sink();
                    Json.render(&model, &mut out).expect("written")
                })
            })
        });
    }
    g.finish();
}

fn bench_rules(c: &mut Criterion, pair: &Pair) {
    let path = pair.dir.join("rules.txt");
    std::fs::write(&path, kube::kube_rules(2_000)).expect("write the rule set");
    let cfg = pipeline::Config {
        rules: vec![path.to_string_lossy().into_owned()],
        ..pair.whole_run()
    };
    // Checked once, outside the measurements: every translation is attributed.
    let m = pipeline::run(&cfg).expect("the generated pair and rules read");
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let walked = m.audit.attributions.len();
    assert!(walked > 0, "connections walked through the rules");
    assert!(
        m.audit.attributions.iter().all(|a| a.chosen.is_some()),
        "every walk agrees with the wire"
    );
    drop(m);
    let mut g = c.benchmark_group("rules");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * pair.packets));
    g.bench_function("run_audit_rules_20k", |b| {
        b.iter_with_large_drop(|| pipeline::run(&cfg).expect("reads"))
    });
    // The same rules without a MASQUERADE rule: a dump that explains no translation
    // (as one from another host, or from an IPVS or eBPF host, would), so every
    // connection is asked whether any rule could make it (`not-netfilter`).
    let path = pair.dir.join("rules-no-masquerade.txt");
    let text: String = (kube::kube_rules(2_000).lines())
        .filter(|l| !l.contains("MASQUERADE"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, text).expect("write the rule set");
    let cfg = pipeline::Config {
        rules: vec![path.to_string_lossy().into_owned()],
        ..pair.whole_run()
    };
    let m = pipeline::run(&cfg).expect("the generated pair and rules read");
    let beyond = m.audit.findings.iter();
    let beyond = beyond
        .filter(|f| f.code.as_str() == "not-netfilter")
        .count();
    assert!(
        beyond > 0 && beyond == m.audit.attributions.len(),
        "every walked connection beyond the rules: {beyond}"
    );
    drop(m);
    g.bench_function("run_audit_rules_20k_unexplained", |b| {
        b.iter_with_large_drop(|| pipeline::run(&cfg).expect("reads"))
    });
    g.finish();
}

/// Writes `frames` (time in nanoseconds, Ethernet frame) to a pcap file at `path`.
fn write_capture(path: PathBuf, frames: impl Iterator<Item = (u64, Vec<u8>)>) -> InputSpec {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut w = PcapWriter::with_header(file, PcapHeader::default()).expect("header");
    for (ts, frame) in frames {
        let (ts, len) = (Duration::from_nanos(ts), frame.len() as u32);
        let packet = PcapPacket::new(ts, len, &frame).expect("a valid packet");
        w.write_packet(&packet).expect("write a frame");
    }
    InputSpec {
        label: None,
        path,
        prefix: None,
    }
}

/// Writes `docker0.pcap` and `eth0.pcap` into `dir`: `n` identical UDP heartbeats
/// (IPv4 ID 0, one payload) 10 µs apart from a container, and the same packets
/// masqueraded 25 µs later on the uplink.
fn identical_pair(dir: &Path, n: u64) -> Vec<InputSpec> {
    std::fs::create_dir_all(dir).expect("a directory for the identical pair");
    let side = |name: &str, src: [u8; 4], delay_ns: u64| {
        let frames = (0..n).map(|i| {
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(src, [198, 51, 100, 7], 64)
                .udp(40_000, 9_999)
                .write(&mut frame, b"heartbeat heartbeat heartbeat")
                .expect("build a frame");
            (1_000_000_000_000 + i * 10_000 + delay_ns, frame)
        });
        write_capture(dir.join(name), frames)
    };
    vec![
        side("docker0.pcap", [172, 17, 0, 2], 0),
        side("eth0.pcap", [203, 0, 113, 1], 25_000),
    ]
}

fn bench_identical(c: &mut Criterion, dir: &Path, sizes: &[u64]) {
    let opts = ReadOptions::default();
    let mut g = c.benchmark_group("identical");
    g.sample_size(10);
    for &n in sizes {
        let specs = identical_pair(&dir.join(format!("identical-{n}")), n);
        // Checked once, outside the measurements: one connection, every packet paired.
        let once = correlate::run(&specs, &opts, Config::default());
        assert_eq!(once.connections.len(), 1);
        let link = &once.connections[0].links[0];
        assert_eq!(link.evidence.matched_fwd, n, "every packet paired");
        drop(once);
        g.throughput(Throughput::Elements(2 * n));
        g.bench_function(format!("run_{n}"), |b| {
            b.iter(|| correlate::run(&specs, &opts, Config::default()))
        });
    }
    g.finish();
}

/// Writes `docker0.pcap` and `eth0.pcap` into `dir`: `n` UDP datagrams 100 µs apart,
/// each a connection of its own from a container of one /24 to a collector, and on the
/// uplink, masqueraded 30 µs later, every other one.
fn unanswered_pair(dir: &Path, n: u64) -> Vec<InputSpec> {
    std::fs::create_dir_all(dir).expect("a directory for the unanswered pair");
    let side = |name: &str, uplink: bool| {
        let frames = (0..n).filter(|i| !uplink || i % 2 == 0).map(|i| {
            let container = [172, 17, 0, 2 + (i % 200) as u8];
            let src = if uplink { [203, 0, 113, 1] } else { container };
            let sport = 30_000 + (i % 30_000) as u16;
            let mut ip = etherparse::Ipv4Header::new(
                0,
                64,
                etherparse::IpNumber::UDP,
                src,
                [198, 51, 100, 7],
            )
            .expect("an IPv4 header");
            ip.identification = i as u16;
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
                .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
                .udp(sport, 8125)
                .write(&mut frame, format!("requests.{i}:1|c").as_bytes())
                .expect("build a frame");
            let delay = if uplink { 30_000 } else { 0 };
            (1_000_000_000_000 + i * 100_000 + delay, frame)
        });
        write_capture(dir.join(name), frames)
    };
    vec![side("docker0.pcap", false), side("eth0.pcap", true)]
}

fn bench_unanswered(c: &mut Criterion, dir: &Path, sizes: &[u64]) {
    let mut g = c.benchmark_group("unanswered");
    g.sample_size(10);
    for &n in sizes {
        let run = pipeline::Config {
            captures: unanswered_pair(&dir.join(format!("unanswered-{n}")), n),
            ..pipeline::Config::default()
        };
        // Checked once, outside the measurements: every connection that did not leave
        // while the uplink was capturing (all but the last) is a finding that names the
        // first of the n / 2 that did.
        let once = pipeline::run(&run).expect("the unanswered pair reads");
        let lost: Vec<_> = once
            .audit
            .findings
            .iter()
            .filter_map(|f| match &f.detail {
                natcheck::audit::Detail::Lost {
                    path_from,
                    path_from_total,
                    ..
                } => Some((path_from.len(), *path_from_total)),
                _ => None,
            })
            .collect();
        assert_eq!(
            lost.len() as u64,
            n / 2 - 1,
            "one finding a lost connection"
        );
        let want = (n / 2) as usize;
        assert!(
            lost.iter().all(|&l| l == (want.min(16), want)),
            "{:?}",
            lost.first()
        );
        drop(once);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("run_audit_{n}"), |b| {
            b.iter_with_large_drop(|| pipeline::run(&run).expect("the unanswered pair reads"))
        });
    }
    g.finish();
}

/// A TCP segment of the `exhausted` pair: SYN when `ack` is `None`, else SYN-ACK (`syn`)
/// or a bare ACK.
fn tcp_frame(
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    id: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
) -> Vec<u8> {
    let mut ip =
        etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, src, dst).expect("IPv4");
    ip.identification = id;
    let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .tcp(sport, dport, seq, 64_240);
    let b = match ack {
        None => b.syn(),
        Some(a) if syn => b.syn().ack(a),
        Some(a) => b.ack(a),
    };
    let mut frame = Vec::new();
    b.write(&mut frame, &[]).expect("build a frame");
    frame
}

/// Writes `docker0.pcap`, `eth0.pcap` and the rules into `dir`: `held` connections from
/// containers of 172.17.0.0/16 to 198.51.100.7:443, masqueraded to 203.0.113.1 with
/// every port of the rule's range (20000 up), opened and left open; then `lost` new
/// connections to the same server whose SYNs, sent three times a second apart, are
/// never seen on the uplink, which goes on capturing past them.
fn exhausted_pair(dir: &Path, held: u64, lost: u64) -> (Vec<InputSpec>, String) {
    std::fs::create_dir_all(dir).expect("a directory for the exhausted pair");
    let (nat, srv) = ([203, 0, 113, 1], ([198, 51, 100, 7], 443));
    let container = |i: u64| [172, 17, (i / 250 % 250) as u8, 2 + (i % 250) as u8];
    let (mut inside, mut uplink) = (Vec::new(), Vec::new());
    let t0 = 1_000_000_000_000;
    for i in 0..held {
        let t = t0 + i * 20_000;
        let (c, sport, port) = (container(i), 1024 + i as u16, 20_000 + i as u16);
        let (seq, sseq, id) = ((i * 2_654_435_761) as u32, (i * 40_503) as u32, i as u16);
        inside.push((t, tcp_frame((c, sport), srv, id, seq, None, false)));
        uplink.push((
            t + 30_000,
            tcp_frame((nat, port), srv, id, seq, None, false),
        ));
        let back = |to| tcp_frame(srv, to, !id, sseq, Some(seq + 1), true);
        uplink.push((t + 60_000, back((nat, port))));
        inside.push((t + 90_000, back((c, sport))));
        let ack = |from| tcp_frame(from, srv, id + 1, seq + 1, Some(sseq + 1), false);
        inside.push((t + 120_000, ack((c, sport))));
        uplink.push((t + 150_000, ack((nat, port))));
    }
    let t1 = t0 + held * 20_000 + 1_000_000_000;
    for j in 0..lost {
        let (c, sport, seq) = (
            container(j),
            40_000 + (j % 20_000) as u16,
            (j * 97_531) as u32,
        );
        for r in 0..3 {
            let t = t1 + j * 50_000 + r * 1_000_000_000;
            inside.push((
                t,
                tcp_frame((c, sport), srv, (j * 3 + r) as u16, seq, None, false),
            ));
        }
    }
    let tail = t1 + lost * 50_000 + 4_000_000_000;
    let other = ([198, 51, 100, 8], 443);
    uplink.push((tail, tcp_frame((nat, 19_999), other, 1, 1, None, false)));
    inside.sort_by_key(|f| f.0);
    uplink.sort_by_key(|f| f.0);
    let rules = dir.join("iptables.txt");
    std::fs::write(
        &rules,
        format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -p tcp \
             -j MASQUERADE --to-ports 20000-{}\nCOMMIT\n",
            20_000 + held - 1
        ),
    )
    .expect("write the rules");
    (
        vec![
            write_capture(dir.join("docker0.pcap"), inside.into_iter()),
            write_capture(dir.join("eth0.pcap"), uplink.into_iter()),
        ],
        rules.to_string_lossy().into_owned(),
    )
}

fn bench_exhausted(c: &mut Criterion, dir: &Path, held: u64, sizes: &[u64]) {
    let mut g = c.benchmark_group("exhausted");
    g.sample_size(10);
    for &n in sizes {
        let (captures, rules) = exhausted_pair(&dir.join(format!("exhausted-{n}")), held, n);
        let run = pipeline::Config {
            captures,
            rules: vec![rules],
            ..pipeline::Config::default()
        };
        // Checked once, outside the measurements: one finding, every port held, every
        // lost connection named.
        let once = pipeline::run(&run).expect("the exhausted pair reads");
        let found: Vec<_> = (once.audit.findings.iter())
            .filter_map(|f| match &f.detail {
                natcheck::audit::Detail::SnatPortExhaustion { held: h, lost, .. } => {
                    Some((*h, lost.len() as u64))
                }
                _ => None,
            })
            .collect();
        assert_eq!(found, [(held, n)], "one finding, the range full, all lost");
        drop(once);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("run_audit_{n}"), |b| {
            b.iter_with_large_drop(|| pipeline::run(&run).expect("the exhausted pair reads"))
        });
    }
    g.finish();
}

fn main() {
    // Criterion benchmarks only when cargo passes `--bench` (and not `--test`);
    // otherwise it runs every function once as a test.
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let packets = if benchmarking {
        std::env::var("NATCHECK_BENCH_PACKETS")
            .ok()
            .map(|v| {
                v.parse()
                    .expect("NATCHECK_BENCH_PACKETS is a number of packets")
            })
            .unwrap_or(DEFAULT_PACKETS)
    } else {
        TEST_PACKETS
    };
    let pair = Pair::generate(packets);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    bench_decode(&mut c, &pair);
    bench_flows(&mut c, &pair);
    bench_correlate(&mut c, &pair);
    bench_rules(&mut c, &pair);
    bench_threads(&mut c, &pair);
    let sizes: &[u64] = if benchmarking {
        &[25_000, 50_000, 100_000]
    } else {
        &[1_000, 2_000]
    };
    bench_identical(&mut c, &pair.dir, sizes);
    let sizes: &[u64] = if benchmarking {
        &[4_000, 8_000, 16_000]
    } else {
        &[400]
    };
    bench_unanswered(&mut c, &pair.dir, sizes);
    let (held, sizes): (u64, &[u64]) = if benchmarking {
        (4_096, &[1_000, 2_000, 4_000])
    } else {
        (256, &[100])
    };
    bench_exhausted(&mut c, &pair.dir, held, sizes);
    c.final_summary();
}
