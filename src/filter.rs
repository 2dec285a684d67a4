//! `--filter EXPR`: a small tcpdump-like language over tuples, parsed once and matched
//! against each connection hop, flow or conntrack tuple a command selects by it.
//!
//! ```text
//! expr      = and { ("or" | "||") and }
//! and       = unary { ("and" | "&&") unary }
//! unary     = ("not" | "!") unary | "(" expr ")" | primitive
//! primitive = proto [[dir] test] | [dir] test
//! test      = "host" ADDR | "net" ADDR["/"LEN] | "port" N | "portrange" N"-"M | ADDR["/"LEN]
//! proto     = "tcp" | "udp" | "icmp" | "icmp6" | "sctp" | "ip" | "ip6"
//! dir       = "src" | "dst"
//! ```
//!
//! Precedence is tcpdump's: `not` binds tighter than `and`, `and` tighter than `or`.
//! `tcp port 53` means `tcp and port 53`; a bare address is a `host` (a prefix, a
//! `net`). `src` and `dst` are the tuple's source and destination (a connection's
//! initiator and responder side); without them either side matches. `port` and
//! `portrange` match TCP, UDP and SCTP only (an ICMP echo id is not a port); `ip` and
//! `ip6` match the address family. Keywords are case-insensitive.
//!
//! Parsing is linear in the text, and nesting (parentheses, `not`) is bounded, so
//! neither parsing nor matching can exhaust the stack. Errors name the 1-based column
//! (in characters) where the text stops making sense.

use std::fmt;
use std::net::IpAddr;

use crate::cidr::Cidr;
use crate::model::{Proto, Tuple};

/// Deepest nesting of parentheses and `not` accepted.
const MAX_DEPTH: usize = 64;

/// A parsed `--filter` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    text: String,
    root: Node,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Test(Side, Test),
}

/// Which side of a tuple a test looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Either,
    Src,
    Dst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    /// `host` (a prefix as long as the address) and `net`.
    Net(Cidr),
    /// `port` (a range of one) and `portrange`, inclusive.
    Ports(u16, u16),
    Proto(Proto),
    /// `ip` (false) or `ip6` (true).
    Family(bool),
}

/// Why an expression does not parse, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column, in characters; one past the end when the text ended too soon.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Filter {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Filter, ParseError> {
        let tokens = tokens(text)?;
        let mut p = Parser {
            text,
            tokens: &tokens,
            pos: 0,
            depth: 0,
        };
        if p.peek().is_none() {
            return Err(p.error_here("the expression is empty".into()));
        }
        let root = p.or()?;
        if let Some(t) = p.peek() {
            let message = if t.kind == Kind::Close {
                "')' closes no '('".to_string()
            } else {
                format!("expected 'and', 'or' or the end, found {}", t.quoted(text))
            };
            return Err(p.error_at(t.start, message));
        }
        Ok(Filter {
            text: text.trim().to_string(),
            root,
        })
    }

    /// The expression as given (without surrounding blanks).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `t` passes.
    pub fn matches(&self, t: &Tuple) -> bool {
        self.root.eval(t)
    }

    /// Whether any of `tuples` passes.
    pub fn matches_any<'a>(&self, tuples: impl IntoIterator<Item = &'a Tuple>) -> bool {
        tuples.into_iter().any(|t| self.matches(t))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Node {
    fn eval(&self, t: &Tuple) -> bool {
        match self {
            Node::Or(v) => v.iter().any(|n| n.eval(t)),
            Node::And(v) => v.iter().all(|n| n.eval(t)),
            Node::Not(n) => !n.eval(t),
            Node::Test(side, test) => test.eval(*side, t),
        }
    }
}

impl Test {
    fn eval(self, side: Side, t: &Tuple) -> bool {
        let on = |f: &dyn Fn(IpAddr, u16) -> bool| match side {
            Side::Either => f(t.src, t.sport) || f(t.dst, t.dport),
            Side::Src => f(t.src, t.sport),
            Side::Dst => f(t.dst, t.dport),
        };
        match self {
            Test::Net(c) => on(&|a, _| c.contains(a)),
            Test::Ports(lo, hi) => t.proto.has_ports() && on(&|_, p| (lo..=hi).contains(&p)),
            Test::Proto(p) => t.proto == p,
            Test::Family(v6) => t.src.is_ipv6() == v6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Open,
    Close,
    Not,
    And,
    Or,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    /// Byte range in the text.
    start: usize,
    end: usize,
}

impl Token {
    fn text<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }

    /// A word's keyword meaning, when it has one (case-insensitive).
    fn is(&self, text: &str, word: &str) -> bool {
        self.kind == Kind::Word && self.text(text).eq_ignore_ascii_case(word)
    }

    fn quoted(&self, text: &str) -> String {
        format!("'{}'", self.text(text))
    }
}

/// Splits `text` into words and the operator characters `( ) ! && ||`.
fn tokens(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let single = |kind| Token {
            kind,
            start: i,
            end: i + 1,
        };
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(single(Kind::Open)),
            ')' => out.push(single(Kind::Close)),
            '!' => out.push(single(Kind::Not)),
            '&' | '|' => {
                if it.next_if(|&(_, n)| n == c).is_none() {
                    let word = if c == '&' { "and" } else { "or" };
                    return Err(ParseError {
                        column: column(text, i),
                        message: format!("'{c}' alone: write '{c}{c}' or '{word}'"),
                    });
                }
                out.push(Token {
                    kind: if c == '&' { Kind::And } else { Kind::Or },
                    start: i,
                    end: i + 2,
                });
            }
            _ => {
                let mut end = i + c.len_utf8();
                while let Some((j, n)) =
                    it.next_if(|&(_, n)| !n.is_whitespace() && !"()!&|".contains(n))
                {
                    end = j + n.len_utf8();
                }
                out.push(Token {
                    kind: Kind::Word,
                    start: i,
                    end,
                });
            }
        }
    }
    Ok(out)
}

/// The 1-based character column of byte offset `at`.
fn column(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |s| s.chars().count()) + 1
}

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
}

const PROTOS: &[(&str, Test)] = &[
    ("tcp", Test::Proto(Proto::Tcp)),
    ("udp", Test::Proto(Proto::Udp)),
    ("icmp", Test::Proto(Proto::Icmp)),
    ("icmp6", Test::Proto(Proto::Icmpv6)),
    ("sctp", Test::Proto(Proto::Sctp)),
    ("ip", Test::Family(false)),
    ("ip6", Test::Family(true)),
];

/// Words that start a test, after a protocol or a direction.
const TESTS: &[&str] = &["host", "net", "port", "portrange"];

impl Parser<'_> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.pos).copied()
    }

    fn error_at(&self, at: usize, message: String) -> ParseError {
        ParseError {
            column: column(self.text, at),
            message,
        }
    }

    /// An error at the next token, or one past the end.
    fn error_here(&self, message: String) -> ParseError {
        let at = self.peek().map_or(self.text.len(), |t| t.start);
        self.error_at(at, message)
    }

    /// `expected WHAT after 'PREV'`, naming what was found instead.
    fn expected(&self, what: &str, prev: Token) -> ParseError {
        let found = match self.peek() {
            Some(t) => format!(", found {}", t.quoted(self.text)),
            None => String::new(),
        };
        self.error_here(format!(
            "expected {what} after {}{found}",
            prev.quoted(self.text)
        ))
    }

    /// Takes the next token if it is `kind` or the keyword `word`.
    fn eat(&mut self, kind: Kind, word: &str) -> bool {
        let hit = self
            .peek()
            .is_some_and(|t| t.kind == kind || t.is(self.text, word));
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!(
                "nested deeper than {MAX_DEPTH} levels of parentheses and 'not'"
            )));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut v = vec![self.and()?];
        while self.eat(Kind::Or, "or") {
            v.push(self.and()?);
        }
        Ok(one_or(v, Node::Or))
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut v = vec![self.unary()?];
        while self.eat(Kind::And, "and") {
            v.push(self.unary()?);
        }
        Ok(one_or(v, Node::And))
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        let Some(t) = self.peek() else {
            let prev = self.pos.checked_sub(1).and_then(|i| self.tokens.get(i));
            return Err(match prev {
                Some(p) => self.expected("an expression", *p),
                None => self.error_here("expected an expression".into()),
            });
        };
        if t.kind == Kind::Not || t.is(self.text, "not") {
            self.deeper()?;
            self.pos += 1;
            let n = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(n)));
        }
        if t.kind == Kind::Word && (t.is(self.text, "and") || t.is(self.text, "or")) {
            return Err(self.error_here(format!(
                "expected an expression, found {}",
                t.quoted(self.text)
            )));
        }
        match t.kind {
            Kind::Open => {
                self.deeper()?;
                self.pos += 1;
                let n = self.or()?;
                if !self.eat(Kind::Close, ")") {
                    let open = column(self.text, t.start);
                    return Err(self.error_here(format!("expected ')' to close the '(' at {open}")));
                }
                self.depth -= 1;
                Ok(n)
            }
            Kind::Word => self.primitive(t),
            _ => Err(self.error_here(format!(
                "expected an expression, found {}",
                t.quoted(self.text)
            ))),
        }
    }

    /// `[proto] [dir] test` or `proto`, starting at the word `t`.
    fn primitive(&mut self, t: Token) -> Result<Node, ParseError> {
        let word = |t: Token| t.text(self.text).to_ascii_lowercase();
        let proto = PROTOS
            .iter()
            .find(|(name, _)| *name == word(t))
            .map(|(_, test)| *test);
        let mut first = t;
        if let Some(proto) = proto {
            self.pos += 1;
            let goes_on = self.peek().is_some_and(|n| {
                n.kind == Kind::Word
                    && (["src", "dst"].contains(&word(n).as_str())
                        || TESTS.contains(&word(n).as_str()))
            });
            if !goes_on {
                return Ok(Node::Test(Side::Either, proto));
            }
            first = self.tokens[self.pos];
            let test = self.qualified(first)?;
            return Ok(Node::And(vec![Node::Test(Side::Either, proto), test]));
        }
        self.qualified(first)
    }

    /// `[dir] test`, starting at the word `t`.
    fn qualified(&mut self, t: Token) -> Result<Node, ParseError> {
        let side = match t.text(self.text).to_ascii_lowercase().as_str() {
            "src" => Side::Src,
            "dst" => Side::Dst,
            _ => Side::Either,
        };
        let mut kw = t;
        if side != Side::Either {
            self.pos += 1;
            match self.peek() {
                Some(n) if n.kind == Kind::Word => kw = n,
                _ => return Err(self.expected("host, net, port, portrange or an address", t)),
            }
        }
        let name = kw.text(self.text).to_ascii_lowercase();
        if !TESTS.contains(&name.as_str()) {
            // A bare address or prefix: `10.0.0.1`, `src 10.0.0.0/8`.
            if let Ok(c) = kw.text(self.text).parse::<Cidr>() {
                self.pos += 1;
                return Ok(Node::Test(side, Test::Net(c)));
            }
            return Err(if side == Side::Either {
                self.error_here(format!(
                    "unknown word {} (expected host, net, port, portrange, src, dst, tcp, udp, icmp, icmp6, sctp, ip, ip6, not or '(')",
                    kw.quoted(self.text)
                ))
            } else {
                self.expected("host, net, port, portrange or an address", t)
            });
        }
        self.pos += 1;
        let arg = match self.peek() {
            Some(a) if a.kind == Kind::Word => a,
            _ => return Err(self.expected(argument(&name), kw)),
        };
        let value = arg.text(self.text);
        let test = match name.as_str() {
            "host" => value
                .parse::<IpAddr>()
                .ok()
                .map(|a| Test::Net(Cidr::new(a, 128))),
            "net" => match value.parse::<Cidr>() {
                Ok(c) => Some(Test::Net(c)),
                // An address with a bad length: the prefix parser says what is wrong.
                Err(e)
                    if value
                        .split('/')
                        .next()
                        .is_some_and(|a| a.parse::<IpAddr>().is_ok()) =>
                {
                    return Err(self.error_here(e));
                }
                Err(_) => None,
            },
            "port" => value.parse::<u16>().ok().map(|p| Test::Ports(p, p)),
            _ => match value.split_once('-') {
                Some((lo, hi)) => match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) if lo <= hi => Some(Test::Ports(lo, hi)),
                    (Ok(lo), Ok(hi)) => {
                        return Err(self.error_here(format!(
                            "the port range {lo}-{hi} is empty (write the lower port first)"
                        )))
                    }
                    _ => None,
                },
                None => None,
            },
        };
        let Some(test) = test else {
            return Err(self.expected(argument(&name), kw));
        };
        self.pos += 1;
        Ok(Node::Test(side, test))
    }
}

/// What the test named `name` takes, in words.
fn argument(name: &str) -> &'static str {
    match name {
        "host" => "an address",
        "net" => "a prefix (ADDRESS/LENGTH) or an address",
        "port" => "a port number (0-65535)",
        _ => "a port range (LOW-HIGH)",
    }
}

/// The only node of `v`, or `wrap(v)`.
fn one_or(mut v: Vec<Node>, wrap: fn(Vec<Node>) -> Node) -> Node {
    match v.len() {
        1 => v.swap_remove(0),
        _ => wrap(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(proto: Proto, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::of(proto, src, sport, dst, dport)
    }

    fn f(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        match Filter::parse(text) {
            Ok(f) => panic!("{text} parsed: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn hosts_nets_and_directions() {
        let a = t(Proto::Tcp, "172.17.0.2", 40000, "203.0.113.2", 7000);
        assert!(f("host 172.17.0.2").matches(&a));
        assert!(f("host 203.0.113.2").matches(&a));
        assert!(!f("host 172.17.0.3").matches(&a));
        assert!(f("src host 172.17.0.2").matches(&a));
        assert!(!f("dst host 172.17.0.2").matches(&a));
        assert!(f("src 172.17.0.2").matches(&a));
        assert!(f("172.17.0.2").matches(&a));
        assert!(f("net 172.17.0.0/16").matches(&a));
        assert!(f("dst net 203.0.113.0/24").matches(&a));
        assert!(!f("src net 203.0.113.0/24").matches(&a));
        assert!(f("dst 203.0.113.0/24").matches(&a));
        assert!(f("net 172.17.9.9/16").matches(&a), "host bits are ignored");
        assert!(!f("net 10.0.0.0/8").matches(&a));
    }

    #[test]
    fn ports_and_ranges() {
        let a = t(Proto::Udp, "172.17.0.2", 40001, "203.0.113.2", 53);
        assert!(f("port 53").matches(&a));
        assert!(f("dst port 53").matches(&a));
        assert!(!f("src port 53").matches(&a));
        assert!(f("src port 40001").matches(&a));
        assert!(f("portrange 40000-40010").matches(&a));
        assert!(f("src portrange 40001-40001").matches(&a));
        assert!(!f("dst portrange 54-65535").matches(&a));
        assert!(f("udp port 53").matches(&a));
        assert!(!f("tcp port 53").matches(&a));
        assert!(f("udp dst port 53").matches(&a));
    }

    #[test]
    fn icmp_ids_are_not_ports() {
        // For ICMP echo the tuple's sport is the identifier.
        let echo = t(Proto::Icmp, "172.17.0.3", 20035, "203.0.113.2", 0);
        assert!(f("icmp").matches(&echo));
        assert!(!f("icmp6").matches(&echo));
        assert!(!f("port 20035").matches(&echo));
        assert!(!f("port 0").matches(&echo));
        assert!(f("icmp and host 172.17.0.3").matches(&echo));
        assert!(f("ip").matches(&echo));
        assert!(!f("ip6").matches(&echo));
        let echo6 = t(Proto::Icmpv6, "fd00::2", 7, "2001:db8::1", 0);
        assert!(f("icmp6").matches(&echo6));
        assert!(!f("icmp").matches(&echo6));
    }

    #[test]
    fn ipv6() {
        let a = t(Proto::Tcp, "fd00:172:17::2", 40000, "2001:db8:2::2", 7000);
        assert!(f("host fd00:172:17::2").matches(&a));
        assert!(
            f("host FD00:172:17:0::2").matches(&a),
            "any spelling of the address"
        );
        assert!(f("net fd00:172:17::/64").matches(&a));
        assert!(f("dst net 2001:db8::/32 and port 7000").matches(&a));
        assert!(f("ip6 and tcp").matches(&a));
        assert!(!f("ip").matches(&a));
        assert!(f("fd00:172:17::2").matches(&a));
        assert!(!f("host 172.17.0.2").matches(&a));
        assert!(
            !f("net 0.0.0.0/0").matches(&a),
            "a v4 prefix holds no v6 address"
        );
        assert!(f("net ::/0").matches(&a));
    }

    #[test]
    fn precedence_like_tcpdump() {
        let tcp80 = t(Proto::Tcp, "10.0.0.1", 1000, "10.0.0.2", 80);
        let udp53 = t(Proto::Udp, "10.0.0.1", 1000, "10.0.0.9", 53);
        // and binds tighter than or: `udp or (tcp and port 53)`.
        let g = f("udp or tcp and port 53");
        assert!(g.matches(&udp53) && !g.matches(&tcp80));
        let g = f("(udp or tcp) and port 53");
        assert!(g.matches(&udp53) && !g.matches(&tcp80));
        // not binds tighter than and: `(not udp) and host 10.0.0.1`.
        let g = f("not udp and host 10.0.0.1");
        assert!(g.matches(&tcp80) && !g.matches(&udp53));
        let g = f("not (udp and host 10.0.0.1)");
        assert!(g.matches(&tcp80) && !g.matches(&udp53));
        // the symbols are the words.
        assert_eq!(
            f("!udp && (port 80 || port 53)").root,
            f("not udp and (port 80 or port 53)").root
        );
        assert!(f("! ! tcp").matches(&tcp80));
        assert!(f("TCP AND DST PORT 80").matches(&tcp80));
        assert!(f("host 10.0.0.1&&port 80").matches(&tcp80));
        assert!(f("tcp or udp and not tcp").matches(&tcp80));
        assert!(!f("(tcp or udp) and not tcp").matches(&tcp80));
        assert_eq!(f("  tcp  ").text(), "tcp");
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(
            err("tcp and host"),
            "at 13: expected an address after 'host'"
        );
        assert_eq!(
            err("host foo and tcp"),
            "at 6: expected an address after 'host', found 'foo'"
        );
        assert_eq!(
            err("port 65536"),
            "at 6: expected a port number (0-65535) after 'port', found '65536'"
        );
        assert_eq!(
            err("portrange 9-1"),
            "at 11: the port range 9-1 is empty (write the lower port first)"
        );
        assert_eq!(
            err("portrange 9"),
            "at 11: expected a port range (LOW-HIGH) after 'portrange', found '9'"
        );
        assert_eq!(
            err("net 10.0.0.0/33"),
            "at 5: `10.0.0.0/33`: prefix length 33 is longer than the address (32 bits)"
        );
        assert_eq!(
            err("net bogus"),
            "at 5: expected a prefix (ADDRESS/LENGTH) or an address after 'net', found 'bogus'"
        );
        assert_eq!(
            err("(tcp or udp"),
            "at 12: expected ')' to close the '(' at 1"
        );
        assert_eq!(err("tcp)"), "at 4: ')' closes no '('");
        assert_eq!(
            err("tcp udp"),
            "at 5: expected 'and', 'or' or the end, found 'udp'"
        );
        assert_eq!(err("tcp and"), "at 8: expected an expression after 'and'");
        assert_eq!(
            err("tcp and or udp"),
            "at 9: expected an expression, found 'or'"
        );
        assert_eq!(err(""), "at 1: the expression is empty");
        assert_eq!(err("   "), "at 4: the expression is empty");
        assert_eq!(err("tcp & udp"), "at 5: '&' alone: write '&&' or 'and'");
        assert_eq!(err("tcp | udp"), "at 5: '|' alone: write '||' or 'or'");
        assert_eq!(
            err("src tcp"),
            "at 5: expected host, net, port, portrange or an address after 'src', found 'tcp'"
        );
        assert_eq!(
            err("dst"),
            "at 4: expected host, net, port, portrange or an address after 'dst'"
        );
        assert!(err("bogus").starts_with("at 1: unknown word 'bogus' (expected host"));
        // Columns count characters, not bytes.
        assert_eq!(
            err("host é"),
            "at 6: expected an address after 'host', found 'é'"
        );
        assert_eq!(
            err("tcp\u{a0}and\u{a0}"),
            "at 9: expected an expression after 'and'"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}tcp{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(Filter::parse(&deep).is_ok());
        let deeper = format!(
            "{}tcp{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(err(&deeper).contains("nested deeper than 64"));
        let nots = format!("{}tcp", "not ".repeat(100_000));
        assert!(err(&nots).contains("nested deeper"));
        // Long flat chains are fine: they are lists, not a tree.
        let long = vec!["tcp"; 100_000].join(" or ");
        assert!(f(&long).matches(&t(Proto::Tcp, "10.0.0.1", 1, "10.0.0.2", 2)));
    }
}
