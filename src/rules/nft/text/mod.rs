//! `nft list ruleset` text (with or without `-a`'s `# handle N` comments), and files of
//! nft commands (`add table ...`, `add rule ...`, as `nft -f` reads them) → [`RuleSet`].
//!
//! The text is read into the libnftables JSON objects `nft -j list ruleset` prints for
//! the same rule set (`{"table": ...}`, `{"chain": ...}`, `{"set": ...}`, `{"map": ...}`,
//! `{"element": ...}`, `{"rule": {..., "expr": [...]}}`), and those go through the JSON
//! reader's mapping: what a rule means is decided in one place for both forms. What the
//! text adds is where each object was read: a rule's location is `FILE:LINE` of its
//! line, its `text` the line as written (without the handle comment, and without a
//! counter's values, which are the rule's counters, as in the other readers), its
//! handle the `# handle N` after it.
//!
//! Modules: `lex` splits the text into tokens; `decl` reads tables, chains, sets and
//! maps, and the command form; `stmt` reads a rule's statements; `expr` reads the
//! expressions and values inside them.
//!
//! What it cannot read is a located warning (`FILE:LINE:COLUMN`), and reading goes on
//! with the next line: a statement not understood ends its rule as a target natcheck
//! cannot follow (the JSON reader's unknown statement); a declaration not understood
//! is skipped. `define`, `include` and commands that change what was read before
//! (`delete`, `flush chain`, ...) are warned about and not applied.

mod decl;
mod expr;
mod lex;
mod stmt;

#[cfg(test)]
mod tests;

use serde_json::Value;

use super::{read_objects, Origin};
use crate::diag::{Location, Warning};
use crate::rules::{Dialect, RuleSet};
use lex::{Kind, Tok};

/// Whether the first meaningful line of an input is nft's text form: `table [FAMILY]
/// NAME {`, `flush ruleset`, `define`, `include`, or an nft command naming a family
/// (`add table ip NAME`; ipset's `add SET ENTRY` has no family).
pub(in crate::rules) fn is_nft_text(first: &str) -> bool {
    let w: Vec<&str> = first.split_whitespace().take(4).collect();
    match w.as_slice() {
        ["table", _, ..] => first.contains('{'),
        ["flush", "ruleset", ..] | ["define", _, ..] | ["include", _, ..] => true,
        [verb, what, fam, ..] => {
            matches!(*verb, "add" | "create" | "insert" | "replace")
                && matches!(
                    *what,
                    "table" | "chain" | "rule" | "set" | "map" | "element"
                )
                && super::family(fam).is_some()
        }
        _ => false,
    }
}

/// A shell command line pasted with nft's output: `$ sudo nft list ruleset`,
/// `root@host:~# nft -a list ruleset`.
pub(in crate::rules) fn is_command_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    let prompt = first.ends_with('$') || first.ends_with('#') || first.ends_with('>');
    prompt && words.any(|w| w == "nft" || w.ends_with("/nft"))
}

/// Parses the text; what it cannot read is a located warning.
pub fn parse_text(source: &str, text: &str) -> RuleSet {
    let (toks, unterminated) = lex::tokenize(text);
    let mut p = Parser {
        src: text,
        toks,
        pos: 0,
        objects: Vec::new(),
        origins: Vec::new(),
        warnings: Vec::new(),
        source: source.to_string(),
        family: String::new(),
        depth: 0,
        cleared: 0,
        omit: Vec::new(),
    };
    for u in unterminated {
        p.warn_at(u.line, u.column, "string not closed on its line".into());
    }
    p.file();
    let Parser {
        mut objects,
        mut origins,
        warnings,
        cleared,
        ..
    } = p;
    // `flush ruleset`: only what comes after the last one is the rule set.
    objects.drain(..cleared);
    origins.drain(..cleared);
    let out = RuleSet {
        source: source.to_string(),
        warnings,
        ..RuleSet::default()
    };
    let mut rs = read_objects(out, Dialect::NftText, &objects, &origins);
    rs.warnings.sort_by(|a, b| a.location.cmp(&b.location));
    rs
}

/// Why a statement or declaration could not be read, and at which token.
#[derive(Debug)]
struct Fail {
    at: usize,
    message: String,
}

type Res<T> = Result<T, Fail>;

/// Most levels expressions nest (`(`, sets in maps): deeper text is not read.
const MAX_DEPTH: usize = 32;

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Tok>,
    /// The next token.
    pos: usize,
    objects: Vec<Value>,
    /// Where each of `objects` was read.
    origins: Vec<Option<Origin>>,
    warnings: Vec<Warning>,
    source: String,
    /// The family of the table being read (`reject`'s default type depends on it).
    family: String,
    /// How deep the expression being read nests.
    depth: usize,
    /// Objects before this index were flushed (`flush ruleset`).
    cleared: usize,
    /// Tokens of the rule being read left out of its text (a counter's values, kept
    /// apart as the rule's counters).
    omit: Vec<(usize, usize)>,
}

impl<'s> Parser<'s> {
    fn tok(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn tok_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k)
    }

    /// The next token's text, if it is a word.
    fn word(&self) -> Option<&'s str> {
        self.word_at(0)
    }

    fn word_at(&self, k: usize) -> Option<&'s str> {
        self.tok_at(k)
            .filter(|t| t.kind == Kind::Word)
            .map(|t| t.text(self.src))
    }

    fn is_word(&self, w: &str) -> bool {
        self.word() == Some(w)
    }

    fn is_punct(&self, p: &str) -> bool {
        self.punct_at(0) == Some(p)
    }

    fn punct_at(&self, k: usize) -> Option<&'s str> {
        self.tok_at(k)
            .filter(|t| t.kind == Kind::Punct)
            .map(|t| t.text(self.src))
    }

    /// A quoted string's text.
    fn string(&self) -> Option<&'s str> {
        self.tok()
            .filter(|t| t.kind == Kind::Str)
            .map(|t| t.text(self.src))
    }

    fn bump(&mut self) {
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
    }

    /// Whether the next token ends a rule or a declaration: a line end, `;`, the `}`
    /// of the enclosing block, a handle comment, or the end of the input.
    fn at_end(&self) -> bool {
        match self.tok() {
            None => true,
            Some(t) => match t.kind {
                Kind::Newline | Kind::Handle(_) => true,
                Kind::Punct => matches!(t.text(self.src), ";" | "}"),
                _ => false,
            },
        }
    }

    /// Skips line ends, `;` and handle comments between declarations, where no
    /// expression is open (one that failed may have left its depth behind).
    fn skip_blank(&mut self) {
        self.depth = 0;
        while let Some(t) = self.tok() {
            match t.kind {
                Kind::Newline | Kind::Handle(_) => self.bump(),
                Kind::Punct if t.text(self.src) == ";" => self.bump(),
                _ => break,
            }
        }
    }

    /// Skips line ends only (inside braces, where they separate nothing).
    fn skip_newlines(&mut self) {
        while self
            .tok()
            .is_some_and(|t| matches!(t.kind, Kind::Newline | Kind::Handle(_)))
        {
            self.bump();
        }
    }

    /// Skips to the end of the current statement or declaration, over any `{...}` in
    /// it (it may span lines); stops before the line end, `;`, or a `}` that closes
    /// the enclosing block.
    fn skip_statement(&mut self) {
        let mut depth = 0usize;
        while let Some(t) = self.tok() {
            match (t.kind, t.text(self.src)) {
                (Kind::Newline | Kind::Handle(_), _) | (Kind::Punct, ";") if depth == 0 => break,
                (Kind::Punct, "{") => depth += 1,
                (Kind::Punct, "}") if depth == 0 => break,
                (Kind::Punct, "}") => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    /// Goes back to token `from`, where the statement that failed started, and skips
    /// it whole: a failure inside `{...}` does not end the block around it.
    fn recover(&mut self, from: usize) {
        self.pos = from;
        self.skip_statement();
    }

    /// Skips one `{...}` group, the next token being its `{`, over the groups in it.
    fn skip_group(&mut self) {
        let mut depth = 0usize;
        while let Some(t) = self.tok() {
            let p = if t.kind == Kind::Punct {
                t.text(self.src)
            } else {
                ""
            };
            self.bump();
            match p {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }

    /// The text of tokens `from..to` as written, on one line.
    fn span_text(&self, from: usize, to: usize) -> String {
        let (Some(a), Some(b)) = (
            self.toks.get(from),
            to.checked_sub(1).and_then(|k| self.toks.get(k)),
        ) else {
            return String::new();
        };
        if b.end <= a.start {
            return String::new();
        }
        let s = &self.src[a.start..b.end];
        if s.contains('\n') {
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            s.to_string()
        }
    }

    /// Where token `k` is (the end of the input for a `k` past it).
    fn place(&self, k: usize) -> (u64, u64) {
        match self.toks.get(k).or(self.toks.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        }
    }

    fn warn_at(&mut self, line: u64, column: u64, message: String) {
        self.warnings.push(Warning::new(
            self.source.clone(),
            Location::Line { line, column },
            message,
        ));
    }

    /// A warning at token `k`.
    fn warn(&mut self, k: usize, message: String) {
        let (line, column) = self.place(k);
        self.warn_at(line, column, message);
    }

    fn fail<T>(&self, message: impl Into<String>) -> Res<T> {
        Err(Fail {
            at: self.pos,
            message: message.into(),
        })
    }

    /// How the next token reads in a warning.
    fn shown(&self) -> String {
        match self.tok() {
            None => "the end of the input".into(),
            Some(t) => match t.kind {
                Kind::Newline => "the end of the line".into(),
                Kind::Handle(_) => "the handle comment".into(),
                Kind::Str => format!("\"{}\"", t.text(self.src)),
                _ => format!("{:?}", t.text(self.src)),
            },
        }
    }

    /// Adds an object read at token `at`; returns its index.
    fn push(&mut self, obj: Value, at: usize, text: String) -> usize {
        let (line, column) = self.place(at);
        self.objects.push(obj);
        self.origins.push(Some(Origin { line, column, text }));
        self.objects.len() - 1
    }

    /// A name: a word or a quoted string.
    fn name(&mut self) -> Res<String> {
        let name = match self.tok() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Str) => t.text(self.src).to_string(),
            _ => return self.fail(format!("a name expected, found {}", self.shown())),
        };
        self.bump();
        Ok(name)
    }

    /// A number (decimal or `0x` hex).
    fn number(&mut self) -> Res<u64> {
        match self.word().and_then(super::value::parse_num) {
            Some(n) => {
                self.bump();
                Ok(n)
            }
            None => self.fail(format!("a number expected, found {}", self.shown())),
        }
    }

    /// Consumes the word `w`, or fails saying it was expected.
    fn expect_word(&mut self, w: &str) -> Res<()> {
        if self.is_word(w) {
            self.bump();
            Ok(())
        } else {
            self.fail(format!("\"{w}\" expected, found {}", self.shown()))
        }
    }

    fn expect_punct(&mut self, p: &str) -> Res<()> {
        if self.is_punct(p) {
            self.bump();
            Ok(())
        } else {
            self.fail(format!("\"{p}\" expected, found {}", self.shown()))
        }
    }

    /// Enters one level of nesting; fails past [`MAX_DEPTH`].
    fn enter(&mut self) -> Res<()> {
        if self.depth >= MAX_DEPTH {
            return self.fail(format!("expressions nested more than {MAX_DEPTH} deep"));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}
