//! The tokenizer of the nft text form: words, quoted strings, operators and
//! punctuation, line ends (which end rules and declarations), and `# handle N`
//! comments; every token knows its line, column and byte span.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A run of characters that are not blanks, quotes or punctuation: a keyword, a
    /// name, a number, an address (`10.0.0.0/8`, `[fd00::1]:80`), `@set`, `$var`.
    Word,
    /// A `"quoted string"` (its text is without the quotes).
    Str,
    /// `{ } ( ) ; , = !` and the operators `== != < > <= >= & | ^ << >>`.
    Punct,
    /// The end of a line (a `\` before it joins the lines instead).
    Newline,
    /// A `# handle N` comment.
    Handle(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tok {
    pub(super) kind: Kind,
    /// Byte span in the input; a string's span includes its quotes.
    pub(super) start: usize,
    pub(super) end: usize,
    /// 1-based line and column (in characters) of the first character.
    pub(super) line: u64,
    pub(super) column: u64,
}

/// A string with no closing quote on its line: its line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unterminated {
    pub(super) line: u64,
    pub(super) column: u64,
}

const PUNCT: &[char] = &[
    '{', '}', '(', ')', ';', ',', '=', '!', '<', '>', '&', '|', '^',
];

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && c != '"' && c != '#' && !PUNCT.contains(&c)
}

/// The operators of two characters.
fn two_char_op(a: char, b: char) -> bool {
    matches!(
        (a, b),
        ('=', '=') | ('!', '=') | ('<', '=') | ('>', '=') | ('<', '<') | ('>', '>')
    )
}

/// Where the tokenizer is: line, and a known column at a byte of that line (columns
/// are counted forward from it, so the whole input is counted once).
struct Pos<'s> {
    src: &'s str,
    line: u64,
    mark: usize,
    mark_col: u64,
}

impl Pos<'_> {
    fn column(&mut self, at: usize) -> u64 {
        self.mark_col += self.src[self.mark..at].chars().count() as u64;
        self.mark = at;
        self.mark_col
    }

    fn tok(&mut self, kind: Kind, start: usize, end: usize) -> Tok {
        Tok {
            kind,
            start,
            end,
            line: self.line,
            column: self.column(start),
        }
    }

    fn new_line(&mut self, at: usize) {
        self.line += 1;
        self.mark = at;
        self.mark_col = 1;
    }
}

/// Splits the input into tokens; runs once over it.
pub(super) fn tokenize(src: &str) -> (Vec<Tok>, Vec<Unterminated>) {
    let mut toks = Vec::new();
    let mut bad = Vec::new();
    let mut chars = src.char_indices().peekable();
    let mut pos = Pos {
        src,
        line: 1,
        mark: 0,
        mark_col: 1,
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => {
                toks.push(pos.tok(Kind::Newline, i, i + 1));
                pos.new_line(i + 1);
            }
            '\\' if matches!(src[i + 1..].chars().next(), Some('\n' | '\r')) => {
                // A line continuation: the next line goes on this one.
                for (j, d) in chars.by_ref() {
                    if d == '\n' {
                        pos.new_line(j + 1);
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            '#' => {
                let end = src[i..].find('\n').map_or(src.len(), |n| i + n);
                while chars.next_if(|&(j, _)| j < end).is_some() {}
                if let Some(h) = handle(&src[i + 1..end]) {
                    toks.push(pos.tok(Kind::Handle(h), i, end));
                }
            }
            '"' => {
                let rest = &src[i + 1..];
                let stop = rest.find(['"', '\n']);
                let end = match stop {
                    Some(n) if rest.as_bytes()[n] == b'"' => i + n + 2,
                    _ => {
                        let column = pos.column(i);
                        bad.push(Unterminated {
                            line: pos.line,
                            column,
                        });
                        stop.map_or(src.len(), |n| i + 1 + n)
                    }
                };
                while chars.next_if(|&(j, _)| j < end).is_some() {}
                toks.push(pos.tok(Kind::Str, i, end));
            }
            c if PUNCT.contains(&c) => {
                let end = match chars.next_if(|&(_, d)| two_char_op(c, d)) {
                    Some(_) => i + 2,
                    None => i + 1,
                };
                toks.push(pos.tok(Kind::Punct, i, end));
            }
            _ => {
                let mut end = i + c.len_utf8();
                while let Some((j, d)) = chars.next_if(|&(_, d)| is_word_char(d)) {
                    end = j + d.len_utf8();
                }
                toks.push(pos.tok(Kind::Word, i, end));
            }
        }
    }
    (toks, bad)
}

/// `handle 12` in the text of a comment.
fn handle(comment: &str) -> Option<u64> {
    let mut words = comment.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("handle"), Some(n), None) => n.parse().ok(),
        _ => None,
    }
}

impl Tok {
    /// The token's text: a string without its quotes.
    pub(super) fn text<'s>(&self, src: &'s str) -> &'s str {
        let s = &src[self.start..self.end];
        match self.kind {
            Kind::Str => {
                let s = s.strip_prefix('"').unwrap_or(s);
                s.strip_suffix('"').unwrap_or(s)
            }
            _ => s,
        }
    }
}
