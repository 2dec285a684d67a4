use super::*;
use crate::diag::Location;
use crate::model::Proto;
use crate::rules::{
    Base, Branch, Chain, ChainType, Counters, CtState, Family, Hook, Iface, InputKind, Match,
    MatchKind, NatFlags, NatTo, Ports, Prefix, Rule, Set, SetDim, SetMember, Table, Target,
    Verdict,
};

/// The first way two rule sets read from the same kernel differ, on everything but
/// where things were read (source, lines, rule text, dialect; handles when the text
/// has none). Anonymous sets are compared by their members, as their names hold the
/// rule's handle or line. With `written`, the text is a file written for `nft -f`
/// rather than nft's own listing: a `counter` without values is the kernel's zero, and
/// the kernel orders set elements its own way.
pub(crate) fn first_difference(text: &RuleSet, json: &RuleSet, written: bool) -> Option<String> {
    if written {
        // The kernel lists a set's elements in its own order, not the file's.
        let (text, json) = (in_order(text), in_order(json));
        return differences(&text, &json, written);
    }
    differences(text, json, written)
}

/// The rule set with set members and map branches sorted.
fn in_order(rs: &RuleSet) -> RuleSet {
    let mut rs = rs.clone();
    for set in rs.sets.values_mut() {
        set.members.sort_by_key(|m| format!("{m:?}"));
    }
    for t in &mut rs.tables {
        for c in &mut t.chains {
            for r in &mut c.rules {
                if let Target::Map { branches, .. } = &mut r.target {
                    branches.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }
        }
    }
    rs
}

fn differences(text: &RuleSet, json: &RuleSet, written: bool) -> Option<String> {
    let names = |rs: &RuleSet| -> Vec<String> {
        rs.tables
            .iter()
            .map(|t| format!("{:?} {}", t.family, t.name))
            .collect()
    };
    if names(text) != names(json) {
        return Some(format!(
            "tables: text {:?}, json {:?}",
            names(text),
            names(json)
        ));
    }
    for (a, b) in text.tables.iter().zip(&json.tables) {
        if let Some(d) = table_difference(text, json, a, b, written) {
            return Some(format!("table {:?} {}: {d}", a.family, a.name));
        }
    }
    let named = |rs: &RuleSet| -> Vec<(String, Set)> {
        rs.sets
            .iter()
            .filter(|(k, _)| !k.contains(" __"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (a, b) = (named(text), named(json));
    if a != b {
        let d = a.iter().zip(&b).find(|(x, y)| x != y);
        return Some(format!(
            "named sets: first difference {d:?} ({} vs {})",
            a.len(),
            b.len()
        ));
    }
    None
}

fn table_difference(
    ta: &RuleSet,
    tb: &RuleSet,
    a: &Table,
    b: &Table,
    written: bool,
) -> Option<String> {
    let names = |t: &Table| t.chains.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if names(a) != names(b) {
        return Some(format!("chains: text {:?}, json {:?}", names(a), names(b)));
    }
    for (ca, cb) in a.chains.iter().zip(&b.chains) {
        if let Some(d) = chain_difference(ta, tb, ca, cb, written) {
            return Some(format!("chain {}: {d}", ca.name));
        }
    }
    None
}

fn chain_difference(
    ta: &RuleSet,
    tb: &RuleSet,
    a: &Chain,
    b: &Chain,
    written: bool,
) -> Option<String> {
    if a.base != b.base {
        return Some(format!("base: text {:?}, json {:?}", a.base, b.base));
    }
    if a.rules.len() != b.rules.len() {
        return Some(format!(
            "{} rules in the text, {} in the json",
            a.rules.len(),
            b.rules.len()
        ));
    }
    for (k, (ra, rb)) in a.rules.iter().zip(&b.rules).enumerate() {
        if let Some(d) = rule_difference(ta, tb, ra, rb, written) {
            return Some(format!(
                "rule {} (line {}, handle {:?}: {}): {d}",
                k + 1,
                ra.line,
                rb.handle,
                ra.text
            ));
        }
    }
    None
}

fn rule_difference(
    ta: &RuleSet,
    tb: &RuleSet,
    a: &Rule,
    b: &Rule,
    written: bool,
) -> Option<String> {
    // A listing without -a has no handles to compare.
    if a.handle.is_some() && a.handle != b.handle {
        return Some(format!("handle: text {:?}, json {:?}", a.handle, b.handle));
    }
    let zero = written
        && a.counters.is_none()
        && b.counters.is_some_and(|c| c.packets == 0 && c.bytes == 0);
    if a.counters != b.counters && !zero {
        return Some(format!(
            "counters: text {:?}, json {:?}",
            a.counters, b.counters
        ));
    }
    if a.comment != b.comment {
        return Some(format!(
            "comment: text {:?}, json {:?}",
            a.comment, b.comment
        ));
    }
    if a.matches.len() != b.matches.len() {
        return Some(format!(
            "matches: text {:?}, json {:?}",
            a.matches, b.matches
        ));
    }
    for (ma, mb) in a.matches.iter().zip(&b.matches) {
        let same = match (&ma.kind, &mb.kind) {
            (MatchKind::Set { name: na, dims: da }, MatchKind::Set { name: nb, dims: db })
                if na.contains(" __") && nb.contains(" __") =>
            {
                ma.negated == mb.negated && da == db && ta.sets.get(na) == tb.sets.get(nb)
            }
            _ => ma == mb,
        };
        if !same {
            return Some(format!("match: text {ma:?}, json {mb:?}"));
        }
    }
    if a.target != b.target {
        return Some(format!("target: text {:?}, json {:?}", a.target, b.target));
    }
    None
}

fn read(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text and JSON forms of the same kernel's rule set read the same, the text with
/// no warning.
fn same_rules(text: &str, json: &str, written: bool) -> RuleSet {
    let a = parse_text(text, &read(text));
    let b = crate::rules::nft::parse_json(json, &read(json));
    assert!(a.warnings.is_empty(), "{text}: {:?}", a.warnings);
    assert!(b.warnings.is_empty(), "{json}: {:?}", b.warnings);
    assert!(!a.tables.is_empty());
    if let Some(d) = first_difference(&a, &b, written) {
        panic!("{text} and {json} differ: {d}");
    }
    a
}

#[test]
fn kube_nft_listing_reads_like_its_json() {
    let rs = same_rules(
        "samples/kube-nft/nft.txt",
        "samples/kube-nft/nft.json",
        false,
    );
    for t in &rs.tables {
        assert_eq!(t.dialect, Dialect::NftText);
    }
}

#[test]
fn recorded_kube_proxy_commands_read_like_their_json() {
    same_rules(
        "tests/data/rules/kube-proxy-nftables-recorded.nft",
        "tests/data/rules/kube-proxy-nftables-recorded.json",
        true,
    );
}

#[test]
fn recorded_native_firewall_reads_like_its_json() {
    same_rules(
        "tests/data/rules/native-firewall-recorded.nft",
        "tests/data/rules/native-firewall-recorded.json",
        true,
    );
}

#[test]
fn recorded_syntax_listings_read_like_their_json() {
    for name in ["nft-syntax-recorded", "nft-firewall-recorded"] {
        same_rules(
            &format!("tests/data/rules/{name}.txt"),
            &format!("tests/data/rules/{name}.json"),
            false,
        );
    }
    same_rules(
        "tests/data/rules/nft-syntax-recorded.nft",
        "tests/data/rules/nft-syntax-recorded.json",
        true,
    );
}

fn pfx(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix {
        addr: a.parse().unwrap(),
        len: l.parse().unwrap(),
    }
}

fn m(kind: MatchKind) -> Match {
    Match {
        negated: false,
        kind,
    }
}

fn chain<'a>(rs: &'a RuleSet, table: &str, name: &str) -> &'a Chain {
    rs.tables
        .iter()
        .find(|t| t.name == table)
        .unwrap_or_else(|| panic!("no table {table}"))
        .chain(name)
        .unwrap_or_else(|| panic!("no chain {name}"))
}

/// Each warning as `(line, column, message)`.
fn warnings(rs: &RuleSet) -> Vec<(u64, u64, String)> {
    rs.warnings
        .iter()
        .map(|w| match w.location {
            Location::Line { line, column } => (line, column, w.message.clone()),
            _ => (0, 0, w.message.clone()),
        })
        .collect()
}

#[test]
fn tokens_know_their_place() {
    let src = "table ip t { # handle 3\n\tip saddr != 10.0.0.0/8 \"a b\" >= <<x ; é,\\\n  y # other\n\"open";
    let (toks, bad) = lex::tokenize(src);
    let shown: Vec<(Kind, &str, u64, u64)> = toks
        .iter()
        .map(|t| (t.kind, t.text(src), t.line, t.column))
        .collect();
    use Kind::*;
    assert_eq!(
        shown,
        vec![
            (Word, "table", 1, 1),
            (Word, "ip", 1, 7),
            (Word, "t", 1, 10),
            (Punct, "{", 1, 12),
            (Handle(3), "# handle 3", 1, 14),
            (Newline, "\n", 1, 24),
            (Word, "ip", 2, 2),
            (Word, "saddr", 2, 5),
            (Punct, "!=", 2, 11),
            (Word, "10.0.0.0/8", 2, 14),
            (Str, "a b", 2, 25),
            (Punct, ">=", 2, 31),
            (Punct, "<<", 2, 34),
            (Word, "x", 2, 36),
            (Punct, ";", 2, 38),
            (Word, "é", 2, 40),
            (Punct, ",", 2, 41),
            // The line continuation joins line 3 on: no line end between.
            (Word, "y", 3, 3),
            (Newline, "\n", 3, 12),
            (Str, "open", 4, 1),
        ]
    );
    assert_eq!(bad, vec![lex::Unterminated { line: 4, column: 1 }]);
    // Nothing is lost on an empty or blank input.
    assert!(lex::tokenize("").0.is_empty());
    assert_eq!(lex::tokenize("  \t").0.len(), 0);
}

#[test]
fn words_as_values() {
    use expr::literal_word as w;
    use serde_json::json;
    assert_eq!(w("80"), json!(80));
    assert_eq!(w("0x00004000"), json!(16384));
    assert_eq!(
        w("10.0.0.0/8"),
        json!({"prefix": {"addr": "10.0.0.0", "len": 8}})
    );
    assert_eq!(
        w("fe80::/10"),
        json!({"prefix": {"addr": "fe80::", "len": 10}})
    );
    assert_eq!(w("1000-2000"), json!({"range": [1000, 2000]}));
    assert_eq!(
        w("2001:db8::1-2001:db8::9"),
        json!({"range": ["2001:db8::1", "2001:db8::9"]})
    );
    assert_eq!(w("echo-request"), json!("echo-request"));
    assert_eq!(w("-100"), json!("-100"));
    assert_eq!(w("+5"), json!("+5"));
    assert_eq!(w("99999999999999999999"), json!("99999999999999999999"));
    assert_eq!(w("10.0.0.0/99"), json!("10.0.0.0/99"));
}

/// A listing as `nft -a list ruleset` prints it.
const LISTING: &str = r#"table ip nat { # handle 7
	set allowed { # handle 3
		type ipv4_addr . inet_service
		flags interval
		elements = { 10.0.0.0/24 . 80,
			     10.0.1.1 . 8000-8080 }
	}

	chain prerouting { # handle 1
		type nat hook prerouting priority dstnat + 10; policy accept;
		iifname "eth0" tcp dport { 80, 443 } counter packets 3 bytes 180 dnat to 10.0.0.5:8080 comment "web" # handle 4
		ip saddr . tcp dport @allowed accept # handle 5
		ip daddr { 192.0.2.1, 192.0.2.7 } drop # handle 6
	}

	chain postrouting { # handle 2
		comment "out"
		type nat hook postrouting priority srcnat; policy drop;
		oifname "veth*" masquerade random,persistent # handle 8
	}
}
"#;

#[test]
fn a_listing_with_handles() {
    let rs = parse_text("nat.txt", LISTING);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let t = &rs.tables[0];
    assert_eq!(
        (t.name.as_str(), t.dialect, t.source.as_str()),
        ("nat", Dialect::NftText, "nat.txt")
    );
    let pre = chain(&rs, "nat", "prerouting");
    assert_eq!(pre.line, 9);
    assert_eq!(
        pre.base,
        Some(Base {
            hook: Hook::Prerouting,
            priority: -90,
            kind: ChainType::Nat,
            policy: Verdict::Accept,
            counters: None,
        })
    );
    let web = &pre.rules[0];
    assert_eq!((web.line, web.handle), (11, Some(4)));
    assert_eq!(
        web.text,
        "iifname \"eth0\" tcp dport { 80, 443 } counter dnat to 10.0.0.5:8080 comment \"web\""
    );
    assert_eq!(web.comment.as_deref(), Some("web"));
    assert_eq!(
        web.counters,
        Some(Counters {
            packets: 3,
            bytes: 180
        })
    );
    assert_eq!(
        web.matches,
        vec![
            m(MatchKind::InIface(Iface {
                name: "eth0".into(),
                prefix: false
            })),
            m(MatchKind::Proto(Proto::Tcp)),
            m(MatchKind::Dport(Ports(vec![(80, 80), (443, 443)]))),
        ]
    );
    assert_eq!(
        web.target,
        Target::Dnat {
            to: NatTo {
                addrs: Some(("10.0.0.5".parse().unwrap(), "10.0.0.5".parse().unwrap())),
                ports: Some((8080, 8080)),
            },
            flags: NatFlags::default(),
        }
    );
    // A named set of concatenations, its elements over two lines.
    assert_eq!(
        pre.rules[1].matches,
        vec![
            m(MatchKind::Proto(Proto::Tcp)),
            m(MatchKind::Set {
                name: "ip nat allowed".into(),
                dims: vec![SetDim::Src, SetDim::Dst]
            })
        ]
    );
    let allowed = &rs.sets["ip nat allowed"];
    assert_eq!(allowed.kind, "ipv4_addr . inet_service");
    // A range of ports is one member.
    assert_eq!(
        allowed.members,
        [
            SetMember::AddrPort(pfx("10.0.0.0/24"), None, (80, 80)),
            SetMember::AddrPort(pfx("10.0.1.1/32"), None, (8000, 8080))
        ]
    );
    // An anonymous set of addresses, named after the rule's handle.
    assert_eq!(
        pre.rules[2].matches,
        vec![m(MatchKind::Set {
            name: "ip nat __rule6_set1".into(),
            dims: vec![SetDim::Dst]
        })]
    );
    assert_eq!(
        rs.sets["ip nat __rule6_set1"].members,
        vec![
            SetMember::Addr(pfx("192.0.2.1/32")),
            SetMember::Addr(pfx("192.0.2.7/32"))
        ]
    );
    // The chain's comment is not a rule.
    let post = chain(&rs, "nat", "postrouting");
    assert_eq!(post.base.as_ref().unwrap().policy, Verdict::Drop);
    assert_eq!(post.rules.len(), 1);
    assert_eq!(
        post.rules[0].target,
        Target::Masquerade {
            ports: None,
            flags: NatFlags {
                random: true,
                random_fully: false,
                persistent: true
            }
        }
    );
}

#[test]
fn without_handles_anonymous_sets_are_named_after_the_line() {
    let rs = parse_text(
        "f.nft",
        "table inet f {\n chain c {\n  ip saddr { 10.0.0.1, 10.0.0.2 } ip daddr {\n   10.1.0.1,\n   10.1.0.2 } drop\n }\n}\n",
    );
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let r = &chain(&rs, "f", "c").rules[0];
    assert_eq!((r.line, r.handle), (3, None));
    // A rule over several lines is quoted on one.
    assert_eq!(
        r.text,
        "ip saddr { 10.0.0.1, 10.0.0.2 } ip daddr { 10.1.0.1, 10.1.0.2 } drop"
    );
    let names: Vec<&str> = r
        .matches
        .iter()
        .map(|m| match &m.kind {
            MatchKind::Set { name, .. } => name.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(names, ["inet f __line3_set1", "inet f __line3_set2"]);
    assert_eq!(r.target, Target::Drop);
}

#[test]
fn kube_proxy_as_listed_walks_its_maps() {
    let rs = parse_text("kp.txt", &read("samples/kube-nft/nft.txt"));
    let svc = chain(&rs, "kube-proxy", "service-WEBSVC01-default/web/tcp/http");
    let Target::Map { by, branches } = &svc.rules[1].target else {
        panic!("{:?}", svc.rules[1].target)
    };
    assert_eq!(by, "numgen random mod 3");
    assert_eq!(branches.len(), 3);
    assert!(branches.iter().all(|b| b.share == Some(1.0 / 3.0)));
    let services = chain(&rs, "kube-proxy", "services");
    assert_eq!(
        services.rules[1].matches[0].kind,
        MatchKind::AddrType {
            src: vec![],
            dst: vec![crate::rules::AddrType::Local],
            limit_in: false,
            limit_out: false
        }
    );
    let Target::Map { branches, .. } = &services.rules[1].target else {
        panic!()
    };
    assert_eq!(
        branches[..],
        [Branch {
            share: None,
            key: "tcp . 30080".into(),
            target: Box::new(Target::Goto(
                "external-WEBSVC01-default/web/tcp/http".into()
            ))
        }]
    );
    let fwd = chain(&rs, "docker-native", "forward");
    assert_eq!(
        fwd.rules[1].matches,
        vec![m(MatchKind::CtState(vec![
            CtState::Established,
            CtState::Related
        ]))]
    );
    assert_eq!((fwd.rules[1].line, fwd.rules[1].handle), (115, Some(14)));
}

#[test]
fn commands_as_nft_f_reads_them() {
    let text = "add table ip t\nadd chain ip t pre { type nat hook prerouting priority -100 ; policy accept ; }\nadd chain t c\nadd set ip t s { type ipv4_addr ; flags interval ; }\nadd element ip t s { 10.0.0.0/8 }\nadd rule ip t pre ip saddr @s jump c\nadd rule t c mark set mark or 0x4000\ncreate map inet x m { type mark : verdict ; }\n";
    assert_eq!(InputKind::detect(text), Some(InputKind::NftText));
    let rs = crate::rules::parse("cmds.nft", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let pre = chain(&rs, "t", "pre");
    assert_eq!(pre.base.as_ref().unwrap().priority, -100);
    assert_eq!(
        (pre.rules[0].line, pre.rules[0].text.as_str()),
        (6, "ip saddr @s jump c")
    );
    assert_eq!(
        rs.sets["ip t s"].members,
        vec![SetMember::Addr(pfx("10.0.0.0/8"))]
    );
    let c = chain(&rs, "t", "c");
    assert_eq!(
        c.rules[0].target,
        Target::Mark(crate::rules::MarkOp {
            clear: 0x4000,
            xor: 0x4000
        })
    );
    assert_eq!(rs.tables.len(), 1);
}

#[test]
fn recognised_by_content() {
    for text in [
        "table inet filter {\n}",
        "# Warning: table ip nat is managed by iptables-nft, do not touch!\ntable ip nat { # handle 1\n}",
        "#!/usr/sbin/nft -f\n\nflush ruleset\ntable inet f {\n}",
        "define LAN = 10.0.0.0/8",
        "include \"/etc/nftables.d/*.nft\"",
        "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }",
        "add rule inet t c accept",
        "$ sudo nft -a list ruleset\ntable ip nat { # handle 1\n}",
        "root@host:~# nft list ruleset\ntable ip nat {\n}",
    ] {
        assert_eq!(InputKind::detect(text), Some(InputKind::NftText), "{text}");
    }
    // ipset's commands name a set, not a family.
    assert_eq!(
        InputKind::detect("add KUBE-CLUSTER-IP 10.96.0.1,tcp:443"),
        Some(InputKind::Ipset)
    );
    assert_eq!(
        InputKind::detect("create table hash:ip family inet"),
        Some(InputKind::Ipset)
    );
    assert_eq!(InputKind::detect("table"), None);
}

/// Every warning the reader gives, at its line and column; reading goes on past each.
#[test]
fn every_warning_at_its_line() {
    let text = "#!/usr/sbin/nft -f
define LAN = 10.0.0.0/8
include \"x.nft\"
flush ruleset
table ip t {
\tchain c {
\t\ttype nat hook prerouting priority sideways; policy accept;
\t\tip saddr $LAN frobnicate 7 accept comment \"c\"
\t\tip saddr 1.2.3.4 dnat to
\t\tmeta mark set
\t\tiifname \"eth0 accept
\t\tip saddr { 1.2.3.4, ; } drop
\t\tqueue num 3 bypass
\t}
\tset s {
\t\ttype ipv4_addr
\t\twibble 3
\t\telements = { 1.2.3.4 5.6.7.8 }
\t}
\tbogus x
\tchain d {
\t\ttype filter hook input;
\t\tpolicy
\t}
}
table foo bar {
}
delete table ip t
add rule ip t c position 3 accept
insert rule ip t c drop
add frob ip t
what
}
table ip u {
\tchain x {
\t\taccept
";
    let rs = parse_text("w.nft", text);
    let got = warnings(&rs);
    let want: &[(u64, u64, &str)] = &[
        (2, 1, "define LAN not expanded"),
        (3, 1, "include not followed"),
        (6, 2, "chain ip t c: priority \"sideways\" not understood, read as 0"),
        (8, 17, "\"frobnicate\" not understood: the rest of the rule, \"frobnicate 7 accept\", is read as a target natcheck cannot follow"),
        (9, 27, "an address expected, found the end of the line: the rest of the rule, \"dnat to\""),
        (10, 16, "a value expected, found the end of the line: the rest of the rule, \"meta mark set\""),
        (11, 11, "string not closed on its line"),
        (12, 23, "a value expected, found \";\": the rest of the rule, \"ip saddr { 1.2.3.4, ; } drop\""),
        (17, 3, "set ip t s: \"wibble\" not understood"),
        (18, 24, "set ip t s: \",\" or \"}\" expected, found \"5.6.7.8\""),
        (20, 2, "\"bogus\" not understood in table ip t: skipped"),
        (22, 25, "chain ip t d: \"priority\" expected, found \";\""),
        (23, 9, "chain ip t d: a policy expected, found the end of the line"),
        (26, 7, "unknown family \"foo\" (ip, ip6, inet, bridge, arp or netdev) of table bar: skipped"),
        (28, 1, "command delete not applied"),
        (29, 17, "rule position not applied"),
        (30, 1, "insert rule read as add rule"),
        (31, 10, "add frob: not understood"),
        (32, 1, "\"what\" not understood: expected a table, or an nft command"),
        (33, 1, "\"}\" not understood"),
        (34, 1, "table ip u: no closing brace before the end of the input"),
        (35, 2, "chain ip u x: no closing brace before the end of the input"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((line, col, msg), (wl, wc, wm)) in got.iter().zip(want) {
        assert_eq!((line, col), (wl, wc), "{msg}");
        assert!(
            msg.starts_with(wm),
            "line {line}: {msg:?} does not start with {wm:?}"
        );
    }
    // What could be read was kept: the rules up to what failed, the chains after it.
    let c = chain(&rs, "t", "c");
    assert_eq!(c.base.as_ref().unwrap().priority, 0);
    let r = &c.rules[0];
    assert_eq!(r.comment.as_deref(), Some("c"));
    assert!(
        matches!(&r.matches[0].kind, MatchKind::Unknown { text, .. } if text == "ip saddr $LAN")
    );
    assert_eq!(
        r.target,
        Target::Unknown {
            name: "frobnicate".into(),
            text: "frobnicate 7 accept".into()
        }
    );
    assert_eq!(
        c.rules[1].matches,
        vec![m(MatchKind::Src(pfx("1.2.3.4/32")))]
    );
    assert!(matches!(&c.rules[1].target, Target::Unknown { name, .. } if name == "dnat"));
    assert!(matches!(&c.rules[5].target, Target::Unknown { name, .. } if name == "queue"));
    // `add rule` after the tables goes to the end of its chain.
    assert_eq!(c.rules.len(), 8);
    assert_eq!((c.rules[6].line, &c.rules[6].target), (29, &Target::Accept));
    assert!(rs.sets.contains_key("ip t s"));
    assert!(chain(&rs, "t", "d").base.is_none());
    assert_eq!(chain(&rs, "u", "x").rules[0].target, Target::Accept);
    assert!(!rs.tables.iter().any(|t| t.name == "bar"));
}

#[test]
fn a_pasted_command_line_is_not_read() {
    let rs = crate::rules::parse(
        "paste.txt",
        "user@host:~$ sudo nft list ruleset\ntable ip t {\n chain c {\n  accept\n }\n}\n",
    );
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    assert_eq!(chain(&rs, "t", "c").rules[0].line, 4);
}

/// Statements that do not change the packet's path, or that natcheck does not follow,
/// are read without a warning, as the JSON reader reads them.
#[test]
fn statements_beside_the_path() {
    let text = r#"table inet fw4 {
	flowtable ft {
		hook ingress priority filter
		devices = { br-lan, wan }
		counter
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		meta l4proto { tcp, udp } flow add @ft
		tcp dport 80 synproxy mss 1460 wscale 7 timestamp sack-perm
		ip daddr 10.0.0.1 dup to 10.0.0.2 device "eth0"
		counter last used never accept
		meter flood size 128 { ip saddr timeout 10s limit rate over 10/second } drop
		queue flags bypass to 0-3
	}
}
"#;
    let rs = parse_text("fw4.txt", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let c = chain(&rs, "fw4", "forward");
    let targets: Vec<String> = c.rules.iter().map(|r| format!("{:?}", r.target)).collect();
    assert_eq!(
        targets,
        [
            "Continue { name: \"flow add @ft\" }",
            "Continue { name: \"synproxy mss 1460 wscale 7 timestamp sack-perm\" }",
            "Continue { name: \"dup to 10.0.0.2 device \\\"eth0\\\"\" }",
            "Accept",
            "Drop",
            "Unknown { name: \"queue\", text: \"queue\" }",
        ]
    );
    assert!(
        matches!(&c.rules[4].matches[0].kind, MatchKind::Unknown { text, .. }
        if text == "meter flood size 128 { ip saddr limit rate over 10/second }")
    );
}

/// How older nft versions print some matches.
#[test]
fn older_listings() {
    let text = "table ip filter {
\tchain INPUT {
\t\ttype filter hook input priority 0; policy accept;
\t\tmeta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn counter packets 19533 bytes 1 drop
\t\ttcp flags & (syn | ack) == syn | ack accept
\t\ttcp dport { ssh, http } accept
\t\tcounter packets 0 bytes 0 reject with icmp type host-prohibited
\t\treject with icmpx type port-unreachable
\t}
}
";
    let rs = parse_text("old.txt", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let c = chain(&rs, "filter", "INPUT");
    assert_eq!(
        c.rules[0].matches[2],
        Match {
            negated: true,
            kind: MatchKind::TcpFlags {
                mask: 0x17,
                comp: 0x02
            }
        }
    );
    assert_eq!(
        c.rules[1].matches[1],
        m(MatchKind::TcpFlags {
            mask: 0x12,
            comp: 0x12
        })
    );
    assert_eq!(
        c.rules[2].matches[1],
        m(MatchKind::Dport(Ports(vec![(22, 22), (80, 80)])))
    );
    assert_eq!(
        c.rules[3].target,
        Target::Reject {
            with: Some("icmp host-prohibited".into())
        }
    );
    assert_eq!(
        c.rules[4].target,
        Target::Reject {
            with: Some("icmpx port-unreachable".into())
        }
    );
}

#[test]
fn flush_ruleset_keeps_what_follows() {
    let text = "table ip old {\n chain c {\n  accept\n }\n}\nflush ruleset\ntable ip new {\n chain c {\n  drop\n }\n}\n";
    let rs = parse_text("f.nft", text);
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    assert_eq!(rs.tables.len(), 1);
    assert_eq!(chain(&rs, "new", "c").rules[0].line, 9);
}

#[test]
fn iptables_nft_rules_as_nft_lists_them() {
    // nft prints what iptables-nft made in nft's own words where it can, as `xt` where
    // it cannot.
    let text = "# Warning: table ip filter is managed by iptables-nft, do not touch!
table ip filter { # handle 2
\tchain INPUT { # handle 3
\t\ttype filter hook input priority filter; policy accept;
\t\txt match recent counter packets 0 bytes 0 # handle 4
\t\tct state related,established counter packets 5 bytes 300 accept # handle 5
\t\tcounter packets 0 bytes 0 xt target \"LOG\" # handle 6
\t}
}
";
    let rs = parse_text("ipt.txt", text);
    let w = warnings(&rs);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].0, w[0].1), (0, 0));
    assert!(
        w[0].2.starts_with("2 rules hold xt expressions"),
        "{}",
        w[0].2
    );
    assert!(
        w[0].2.contains("nft list ruleset does not show"),
        "{}",
        w[0].2
    );
    let c = chain(&rs, "filter", "INPUT");
    assert!(
        matches!(&c.rules[0].matches[0].kind, MatchKind::Unknown { name, .. } if name == "recent")
    );
    assert_eq!(c.rules[1].target, Target::Accept);
    assert!(matches!(&c.rules[2].target, Target::Unknown { name, .. } if name == "LOG"));
}

#[test]
fn hostile_input_is_read_in_one_pass_without_a_panic() {
    // Deep nesting stops at a depth, with a warning.
    let deep = format!(
        "table ip t {{\n chain c {{\n  tcp flags & ({} == syn drop\n  {}meta mark 1 accept\n }}\n}}\n",
        "(".repeat(10_000),
        "(".repeat(10_000)
    );
    let deep = format!(
        "{deep}table ip u {{\n set s {{\n  type ipv4_addr\n  elements = {{ 10.0.0.1 }}\n }}\n}}\n"
    );
    let rs = parse_text("deep.nft", &deep);
    // The set after the failed rule is read: the failure left no depth behind.
    assert_eq!(rs.sets["ip u s"].members.len(), 1);
    let w = warnings(&rs);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!((w[0].0, w[0].1), (3, 16));
    assert!(
        w[0].2.starts_with("a value expected, found \"(\""),
        "{}",
        w[0].2
    );
    assert_eq!((w[1].0, w[1].1), (4, 35));
    assert!(w[1].2.starts_with("expressions nested more than 32 deep"));
    assert_eq!(chain(&rs, "t", "c").rules.len(), 2);
    // A long line of many statements, a long set, unbalanced braces.
    let long = format!(
        "table ip t {{\n chain c {{\n  {} accept\n  ip saddr {{ {} }} drop\n }}\n}}\n",
        "meta mark 1 ".repeat(20_000),
        (0..20_000)
            .map(|i| format!("10.{}.{}.1", i / 256, i % 256))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = std::time::Instant::now();
    let rs = parse_text("long.nft", &long);
    assert!(rs.warnings.is_empty(), "{:?}", &rs.warnings[..1]);
    assert_eq!(chain(&rs, "t", "c").rules[0].matches.len(), 20_000);
    assert!(started.elapsed().as_secs() < 20);
    for text in [
        "{{{{",
        "}}}}",
        "table",
        "table ip t {",
        "table ip t { chain",
        "\"",
        "add",
        "add rule",
        "@nh,",
        "table ip t {\nchain c {\nip saddr {",
    ] {
        let _ = parse_text("x", text);
    }
}

#[test]
fn iptables_nft_listing_in_nft_words() {
    let rs = parse_text(
        "ipt",
        &read("tests/data/rules/iptables-nft-listing-recorded.txt"),
    );
    let w = warnings(&rs);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].2.starts_with("1 rule holds xt expressions"),
        "{}",
        w[0].2
    );
    // -m statistic, both modes.
    let svc = chain(&rs, "nat", "KUBE-SVC-X");
    let MatchKind::Random { probability } = svc.rules[0].matches[0].kind else {
        panic!("{:?}", svc.rules[0].matches)
    };
    assert!((probability - 0.33333333349).abs() < 1e-9, "{probability}");
    assert_eq!(
        svc.rules[1].matches,
        vec![m(MatchKind::Nth {
            every: 2,
            packet: 0
        })]
    );
    let pre = chain(&rs, "nat", "PREROUTING");
    assert_eq!(
        pre.rules[1].matches,
        vec![m(MatchKind::Random { probability: 0.5 })]
    );
    // -j MARK --set-xmark 0x10/0xff, -j CONNMARK --save-mark.
    let mangle = chain(&rs, "mangle", "PREROUTING");
    assert_eq!(
        mangle.rules[0].target,
        Target::Mark(crate::rules::MarkOp {
            clear: 0xff,
            xor: 0x10
        })
    );
    assert_eq!(
        mangle.rules[1].target,
        Target::CopyMark {
            restore: false,
            nfmask: u32::MAX,
            ctmask: u32::MAX
        }
    );
    let post = chain(&rs, "nat", "POSTROUTING");
    assert_eq!(
        post.rules[2].target,
        Target::Snat {
            to: NatTo {
                addrs: Some((
                    "203.0.113.1".parse().unwrap(),
                    "203.0.113.1".parse().unwrap()
                )),
                ports: Some((1024, 65535)),
            },
            flags: NatFlags {
                random: false,
                random_fully: true,
                persistent: false
            },
        }
    );
    // The line -m comment left blank still reads.
    let fwd = chain(&rs, "filter", "FORWARD");
    assert_eq!(
        fwd.rules[4].matches,
        vec![m(MatchKind::Mark {
            value: 0x4000,
            mask: 0x4000
        })]
    );
    assert_eq!(
        fwd.rules[4].text,
        "meta mark & 0x00004000 == 0x00004000 counter accept"
    );
}

#[test]
fn rules_and_maps_past_the_limits() {
    // A rule that changes the mark 100 times, each after a match: read as far as 64.
    let marks = (0..100)
        .map(|i| format!("meta mark {i} meta mark set {}", i + 1))
        .collect::<Vec<_>>()
        .join(" ");
    // Many rules over one large map: each gets its branches, up to a budget.
    let elems = (0..2100)
        .map(|i| format!("{i} : accept"))
        .collect::<Vec<_>>()
        .join(", ");
    let lookups = "  meta mark vmap @m\n".repeat(500);
    let text = format!(
        "table ip t {{\n map m {{\n  type mark : verdict\n  elements = {{ {elems} }}\n }}\n chain c {{\n  {marks} accept\n{lookups} }}\n}}\n"
    );
    let started = std::time::Instant::now();
    let rs = parse_text("big.nft", &text);
    let w = warnings(&rs);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].2.starts_with("1 rule(s) with more than 64 statements"),
        "{}",
        w[0].2
    );
    assert!(w[1].2.contains("more than 1048576 branches"), "{}", w[1].2);
    let c = chain(&rs, "t", "c");
    assert_eq!(c.rules.iter().filter(|r| r.line == 7).count(), 65);
    assert!(matches!(&c.rules[64].target, Target::Unknown { name, .. } if name == "rule"));
    let lookups = &c.rules[65..];
    assert_eq!(lookups.len(), 500);
    assert!(matches!(&lookups[0].target, Target::Map { branches, .. } if branches.len() == 2100));
    assert!(
        matches!(&lookups[499].target, Target::Unknown { text, .. } if text.starts_with("map too large"))
    );
    assert!(started.elapsed().as_secs() < 30);
}

/// nft's own test suite lists the same kernel state both ways: a firewalld rule set,
/// NAT from maps, base chains at every standard priority.
#[test]
fn upstream_listings_read_like_their_json() {
    for name in [
        "firewalld-upstream-test",
        "nat-maps-upstream-test",
        "priorities-upstream-test",
    ] {
        same_rules(
            &format!("tests/data/rules/{name}.nft"),
            &format!("tests/data/rules/{name}.json"),
            false,
        );
    }
}

/// Docker's native nftables backend, as its own tests list it.
#[test]
fn docker_native_nftables_listings() {
    let rs = parse_text(
        "docker",
        &read("tests/data/rules/docker-nftables-masquerade-upstream-test.txt"),
    );
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let fwd = chain(&rs, "docker-bridges", "filter-FORWARD");
    assert_eq!(
        fwd.rules[0].target,
        Target::Map {
            by: "oifname".into(),
            branches: vec![Branch {
                share: None,
                key: "br-dummy".into(),
                target: Box::new(Target::Jump("filter-forward-in__br-dummy".into()))
            }]
        }
    );
    let out = chain(&rs, "docker-bridges", "nat-postrouting-out__br-dummy");
    assert_eq!(out.rules[0].comment.as_deref(), Some("MASQUERADE"));
    assert!(matches!(out.rules[0].target, Target::Masquerade { .. }));

    let rs = parse_text(
        "docker",
        &read("tests/data/rules/docker-nftables-published-upstream-test.txt"),
    );
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let fwd = chain(&rs, "docker-bridges", "filter-FORWARD");
    assert_eq!(fwd.base.as_ref().unwrap().priority, 1);
    let dnat = &chain(&rs, "docker-bridges", "nat-prerouting-and-output").rules[0];
    assert_eq!(dnat.comment.as_deref(), Some("DNAT"));
    assert_eq!(
        dnat.target,
        Target::Dnat {
            to: NatTo {
                addrs: Some((
                    "192.168.0.2".parse().unwrap(),
                    "192.168.0.2".parse().unwrap()
                )),
                ports: Some((80, 80)),
            },
            flags: NatFlags::default(),
        }
    );
    assert_eq!(dnat.matches.len(), 4, "{:?}", dnat.matches);
    let raw = chain(&rs, "docker-bridges", "raw-PREROUTING");
    assert_eq!(raw.rules.len(), 2);
    assert!(raw.rules.iter().all(|r| r.target == Target::Drop));
}

/// A chain of operators nests one level per operator: past the depth limit the rule
/// is a located warning and its neighbours read as written. (A 1 kB input of
/// `| ... | ...` once took hours to print back: each level printed its left side twice.)
#[test]
fn a_chain_of_operators_is_bounded_like_brackets() {
    let chain = |n: usize| {
        let ops: String = (0..n).map(|i| format!(" | 0x{i:x}")).collect();
        format!(
            "table ip t {{\n\tchain c {{\n\t\ttcp dport 80 accept\n\t\tmeta mark{ops} == 0x1 accept\n\t\tudp dport 53 drop\n\t}}\n}}\n"
        )
    };
    let ok = parse_text("ok", &chain(20));
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let c = ok.tables[0].chain("c").unwrap();
    assert_eq!(c.rules.len(), 3);
    assert!(c.rules[1].text.contains("| 0x13"), "{}", c.rules[1].text);
    let deep = parse_text("deep", &chain(2_000));
    assert_eq!(deep.warnings.len(), 1, "{:?}", deep.warnings);
    assert!(
        deep.warnings[0]
            .to_string()
            .contains("more than 32 operators"),
        "{}",
        deep.warnings[0]
    );
    assert!(matches!(
        deep.warnings[0].location,
        Location::Line { line: 4, .. }
    ));
    let c = deep.tables[0].chain("c").unwrap();
    assert_eq!(c.rules.first().map(|r| r.line), Some(3));
    assert_eq!(c.rules.last().map(|r| r.line), Some(5));
}

/// `meta nfproto` and `meta protocol` name the address family, by name, by number or in
/// a set; `!=` negates it; a protocol that is not IP is a family no packet here has.
#[test]
fn family_matches_by_name_number_and_set() {
    let rs = parse_text(
        "family.nft",
        "table inet t {
	chain c {
		meta nfproto ipv4 accept
		meta nfproto != ipv6 accept
		meta nfproto { ipv4, ipv6 } accept
		meta protocol ip6 accept
		meta nfproto 10 accept
		meta protocol arp accept
	}
}
",
    );
    assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
    let got: Vec<Vec<Match>> = chain(&rs, "t", "c")
        .rules
        .iter()
        .map(|r| r.matches.clone())
        .collect();
    let fam = |negated, f| {
        vec![Match {
            negated,
            kind: MatchKind::Family(f),
        }]
    };
    assert_eq!(
        got,
        vec![
            fam(false, Family::Ip),
            fam(true, Family::Ip6),
            fam(false, Family::Inet),
            fam(false, Family::Ip6),
            fam(false, Family::Ip6),
            fam(false, Family::Arp),
        ]
    );
}
