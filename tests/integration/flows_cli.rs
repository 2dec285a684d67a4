//! `natcheck flows` against the real world: tshark's conversation tables on the lab
//! samples, the tcpdump test corpus (malformed on purpose), cut and compressed files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use natcheck::capture::{InputSpec, ReadOptions};
use natcheck::diag::Location;

use crate::util::*;

/// (proto, endpoint a, endpoint b) -> (packets a->b, packets b->a), endpoints sorted.
type Convs = BTreeMap<(String, String, String), (u64, u64)>;

fn insert(m: &mut Convs, proto: &str, a: String, b: String, ab: u64, ba: u64) {
    let (key, val) = if a <= b {
        ((proto.to_string(), a, b), (ab, ba))
    } else {
        ((proto.to_string(), b, a), (ba, ab))
    };
    let e = m.entry(key).or_insert((0, 0));
    e.0 += val.0;
    e.1 += val.1;
}

/// tshark's standard output for `args`, run from the crate root.
fn tshark(args: &[&str]) -> String {
    stdout(&run(std::process::Command::new("tshark")
        .args(args)
        .current_dir(root())))
}

fn tshark_convs(file: &str) -> Convs {
    let out = tshark(&[
        "-n",
        "-r",
        file,
        "-d",
        "udp.port==8472,vxlan",
        "-q",
        "-z",
        "conv,tcp",
        "-z",
        "conv,udp",
    ]);
    let mut m = Convs::new();
    let mut proto = "";
    for line in out.lines() {
        if line.starts_with("TCP Conversations") {
            proto = "tcp";
        } else if line.starts_with("UDP Conversations") {
            proto = "udp";
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() > 7 && t[1] == "<->" {
            // A <-> B  frames(<-) bytes unit  frames(->) bytes unit ...
            let ba: u64 = t[3].parse().expect("frames <-");
            let ab: u64 = t[6].parse().expect("frames ->");
            insert(&mut m, proto, t[0].to_string(), t[2].to_string(), ab, ba);
        }
    }
    m
}

/// natcheck's flows of `file` and tshark's conversations of it, both like
/// [`tshark_convs`]. tshark lists the outer UDP conversation of a tunnel beside the
/// conversations inside it, natcheck only the packets inside: the outer conversations
/// of the tunnels natcheck opened (its flows' `tunnel` and `reply_tunnel`) are left
/// out of tshark's, unless natcheck lists them as flows too (packets of them that
/// carried no IP).
fn both_convs(file: &str) -> (Convs, Convs) {
    both_convs_by(file, tshark_convs)
}

/// [`both_convs`], with tshark's conversations as `tshark` reads them from the file.
fn both_convs_by(file: &str, tshark: impl Fn(&str) -> Convs) -> (Convs, Convs) {
    let out = natcheck(&["flows", "--all", "--format", "json", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let got = convs_of(&doc);
    let outer = tunnel_convs(&doc);
    let mut want = tshark(file);
    want.retain(|k, _| got.contains_key(k) || !outer.contains_key(k));
    (want, got)
}

/// tshark's conversations of a `-i any` capture summed over its interfaces, each
/// read on its own, like [`tshark_convs`]. tshark puts IP fragments back together by
/// source, destination and identification whatever the interface: the fragments a
/// bridge forwards from one port to another, captured on both, make one datagram for
/// it, where natcheck reassembles them at each capture point.
fn per_interface(file: &str) -> Convs {
    let ifaces: BTreeSet<String> = tshark(&["-n", "-r", file, "-T", "fields", "-e", "sll.ifindex"])
        .lines()
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sum = Convs::new();
    for i in ifaces.iter().filter(|i| !i.is_empty()) {
        let part = dir.path().join(format!("if{i}.pcap"));
        let part = part.to_str().unwrap();
        tshark(&["-r", file, "-Y", &format!("sll.ifindex == {i}"), "-w", part]);
        for ((proto, a, b), (ab, ba)) in tshark_convs(part) {
            insert(&mut sum, &proto, a, b, ab, ba);
        }
    }
    sum
}

/// The outer UDP tuples of the tunnels a `natcheck.flows/1` document's flows were in,
/// keyed like [`Convs`].
fn tunnel_convs(doc: &serde_json::Value) -> Convs {
    let mut m = Convs::new();
    for p in doc["points"].as_array().expect("points") {
        for f in p["flows"].as_array().expect("flows") {
            for t in [&f["tunnel"], &f["reply_tunnel"]] {
                if t["sport"].is_u64() {
                    let a = format!("{}:{}", t["src"].as_str().unwrap(), t["sport"]);
                    let b = format!("{}:{}", t["dst"].as_str().unwrap(), t["dport"]);
                    insert(&mut m, "udp", a, b, 0, 0);
                }
            }
        }
    }
    m
}

/// The TCP and UDP flows of a `natcheck.flows/1` document, like [`tshark_convs`].
fn convs_of(doc: &serde_json::Value) -> Convs {
    let mut m = Convs::new();
    for p in doc["points"].as_array().expect("points") {
        for f in p["flows"].as_array().expect("flows") {
            let proto = f["proto"].as_str().unwrap();
            if proto != "tcp" && proto != "udp" {
                continue;
            }
            let a = format!("{}:{}", f["src"].as_str().unwrap(), f["sport"]);
            let b = format!("{}:{}", f["dst"].as_str().unwrap(), f["dport"]);
            insert(
                &mut m,
                proto,
                a,
                b,
                f["packets_fwd"].as_u64().unwrap(),
                f["packets_rev"].as_u64().unwrap(),
            );
        }
    }
    m
}

#[test]
fn flow_tables_equal_tshark_conversations_on_every_sample() {
    if !have("tshark") {
        return skip("tshark is not installed (.ci/run installs it): no flow table compared");
    }
    let mut compared = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("samples"))
        .expect("samples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("docker0.pcap").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        for pcap in files_with_ext(&dir, "pcap") {
            let rel = pcap
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let (mut want, mut got) = both_convs(&rel);
            if got != want && rel.ends_with("any.pcap") {
                (want, got) = both_convs_by(&rel, per_interface);
            }
            assert_eq!(
                got, want,
                "flow table of {rel} differs from tshark's conversations"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 2,
        "expected lab samples to compare, found {compared} captures"
    );
}

/// Captures of the shared corpora (`../shared/corpus/`) on which natcheck's flow table
/// and tshark's TCP and UDP conversations must be equal, small enough to compare in a
/// few seconds: every link type natcheck reads, VLAN tags, IPv4 options, IPv6, IP
/// fragments, and the captures whose encapsulations natcheck once skipped. docs/corpus.md
/// says why the captures left out differ; `bench/corpus_vs_tshark.py` compares them all.
const CORPUS_AGREES: &[&str] = &[
    // Ethernet, IPv4: TCP, UDP, both, many connections, IP options, QUIC.
    "suricata-verify/irc/input.pcap",
    "suricata-verify/firewall/tcp-session-syn-flood-drop-precedence/input.pcap",
    "suricata-verify/ssh-hassh/input.pcap",
    "suricata-verify/dns-eve-type-filtering/test.pcap",
    "suricata-verify/ftp/ftp-download-passive/input.pcap",
    "suricata-verify/ipopts-esec/test.pcap",
    "suricata-verify/ja4-quic/input.pcap",
    "tcpdump-tests/bgp-4byte-asn.pcap",
    "tcpdump-tests/ntp.pcap",
    // Ethernet, IPv6 (and IPv4 beside it).
    "suricata-verify/bug-4571-02/ipv6.pcap",
    "tcpdump-tests/dhcpv6-ntp-server.pcap",
    "tcpdump-tests/dhcpv4v6-rfc5970-rfc8572.pcap",
    // 802.1Q; 802.1BR E-Tag.
    "suricata-verify/tcp-mss-keyword/input.pcap",
    "suricata-verify/ipv6-hdr-keyword-01/input.pcap",
    "tcpdump-tests/ldp-common-session.pcap",
    "suricata-verify/decode-etag-01/input.pcap",
    // Linux cooked v1 (pcap and pcapng) and v2.
    "tcpdump-tests/ldp-infinite-loop.pcap",
    "tcpdump-tests/RADIUS-RFC5176-2.pcap",
    "tcpdump-tests/babel.pcap",
    "tcpdump-tests/bgp-orf.pcapng",
    "suricata-verify/decode-sll2-01/input.pcap",
    // Raw IP (101), IPV4 (228), IPV6 (229); BSD loopback.
    "suricata-verify/detect-bytemath-01/input.pcap",
    "tcpdump-tests/LINKTYPE_RAW_ipv4.pcap",
    "tcpdump-tests/LINKTYPE_RAW_ipv6.pcap",
    "tcpdump-tests/LINKTYPE_IPV4.pcap",
    "tcpdump-tests/LINKTYPE_IPV6.pcap",
    "suricata-verify/http2-range/http2-range.pcap",
    "suricata-verify/http-ipv6/input.pcap",
    // IP fragments, IPv4 and IPv6, behind VLAN tags, raw, PPP.
    "suricata-verify/defrag/bug-6887-defrag-eth-vlan-ipv4-tcp-syn/frag-eth-vlan-ip-tcp-syn.pcap",
    "suricata-verify/defrag/bug-6887-defrag-eth-vlan-ipv6-tcp/frag-eth-vlan-ipv6-tcp.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ppp-ipv4-tcp-syn/frag-ppp-ip-tcp-syn.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ppp-ipv6-tcp/frag-ppp-ipv6-tcp.pcap",
    "suricata-verify/drop-protocol-change/input.pcap",
    // PPPoE; MPLS over Ethernet and PPP (with ICMP errors quoting UDP); Cisco HDLC;
    // NFLOG.
    "suricata-verify/bug-4810/pppoe-session-http.pcap",
    "tcpdump-tests/tok2str-oobr-2.pcap",
    "tcpdump-tests/mpls-traceroute.pcap",
    "tcpdump-tests/lspping-fec-ldp.pcap",
    "suricata-verify/decode-chdlc-01/hdlc-http_1tx.pcap",
    "tcpdump-tests/nflog.pcap",
    // An IPv4 total length below the header: malformed for both.
    "tcpdump-tests/ipv4_invalid_total_length_2.pcap",
    // Tunnels, compared by the packets inside (see `TUNNELS_OPENED`).
    "suricata-verify/vxlan-decoder-03/vxlan.pcap",
    "tcpdump-tests/vxlan_port_8472.pcap",
    "tcpdump-tests/geneve.pcap",
    "tcpdump-tests/gso-ipv6-geneve-ipv6.pcap",
    "suricata-verify/bug-5633-gre-02/gre-sample.pcap",
    "suricata-verify/bug-2576-02/temp1.pcap",
    "suricata-verify/bug-5437-01/input.pcap",
    "tcpdump-tests/erspan-type-ii-2.pcap",
    "tcpdump-tests/erspan-type-iii-ft-0.pcap",
    "suricata-verify/bug-4571-01/ipv4_over_ipv4.pcap",
    "suricata-verify/bug-4571-04/ipv6_over_ipv4.pcap",
    "suricata-verify/bug-4571-06/ipv4_over_ipv6.pcap",
    "suricata-verify/bug-4571-03/ipv6_over_ipv6.pcap",
    "suricata-verify/decode-teredo-01/input.pcap",
];

/// Runs `f` on every item on a few threads; the results keep the items' order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                out.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item mapped"))
        .collect()
}

#[test]
fn flow_tables_equal_tshark_conversations_on_a_corpus_subset() {
    if !have("tshark") {
        return skip("tshark is not installed (.ci/run installs it): no corpus capture compared");
    }
    if corpus_dir().is_none() || suricata_dir().is_none() {
        return skip(
            "../shared/corpus/{tcpdump-tests,suricata-verify} are not beside the project: \
             no corpus capture compared",
        );
    }
    let base = root().join("../shared/corpus");
    let start = Instant::now();
    let results = parallel_map(CORPUS_AGREES, |rel| {
        let path = base.join(rel);
        assert!(path.is_file(), "{rel} is not in the corpus");
        let path = path.to_string_lossy().into_owned();
        both_convs(&path)
    });
    let differing: Vec<String> = CORPUS_AGREES
        .iter()
        .zip(&results)
        .filter(|(_, (want, got))| want != got)
        .map(|(rel, (want, got))| format!("{rel}:\n  tshark   {want:?}\n  natcheck {got:?}"))
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} corpus captures differ from tshark's conversations:\n{}",
        differing.len(),
        CORPUS_AGREES.len(),
        differing.join("\n")
    );
    let convs: usize = results.iter().map(|(want, _)| want.len()).sum();
    assert!(convs > 300, "only {convs} conversations compared");
    eprintln!(
        "corpus subset: {} captures, {convs} conversations equal in {:?}",
        CORPUS_AGREES.len(),
        start.elapsed()
    );
}

/// Tunnel captures of the corpora and the tunnel kinds natcheck must find in them: the
/// comparison with tshark alone cannot tell an opened tunnel whose packets carry no
/// TCP or UDP from an unopened one (both tools then list the outer conversation).
const TUNNELS_OPENED: &[(&str, &[&str])] = &[
    ("suricata-verify/vxlan-decoder-03/vxlan.pcap", &["vxlan"]),
    ("tcpdump-tests/vxlan_port_8472.pcap", &["vxlan"]),
    ("tcpdump-tests/geneve.pcap", &["geneve"]),
    ("suricata-verify/bug-5633-gre-02/gre-sample.pcap", &["gre"]),
    ("tcpdump-tests/erspan-type-i-4.pcap", &["erspan", "gre"]),
    ("tcpdump-tests/erspan-type-ii-2.pcap", &["erspan"]),
    ("tcpdump-tests/erspan-type-iii-ft-0.pcap", &["erspan"]),
    ("suricata-verify/bug-4571-01/ipv4_over_ipv4.pcap", &["ipip"]),
    ("suricata-verify/bug-4571-04/ipv6_over_ipv4.pcap", &["sit"]),
    (
        "suricata-verify/bug-4571-06/ipv4_over_ipv6.pcap",
        &["ip4ip6"],
    ),
    (
        "suricata-verify/bug-4571-03/ipv6_over_ipv6.pcap",
        &["ip6ip6"],
    ),
    ("suricata-verify/decode-teredo-01/input.pcap", &["teredo"]),
];

#[test]
fn tunnels_of_every_kind_are_opened_in_the_corpus() {
    if corpus_dir().is_none() || suricata_dir().is_none() {
        return skip("../shared/corpus/{tcpdump-tests,suricata-verify} are not beside the project");
    }
    let base = root().join("../shared/corpus");
    for (rel, want) in TUNNELS_OPENED {
        let path = base.join(rel).to_string_lossy().into_owned();
        let out = natcheck(&["flows", "--all", "--format", "json", &path]);
        assert_eq!(out.status.code(), Some(0), "{rel}: {}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let mut kinds: Vec<&str> = doc["points"]
            .as_array()
            .expect("points")
            .iter()
            .flat_map(|p| p["flows"].as_array().expect("flows"))
            .filter_map(|f| f["tunnel"]["kind"].as_str())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(&kinds, want, "{rel}");
    }
}

#[test]
fn vxlan_ports_are_a_flag_and_hops_show_their_tunnel() {
    let Some(dir) = corpus_dir() else {
        return skip("../shared/corpus/tcpdump-tests is not beside the project");
    };
    let flows = |path: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["flows", "--all", "--format", "json"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        let out = natcheck(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let f = doc["points"][0]["flows"].as_array().expect("flows").clone();
        f.iter()
            .map(|f| {
                (
                    f["proto"].clone(),
                    f["dport"].clone(),
                    f["tunnel"]["kind"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Port 8472 is VXLAN by default; naming only 4789 leaves it plain UDP.
    let path = dir.join("vxlan_port_8472.pcap");
    assert!(flows(&path, &[]).iter().any(|f| f.2 == "vxlan"));
    let plain = flows(&path, &["--vxlan-port", "4789"]);
    assert!(plain.iter().all(|f| f.2.is_null()), "{plain:?}");
    assert!(
        plain.iter().any(|f| f.0 == "udp" && f.1 == 8472),
        "{plain:?}"
    );

    // correlate's hops carry the tunnel, with the replies' when it is another.
    let path = dir.join("geneve.pcap");
    let out = natcheck(&["correlate", "--format", "json", path.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let hops: Vec<&serde_json::Value> = doc["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .flat_map(|c| c["hops"].as_array().expect("hops"))
        .collect();
    let ssh = hops
        .iter()
        .find(|h| h["dport"] == 22)
        .expect("the ssh connection");
    assert_eq!(ssh["tunnel"]["kind"], "geneve", "{ssh}");
    assert_eq!(ssh["tunnel"]["dport"], 6081, "{ssh}");
    assert_eq!(ssh["reply_tunnel"]["dport"], 6081, "{ssh}");
    assert_ne!(ssh["tunnel"]["id"], serde_json::Value::Null, "{ssh}");
}

#[test]
fn qinq_and_triple_tagged_frames_decode() {
    // The corpora's only frames with stacked VLAN tags carry ICMP, which the TCP/UDP
    // comparison does not see: every frame must decode.
    let Some(dir) = suricata_dir() else {
        return skip("../shared/corpus/suricata-verify is not beside the project");
    };
    let path = dir.join("eve-flow-vlan-02/input.pcap");
    let out = natcheck(&["flows", "--all", "--format", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let input = &doc["inputs"][0];
    assert_eq!(
        (&input["frames"], &input["packets"]),
        (&3.into(), &3.into()),
        "{input}"
    );
}

#[test]
fn every_corpus_capture_reads_without_panic_or_hang() {
    let Some(dir) = corpus_dir() else {
        return skip("../shared/corpus/tcpdump-tests is not beside the project: no corpus walk");
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    files.sort();
    assert!(files.len() > 800, "corpus has {} captures", files.len());
    let opts = ReadOptions::default();
    let (mut frames, mut packets, mut warned) = (0u64, 0u64, 0usize);
    for f in &files {
        let spec = InputSpec {
            label: None,
            path: f.clone(),
            prefix: None,
        };
        let start = Instant::now();
        let r = natcheck::flows::read_input_flows(&spec, &opts, |_, _, _, _| {});
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} took {:?}",
            f.display(),
            start.elapsed()
        );
        frames += r.input.stats.frames;
        packets += r.input.stats.packets;
        for w in &r.input.warnings {
            warned += 1;
            // Every warning names the file, and where in it unless it is about the whole file.
            assert_eq!(w.source, f.display().to_string());
            if !w.message.starts_with("not a pcap") && !w.message.starts_with("empty") {
                assert!(
                    matches!(w.location, Location::Byte { .. })
                        || w.message.contains("cannot read"),
                    "unlocated warning for {}: {w}",
                    f.display()
                );
            }
        }
    }
    eprintln!(
        "corpus: {} files, {frames} frames, {packets} decoded packets, {warned} warnings",
        files.len()
    );
    // tcpdump reads every one of these files to the end; their trouble is inside the
    // packets, so natcheck must decode a fair share and locate nothing at file level.
    assert!(
        packets > 4_000,
        "decoded only {packets} of {frames} frames from the corpus"
    );
}

fn masquerade_docker0() -> Option<Vec<u8>> {
    scenario_dir("masquerade").map(|d| std::fs::read(d.join("docker0.pcap")).unwrap())
}

#[test]
fn capture_cut_mid_packet_keeps_earlier_flows_warns_and_exits_2() {
    let Some(bytes) = masquerade_docker0() else {
        panic!("samples/masquerade/docker0.pcap is missing");
    };
    let dir = tempdir();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let full = natcheck(&[
        "flows",
        "--format",
        "json",
        "samples/masquerade/docker0.pcap",
    ]);
    let out = natcheck(&["flows", "--format", "json", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cut.pcap: byte "), "{err}");
    assert!(err.contains("capture ends inside a packet"), "{err}");
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&full.stdout).unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    );
    let pa = a["points"][0]["packets"].as_u64().unwrap();
    let pb = b["points"][0]["packets"].as_u64().unwrap();
    assert!(
        pb + 1 == pa || pb == pa,
        "{pb} of {pa} packets survived the cut of the last packet"
    );
    assert!(!b["points"][0]["flows"].as_array().unwrap().is_empty());
    assert_eq!(b["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn gzip_and_stdin_read_like_the_plain_file() {
    let Some(bytes) = masquerade_docker0() else {
        panic!("samples/masquerade/docker0.pcap is missing");
    };
    let dir = tempdir();
    let gz = dir.join("docker0.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let plain = stdout(&natcheck(&["flows", "samples/masquerade/docker0.pcap"]));
    let zipped = natcheck(&["flows", gz.to_str().unwrap()]);
    assert_eq!(zipped.status.code(), Some(0));
    let normalise = |s: &str| {
        s.lines()
            .map(|l| {
                l.replace(gz.to_str().unwrap(), "SRC")
                    .replace("samples/masquerade/docker0.pcap", "SRC")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(normalise(&stdout(&zipped)), normalise(&plain));

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_natcheck"))
        .args(["flows", "docker0=-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        normalise(
            &stdout(&out)
                .replace("(-,", "(SRC,")
                .replace("\n-: ", "\nSRC: ")
        ),
        normalise(&plain),
        "stdin with a NAME= label reads like the file"
    );
}

#[test]
fn not_a_capture_is_a_located_warning_and_exit_2() {
    let out = natcheck(&["flows", "Cargo.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Cargo.toml: byte 0: not a pcap or pcapng capture"),
        "{}",
        stderr(&out)
    );
    let missing = natcheck(&["flows", "no/such/file.pcap"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no/such/file.pcap"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn output_is_identical_with_one_thread_or_many() {
    let files: Vec<String> = ["veth-c1.pcap", "docker0.pcap", "eth0.pcap"]
        .iter()
        .map(|f| sample(&format!("masquerade/{f}")))
        .collect();
    for cmd in ["flows", "correlate"] {
        let mut args = vec!["-j", "1", cmd, "--format", "json"];
        args.extend(files.iter().map(String::as_str));
        let one = natcheck(&args);
        args[1] = "4";
        let four = natcheck(&args);
        assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
        assert_eq!(
            stdout(&one),
            stdout(&four),
            "{cmd} output depends on the thread count"
        );
    }
}

/// A fresh temporary directory, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "natcheck-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A classic pcap (LINKTYPE_RAW, microseconds) of the given IP packets, one a second.
fn raw_pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut v = 0xa1b2c3d4u32.to_le_bytes().to_vec();
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    for x in [0u32, 0, 65535, 101] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    for (i, p) in packets.iter().enumerate() {
        for x in [i as u32 + 1, 0, p.len() as u32, p.len() as u32] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(p);
    }
    v
}

fn udp_datagram(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..len).map(|i| i as u8));
    u
}

fn v4_fragment(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&((offset / 8) as u16 | if more { 0x2000 } else { 0 }).to_be_bytes());
    h.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 2, 198, 51, 100, 10]);
    h.extend_from_slice(data);
    h
}

fn v6_packet(next: u8, src: u16, dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64, 0x20, 0x01, 0x0d, 0xb8]);
    h.extend_from_slice(&[0; 10]);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

fn v6_fragment(id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut f = vec![17, 0];
    f.extend_from_slice(&(((offset / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    let mut dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dst[15] = 2;
    v6_packet(44, 1, dst, &f)
}

#[test]
fn fragmented_datagrams_are_one_packet_in_their_flow() {
    let d = udp_datagram(40000, 53, 2000);
    let packets = vec![
        // IPv4, out of order: last, first, middle.
        v4_fragment(7, 1480, false, &d[1480..]),
        v4_fragment(7, 0, true, &d[..1480]),
        v4_fragment(7, 1480, false, &d[1480..]),
        // IPv6, in order, other boundaries.
        v6_fragment(99, 0, true, &d[..1232]),
        v6_fragment(99, 1232, false, &d[1232..]),
        // A fragment whose datagram never completes.
        v4_fragment(8, 800, true, &d[800..1600]),
        // Neighbour advertisement: control traffic.
        v6_packet(
            58,
            1,
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[136, 0, 0, 0, 0, 0, 0, 0],
        ),
    ];
    let dir = std::env::temp_dir().join(format!("natcheck-frag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frag.pcap");
    std::fs::write(&file, raw_pcap(&packets)).unwrap();
    let path = file.to_string_lossy().into_owned();
    let run = |all: bool| {
        let mut args = vec!["flows", "--format", "json", &path];
        if all {
            args.insert(1, "--all");
        }
        let out = natcheck(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let doc = run(false);
    let all = run(true);
    std::fs::remove_dir_all(&dir).unwrap();

    let input = &doc["inputs"][0];
    assert_eq!(input["frames"], 7);
    // The duplicate last IPv4 fragment completes nothing: it is counted as skipped.
    assert_eq!(input["packets"], 3, "{input}");
    assert_eq!(input["fragments"], 4, "{input}");
    assert_eq!(
        input["skipped"]["ip fragment: datagram never completed"], 2,
        "{input}"
    );
    assert_eq!(input["control_flows"]["frag"], 1, "{input}");
    let flows = doc["points"][0]["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2, "{flows:?}");
    for f in flows {
        assert_eq!(f["proto"], "udp");
        assert_eq!(
            (f["sport"].as_u64(), f["dport"].as_u64()),
            (Some(40000), Some(53))
        );
        assert_eq!(f["packets_fwd"], 1);
    }
    assert_eq!(flows[0]["bytes_fwd"], 20 + 8 + 2000);
    assert_eq!(flows[1]["bytes_fwd"], 40 + 8 + 2000);
    let listed = all["points"][0]["flows"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(all["inputs"][0].get("control_flows").is_none());
}
