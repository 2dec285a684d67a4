//! The layers of `src/`: the list between `<!-- layers -->` and `<!-- /layers -->` in
//! the doc of `src/lib.rs` numbers the top-level modules from the bottom up, and a module
//! may use, through `crate::` paths, itself and the modules of lower layers only: not a
//! module of its own layer, not one above it. Every top-level module is in the list.
//!
//! A file belongs to the top-level module named by its first path component under
//! `src/` (`src/report/json.rs` to `report`, `src/flows.rs` to `flows`). `main.rs` (the
//! binary) may use anything and `lib.rs` is exempt. Comments, string literals and test
//! code (items under `#[cfg(test)]`, files named `tests.rs`) are not looked at: only
//! `crate::` paths of the library's own code count, in `use` lines, grouped imports
//! (`use crate::{a, b::c}`) and inline paths alike. `super::` paths are not followed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::root;

/// Top-level module name → layer number, from the list in `lib_rs`'s doc.
fn parse_layers(lib_rs: &str) -> Result<BTreeMap<String, u32>, String> {
    let start = lib_rs
        .find("<!-- layers -->")
        .ok_or("no `<!-- layers -->` marker")?;
    let end = lib_rs[start..]
        .find("<!-- /layers -->")
        .ok_or("no `<!-- /layers -->` marker after `<!-- layers -->`")?
        + start;
    let mut layers = BTreeMap::new();
    for line in lib_rs[start..end].lines().skip(1) {
        let text = line.trim_start().trim_start_matches("//!").trim();
        // "N. `a`, `b`: what they do"; a line without a number continues a description.
        let Some((number, rest)) = text.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.parse::<u32>() else {
            continue;
        };
        // The names come before the first colon; the description may quote code too.
        let names = rest.split_once(':').map_or(rest, |(names, _)| names);
        let mut found = false;
        for name in names.split('`').skip(1).step_by(2) {
            found = true;
            if let Some(other) = layers.insert(name.to_string(), layer) {
                return Err(format!("`{name}` is in layers {other} and {layer}"));
            }
        }
        if !found {
            return Err(format!("layer {layer} names no module: {text}"));
        }
    }
    if layers.is_empty() {
        return Err("the layer list is empty".into());
    }
    Ok(layers)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with comments and the contents of string and character literals replaced by
/// spaces. One character out per character in, newlines kept: offsets and line numbers
/// stay those of the source.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        match c[i] {
            '/' if next == Some('/') => {
                while i < c.len() && c[i] != '\n' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // Block comments nest.
                let mut depth = 0;
                while i < c.len() {
                    let pair = (c[i], c.get(i + 1).copied());
                    if pair == ('/', Some('*')) || pair == ('*', Some('/')) {
                        depth += if c[i] == '/' { 1 } else { -1 };
                        out.push_str("  ");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                }
            }
            '"' => {
                out.push('"');
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' && i + 1 < c.len() {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    out.push('"');
                    i += 1;
                }
            }
            'r' if raw_string_hashes(&c, i).is_some() => {
                let hashes = raw_string_hashes(&c, i).unwrap_or(0);
                // r, the hashes and the opening quote stay.
                for &ch in &c[i..i + hashes + 2] {
                    out.push(ch);
                }
                i += hashes + 2;
                let closes = |j: usize| {
                    c[j] == '"' && (1..=hashes).all(|k| c.get(j + k).copied() == Some('#'))
                };
                while i < c.len() && !closes(i) {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                for &ch in c.iter().skip(i).take(hashes + 1) {
                    out.push(ch);
                }
                i += hashes + 1;
            }
            '\'' => {
                // A character literal ('x', '\n', '\u{1F600}'), or else a lifetime or
                // a label, which is code.
                let len = if next == Some('\\') {
                    // The escaped character may itself be a quote.
                    c.get(i + 3..)
                        .and_then(|rest| rest.iter().position(|&ch| ch == '\''))
                        .map(|p| p + 4)
                } else if c.get(i + 2) == Some(&'\'') {
                    Some(3)
                } else {
                    None
                };
                match len {
                    Some(len) => {
                        out.push('\'');
                        for &ch in &c[i + 1..i + len - 1] {
                            blank(&mut out, ch);
                        }
                        out.push('\'');
                        i += len;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// If a raw string (`r"…"`, `r#"…"#`, `br"…"`) starts at `c[i]` (the `r`): its number
/// of hashes.
fn raw_string_hashes(c: &[char], i: usize) -> Option<usize> {
    let starts_token = match i.checked_sub(1).map(|p| c[p]) {
        None => true,
        Some('b') => i < 2 || !is_ident(c[i - 2]),
        Some(p) => !is_ident(p),
    };
    if !starts_token {
        return None;
    }
    let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// `code` (from [`code_only`]) with the items under `#[cfg(test)]` blanked: a module or
/// function up to its closing brace, an import or a declaration up to its semicolon.
fn without_test_items(code: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut c: Vec<char> = code.chars().collect();
    let attr: Vec<char> = ATTR.chars().collect();
    let mut i = 0;
    while i + attr.len() <= c.len() {
        if c[i..i + attr.len()] != attr[..] {
            i += 1;
            continue;
        }
        // The item ends at the first `;` outside brackets before any `{` (`[u8; 4]` is
        // no end), or else at the brace that closes the first `{`.
        let mut j = i + attr.len();
        let (mut depth, mut brackets) = (0usize, 0usize);
        while j < c.len() {
            match c[j] {
                ';' if depth == 0 && brackets == 0 => break,
                '(' | '[' if depth == 0 => brackets += 1,
                ')' | ']' if depth == 0 => brackets = brackets.saturating_sub(1),
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let end = j.min(c.len().saturating_sub(1));
        for ch in &mut c[i..=end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end + 1;
    }
    c.into_iter().collect()
}

/// Every top-level module a `crate::` path in `code` names: (line, name). A group
/// (`crate::{a, b::c}`) names each of its first segments; `crate::{self}` and macros
/// exported at the crate root (`crate::name!`) name no module.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = code.chars().collect();
    let line_of = |pos: usize| 1 + c[..pos].iter().filter(|&&ch| ch == '\n').count();
    let ident_at = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        let start = j;
        while j < c.len() && is_ident(c[j]) {
            j += 1;
        }
        (start, c[start..j].iter().collect::<String>(), j)
    };
    let mut out = Vec::new();
    let mut push = |start: usize, name: String, after: usize| {
        let is_macro = c.get(after) == Some(&'!');
        if !name.is_empty() && name != "self" && !is_macro {
            out.push((line_of(start), name));
        }
    };
    let key: Vec<char> = "crate::".chars().collect();
    let mut i = 0;
    while i + key.len() <= c.len() {
        let word_start = i == 0 || !is_ident(c[i - 1]);
        if !(word_start && c[i..i + key.len()] == key[..]) {
            i += 1;
            continue;
        }
        i += key.len();
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        if c.get(i) != Some(&'{') {
            let (start, name, after) = ident_at(i);
            push(start, name, after);
            continue;
        }
        // A group: the first segment of each item at depth 1.
        let mut depth = 0usize;
        let mut item_start = true;
        while i < c.len() {
            match c[i] {
                '{' => {
                    depth += 1;
                    item_start = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => item_start = true,
                ch if ch.is_whitespace() => {}
                _ if item_start && depth == 1 => {
                    let (start, name, after) = ident_at(i);
                    push(start, name, after);
                    item_start = false;
                    i = after.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// The top-level module a file under `src/` belongs to, or `None` for the binary and
/// the crate root.
fn module_of(rel: &Path) -> Option<String> {
    let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next()?;
    let rest = parts.next();
    match (first.as_str(), rest) {
        ("lib.rs" | "main.rs" | "bin", _) => None,
        (_, Some(_)) => Some(first),
        (file, None) => Some(file.strip_suffix(".rs").unwrap_or(file).to_string()),
    }
}

/// The layer rule's violations in one file, as `src/PATH:LINE: …` lines. `rel` is the
/// path under `src/`.
fn violations(rel: &Path, text: &str, layers: &BTreeMap<String, u32>) -> Vec<String> {
    let Some(module) = module_of(rel) else {
        return Vec::new();
    };
    let shown = Path::new("src").join(rel).display().to_string();
    let Some(&layer) = layers.get(&module) else {
        return vec![format!(
            "{shown}: module `{module}` is not in the layer list of src/lib.rs"
        )];
    };
    if rel.file_name().is_some_and(|f| f == "tests.rs") {
        return Vec::new();
    }
    let code = code_only(text);
    if code.contains("#![cfg(test)]") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (line, used) in crate_paths(&without_test_items(&code)) {
        if used == module {
            continue;
        }
        let at = format!("{shown}:{line}: {module} (layer {layer}) uses");
        match layers.get(&used) {
            None => out.push(format!(
                "{at} crate::{used}, which is not in the layer list"
            )),
            Some(&other) if other >= layer => out.push(format!("{at} {used} (layer {other})")),
            Some(_) => {}
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let src = root().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layers = parse_layers(&lib).unwrap_or_else(|e| panic!("src/lib.rs: {e}"));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut all = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("source file");
        let rel = path.strip_prefix(&src).expect("under src/");
        all.extend(violations(rel, &text, &layers));
    }
    assert!(files.len() > 10, "{} files under src/", files.len());
    assert!(
        all.is_empty(),
        "{} uses against the layers of src/lib.rs:\n{}",
        all.len(),
        all.join("\n")
    );
}

/// The checker itself, on small sources.
mod checker {
    use super::*;

    const LIB: &str = "\
//! Intro.
//!
//! <!-- layers -->
//! 1. `diag`, `model`: located warnings; packets (`Tuple`: a 5-tuple)
//! 2. `decode`: bytes of one frame
//!    continued: `not_a_module`
//! 3. `report`: every word users read
//! 4. `commands`: flags
//! <!-- /layers -->
//!
//! 9. `outside`: not in the list

pub mod model;
";

    fn layers() -> BTreeMap<String, u32> {
        parse_layers(LIB).unwrap()
    }

    fn check(path: &str, text: &str) -> Vec<String> {
        violations(Path::new(path), text, &layers())
    }

    #[test]
    fn the_list_is_read_between_the_markers() {
        let want: BTreeMap<String, u32> = [
            ("diag", 1),
            ("model", 1),
            ("decode", 2),
            ("report", 3),
            ("commands", 4),
        ]
        .into_iter()
        .map(|(m, l)| (m.to_string(), l))
        .collect();
        assert_eq!(layers(), want);
        assert!(parse_layers("//! no list").is_err());
        assert!(
            parse_layers("//! <!-- layers -->\n//! 1. `a`\n//! 2. `a`\n//! <!-- /layers -->")
                .is_err()
        );
    }

    #[test]
    fn uses_of_the_same_or_a_higher_layer_are_violations() {
        let text = "\
use crate::model::Tuple;
use crate::report::time;

pub fn f() -> String {
    let t = crate::decode::ip(1);
    crate::commands::flows::tcp_state(&t)
}
";
        assert_eq!(
            check("report/text.rs", text),
            ["src/report/text.rs:6: report (layer 3) uses commands (layer 4)"]
        );
        assert_eq!(
            check("decode/ip.rs", text),
            [
                "src/decode/ip.rs:2: decode (layer 2) uses report (layer 3)",
                "src/decode/ip.rs:6: decode (layer 2) uses commands (layer 4)",
            ]
        );
        // Same layer.
        assert_eq!(
            check("model.rs", "use crate::diag::Warning;\n"),
            ["src/model.rs:1: model (layer 1) uses diag (layer 1)"]
        );
    }

    #[test]
    fn grouped_imports_name_each_module() {
        let text =
            "use crate::{\n    model::{self, Tuple},\n    report::{json, time},\n    self,\n};\n";
        assert_eq!(
            check("decode/mod.rs", text),
            ["src/decode/mod.rs:3: decode (layer 2) uses report (layer 3)"]
        );
        assert_eq!(
            crate_paths(text),
            [(2, "model".to_string()), (3, "report".to_string())]
        );
    }

    #[test]
    fn test_code_is_not_looked_at() {
        let text = "\
use crate::model::Tuple;

#[cfg(test)]
mod tests {
    use crate::commands::flows;

    #[test]
    fn t() {
        let s = \"}\";
        crate::report::time::secs(1);
    }
}

#[cfg(test)]
use crate::commands::snapshot;

#[cfg(test)]
fn helper(b: [u8; 4]) {
    crate::commands::flows::tcp_state(b);
}

fn after() {
    crate::report::json::write();
}
";
        assert_eq!(
            check("decode/link.rs", text),
            ["src/decode/link.rs:23: decode (layer 2) uses report (layer 3)"]
        );
        assert!(check("decode/tests.rs", text).is_empty());
        assert!(check("decode/x.rs", &format!("#![cfg(test)]\n{text}")).is_empty());
    }

    #[test]
    fn comments_and_strings_are_not_looked_at() {
        let text = r####"
// use crate::commands::flows;
/// Calls `crate::commands::flows::tcp_state`.
/* crate::report /* nested */ crate::report */
fn f() -> &'static str {
    let _c = '"';
    let _e = '\'';
    let _r = r#"crate::report "quoted""#;
    let _b = br"crate::report";
    "crate::commands::run \" crate::report"
}
"####;
        assert!(
            check("decode/mod.rs", text).is_empty(),
            "{:?}",
            crate_paths(&code_only(text))
        );
        // The same uses in code are seen, on their lines.
        let code = "\
fn f() {
    crate::report::x();
    let _l: &'static str = \"\";
    crate::commands::y();
}
";
        assert_eq!(
            crate_paths(&code_only(code)),
            [(2, "report".to_string()), (4, "commands".to_string())]
        );
    }

    #[test]
    fn the_module_itself_and_lower_layers_are_allowed() {
        let text = "use crate::report::time;\nuse crate::decode;\nuse crate::{diag, model};\n";
        assert!(check("report/json.rs", text).is_empty());
        assert!(check("commands/flows.rs", text).is_empty());
        // The binary and the crate root may use anything.
        assert!(check("main.rs", "use crate::commands;\n").is_empty());
        assert!(check("lib.rs", "pub use crate::commands::run;\n").is_empty());
        // Root macros are not modules.
        assert!(check("decode/mod.rs", "crate::located!(x);\n").is_empty());
    }

    #[test]
    fn modules_outside_the_list_are_errors() {
        assert_eq!(
            check("witness/mod.rs", "use crate::model;\n"),
            ["src/witness/mod.rs: module `witness` is not in the layer list of src/lib.rs"]
        );
        assert_eq!(
            check("report/mod.rs", "use crate::pipeline::run;\n"),
            [concat!(
                "src/report/mod.rs:1: report (layer 3) uses crate::pipeline, ",
                "which is not in the layer list"
            )]
        );
    }

    #[test]
    fn files_belong_to_their_first_path_component() {
        let m = |p: &str| module_of(Path::new(p));
        assert_eq!(m("report/json.rs").as_deref(), Some("report"));
        assert_eq!(m("report/mod.rs").as_deref(), Some("report"));
        assert_eq!(m("conntrack/netlink/attr.rs").as_deref(), Some("conntrack"));
        assert_eq!(m("flows.rs").as_deref(), Some("flows"));
        assert_eq!(m("main.rs"), None);
        assert_eq!(m("lib.rs"), None);
    }
}
