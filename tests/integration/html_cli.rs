//! `natcheck correlate --format html` on the lab recordings: one page that references
//! nothing outside itself, a ladder diagram per connection that shows every hop's
//! tuple (the fields NAT rewrote highlighted), names and links the connection that
//! held a reallocated port, ends lost packets in a cross where they were last seen,
//! and draws at most the first and last packets of a long connection; the figures
//! checked against the JSON report of the same run. Headless Chromium then renders a
//! port-reallocated and a lost connection, and the screenshots are decoded and looked
//! at: the page is drawn, with its arrows, highlights and crosses.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use natcheck::report::html::TRACE;
use serde_json::Value;

use crate::util::{findings_of, have, natcheck, skip, stderr, stdout};

/// The captures of a recording, in path order.
fn captures(s: &str) -> Vec<String> {
    ["veth-c1", "docker0", "eth0"]
        .iter()
        .map(|p| format!("samples/{s}/{p}.pcap"))
        .collect()
}

/// `natcheck correlate --format FORMAT CAPTURES... EXTRA...`.
fn correlate(format: &str, captures: &[String], extra: &[&str]) -> String {
    let mut a = vec!["correlate", "--format", format];
    a.extend(captures.iter().map(String::as_str));
    a.extend_from_slice(extra);
    let out = natcheck(&a);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{a:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The HTML page and the JSON document of the same run.
fn both(captures: &[String], extra: &[&str]) -> (String, Value) {
    let html = correlate("html", captures, extra);
    let json = correlate("json", captures, extra);
    (html, serde_json::from_str(&json).expect("valid JSON"))
}

/// Fails unless the page loads nothing: no URL, no file, no stylesheet or script from
/// elsewhere, links only to its own anchors.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>\n"), "{}", &html[..80]);
    assert!(html.ends_with("</html>\n"));
    // (`src=` without a quote is conntrack's notation, in evidence.)
    for bad in [
        "http://", "https://", "src=\"", "<link", "@import", "<iframe", "<img",
    ] {
        assert!(!html.contains(bad), "the page contains {bad:?}");
    }
    for (at, _) in html.match_indices("href=\"") {
        let target = &html[at + 6..];
        assert!(target.starts_with('#'), "a link out: {}", &target[..40]);
    }
    for (at, _) in html.match_indices("url(") {
        assert!(html[at + 4..].starts_with('#'), "{}", &html[at..at + 40]);
    }
}

/// The section of connection `id`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section class=\"conn\" id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section for {id}"));
    let end = html[start..].find("</section>").expect("closed") + start;
    &html[start..end]
}

fn connections(doc: &Value) -> &Vec<Value> {
    doc["connections"].as_array().expect("connections")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// A hop's source endpoint as reports write it.
fn src_endpoint(h: &Value) -> String {
    let addr = s(&h["src"]);
    match h["proto"].as_str() {
        Some("tcp" | "udp" | "sctp") if addr.contains(':') => {
            format!("[{addr}]:{}", h["sport"])
        }
        Some("tcp" | "udp" | "sctp") => format!("{addr}:{}", h["sport"]),
        Some("icmp" | "icmpv6") => format!("{addr} id={}", h["sport"]),
        _ => addr.to_string(),
    }
}

/// The packets the JSON report says a connection lost: initiator and responder
/// packets not seen at the next point of a link, and, for a path that stops short,
/// the packets of the findings that name its last hop as where they were last seen.
fn lost(doc: &Value, c: &Value) -> u64 {
    let on_links: u64 = c["translations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let u = &t["unmatched"];
            u["lost_fwd"]["packets"].as_u64().unwrap() + u["lost_rev"]["packets"].as_u64().unwrap()
        })
        .sum();
    let last = c["hops"].as_array().unwrap().last().unwrap();
    let stopped: u64 = findings_of(doc, c)
        .into_iter()
        .filter(|f| {
            f["tuples"].as_array().unwrap().iter().any(|t| {
                t["role"] == "last-seen" && t["point"] == last["point"] && t["src"] == last["src"]
            })
        })
        .map(|f| f["packets"].as_u64().unwrap())
        .sum();
    on_links + stopped
}

#[test]
fn the_page_holds_a_ladder_per_connection_with_each_hops_tuple() {
    for (name, rules) in [
        ("port-collision", "iptables.txt"),
        ("masquerade6", "ip6tables.txt"),
        ("nodeport", "iptables.txt"),
    ] {
        let rules = format!("samples/{name}/{rules}");
        let ct = format!("samples/{name}/conntrack.txt");
        let (html, doc) = both(&captures(name), &["--rules", &rules, "--conntrack", &ct]);
        assert_self_contained(&html);
        let conns = connections(&doc);
        let mut drawn = 0;
        for c in conns {
            let id = s(&c["id"]);
            let sec = section(&html, id);
            assert!(
                html.contains(&format!("<a href=\"#{id}\">{id}</a>")),
                "{id}"
            );
            if !sec.contains("<svg class=\"ladder\"") {
                // Only link-local control traffic (neighbour discovery) has none.
                assert_eq!(c["proto"], "icmpv6", "{name} {id}");
                assert!(sec.contains("link-local control traffic"), "{sec}");
                continue;
            }
            drawn += 1;
            for h in c["hops"].as_array().unwrap() {
                let point = s(&h["point"]);
                assert!(
                    sec.contains(&format!("class=\"pt\">{point}</text>")),
                    "{name} {id} {point}"
                );
                // The tuple at this point, pieces highlighted or not.
                let plain = sec
                    .replace("<tspan class=\"chg\">", "")
                    .replace("</tspan>", "");
                assert!(
                    plain.contains(&format!(">{}</text>", src_endpoint(h))),
                    "{name} {id} {h}"
                );
                if let Some(cid) = h["community_id"].as_str() {
                    assert!(sec.contains(cid), "{name} {id} {cid}");
                }
            }
            // What each translation rewrote is highlighted at the point after it.
            for t in c["translations"].as_array().unwrap() {
                let to = c["hops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|h| h["point"] == t["to"])
                    .unwrap();
                if t["src_addr_changed"] == true {
                    let hl = format!("<tspan class=\"chg\">{}</tspan>", s(&to["src"]));
                    assert!(sec.contains(&hl), "{name} {id}: {hl}");
                }
                if t["dport_changed"] == true {
                    let hl = format!("<tspan class=\"chg\">{}</tspan></text>", to["dport"]);
                    assert!(sec.contains(&hl), "{name} {id}: {hl}");
                }
            }
        }
        assert!(drawn > 0, "{name}: no ladder");
        // Every entry of the conntrack table on the wire is named in its connection's
        // section, with its state between the points it translated.
        let on_wire = doc["conntrack"][0]["on_wire"].as_u64().unwrap();
        let entry = format!("conntrack entry <code>{ct}:");
        assert_eq!(html.matches(&entry).count() as u64, on_wire, "{name}");
        assert_eq!(
            html.matches("class=\"ct\">conntrack ").count() as u64,
            on_wire,
            "{name}"
        );
    }
}

#[test]
fn a_reallocated_port_names_and_links_its_holder() {
    let name = "port-collision";
    let (html, doc) = both(&captures(name), &[]);
    let mut seen = 0;
    for c in connections(&doc) {
        let sec = section(&html, s(&c["id"]));
        for t in c["translations"].as_array().unwrap() {
            let Some(pr) = t["port_realloc"].as_object() else {
                continue;
            };
            seen += 1;
            let got = &pr["got_sport"];
            assert!(
                sec.contains(&format!("<tspan class=\"chg\">{got}</tspan>")),
                "{sec}"
            );
            let holder = s(&pr["colliding"]);
            let said = format!(
                "<a href=\"#{holder}\">{holder}</a> already held {}",
                pr["wanted_sport"]
            );
            assert!(sec.contains(&said), "{said} not in {sec}");
            assert!(sec.contains(&format!("port {} → {got}", pr["wanted_sport"])));
        }
    }
    assert!(seen >= 2, "{name} has reallocated ports");
}

#[test]
fn lost_packets_end_in_a_cross_where_they_were_last_seen() {
    let mut crosses = 0;
    for name in [
        "fault-forward-drop",
        "fault-syn-dropped-once",
        "fault-dns-pair-dropped",
        "fault-snat-exhaustion-udp6",
    ] {
        let (html, doc) = both(&captures(name), &[]);
        assert_self_contained(&html);
        for c in connections(&doc) {
            let id = s(&c["id"]);
            let sec = section(&html, id);
            let n = lost(&doc, c);
            assert_eq!(
                sec.matches("class=\"lost\"").count() as u64,
                n,
                "{name} {id}"
            );
            assert_eq!(
                sec.matches("; not seen at ").count() as u64,
                n,
                "{name} {id}"
            );
            crosses += n;
        }
    }
    assert!(crosses > 0);
    // A path that stops short draws the point it never reached, dashed.
    let (html, doc) = both(&captures("fault-forward-drop"), &[]);
    let (blocked, finding) = connections(&doc)
        .iter()
        .find_map(|c| {
            let f = findings_of(&doc, c).into_iter().find(|f| {
                f["tuples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["role"] == "last-seen")
            })?;
            Some((c, f))
        })
        .expect("a connection that stops short");
    let sec = section(&html, s(&blocked["id"]));
    assert_eq!(sec.matches("class=\"lane exp\"").count(), 1, "{sec}");
    let next = s(&finding["detail"]["to"]);
    assert!(
        sec.contains(&format!("class=\"pt\">{next}</text>")),
        "{sec}"
    );
}

#[test]
fn a_long_connection_draws_its_first_and_last_packets() {
    let name = "bulk-offload";
    let (html, doc) = both(&captures(name), &[]);
    let cap = TRACE.cap.expect("the ladders keep some packets");
    let kept = cap.first + cap.last;
    let mut long = 0;
    for c in connections(&doc) {
        let sec = section(&html, s(&c["id"]));
        let drawn = sec.matches("<g class=\"pk ").count();
        let packets: u64 = c["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["packets_fwd"].as_u64().unwrap() + h["packets_rev"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(drawn <= kept, "{drawn}");
        if packets as usize > kept {
            long += 1;
            assert_eq!(drawn, kept);
            let said = sec
                .find(" more packets not drawn")
                .expect("says what it left out");
            let n: usize = sec[..said]
                .rsplit('>')
                .next()
                .unwrap()
                .parse()
                .expect("a count");
            assert!(n + drawn >= packets as usize, "{n} + {drawn} < {packets}");
        }
    }
    assert!(
        long > 0,
        "{name} has a connection of more than {} packets",
        kept
    );
    assert!(html.len() < 200_000, "{}", html.len());
}

#[test]
fn the_page_does_not_depend_on_the_thread_count() {
    let a = captures("bulk-offload");
    let run = |j: &str| {
        let mut args = vec!["-j", j, "correlate", "--format", "html"];
        args.extend(a.iter().map(String::as_str));
        stdout(&natcheck(&args))
    };
    assert_eq!(run("1"), run("4"));
}

/// The page with only connection `id`'s section, so that a screenshot of the top of
/// the page shows it.
fn page_of(html: &str, id: &str) -> String {
    let defs = "</defs></svg>\n";
    let head = &html[..html.find(defs).expect("the arrowheads") + defs.len()];
    format!("{head}{}</section>\n</body>\n</html>\n", section(html, id))
}

/// A screenshot's pixels, RGB.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

/// Decodes an 8-bit RGB or RGBA PNG (what Chromium writes): its chunks, the zlib
/// stream of its IDAT chunks, and the filter of every scanline (PNG specification,
/// section 9).
fn decode_png(bytes: &[u8]) -> Image {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (mut at, mut idat) = (8, Vec::new());
    let (mut width, mut height, mut channels) = (0, 0, 0);
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("color type {t}"),
                };
                assert_eq!(data[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("the image data inflates");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1));
    let mut pixels = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                pixels[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 {
                pixels[(y - 1) * stride + x]
            } else {
                0
            };
            let c = if y > 0 && x >= channels {
                pixels[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            pixels[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    let rgb = pixels
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Image { width, height, rgb }
}

impl Image {
    /// Pixels near a colour of the page's style sheet.
    fn near(&self, [r, g, b]: [u8; 3]) -> usize {
        let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).abs();
        self.rgb
            .iter()
            .filter(|p| d(p[0], r) + d(p[1], g) + d(p[2], b) < 60)
            .count()
    }
}

/// Renders `file` in headless Chromium at 1200×1600 into `png`.
fn screenshot(file: &Path, png: &Path, profile: &Path) {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,1600")
        .arg(format!("file://{}", file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            assert!(status.success(), "chromium: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium took more than two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chromium_draws_a_reallocated_port_and_a_lost_connection() {
    if !have("chromium") {
        return skip("chromium not installed");
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("natcheck-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The connection of each recording that the point is made on: one whose source
    // port moved, one that lost packets.
    type Pick = fn(&Value, &Value) -> bool;
    let cases: [(&str, Pick); 2] = [
        ("port-collision", |_, c| {
            c["translations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["port_realloc"].is_object())
        }),
        ("fault-forward-drop", |doc, c| lost(doc, c) > 0),
    ];
    for (name, pick) in cases {
        let (html, doc) = both(&captures(name), &[]);
        let id = s(&connections(&doc)
            .iter()
            .find(|c| pick(&doc, c))
            .expect("one")["id"])
        .to_string();
        let page = dir.join(format!("{name}-{id}.html"));
        std::fs::write(&page, page_of(&html, &id)).unwrap();
        let png = dir.join(format!("{name}-{id}.png"));
        screenshot(&page, &png, &dir.join(format!("profile-{name}")));
        let img = decode_png(&std::fs::read(&png).expect("a screenshot"));
        assert_eq!((img.width, img.height), (1200, 1600), "{name}");
        // Drawn: text and lines in many shades, not a blank page.
        let white = img.near([255, 255, 255]);
        assert!(white < img.rgb.len() * 995 / 1000, "{name}: blank");
        let mut shades: Vec<[u8; 3]> = img.rgb.clone();
        shades.sort_unstable();
        shades.dedup();
        assert!(shades.len() > 50, "{name}: {} colours", shades.len());
        // The initiator's arrows (the style sheet's --fwd).
        assert!(img.near([0x1d, 0x4e, 0xd8]) > 20, "{name}: no arrows");
        if name == "port-collision" {
            // The rewritten source address and port (--chg).
            assert!(img.near([0xb4, 0x53, 0x09]) > 40, "{name}: no highlight");
        } else {
            // The crosses (--lost).
            assert!(img.near([0xdc, 0x26, 0x26]) > 20, "{name}: no cross");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
