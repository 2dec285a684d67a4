//! `iptables-save` / `ip6tables-save` (with or without `-c`, legacy or nft variants)
//! and `iptables -S` output → [`RuleSet`].

use super::RuleSet;

/// Parses the text; lines it cannot read are located warnings.
pub fn parse(source: &str, text: &str) -> RuleSet {
    let _ = text;
    RuleSet {
        source: source.to_string(),
        ..RuleSet::default()
    }
}
