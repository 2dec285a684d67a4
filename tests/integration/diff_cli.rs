//! `natcheck diff` on real recordings: a clean and a faulty recording of the same
//! traffic (made by the kernel, with different ephemeral ports) name exactly the new
//! findings; two readings of one run (separate captures, one pcapng) differ in nothing.

use std::path::Path;

use serde_json::Value;

use crate::util::{findings_of, natcheck, stderr, stdout};

/// Writes `correlate --format json ARGS` to a file named `name` in `dir` (each test's
/// own temporary directory, removed when the test ends) and returns its path.
fn report(dir: &Path, name: &str, args: &[&str]) -> (String, Value) {
    let mut all = vec!["correlate", "--format", "json"];
    all.extend_from_slice(args);
    let out = natcheck(&all);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{all:?}: {}",
        stderr(&out)
    );
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap();
    (path.display().to_string(), doc)
}

fn recording(s: &str) -> Vec<String> {
    let dir = format!("samples/{s}");
    vec![
        format!("{dir}/veth-c1.pcap"),
        format!("{dir}/docker0.pcap"),
        format!("{dir}/eth0.pcap"),
        "--conntrack".into(),
        format!("{dir}/conntrack.txt"),
        "--rules".into(),
        format!("{dir}/iptables.txt"),
    ]
}

fn diff_json(a: &str, b: &str) -> (i32, Value) {
    let out = natcheck(&["diff", "--format", "json", a, b]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("diff {a} {b}: {e}: {}", stderr(&out)));
    (out.status.code().unwrap(), doc)
}

fn codes(v: &Value) -> Vec<String> {
    let mut c: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["severity"].as_str().unwrap(),
                f["code"].as_str().unwrap()
            )
        })
        .collect();
    c.sort();
    c
}

#[test]
fn a_clean_and_a_faulty_recording_of_the_same_traffic_differ_by_the_new_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let clean_args = recording("forward-drop-clean");
    let fault_args = recording("fault-forward-drop");
    let (clean, clean_doc) = report(
        tmp.path(),
        "clean.json",
        &clean_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (fault, fault_doc) = report(
        tmp.path(),
        "fault.json",
        &fault_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        codes(&clean_doc["findings"])
            .iter()
            .all(|c| c.starts_with("info")),
        "the clean recording has no fault: {:?}",
        codes(&clean_doc["findings"])
    );
    let faulty: Vec<String> = codes(&fault_doc["findings"])
        .into_iter()
        .filter(|c| !codes(&clean_doc["findings"]).contains(c))
        .collect();
    assert!(!faulty.is_empty());

    let (code, d) = diff_json(&clean, &fault);
    assert_eq!(code, 1, "a new error finding fails the default --fail-on");
    assert_eq!(d["schema"], "natcheck.diff/1");
    assert_eq!(codes(&d["new_findings"]), faulty);
    assert_eq!(d["gone_findings"].as_array().unwrap().len(), 0);
    // The connection that no longer crosses is matched by its endpoints (its port
    // differs between the runs) and shown as changed, not as new and gone.
    assert_eq!(d["matched_exactly"], 0);
    assert_eq!(
        d["matched_by_endpoints"].as_u64().unwrap() as usize,
        clean_doc["connections"].as_array().unwrap().len()
    );
    assert_eq!(d["new_translations"].as_array().unwrap().len(), 0);
    assert_eq!(d["gone_translations"].as_array().unwrap().len(), 0);
    let changed = d["changed_translations"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0]["after"]["links"].as_array().unwrap().is_empty());
    assert_eq!(
        changed[0]["after"]["path"].as_array().unwrap().len() + 1,
        changed[0]["before"]["path"].as_array().unwrap().len()
    );

    // The other way round the findings are gone, which fails nothing.
    let (code, back) = diff_json(&fault, &clean);
    assert_eq!(code, 0);
    assert_eq!(codes(&back["gone_findings"]), faulty);
    assert!(back["new_findings"].as_array().unwrap().is_empty());

    // --fail-on none never fails; the table and Markdown say the same.
    let out = natcheck(&["diff", "--fail-on", "none", &clean, &fault]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("findings: 1 new, 0 gone, 0 changed"),
        "{text}"
    );
    assert!(text.contains("+ [error] lost"), "{text}");
    let md = stdout(&natcheck(&["diff", "--format", "markdown", &clean, &fault]));
    assert!(md.contains("| findings | 1 | 0 | 0 |"), "{md}");
}

#[test]
fn two_readings_of_one_run_differ_in_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for s in [
        "masquerade",
        "masquerade6",
        "port-collision",
        "fault-masq-miss",
        "kube-rules",
        "fault-forward-drop",
    ] {
        let dir = format!("samples/{s}");
        let (a, _) = report(
            tmp.path(),
            &format!("{s}-files.json"),
            &[
                &format!("{dir}/veth-c1.pcap"),
                &format!("{dir}/docker0.pcap"),
                &format!("{dir}/eth0.pcap"),
            ],
        );
        let (b, _) = report(
            tmp.path(),
            &format!("{s}-multi.json"),
            &[&format!("{dir}/multi.pcapng")],
        );
        let out = natcheck(&["diff", &a, &b]);
        assert_eq!(out.status.code(), Some(0), "{s}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("\nno difference"),
            "{s}: {}",
            stdout(&out)
        );
        let (_, d) = diff_json(&a, &b);
        assert_eq!(d["matched_by_endpoints"], 0, "{s}");
    }
}

/// A baseline written as `natcheck.report/1` (each connection's findings in full, as
/// reports were written before `/2`) is read as before: a baseline kept from then
/// compares with today's report.
#[test]
fn a_baseline_of_the_first_schema_compares_with_a_report_of_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let clean_args = recording("forward-drop-clean");
    let fault_args = recording("fault-forward-drop");
    let (fault, mut doc) = report(
        tmp.path(),
        "fault-v2.json",
        &fault_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(doc["schema"], "natcheck.report/2");
    assert!(!doc["findings"].as_array().unwrap().is_empty());
    let full: Vec<Value> = (doc["connections"].as_array().unwrap().iter())
        .map(|c| Value::Array(findings_of(&doc, c).into_iter().cloned().collect()))
        .collect();
    let embedded: usize = full.iter().map(|f| f.as_array().unwrap().len()).sum();
    for (c, f) in doc["connections"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(full)
    {
        c["findings"] = f;
    }
    assert!(embedded > 0, "the faulty recording names connections");
    doc["schema"] = "natcheck.report/1".into();
    let v1 = std::path::Path::new(&fault).with_file_name("fault-v1.json");
    std::fs::write(&v1, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let v1 = v1.display().to_string();

    let out = natcheck(&["diff", &v1, &fault]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\nno difference"), "{}", stdout(&out));
    let (clean, _) = report(
        tmp.path(),
        "clean-v2.json",
        &clean_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (code, d) = diff_json(&clean, &v1);
    assert_eq!(code, 1);
    assert_eq!(d["new_findings"].as_array().unwrap().len(), 1, "{d}");
}

#[test]
fn a_document_that_is_not_a_report_is_an_input_error() {
    let flows = natcheck(&["flows", "--format", "json", "samples/masquerade/eth0.pcap"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("flows.json");
    std::fs::write(&path, &flows.stdout).unwrap();
    let p = path.display().to_string();
    let out = natcheck(&["diff", &p, &p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("natcheck.flows/1"),
        "{}",
        stderr(&out)
    );
    let trunc = dir.join("cut.json");
    std::fs::write(
        &trunc,
        "{\"schema\": \"natcheck.report/1\", \"connections\": [",
    )
    .unwrap();
    let t = trunc.display().to_string();
    let out = natcheck(&["diff", &t, &p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{t}:1:")),
        "{}",
        stderr(&out)
    );
}
