//! `-o FILE` on every report command (the format from the extension unless
//! `--format` says, the same bytes as on standard output, nothing written on an
//! error), and the completion scripts and manual pages made from the command line.

use std::path::Path;

use crate::util::*;

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Runs `args` once to standard output and once with `-o FILE` (FILE named `name` in
/// a fresh directory), and checks both wrote the same bytes and exited alike.
fn same_as_stdout(args: &[&str], format: Option<&str>, name: &str) -> Vec<u8> {
    let dir = scratch();
    let file = dir.path().join(name);
    let mut to_stdout = args.to_vec();
    if let Some(f) = format {
        to_stdout.extend(["--format", f]);
    }
    let mut to_file = args.to_vec();
    to_file.extend(["-o", file.to_str().unwrap()]);
    let a = natcheck(&to_stdout);
    let b = natcheck(&to_file);
    assert_eq!(
        a.status.code(),
        b.status.code(),
        "{to_file:?}: {}",
        stderr(&b)
    );
    assert!(b.stdout.is_empty(), "{to_file:?} wrote to standard output");
    let written = std::fs::read(&file).unwrap_or_else(|e| panic!("{to_file:?}: {e}"));
    assert_eq!(written, a.stdout, "{to_file:?} against {to_stdout:?}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "{to_file:?} left a temporary file");
    written
}

#[test]
fn the_extension_picks_the_format_of_every_command() {
    let d = sample("port-collision/docker0.pcap");
    let e = sample("port-collision/eth0.pcap");
    let ct = sample("port-collision/conntrack.txt");
    let correlate = [
        "correlate",
        d.as_str(),
        e.as_str(),
        "--conntrack",
        ct.as_str(),
    ];
    for (format, name) in [
        (None, "report"),
        (Some("table"), "report.txt"),
        (Some("json"), "report.json"),
        (Some("markdown"), "report.md"),
        (Some("html"), "report.html"),
        (Some("csv"), "report.csv"),
        (Some("ndjson"), "report.ndjson"),
    ] {
        same_as_stdout(&correlate, format, name);
    }
    let parquet = same_as_stdout(&correlate, Some("parquet"), "report.parquet");
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    // --format wins over the extension.
    let dir = scratch();
    let file = dir.path().join("report.txt");
    let mut args = correlate.to_vec();
    args.extend(["--format", "json", "-o", file.to_str().unwrap()]);
    natcheck(&args);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("{\n  \"schema\": \"natcheck.report/2\""));

    let flows = ["flows", d.as_str()];
    same_as_stdout(&flows, Some("json"), "flows.json");
    same_as_stdout(&flows, Some("table"), "flows.TXT");
    let conntrack = ["conntrack", ct.as_str()];
    same_as_stdout(&conntrack, Some("json"), "ct.json");
    same_as_stdout(&conntrack, None, "ct");
    let rules = sample("port-collision/iptables.txt");
    let explain = [
        "explain",
        "--rules",
        rules.as_str(),
        "--packet",
        "tcp 172.17.0.2:40000 > 203.0.113.2:7000 in docker0",
    ];
    same_as_stdout(&explain, Some("json"), "walk.json");
    same_as_stdout(&explain, Some("table"), "walk.txt");

    // Two reports written with -o, then compared.
    let dir = scratch();
    let report = |scenario: &str| {
        let file = dir.path().join(format!("{scenario}.json"));
        let d = sample(&format!("{scenario}/docker0.pcap"));
        let e = sample(&format!("{scenario}/eth0.pcap"));
        natcheck(&["correlate", &d, &e, "-o", file.to_str().unwrap()]);
        file.to_str().unwrap().to_string()
    };
    let (clean, fault) = (report("forward-drop-clean"), report("fault-forward-drop"));
    let diff = ["diff", clean.as_str(), fault.as_str()];
    let md = same_as_stdout(&diff, Some("markdown"), "diff.md");
    assert!(String::from_utf8(md).unwrap().contains("lost"));
    same_as_stdout(&diff, Some("json"), "diff.json");
    same_as_stdout(&diff, None, "diff.txt");
}

#[test]
fn an_extension_the_command_cannot_write_is_refused_before_any_work() {
    let d = sample("port-collision/docker0.pcap");
    let dir = scratch();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    for (args, name, said) in [
        (
            vec!["flows", d.as_str()],
            "f.csv",
            "csv output is not available here; this command writes .txt (table), .json (json), or the format --format names",
        ),
        (
            vec!["correlate", d.as_str()],
            "r.pcap",
            ".pcap is no report format; this command writes .txt (table), .json (json), .ndjson (ndjson), .csv (csv), .parquet (parquet), .md (markdown), .html (html), or the format --format names",
        ),
        (
            vec!["flows", d.as_str()],
            "f.html",
            "html output is not available here;",
        ),
    ] {
        let file = at(name);
        let mut all = args.clone();
        all.extend(["-o", file.as_str()]);
        let out = natcheck(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("natcheck: error: {file}: {said}")),
            "{all:?}: {err}"
        );
        assert!(!Path::new(&file).exists());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_run_that_fails_leaves_the_file_as_it_was() {
    let dir = scratch();
    let file = dir.path().join("report.json");
    std::fs::write(&file, "the report of yesterday").unwrap();
    let missing = sample("port-collision/no-such-conntrack.txt");
    let d = sample("port-collision/docker0.pcap");
    let out = natcheck(&[
        "correlate",
        &d,
        "--conntrack",
        &missing,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "the report of yesterday"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let out = natcheck(&["correlate", &d, "-o", "/nonexistent-dir/r.json"]);
    assert_eq!(
        stderr(&out),
        "natcheck: error: /nonexistent-dir/r.json: cannot create: No such file or directory (os error 2)\n"
    );
}

#[test]
fn completions_know_every_command_and_option() {
    let out = natcheck(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let bash = stdout(&out);
    for word in [
        "correlate",
        "flows",
        "conntrack",
        "--filter",
        "--output",
        "--quiet",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = natcheck(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(stdout(&out).contains("correlate"), "{shell}");
    }
    assert_eq!(natcheck(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_have_every_command_and_option() {
    let out = natcheck(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = stdout(&out);
    assert!(page.contains(".TH natcheck 1"), "{page}");
    for word in ["\\-\\-threads", "\\-\\-quiet", "natcheck\\-correlate(1)"] {
        assert!(page.contains(word), "natcheck.1 lacks {word}");
    }
    let dir = scratch();
    let pages = dir.path().join("man1");
    let out = natcheck(&["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    for name in [
        "natcheck",
        "correlate",
        "flows",
        "conntrack",
        "explain",
        "snapshot",
        "collect",
    ] {
        let file = if name == "natcheck" {
            "natcheck.1".to_string()
        } else {
            format!("natcheck-{name}.1")
        };
        let text =
            std::fs::read_to_string(pages.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(".TH natcheck"), "{file}");
    }
    let correlate = std::fs::read_to_string(pages.join("natcheck-correlate.1")).unwrap();
    for word in [
        "\\-\\-filter",
        "\\-\\-output",
        "\\-\\-format",
        "\\-\\-conntrack",
        "\\-\\-fail\\-on",
    ] {
        assert!(
            correlate.contains(word),
            "natcheck-correlate.1 lacks {word}"
        );
    }
}

/// Every correlate format for every recording, from one run's data each: every file
/// written, exit statuses alike, the JSON, NDJSON and CSV naming the same connections,
/// Parquet a Parquet file, the HTML a section per connection, and the table, Markdown
/// and HTML naming the same findings' count.
#[test]
fn every_format_of_every_recording() {
    const FORMATS: &[&str] = &["txt", "json", "md", "html", "csv", "ndjson", "parquet"];
    let dir = scratch();
    for s in SCENARIOS {
        let args = recording(s);
        let mut statuses = Vec::new();
        for ext in FORMATS {
            let file = dir.path().join(format!("{s}.{ext}"));
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(["-o", file.to_str().unwrap()]);
            let out = natcheck(&a);
            statuses.push(out.status.code());
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{s} .{ext}: {}",
                stderr(&out)
            );
            assert!(
                std::fs::metadata(&file)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false),
                "{s}.{ext}"
            );
        }
        assert!(
            statuses.windows(2).all(|w| w[0] == w[1]),
            "{s}: {statuses:?}"
        );
        let read =
            |ext: &str| std::fs::read_to_string(dir.path().join(format!("{s}.{ext}"))).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&read("json")).unwrap();
        let mut ids: Vec<String> = doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        let mut from_ndjson: Vec<String> = read("ndjson")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["hop"] == 0)
            .map(|r| r["connection"].as_str().unwrap().to_string())
            .collect();
        from_ndjson.sort();
        assert_eq!(
            from_ndjson, ids,
            "{s}: NDJSON rows against JSON connections"
        );
        let csv_rows = read("csv").lines().count() - 1;
        assert_eq!(
            csv_rows,
            read("ndjson").lines().count(),
            "{s}: CSV against NDJSON rows"
        );
        let parquet = std::fs::read(dir.path().join(format!("{s}.parquet"))).unwrap();
        assert!(
            parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"),
            "{s}: parquet"
        );
        let errors = doc["summary"]["findings_by_severity"]["error"]
            .as_u64()
            .unwrap();
        let table = read("txt");
        assert!(
            table.contains(&format!("findings: {errors} error")),
            "{s}: the table's count of errors: {}",
            table.lines().next().unwrap_or_default()
        );
        let md = read("md");
        let total = doc["findings"].as_array().unwrap().len();
        assert!(
            md.contains(&format!("**{errors} error"))
                || (total == 0 && md.contains("No findings.")),
            "{s}: the Markdown's count of errors"
        );
        let html = read("html");
        let section = r#"<section class="conn" id=""#;
        let mut from_html: Vec<String> = html
            .match_indices(section)
            .map(|(at, _)| {
                let id = &html[at + section.len()..];
                id[..id.find('"').unwrap()].to_string()
            })
            .collect();
        from_html.sort();
        assert_eq!(
            from_html, ids,
            "{s}: HTML sections against JSON connections"
        );
        assert!(
            html.contains(&format!("<strong>{errors} error"))
                || (total == 0 && html.contains("No findings.")),
            "{s}: the HTML's count of errors"
        );
    }
}
