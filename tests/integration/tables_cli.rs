//! The tables of `natcheck correlate`: `--format csv|ndjson|parquet` (one row per
//! connection and hop) and `--tables DIR` (connections, findings and points as Parquet,
//! Hive-partitioned with `--partition host,date`), checked against the JSON report of
//! the same inputs and the conntrack files themselves; read back by polars, and by
//! DuckDB and pandas where their Python packages are installed.
#![cfg(feature = "frames")]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde_json::{json, Map, Value};

use crate::util::*;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("natcheck-tables-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// Recordings of different shapes: TCP through three points with SNAT and DNAT, its
/// conntrack table and kube-proxy's rules; IPv6 with ICMPv6, UDP and TCP, with its
/// table and ip6tables rules; replies that left by another uplink (return hops), with
/// a finding; replies to a published port that arrived by another uplink (a return
/// hop with a link downstream); a connection a FORWARD rule dropped.
fn samples() -> Vec<Vec<String>> {
    let files = |s: &str, names: &[&str]| -> Vec<String> {
        names.iter().map(|n| format!("samples/{s}/{n}")).collect()
    };
    let witnesses = |s: &str, rules: &str| -> Vec<String> {
        let f = |n: &str| format!("samples/{s}/{n}");
        vec![
            "--conntrack".into(),
            f("conntrack.txt"),
            "--rules".into(),
            f(rules),
        ]
    };
    let mut nodeport = files("nodeport", &["eth0.pcap", "docker0.pcap", "veth-c1.pcap"]);
    nodeport.extend(witnesses("nodeport", "iptables.txt"));
    let mut masq6 = files("masquerade6", &["docker0.pcap", "eth0.pcap"]);
    masq6.extend(witnesses("masquerade6", "ip6tables.txt"));
    let asym = files(
        "fault-asym-route6",
        &["veth-c1.pcap", "docker0.pcap", "eth0.pcap", "eth1.pcap"],
    );
    let loose = files(
        "asym-route-loose",
        &["veth-c1.pcap", "docker0.pcap", "eth0.pcap", "eth1.pcap"],
    );
    let mut dropped = files(
        "fault-forward-drop",
        &["veth-c1.pcap", "docker0.pcap", "eth0.pcap"],
    );
    dropped.extend(witnesses("fault-forward-drop", "iptables.txt"));
    vec![nodeport, masq6, asym, loose, dropped]
}

/// `natcheck correlate ARGS... EXTRA...`; its standard output. Findings may make it
/// exit 1, nothing else may fail.
fn correlate(args: &[String], extra: &[&str]) -> Vec<u8> {
    let mut all: Vec<&str> = vec!["correlate"];
    all.extend(args.iter().map(String::as_str));
    all.extend_from_slice(extra);
    let out = natcheck(&all);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "natcheck {all:?}: {:?} {}",
        out.status.code(),
        stderr(&out)
    );
    out.stdout
}

fn ndjson(args: &[String]) -> Vec<Map<String, Value>> {
    String::from_utf8(correlate(args, &["--format", "ndjson"]))
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

/// The translation between two tuples as the report names it.
fn kind(a: &Value, b: &Value) -> &'static str {
    let changed = |f: &[&str]| f.iter().any(|k| a[k] != b[k]);
    match (changed(&["src", "sport"]), changed(&["dst", "dport"])) {
        (false, false) => "none",
        (true, false) => "snat",
        (false, true) => "dnat",
        (true, true) => "snat+dnat",
    }
}

/// What the connections table must say of each hop, from the JSON report: the hop,
/// the link to the next hop downstream, the connection's rules and findings.
fn expected_rows(doc: &Value) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    for c in doc["connections"].as_array().unwrap() {
        let hops = c["hops"].as_array().unwrap();
        let returns = c["returns"].as_array().unwrap();
        let mut codes: Vec<&str> = findings_of(doc, c)
            .into_iter()
            .map(|f| f["code"].as_str().unwrap())
            .collect();
        codes.sort_unstable();
        codes.dedup();
        let rule = |which: &str, field: &str| match which {
            "decided_by" => c["rules"]["decided_by"][field].clone(),
            _ => c["rules"][which][field].clone(),
        };
        let all = hops
            .iter()
            .map(|h| (h, "path"))
            .chain(returns.iter().map(|r| (r, "return")));
        for (i, (h, role)) in all.enumerate() {
            let mut r = Map::new();
            r.insert("connection".into(), c["id"].clone());
            r.insert("hop".into(), json!(i));
            r.insert("role".into(), json!(role));
            for k in [
                "point",
                "proto",
                "src",
                "sport",
                "dst",
                "dport",
                "community_id",
                "first_seen",
                "last_seen",
                "packets_fwd",
                "packets_rev",
                "bytes_fwd",
                "bytes_rev",
            ] {
                r.insert(k.into(), h[k].clone());
            }
            // The next hop downstream, and what the link to it shows.
            let (next, link) = if role == "path" {
                (hops.get(i + 1), c["translations"].get(i))
            } else {
                let from = &h["from"];
                let next = hops.iter().find(|x| x["point"] == from["point"]);
                (next.filter(|_| !from.is_null()), None)
            };
            let lost = |d: &str| match (role, link) {
                ("path", Some(l)) => l["unmatched"][format!("lost_{d}")]["packets"].clone(),
                ("return", _) if d == "rev" && next.is_some() => {
                    h["from"]["unmatched"]["packets"].clone()
                }
                _ => Value::Null,
            };
            r.insert("lost_fwd".into(), lost("fwd"));
            r.insert("lost_rev".into(), lost("rev"));
            let latency = link.map_or(Value::Null, |l| l["latency"].clone());
            for k in ["first", "p50", "p99", "max"] {
                let v = latency
                    .get(format!("{k}_ns"))
                    .cloned()
                    .unwrap_or(Value::Null);
                r.insert(format!("latency_{k}_ns"), v);
            }
            r.insert(
                "confidence".into(),
                link.map_or(Value::Null, |l| l["confidence"].clone()),
            );
            r.insert(
                "next_point".into(),
                next.map_or(Value::Null, |n| n["point"].clone()),
            );
            r.insert(
                "nat_kind".into(),
                next.map_or(Value::Null, |n| json!(kind(h, n))),
            );
            for k in ["src", "sport", "dst", "dport"] {
                r.insert(
                    format!("next_{k}"),
                    next.map_or(Value::Null, |n| n[k].clone()),
                );
            }
            r.insert("rules_fate".into(), c["rules"]["fate"].clone());
            for which in ["dnat", "snat", "decided_by"] {
                r.insert(format!("{which}_chain"), rule(which, "chain"));
                r.insert(format!("{which}_line"), rule(which, "line"));
                r.insert(format!("{which}_rule"), rule(which, "text"));
            }
            r.insert("findings".into(), json!(codes.join(";")));
            rows.push(r);
        }
    }
    rows
}

/// The fields of a CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (ch, _) => out.last_mut().unwrap().push(ch),
        }
    }
    out
}

/// A value as its CSV cell: null is empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Parquet value against its NDJSON value (times as RFC 3339 strings there).
fn same(a: &AnyValue, v: &Value) -> bool {
    match a {
        AnyValue::Null => v.is_null(),
        AnyValue::Datetime(ns, TimeUnit::Nanoseconds, _) => {
            let t = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default());
            t.ok().and_then(|t| t.timestamp_nanos_opt()) == Some(*ns)
        }
        AnyValue::String(s) => v.as_str() == Some(*s),
        AnyValue::Boolean(b) => v.as_bool() == Some(*b),
        AnyValue::Float64(f) => v.as_f64() == Some(*f),
        other => other.extract::<i128>().map(|n| n.to_string()) == Some(v.to_string()),
    }
}

/// The connections table in CSV, NDJSON and Parquet holds one row per hop of the JSON
/// report's connections, path hops then return hops, each with the link to the next
/// hop, the conntrack entry the table names and the connection's rules and findings.
#[test]
fn connection_rows_are_the_json_hops_in_every_format() {
    for args in samples() {
        let doc: Value = serde_json::from_slice(&correlate(&args, &["--format", "json"])).unwrap();
        let want = expected_rows(&doc);
        let got = ndjson(&args);
        assert_eq!(got.len(), want.len(), "{args:?}");
        for (g, w) in got.iter().zip(&want) {
            for (k, v) in w {
                assert_eq!(
                    &g[k], v,
                    "{args:?}: {k} of {} hop {}",
                    w["connection"], w["hop"]
                );
            }
            // The latency percentiles are ordered.
            if let (Some(p50), Some(p99), Some(max)) = (
                g["latency_p50_ns"].as_i64(),
                g["latency_p99_ns"].as_i64(),
                g["latency_max_ns"].as_i64(),
            ) {
                assert!(p50 <= p99 && p99 <= max, "{g:?}");
            }
            check_conntrack(g, &got);
        }
        assert!(
            got.iter().any(|g| !g["ct_id"].is_null()) == args.contains(&"--conntrack".to_string()),
            "{args:?}: conntrack entries named exactly when a table was given"
        );

        // CSV: the same cells.
        let csv = String::from_utf8(correlate(&args, &["--format", "csv"])).unwrap();
        let mut lines = csv.lines();
        let header = csv_fields(lines.next().unwrap());
        let mut keys: Vec<&String> = header.iter().collect();
        keys.sort();
        assert_eq!(keys, got[0].keys().collect::<Vec<_>>());
        let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
        assert_eq!(rows.len(), got.len());
        for (r, g) in rows.iter().zip(&got) {
            for (k, v) in header.iter().zip(r) {
                assert_eq!(v, &cell(&g[k]), "{args:?}: {k}");
            }
        }

        // Parquet: the same columns in the same order, the same values, with integer
        // ports and UTC nanosecond times.
        let pq = correlate(&args, &["--format", "parquet"]);
        let df = ParquetReader::new(std::io::Cursor::new(pq))
            .finish()
            .unwrap();
        assert_eq!(df.height(), got.len());
        assert_eq!(
            df.get_column_names()
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>(),
            header.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(df.column("sport").unwrap().dtype(), &DataType::UInt32);
        assert_eq!(
            df.column("first_seen").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC))
        );
        for c in df.columns() {
            for (i, g) in got.iter().enumerate() {
                let a = c.get(i).unwrap();
                assert!(
                    same(&a, &g[c.name().as_str()]),
                    "{args:?}: {} row {i}: {a:?} vs {}",
                    c.name(),
                    g[c.name().as_str()]
                );
            }
        }
    }
}

/// A row's conntrack entry is the line of the table it names: that entry's id, state
/// and mark, and its ORIGINAL tuple (first on the line) is the tuple of one of the
/// connection's hops.
fn check_conntrack(row: &Map<String, Value>, rows: &[Map<String, Value>]) {
    let Some(place) = row["ct_entry"].as_str() else {
        assert!(row["ct_id"].is_null() && row["ct_state"].is_null());
        return;
    };
    let (file, line) = place.rsplit_once(':').unwrap();
    let text = fs::read_to_string(root().join(file)).unwrap();
    let entry = text
        .lines()
        .nth(line.parse::<usize>().unwrap() - 1)
        .unwrap();
    let words: Vec<&str> = entry.split_whitespace().collect();
    let first = |k: &str| words.iter().find_map(|w| w.strip_prefix(&format!("{k}=")));
    // The entry's id ends the line (an ICMP tuple has an `id=` of its own).
    let last_id = words.iter().rev().find_map(|w| w.strip_prefix("id="));
    assert_eq!(last_id, Some(cell(&row["ct_id"]).as_str()), "{entry}");
    assert_eq!(
        first("mark"),
        Some(cell(&row["ct_mark"]).as_str()),
        "{entry}"
    );
    if let Some(state) = row["ct_state"].as_str() {
        assert!(words.contains(&state), "{entry}");
    }
    let on_a_hop = rows.iter().any(|h| {
        h["connection"] == row["connection"]
            && first("src") == h["src"].as_str()
            && first("dst") == h["dst"].as_str()
    });
    assert!(
        on_a_hop,
        "{place}: {entry} is on no hop of {}",
        row["connection"]
    );
}

/// `--tables DIR`: the connections table is the `--format parquet` output, byte for
/// byte; the findings table one row per finding and connection it names; the points
/// table the report's points.
#[test]
fn tables_dir_holds_connections_findings_and_points() {
    for (n, args) in samples().iter().enumerate() {
        let dir = scratch(&format!("plain{n}"));
        let d = dir.0.to_str().unwrap();
        let doc: Value = serde_json::from_slice(&correlate(args, &["--format", "json"])).unwrap();
        correlate(args, &["--tables", d]);
        let read = |name: &str| {
            let f = fs::File::open(dir.0.join(format!("{name}.parquet"))).unwrap();
            ParquetReader::new(f).finish().unwrap()
        };
        assert_eq!(
            fs::read(dir.0.join("connections.parquet")).unwrap(),
            correlate(args, &["--format", "parquet"]),
            "{args:?}"
        );

        let findings = read("findings");
        let mut want: Vec<(String, Option<String>)> = Vec::new();
        for f in doc["findings"].as_array().unwrap() {
            let code = f["code"].as_str().unwrap().to_string();
            let conns = f["connections"].as_array().unwrap();
            if conns.is_empty() {
                want.push((code.clone(), None));
            }
            want.extend(
                conns
                    .iter()
                    .map(|c| (code.clone(), c.as_str().map(String::from))),
            );
        }
        let codes = findings.column("code").unwrap().str().unwrap();
        let conns = findings.column("connection").unwrap().str().unwrap();
        let got: Vec<(String, Option<String>)> = codes
            .iter()
            .zip(conns.iter())
            .map(|(c, k)| (c.unwrap().to_string(), k.map(String::from)))
            .collect();
        assert_eq!(got, want, "{args:?}");
        // The hop a finding names is the hop of its connection at the finding's point.
        let rows = ndjson(args);
        let hops = findings.column("hop").unwrap().u32().unwrap();
        let points = findings.column("point").unwrap().str().unwrap();
        for ((hop, point), conn) in hops.iter().zip(points.iter()).zip(conns.iter()) {
            if let Some(hop) = hop {
                assert!(rows.iter().any(|r| r["connection"].as_str() == conn
                    && r["hop"] == json!(hop)
                    && r["point"].as_str() == point));
            }
        }

        let points = read("points");
        for (column, field) in [
            ("point", "name"),
            ("source", "source"),
            ("linktype", "linktype"),
            ("clock_basis", "clock_basis"),
        ] {
            let got: Vec<Option<&str>> = points
                .column(column)
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .collect();
            let want: Vec<Option<&str>> = doc["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[field].as_str())
                .collect();
            assert_eq!(got, want, "{column}");
        }
    }
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Runs into one Hive-partitioned DIR: the same run twice writes the same files, other
/// runs add theirs; every file of a table has the same schema without the partition
/// keys; each connection's rows sit under the UTC day of its first packet.
#[test]
fn partitioned_runs_gather_without_overwriting() {
    let dir = scratch("hive");
    let d = dir.0.to_str().unwrap();
    let s = samples();
    let part = |args: &[String], host: &str| {
        correlate(
            args,
            &["--tables", d, "--partition", "host,date", "--host", host],
        );
    };
    part(&s[0], "a");
    let first = files(&dir.0);
    assert!(
        first.iter().all(|f| f.contains("/host=a/date=")),
        "{first:?}"
    );
    assert_eq!(
        first
            .iter()
            .filter(|f| f.starts_with("connections/"))
            .count(),
        1,
        "one day, one file: {first:?}"
    );
    let bytes: Vec<Vec<u8>> = first
        .iter()
        .map(|f| fs::read(dir.0.join(f)).unwrap())
        .collect();
    part(&s[0], "a");
    assert_eq!(
        files(&dir.0),
        first,
        "the same run twice writes the same files"
    );
    let again: Vec<Vec<u8>> = first
        .iter()
        .map(|f| fs::read(dir.0.join(f)).unwrap())
        .collect();
    assert!(bytes == again, "and the same bytes");
    // Another host, and another run on the first host (the same captures without
    // their witnesses: other tables), add files.
    part(&s[1], "b");
    part(&s[0][..3], "a");
    let all = files(&dir.0);
    let conns: Vec<&String> = all
        .iter()
        .filter(|f| f.starts_with("connections/"))
        .collect();
    assert_eq!(conns.len(), 3, "{all:?}");
    assert_eq!(conns.iter().filter(|f| f.contains("host=a/")).count(), 2);

    let mut schemas = BTreeSet::new();
    let mut total = 0;
    for f in &conns {
        let df = ParquetReader::new(fs::File::open(dir.0.join(f)).unwrap())
            .finish()
            .unwrap();
        assert!(df.column("host").is_err() && df.column("date").is_err());
        schemas.insert(format!("{:?}", df.schema()));
        // The day in the path is each connection's first packet's.
        let day = f.split("date=").nth(1).unwrap().split('/').next().unwrap();
        let first_seen = df
            .column("first_seen")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .clone();
        let conn = df.column("connection").unwrap().str().unwrap();
        for c in conn.iter().flatten().collect::<BTreeSet<_>>() {
            let mask = conn.equal(c);
            let first = first_seen.filter(&mask).unwrap().min().unwrap();
            let t = chrono::DateTime::from_timestamp_nanos(first);
            assert_eq!(t.format("%Y-%m-%d").to_string(), day, "{f} {c}");
        }
        total += df.height();
    }
    assert_eq!(schemas.len(), 1, "{schemas:?}");
    let rows = |a: &[String]| ndjson(a).len();
    assert_eq!(total, rows(&s[0]) + rows(&s[1]) + rows(&s[0][..3]));
}

/// Flags that cannot be honoured are refused before anything is read or written.
#[test]
fn partition_flags_are_checked() {
    let dir = scratch("flags");
    let d = dir.0.to_str().unwrap();
    let pcap = "samples/masquerade/docker0.pcap";
    for (args, says) in [
        (vec!["--partition", "host"], "--host NAME"),
        (vec!["--partition", "date,host"], "host,date"),
        (
            vec!["--partition", "date", "--host", "a"],
            "--partition host",
        ),
        (
            vec!["--partition", "host", "--host", "../up"],
            "cannot name a partition directory",
        ),
    ] {
        let mut all = vec!["correlate", pcap, "--tables", d];
        all.extend(args);
        let out = natcheck(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(stderr(&out).contains(says), "{all:?}: {}", stderr(&out));
        assert!(files(&dir.0).is_empty(), "{all:?} wrote something");
    }
    let out = natcheck(&["correlate", pcap, "--partition", "host"]);
    assert_eq!(out.status.code(), Some(2), "--partition without --tables");
}

/// The same bytes whatever the run and the thread count, in every tabular format and
/// in a partitioned DIR.
#[test]
fn tables_are_byte_identical_across_runs_and_threads() {
    let args = &samples()[2];
    for fmt in ["csv", "ndjson", "parquet"] {
        let run = |j: &str| correlate(args, &["-j", j, "--format", fmt]);
        let one = run("1");
        assert!(one == run("2") && one == run("1"), "{fmt}");
    }
    let dirs = [scratch("j1"), scratch("j2")];
    for (dir, j) in dirs.iter().zip(["1", "2"]) {
        correlate(
            args,
            &[
                "-j",
                j,
                "--tables",
                dir.0.to_str().unwrap(),
                "--partition",
                "date",
            ],
        );
    }
    let (a, b) = (files(&dirs[0].0), files(&dirs[1].0));
    assert_eq!(a, b);
    for f in &a {
        assert!(
            fs::read(dirs[0].0.join(f)).unwrap() == fs::read(dirs[1].0.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// The CSV of a recording with return hops and a finding, as written.
#[test]
fn csv_of_an_asymmetric_route() {
    let csv = String::from_utf8(correlate(&samples()[2], &["--format", "csv"])).unwrap();
    insta::assert_snapshot!("tables-csv-fault-asym-route6", csv);
}

/// DuckDB and pandas read what natcheck writes as its users would: CSV and Parquet of
/// two recordings with integer ports and real timestamps, and a partitioned DIR two
/// runs wrote (hosts `a` and `b`) as one table.
#[test]
fn duckdb_and_pandas_read_the_tables() {
    let Some(py) = python_with(&["duckdb", "pandas", "pyarrow"]) else {
        return skip("python modules duckdb, pandas, pyarrow (pip install duckdb pandas pyarrow)");
    };
    let dir = scratch("duckdb");
    let s = samples();
    let mut singles = Vec::new();
    for (n, args) in s[..2].iter().enumerate() {
        let rows = ndjson(args).len();
        for fmt in ["csv", "parquet"] {
            let f = dir.0.join(format!("s{n}.{fmt}"));
            fs::write(&f, correlate(args, &["--format", fmt])).unwrap();
            singles.push(json!({"file": f, "rows": rows}));
        }
    }
    let hive = dir.0.join("hive");
    let h = hive.to_str().unwrap();
    let mut per_host = Vec::new();
    for (args, host) in s[..2].iter().zip(["a", "b"]) {
        correlate(
            args,
            &["--tables", h, "--partition", "host,date", "--host", host],
        );
        per_host.push(json!([host, ndjson(args).len()]));
    }
    let spec = json!({"singles": singles, "hive": hive, "per_host": per_host});
    let script = r#"
import json, sys
import duckdb, pandas as pd
from pandas.api import types as t

spec = json.loads(sys.argv[1])
con = duckdb.connect()
for s in spec["singles"]:
    f, rows = s["file"], s["rows"]
    rel = con.sql(f"select * from '{f}'")
    types = dict(zip(rel.columns, (str(x) for x in rel.dtypes)))
    for c in ("sport", "dport", "hop", "packets_fwd"):
        assert types[c] in ("UINTEGER", "BIGINT", "UBIGINT", "INTEGER"), (f, c, types[c])
    for c in ("first_seen", "last_seen"):
        assert types[c].startswith("TIMESTAMP"), (f, c, types[c])
    assert con.execute(f"select count(*) from '{f}'").fetchone()[0] == rows, f
    if f.endswith(".csv"):
        df = pd.read_csv(f, dtype_backend="numpy_nullable", parse_dates=["first_seen", "last_seen"])
    else:
        df = pd.read_parquet(f, dtype_backend="numpy_nullable")
    assert len(df) == rows, f
    for c in ("sport", "dport", "hop"):
        assert t.is_integer_dtype(df[c]), (f, c, df[c].dtype)
    for c in ("first_seen", "last_seen"):
        assert t.is_datetime64_any_dtype(df[c]) and str(df[c].dt.tz) == "UTC", (f, c, df[c].dtype)

glob = spec["hive"] + "/connections/**/*.parquet"
want = sorted((h, n) for h, n in spec["per_host"])
q = f"from read_parquet('{glob}', hive_partitioning=true)"
assert con.execute(f"select count(*) {q}").fetchone()[0] == sum(n for _, n in want)
got = con.execute(f"select host, count(*) {q} group by host order by host").fetchall()
assert got == want, (got, want)
days = con.execute(f"select distinct typeof(date) {q}").fetchall()
assert days == [("DATE",)], days
df = pd.read_parquet(spec["hive"] + "/connections")
assert sorted(df.groupby("host", observed=True).size().items()) == want
print("ok")
"#;
    let out = std::process::Command::new(py)
        .args(["-c", script, &spec.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success() && stdout(&out).trim() == "ok",
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}
