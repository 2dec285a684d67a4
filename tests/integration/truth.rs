//! The translations `correlate` rebuilds from the captures alone, checked against the
//! kernel's own record of the same lab run: every connection of the event log
//! (`conntrack -E`, which holds each connection's NAT decision from its `[NEW]` on) and
//! every entry of the `conntrack -L` snapshot. Every NATed connection the wire carries
//! must be found with the kernel's translation, and no translation may be invented.
//! Checked for each sample as separate interface captures, as one pcapng, as one
//! `tcpdump -i any` capture, and with one capture's clock shifted.

use std::collections::{BTreeMap, BTreeSet};

use natcheck::capture::{IfNames, InputSpec, ReadOptions};
use natcheck::conntrack::{self, Implied};
use natcheck::correlate::{self, Config};
use natcheck::model::{NatChange, NatKind, Tuple};
use natcheck::report::fmt::tuple_proto;

use crate::util::*;

/// What one ORIGINAL tuple was translated to: (tuple after NAT, kind), one for each
/// entry the tuple had (a tuple used again after its entry expired is translated
/// afresh, perhaps otherwise).
type Translations = BTreeMap<Tuple, BTreeSet<(Tuple, NatKind)>>;

/// Every translation the kernel made, by ORIGINAL tuple.
fn kernel(scenario: &str) -> Translations {
    let mut out = BTreeMap::new();
    for file in ["events.txt", "conntrack.txt"] {
        let path = root().join("samples").join(scenario).join(file);
        let d = conntrack::read_path(path.to_str().unwrap()).unwrap();
        assert!(d.warnings.is_empty(), "{scenario}/{file}: {:?}", d.warnings);
        for e in d.all_entries() {
            let i = Implied::of(e, &Default::default());
            if i.is_nat() {
                out.entry(e.orig)
                    .or_insert_with(BTreeSet::new)
                    .insert((i.post, i.change.kind));
            }
        }
    }
    out
}

/// ORIGINAL → (tuple after NAT, kind) for every connection whose tuple changes
/// between its first and last hop on the wire, and for every `state-lost` finding's
/// new translation. ICMP errors are left out: they are
/// RELATED to the connection they quote and have no entry of their own (their outer
/// header is translated back along that connection's entry).
fn wire(specs: &[InputSpec], opts: &ReadOptions) -> Translations {
    let c = correlate::run(specs, opts, Config::default());
    let mut out = BTreeMap::new();
    for conn in &c.connections {
        if conn.hops.iter().any(|h| h.flow.icmp_error.is_some()) {
            continue;
        }
        let (Some(first), Some(last)) = (conn.hops.first(), conn.hops.last()) else {
            continue;
        };
        let kinds: Vec<NatKind> = conn
            .links
            .iter()
            .map(|l| l.change.kind)
            .filter(|k| *k != NatKind::None)
            .collect();
        if first.flow.tuple == last.flow.tuple {
            assert!(
                kinds.is_empty(),
                "{}: a translation undone on the path",
                conn.id
            );
            continue;
        }
        // One NAT hop, or two when a bridge with bridge netfilter shows the DNAT and
        // the uplink the SNAT of one translation.
        assert!(kinds.len() <= 2, "{}: {kinds:?}", conn.id);
        let kind = NatChange::between(&first.flow.tuple, &last.flow.tuple).kind;
        out.entry(first.flow.tuple)
            .or_insert_with(BTreeSet::new)
            .insert((last.flow.tuple, kind));
    }
    // A connection whose entry went while it was open and whose next segments NAT sent
    // on under another tuple (a new entry) is one connection and the flow that carried
    // it on, joined by the finding that names that second translation.
    for f in natcheck::audit::audit(&c, &Default::default(), Vec::new()).findings {
        if let natcheck::audit::Detail::StateLost { tuple, after, .. } = f.detail {
            let kind = NatChange::between(&tuple, &after).kind;
            out.entry(tuple)
                .or_insert_with(BTreeSet::new)
                .insert((after, kind));
        }
    }
    out
}

fn specs(paths: &[String]) -> Vec<InputSpec> {
    paths.iter().map(|p| p.parse().unwrap()).collect()
}

fn check(scenario: &str, form: &str, specs: &[InputSpec], opts: &ReadOptions) {
    let truth = kernel(scenario);
    let seen = wire(specs, opts);
    assert!(
        !seen.is_empty(),
        "{scenario} ({form}): no translation found"
    );
    for (orig, got) in seen.iter().flat_map(|(o, g)| g.iter().map(move |g| (o, g))) {
        // A bridge with bridge netfilter shows a container's packets already DNATed:
        // from there on the wire carries the rest of one kernel translation, from the
        // same source to the same end.
        let downstream = truth.values().flatten().any(|(post, _)| post == &got.0)
            && truth
                .keys()
                .any(|o| (o.proto, o.src, o.sport) == (orig.proto, orig.src, orig.sport));
        if downstream && !truth.contains_key(orig) {
            continue;
        }
        let want = truth.get(orig).unwrap_or_else(|| {
            panic!(
                "{scenario} ({form}): invented translation {} => {}",
                tuple_proto(orig),
                tuple_proto(&got.0)
            )
        });
        assert!(
            want.contains(got),
            "{scenario} ({form}): {} => {}, the kernel's: {want:?}",
            tuple_proto(orig),
            tuple_proto(&got.0)
        );
    }
    // Every kernel translation whose inside and outside tuples are on the wire, at two
    // points, was found. (Both at one point only is a bridge with bridge netfilter
    // captured without its port: it shows the initiator's packets translated and the
    // replies already translated back, two halves nothing at another point joins.)
    let c = correlate::run(specs, opts, Config::default());
    let points_of = |t: &Tuple| -> BTreeSet<usize> {
        c.connections
            .iter()
            .flat_map(|k| &k.hops)
            .filter(|h| h.flow.tuple == *t)
            .map(|h| h.point)
            .collect()
    };
    for (orig, want) in truth
        .iter()
        .flat_map(|(o, w)| w.iter().map(move |w| (o, w)))
    {
        let (before, after) = (points_of(orig), points_of(&want.0));
        let on_wire = !before.is_empty() && !after.is_empty() && before.union(&after).count() > 1;
        if on_wire {
            assert!(
                seen.get(orig).is_some_and(|s| s.contains(want)),
                "{scenario} ({form}): missed {} => {}",
                tuple_proto(orig),
                tuple_proto(&want.0)
            );
        }
    }
}

fn scenarios() -> Vec<String> {
    SCENARIOS.iter().map(|s| s.to_string()).collect()
}

fn dir(s: &str) -> String {
    root().join("samples").join(s).display().to_string()
}

#[test]
fn separate_interface_captures() {
    for s in scenarios() {
        let d = dir(&s);
        check(
            &s,
            "docker0+eth0",
            &specs(&[format!("{d}/docker0.pcap"), format!("{d}/eth0.pcap")]),
            &ReadOptions::default(),
        );
        check(
            &s,
            "veth+docker0+eth0",
            &specs(&[
                format!("{d}/veth-c1.pcap"),
                format!("{d}/docker0.pcap"),
                format!("{d}/eth0.pcap"),
            ]),
            &ReadOptions::default(),
        );
    }
}

/// A recording's every interface in one pcapng, and as one `-i any` capture named by
/// its `links.txt`.
fn pcapng_and_any(s: &str) {
    let d = dir(s);
    check(
        s,
        "multi.pcapng",
        &specs(&[format!("{d}/multi.pcapng")]),
        &ReadOptions::default(),
    );
    let links = std::fs::read_to_string(format!("{d}/links.txt")).unwrap();
    let opts = ReadOptions {
        ifnames: IfNames::parse(&links).unwrap(),
        ..ReadOptions::default()
    };
    check(s, "any.pcap", &specs(&[format!("{d}/any.pcap")]), &opts);
}

#[test]
fn one_pcapng_and_one_any_capture() {
    for s in scenarios() {
        pcapng_and_any(&s);
    }
}

/// A node whose pods hang off routed veths, with no bridge (`routed-pods`, Calico's
/// layout): the pods' links and the uplink as files, as one pcapng and as `-i any`.
#[test]
fn routed_pod_links() {
    let s = "routed-pods";
    let d = dir(s);
    let files = ["cali-c1", "cali-c2", "eth0"].map(|p| format!("{d}/{p}.pcap"));
    check(
        s,
        "cali-c1+cali-c2+eth0",
        &specs(&files),
        &ReadOptions::default(),
    );
    pcapng_and_any(s);
}

#[test]
fn shifted_clock() {
    let d = dir("masquerade");
    let shifted = format!("{d}/shifted/eth0.pcap");
    assert!(std::path::Path::new(&shifted).is_file());
    check(
        "masquerade",
        "eth0 shifted",
        &specs(&[format!("{d}/docker0.pcap"), shifted]),
        &ReadOptions::default(),
    );
}

/// The recorder that made every sample still parses: a scenario added or merged into
/// `samples/lab/record.sh` cannot leave it unrunnable unnoticed, and every scenario it
/// lists has a function that records it.
#[test]
fn the_lab_recorder_parses_and_defines_its_scenarios() {
    let script = root().join("samples/lab/record.sh");
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run bash -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    // `ALL_SCENARIOS=(...)` and any `ALL_SCENARIOS+=(...)` after it.
    let lists: Vec<&str> = text
        .split("ALL_SCENARIOS")
        .skip(1)
        .filter_map(|rest| rest.strip_prefix("=(").or_else(|| rest.strip_prefix("+=(")))
        .filter_map(|rest| rest.split_once(')').map(|(l, _)| l))
        .collect();
    assert!(!lists.is_empty(), "ALL_SCENARIOS");
    for s in lists.iter().flat_map(|l| l.split_whitespace()) {
        let f = format!("scenario_{}()", s.replace('-', "_"));
        assert!(text.contains(&f), "{s}: no {f}");
        let c = format!("check_{}()", s.replace('-', "_"));
        assert!(text.contains(&c), "{s}: no {c}");
    }
}
