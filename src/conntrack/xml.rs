//! `conntrack -L -o xml` and `conntrack -E -o xml`: libnetfilter_conntrack's XML
//! printer, one `<flow>` element per entry or event, as conntrack-tools 1.4.7 prints
//! it (checked against the tool's own output):
//!
//! ```text
//! <?xml version="1.0" encoding="utf-8"?>
//! <conntrack>
//! <flow [type="new|update|destroy"]>
//!   <meta direction="original|reply">
//!     <layer3 protonum="2" protoname="ipv4"><src>..</src><dst>..</dst></layer3>
//!     <layer4 protonum="6" protoname="tcp"><sport>..</sport><dport>..</dport></layer4>
//!       (GRE: <srckey>0x..</srckey><dstkey>0x..</dstkey>; ICMP: nothing, or type/code/id)
//!     [<counters><packets>..</packets><bytes>..</bytes></counters>] [<zone>..</zone>]
//!   </meta>
//!   <meta direction="independent">[<state>..] [<timeout>..] [<mark>..] [<secmark>..]
//!     [<zone>..] [<use>..] [<id>..] [<assured/>] [<unreplied/>]
//!     [<timestamp><start>ns</start>[<stop>ns</stop>]</timestamp>] [<deltatime>..]</meta>
//!   [<when><hour>..<min>..<sec>..<wday>..<day>..<month>..<year>..</when>]   -o timestamp
//! </flow>[ [USERSPACE] portid=N]
//! </conntrack>
//! ```
//!
//! Flows usually sit one per line; a flow re-indented over several lines is read too.
//! `<when>` is the tool's local time without a zone: it is kept as printed
//! ([`Event::local_time`](super::Event::local_time)), never as an absolute time.
//! Elements natcheck has no field for are kept in [`Entry::extra`](super::Entry::extra)
//! (text) or as flags (empty elements, upper-cased).

use super::build::{EntryParts, TupleError, TupleParts};
use super::{Counters, Entry, Event, EventKind};
use crate::model::Proto;

/// An element of the flow: its name, attributes and children; or text.
#[derive(Debug)]
enum Node {
    El(El),
    Text(String),
}

#[derive(Debug)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

impl El {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn elements(&self) -> impl Iterator<Item = &El> {
        self.children.iter().filter_map(|n| match n {
            Node::El(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s.trim().to_string()
    }

    fn child(&self, name: &str) -> Option<&El> {
        self.elements().find(|e| e.name == name)
    }
}

/// Why a flow could not be read: a byte offset into its text and a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct XmlError {
    pub at: usize,
    pub message: String,
}

fn xerr<T>(at: usize, message: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError {
        at,
        message: message.into(),
    })
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let ent = &tail[1..end];
        let c = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses one element starting at `pos` (which is at `<`); returns it and the offset
/// just past it.
fn element(s: &str, pos: usize, depth: usize) -> Result<(El, usize), XmlError> {
    if depth > 32 {
        return xerr(pos, "elements nested too deeply");
    }
    let Some(close) = s[pos..].find('>').map(|i| pos + i) else {
        return xerr(pos, "expected `>` closing the tag");
    };
    let inner = &s[pos + 1..close];
    let (inner, empty) = match inner.strip_suffix('/') {
        Some(i) => (i, true),
        None => (inner, false),
    };
    let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
    {
        return xerr(pos + 1, format!("expected an element name, found `{name}`"));
    }
    let attrs = attributes(&inner[name_end..], pos + 1 + name_end)?;
    let mut el = El {
        name: name.to_string(),
        attrs,
        children: Vec::new(),
    };
    let mut at = close + 1;
    if empty {
        return Ok((el, at));
    }
    loop {
        let Some(lt) = s[at..].find('<').map(|i| at + i) else {
            return xerr(pos, format!("`<{name}>` is not closed"));
        };
        if lt > at {
            el.children.push(Node::Text(unescape(&s[at..lt])));
        }
        if let Some(rest) = s[lt..].strip_prefix("</") {
            let Some(end) = rest.find('>') else {
                return xerr(lt, "expected `>` closing the end tag");
            };
            let closing = rest[..end].trim();
            if closing != name {
                return xerr(lt, format!("expected `</{name}>`, found `</{closing}>`"));
            }
            return Ok((el, lt + 2 + end + 1));
        }
        let (child, next) = element(s, lt, depth + 1)?;
        el.children.push(Node::El(child));
        at = next;
    }
}

/// `k="v" k2='v2'` inside a tag; `base` is the offset of `s` in the flow text.
fn attributes(s: &str, base: usize) -> Result<Vec<(String, String)>, XmlError> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            return Ok(out);
        }
        let at = base + (s.len() - trimmed.len());
        let Some((k, v)) = trimmed.split_once('=') else {
            return xerr(at, "expected `name=\"value\"` in the tag");
        };
        let v = v.trim_start();
        let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return xerr(at, format!("expected a quoted value after `{}=`", k.trim()));
        };
        let Some(end) = v[1..].find(q) else {
            return xerr(at, format!("the value of `{}` is not closed", k.trim()));
        };
        out.push((k.trim().to_string(), unescape(&v[1..1 + end])));
        rest = &v[1 + end + 1..];
    }
}

/// A flow read: an entry, or an event when the flow has a `type`.
#[derive(Debug)]
pub(super) enum Flow {
    Entry(Entry),
    Event(Event),
}

/// Reads one `<flow ...>...</flow>` (exactly that text); `line` is stored on the entry.
pub(super) fn flow(line: u64, s: &str) -> Result<Flow, XmlError> {
    let start = s.find('<').unwrap_or(0);
    let (el, _) = element(s, start, 0)?;
    if el.name != "flow" {
        return xerr(start, format!("expected `<flow>`, found `<{}>`", el.name));
    }
    let kind = match el.attr("type") {
        None => None,
        Some("new") => Some(EventKind::New),
        Some("update") => Some(EventKind::Update),
        Some("destroy") => Some(EventKind::Destroy),
        Some(other) => return xerr(start, format!("unknown flow type `{other}`")),
    };
    let mut parts = EntryParts::default();
    let mut dirs: [Option<(TupleParts, Option<Counters>)>; 2] = [None, None];
    let mut proto: Option<Proto> = None;
    let mut local_time = None;
    for child in el.elements() {
        match (child.name.as_str(), child.attr("direction")) {
            ("meta", Some(d @ ("original" | "reply"))) => {
                let i = usize::from(d == "reply");
                let (t, c, p, zone) = direction(child, start)?;
                if let Some(p) = p {
                    proto.get_or_insert(p);
                }
                if let Some(l3) = child
                    .child("layer3")
                    .and_then(|l| l.attr("protonum")?.parse().ok())
                {
                    parts.l3num.get_or_insert(l3);
                }
                if let Some(z) = zone {
                    if i == 0 {
                        parts.zone_orig = Some(z);
                    } else {
                        parts.zone_reply = Some(z);
                    }
                }
                dirs[i] = Some((t, c));
            }
            ("meta", _) => independent(child, &mut parts, start)?,
            ("when", _) => local_time = Some(when(child)),
            (name, _) => parts.extra.push((name.to_string(), child.text())),
        }
    }
    let Some(proto) = proto else {
        return xerr(start, "expected `<layer4 protonum=...>` in the flow");
    };
    let build = |which: &str, d: &Option<(TupleParts, Option<Counters>)>| {
        let Some((t, _)) = d else {
            return xerr(
                start,
                format!("expected the {which} direction (`<meta direction=...>`)"),
            );
        };
        t.build(proto).or_else(|e| {
            let m = match e {
                TupleError::NoAddresses => "expected `<src>` and `<dst>`".to_string(),
                TupleError::MixedFamilies => {
                    "`<src>` and `<dst>` are of different address families".to_string()
                }
                TupleError::MissingPort => format!("expected `<sport>` and `<dport>` for {proto}"),
            };
            xerr(start, format!("{which} direction: {m}"))
        })
    };
    let orig = build("original", &dirs[0])?;
    let reply = build("reply", &dirs[1])?;
    if orig.tuple.src.is_ipv4() != reply.tuple.src.is_ipv4() {
        return xerr(
            start,
            "original and reply directions are of different address families",
        );
    }
    parts.orig_counters = dirs[0].as_ref().and_then(|d| d.1);
    parts.reply_counters = dirs[1].as_ref().and_then(|d| d.1);
    let mut entry = parts.into_entry(line, orig, reply);
    Ok(match kind {
        Some(kind) => Flow::Event(Event {
            kind,
            time_ns: None,
            local_time,
            entry,
        }),
        None => {
            if let Some(t) = local_time {
                entry.extra.push(("when".to_string(), t));
            }
            Flow::Entry(entry)
        }
    })
}

type Direction = (TupleParts, Option<Counters>, Option<Proto>, Option<u16>);

/// One `<meta direction="original|reply">`.
fn direction(m: &El, at: usize) -> Result<Direction, XmlError> {
    let mut t = TupleParts::default();
    let mut proto = None;
    let mut counters = None;
    let mut zone = None;
    let bad = |what: &str, v: &str| XmlError {
        at,
        message: format!("expected {what}, found `{v}`"),
    };
    for el in m.elements() {
        match el.name.as_str() {
            "layer3" => {
                for a in el.elements() {
                    let v = a.text();
                    let addr = match v.parse() {
                        Ok(a) => a,
                        Err(_) => return Err(bad(&format!("an IP address in `<{}>`", a.name), &v)),
                    };
                    match a.name.as_str() {
                        "src" => t.src = Some(addr),
                        "dst" => t.dst = Some(addr),
                        _ => {}
                    }
                }
            }
            "layer4" => {
                let n = el.attr("protonum").unwrap_or_default();
                match n.parse::<u8>() {
                    Ok(n) => proto = Some(Proto::from_number(n)),
                    Err(_) => return Err(bad("a protocol number in `protonum`", n)),
                }
                for a in el.elements() {
                    let v = a.text();
                    let num = |what: &str| -> Result<u16, XmlError> {
                        v.parse().map_err(|_| bad(what, &v))
                    };
                    match a.name.as_str() {
                        "sport" => t.sport = Some(num("a port in `<sport>`")?),
                        "dport" => t.dport = Some(num("a port in `<dport>`")?),
                        "srckey" | "dstkey" => {
                            let k = u16::from_str_radix(v.trim_start_matches("0x"), 16)
                                .map_err(|_| bad("a hexadecimal GRE key", &v))?;
                            if a.name == "srckey" {
                                t.sport = Some(k);
                            } else {
                                t.dport = Some(k);
                            }
                        }
                        "type" => t.icmp_type = v.parse().ok(),
                        "code" => t.icmp_code = v.parse().ok(),
                        "id" => t.icmp_id = v.parse().ok(),
                        _ => {}
                    }
                }
            }
            "counters" => {
                let get = |n: &str| -> Result<u64, XmlError> {
                    match el.child(n) {
                        Some(c) => c.text().parse().map_err(|_| bad("a count", &c.text())),
                        None => Ok(0),
                    }
                };
                counters = Some(Counters {
                    packets: get("packets")?,
                    bytes: get("bytes")?,
                });
            }
            "zone" => zone = Some(el.text().parse().map_err(|_| bad("a zone", &el.text()))?),
            _ => {}
        }
    }
    Ok((t, counters, proto, zone))
}

/// `<meta direction="independent">`: state, timeout, mark, flags and the rest.
fn independent(m: &El, parts: &mut EntryParts, at: usize) -> Result<(), XmlError> {
    for el in m.elements() {
        let v = el.text();
        let bad = |what: &str| XmlError {
            at,
            message: format!("expected {what} in `<{}>`, found `{v}`", el.name),
        };
        match el.name.as_str() {
            "state" => parts.state = Some(v),
            "timeout" => parts.timeout_s = Some(v.parse().map_err(|_| bad("seconds"))?),
            "mark" => parts.mark = Some(v.parse().map_err(|_| bad("a mark"))?),
            "zone" => parts.zone = Some(v.parse().map_err(|_| bad("a zone"))?),
            "use" => parts.use_count = Some(v.parse().map_err(|_| bad("a count"))?),
            "id" => parts.id = Some(v.parse().map_err(|_| bad("an entry id"))?),
            "deltatime" => parts.delta_time_s = Some(v.parse().map_err(|_| bad("seconds"))?),
            "secctx" => parts.secctx = Some(v),
            "assured" => parts.flags.assured = true,
            "unreplied" => parts.flags.unreplied = true,
            "offload" => parts.flags.offload = true,
            "hw_offload" => parts.flags.hw_offload = true,
            "timestamp" => {
                parts.start = el.child("start").map(El::text);
                parts.stop = el.child("stop").map(El::text);
            }
            "labels" => {
                parts.labels = el
                    .elements()
                    .map(El::text)
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            name if el.children.is_empty() => parts.flags.other.push(name.to_uppercase()),
            name => parts.extra.push((name.to_string(), v)),
        }
    }
    Ok(())
}

/// `<when>`: `2026-11-30 06:31:38`, the tool's local time.
fn when(w: &El) -> String {
    let n = |k: &str| {
        w.child(k)
            .and_then(|e| e.text().parse::<u32>().ok())
            .unwrap_or(0)
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        n("year"),
        n("month"),
        n("day"),
        n("hour"),
        n("min"),
        n("sec")
    )
}

/// What follows `</flow>` on its line: conntrack -E's ` [USERSPACE] portid=N
/// progname=NAME`, applied to the entry.
pub(super) fn tail(entry: &mut Entry, s: &str) -> Result<(), usize> {
    let mut col = 0;
    for w in s.split_whitespace() {
        col = s.find(w).unwrap_or(col);
        if let Some(flag) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            entry.flags.other.push(flag.to_string());
        } else if let Some((k, v)) = w.split_once('=') {
            entry.extra.push((k.to_string(), v.to_string()));
        } else {
            return Err(col);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = r#"<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>34736</sport><dport>9999</dport></layer4><counters><packets>6</packets><bytes>321</bytes></counters></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>9000</sport><dport>34736</dport></layer4><counters><packets>4</packets><bytes>217</bytes></counters></meta><meta direction="independent"><state>TIME_WAIT</state><timeout>116</timeout><mark>7</mark><use>1</use><id>3495182768</id><assured/><timestamp><start>1796020298236197981</start></timestamp><deltatime>3</deltatime></meta></flow>"#;

    fn entry(s: &str) -> Entry {
        match flow(3, s).unwrap() {
            Flow::Entry(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_listed_tcp_flow() {
        let e = entry(TCP);
        assert_eq!(e.line, 3);
        assert_eq!(
            (e.orig.proto, e.orig.sport, e.orig.dport),
            (Proto::Tcp, 34736, 9999)
        );
        assert_eq!((e.reply.sport, e.reply.dport), (9000, 34736));
        assert_eq!(e.state.as_deref(), Some("TIME_WAIT"));
        assert_eq!(
            (e.timeout_s, e.mark, e.use_count, e.id),
            (Some(116), Some(7), Some(1), Some(3495182768))
        );
        assert!(e.flags.assured && !e.flags.unreplied);
        assert_eq!(
            e.orig_counters,
            Some(Counters {
                packets: 6,
                bytes: 321
            })
        );
        assert_eq!(
            e.reply_counters,
            Some(Counters {
                packets: 4,
                bytes: 217
            })
        );
        assert_eq!(e.start.as_deref(), Some("1796020298236197981"));
        assert_eq!((e.delta_time_s, e.l3num), (Some(3), Some(2)));
    }

    #[test]
    fn events_gre_keys_zone_and_when() {
        let s = r#"<flow type="new"><meta direction="original"><layer3 protonum="10" protoname="ipv6"><src>fd00::1</src><dst>2001:db8::2</dst></layer3><layer4 protonum="47" protoname="gre"><srckey>0x1a2b</srckey><dstkey>0x0</dstkey></layer4></meta><meta direction="reply"><layer3 protonum="10" protoname="ipv6"><src>2001:db8::2</src><dst>fd00::1</dst></layer3><layer4 protonum="47" protoname="gre"><srckey>0x0</srckey><dstkey>0x1a2b</dstkey></layer4></meta><meta direction="independent"><timeout>30</timeout><mark>7</mark><zone>5</zone><id>1</id><unreplied/><secmark>0</secmark><helper>pptp</helper></meta><when><hour>6</hour><min>31</min><sec>38</sec><wday>2</wday><day>30</day><month>11</month><year>2026</year></when></flow>"#;
        let Flow::Event(ev) = flow(1, s).unwrap() else {
            panic!()
        };
        assert_eq!(ev.kind, EventKind::New);
        assert_eq!(ev.local_time.as_deref(), Some("2026-11-30 06:31:38"));
        assert_eq!(ev.time_ns, None);
        let e = &ev.entry;
        assert_eq!(
            (e.orig.proto, e.orig.sport, e.orig.dport),
            (Proto::Gre, 0x1a2b, 0)
        );
        assert_eq!((e.zone, e.l3num), (Some(5), Some(10)));
        assert!(e.flags.unreplied);
        assert_eq!(
            e.extra,
            [
                ("secmark".to_string(), "0".to_string()),
                ("helper".to_string(), "pptp".to_string())
            ]
        );
    }

    #[test]
    fn icmp_without_type_and_a_userspace_tail() {
        let s = r#"<flow type="destroy"><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta></flow>"#;
        let Flow::Event(mut ev) = flow(1, s).unwrap() else {
            panic!()
        };
        assert_eq!((ev.entry.orig.sport, ev.entry.orig_icmp), (0, None));
        tail(&mut ev.entry, " [USERSPACE] portid=3148305843").unwrap();
        assert_eq!(ev.entry.flags.other, ["USERSPACE"]);
        assert_eq!(
            ev.entry.extra,
            [("portid".to_string(), "3148305843".to_string())]
        );
        assert_eq!(tail(&mut ev.entry, " [X] junk"), Err(5));
    }

    #[test]
    fn malformed_flows_are_located() {
        let at = |s: &str| flow(1, s).unwrap_err();
        let e = at(&TCP.replace("</src>", "</dst>"));
        assert!(e.message.contains("expected `</src>`"), "{e:?}");
        let e = at(&TCP.replace("<sport>34736</sport>", "<sport>x</sport>"));
        assert!(e.message.contains("a port in `<sport>`"), "{e:?}");
        let e = at(&TCP.replace(
            r#"<meta direction="reply">"#,
            r#"<meta direction="elsewhere">"#,
        ));
        assert!(e.message.contains("reply direction"), "{e:?}");
        let e = at(&TCP[..TCP.find(r#"<meta direction="reply">"#).unwrap()]);
        assert!(e.message.contains("is not closed"), "{e:?}");
        assert_eq!(
            at("<flow type=\"odd\"></flow>").message,
            "unknown flow type `odd`"
        );
        assert_eq!(unescape("a&lt;b&amp;&#x41;&#66;&bogus;"), "a<b&AB&bogus;");
    }
}
