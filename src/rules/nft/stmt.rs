//! Statements of a rule's `expr` array → what the rule does: verdicts, NAT, mark
//! changes, verdict maps; and the statements that act as matches (`limit`, `xt match`).

use serde_json::Value;

use super::render::{self, single};
use super::value::{self, members, num_u32, unwrap_elem};
use super::RuleCtx;
use crate::rules::{Branch, Counters, MarkOp, Match, MatchKind, NatFlags, NatTo, Target};

/// What one entry of a rule's `expr` array contributes.
pub(super) enum Stmt {
    Match(Vec<Match>),
    Counter(Counters),
    /// Has no bearing on the packet's path (`last`, a named counter reference).
    Nothing,
    /// Changes the packet or its connection and goes on to the next statement.
    Effect(Target),
    /// Ends the rule: a verdict, NAT, a verdict map, or something not followed.
    Final(Target),
}

/// The words iptables-nft leaves in place of rules nft cannot translate.
pub(super) const XT_NOTE: &str =
    "arguments not shown by nft -j; iptables-save is the complete source for rules made by iptables-nft";

fn verdict(v: &Value) -> Option<Target> {
    let (key, val) = single(v)?;
    let target = |v: &Value| v.get("target").and_then(Value::as_str).map(str::to_string);
    Some(match key {
        "accept" => Target::Accept,
        "drop" => Target::Drop,
        "return" => Target::Return,
        "continue" => Target::None,
        "jump" => Target::Jump(target(val)?),
        "goto" => Target::Goto(target(val)?),
        _ => return None,
    })
}

fn nat_flags(v: &Value) -> NatFlags {
    let mut f = NatFlags::default();
    let names: Vec<&str> = match v.get("flags") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split(',').map(str::trim).collect(),
        _ => Vec::new(),
    };
    for n in names {
        match n {
            "random" => f.random = true,
            "fully-random" => f.random_fully = true,
            "persistent" => f.persistent = true,
            _ => {}
        }
    }
    f
}

fn port_range(v: &Value) -> Option<(u16, u16)> {
    match value::port_ranges(v)?.as_slice() {
        [r] => Some(*r),
        _ => None,
    }
}

/// A NAT destination from an address (`a`, `a-b`, `a/len`) or an `addr . port`
/// concatenation, and a separate port (`p`, `p-q`).
fn nat_to(addr: Option<&Value>, port: Option<&Value>) -> Option<NatTo> {
    let mut to = NatTo {
        addrs: None,
        ports: None,
    };
    if let Some(a) = addr.map(unwrap_elem) {
        if let Some(Value::Array(parts)) = a.get("concat") {
            let [addr, port] = parts.as_slice() else {
                return None;
            };
            to.addrs = Some(addr_range(addr)?);
            to.ports = Some(port_range(port)?);
        } else {
            to.addrs = Some(addr_range(a)?);
        }
    }
    if let Some(p) = port {
        to.ports = Some(port_range(p)?);
    }
    Some(to)
}

fn addr_range(v: &Value) -> Option<(std::net::IpAddr, std::net::IpAddr)> {
    if let Some(a) = value::addr(v) {
        return Some((a, a));
    }
    if let Some((lo, hi)) = value::range(v) {
        return Some((value::addr(lo)?, value::addr(hi)?));
    }
    let [p] = value::prefixes(v)?[..] else {
        return None;
    };
    Some(value::prefix_bounds(p))
}

/// `mark = (mark & !clear) ^ xor` for a value written in terms of the mark being set
/// (`meta mark | 0x4000`, `meta mark & 0xffffff00 ^ 0x10`, or a constant); `None`
/// when it reads anything else (`ct mark set meta mark`).
fn mark_op(v: &Value, own: &Value) -> Option<MarkOp> {
    if v == own {
        return Some(MarkOp { clear: 0, xor: 0 });
    }
    if let Some(n) = num_u32(v) {
        return Some(MarkOp {
            clear: u32::MAX,
            xor: n,
        });
    }
    let (op, val) = single(v)?;
    let Value::Array(ops) = val else {
        return None;
    };
    let [inner, m] = ops.as_slice() else {
        return None;
    };
    let MarkOp { clear, xor } = mark_op(inner, own)?;
    let m = num_u32(m)?;
    Some(match op {
        "&" => MarkOp {
            clear: clear | !m,
            xor: xor & m,
        },
        "|" => MarkOp {
            clear: clear | m,
            xor: (xor & !m) | m,
        },
        "^" => MarkOp {
            clear,
            xor: xor ^ m,
        },
        _ => return None,
    })
}

/// How many values of a `numgen ... mod N` a map key covers (`0`, `0-1`).
fn numgen_values(key: &Value) -> f64 {
    match value::range(unwrap_elem(key)) {
        Some((lo, hi)) => match (value::num(lo), value::num(hi)) {
            (Some(lo), Some(hi)) if hi >= lo => (hi - lo) as f64 + 1.0,
            _ => 1.0,
        },
        None => 1.0,
    }
}

impl RuleCtx<'_> {
    /// One entry of a rule's `expr` array.
    pub(super) fn statement(&mut self, s: &Value) -> Stmt {
        let Some((key, val)) = single(s) else {
            return Stmt::Final(unknown("statement", s));
        };
        if let Some(t) = verdict(s) {
            return Stmt::Final(t);
        }
        match key {
            "match" => Stmt::Match(self.matches(val)),
            "counter" => match (
                val.get("packets").and_then(value::num),
                val.get("bytes").and_then(value::num),
            ) {
                (Some(packets), Some(bytes)) => Stmt::Counter(Counters { packets, bytes }),
                _ => Stmt::Nothing,
            },
            "last" | "comment" => Stmt::Nothing,
            "dnat" | "snat" => Stmt::Final(self.nat(key, val, s)),
            "masquerade" | "redirect" => {
                let flags = nat_flags(val);
                let ports = match val.get("port") {
                    None => None,
                    Some(p) => match port_range(p) {
                        Some(r) => Some(r),
                        None => return Stmt::Final(unknown(key, s)),
                    },
                };
                Stmt::Final(if key == "masquerade" {
                    Target::Masquerade { ports, flags }
                } else {
                    Target::Redirect { ports, flags }
                })
            }
            "reject" => {
                let with = match (val.get("type").and_then(Value::as_str), val.get("expr")) {
                    (Some(t), Some(e)) => Some(format!("{t} {}", render::expr(e))),
                    (Some(t), None) => Some(t.to_string()),
                    _ => None,
                };
                Stmt::Final(Target::Reject { with })
            }
            "mangle" => self.mangle(val, s),
            "log" => Stmt::Effect(Target::Log),
            "notrack" => Stmt::Effect(Target::Notrack),
            "vmap" => Stmt::Final(self.vmap(val, s)),
            // What the text reader could not read (no libnftables statement has this
            // name): the rule is followed no further.
            "unreadable" => Stmt::Final(Target::Unknown {
                name: super::str_of(val, "name").unwrap_or("?").to_string(),
                text: super::str_of(val, "text").unwrap_or_default().to_string(),
            }),
            "xt" => {
                let name = val.get("name").and_then(Value::as_str).unwrap_or("?");
                let kind = val.get("type").and_then(Value::as_str).unwrap_or("target");
                if kind == "match" && name == "comment" {
                    // Always true; only the comment's words are lost.
                    return Stmt::Match(vec![Match {
                        negated: false,
                        kind: MatchKind::Comment,
                    }]);
                }
                self.xt = true;
                let text = format!("xt {kind} {name}: {XT_NOTE}");
                if kind == "target" {
                    Stmt::Final(Target::Unknown {
                        name: name.to_string(),
                        text,
                    })
                } else {
                    Stmt::Match(vec![Match {
                        negated: false,
                        kind: MatchKind::Unknown {
                            name: name.to_string(),
                            text,
                        },
                    }])
                }
            }
            // Rate and count limits hold for some packets and not others.
            "limit" | "quota" | "connlimit" | "meter" | "ct count" => Stmt::Match(vec![Match {
                negated: false,
                kind: MatchKind::Unknown {
                    name: key.to_string(),
                    text: render::statement(s),
                },
            }]),
            // Side effects that leave the packet's path alone.
            "ct helper" => Stmt::Effect(Target::Helper {
                name: (val.as_str().map(str::to_string)).unwrap_or_else(|| render::statement(s)),
            }),
            "set" | "map" | "dup" | "flow" | "ct timeout" | "ct expectation" | "secmark"
            | "synproxy" | "objref" => Stmt::Effect(Target::Continue {
                name: render::statement(s),
            }),
            _ => Stmt::Final(unknown(key, s)),
        }
    }

    fn nat(&mut self, key: &str, val: &Value, s: &Value) -> Target {
        let flags = nat_flags(val);
        let make = |to: NatTo| {
            if key == "dnat" {
                Target::Dnat { to, flags }
            } else {
                Target::Snat { to, flags }
            }
        };
        // `dnat to ip daddr map @x`, `dnat ip addr . port to numgen random mod 2 map {...}`.
        if let Some(map) = val.get("addr").and_then(|a| a.get("map")) {
            let port = val.get("port");
            let (Some(k), Some(data)) = (map.get("key"), map.get("data")) else {
                return unknown(key, s);
            };
            return self.map(k, data, s, |d| nat_to(Some(d), port).map(make));
        }
        match nat_to(val.get("addr"), val.get("port")) {
            Some(to) => make(to),
            None => unknown(key, s),
        }
    }

    fn mangle(&mut self, val: &Value, s: &Value) -> Stmt {
        let null = Value::Null;
        let key = val.get("key").unwrap_or(&null);
        let v = val.get("value").unwrap_or(&null);
        let which = single(key).and_then(|(k, inner)| {
            let name = inner
                .get("key")
                .and_then(Value::as_str)
                .or(inner.as_str())?;
            Some((k, name))
        });
        let reads = |k: &str| {
            single(v).is_some_and(|(name, inner)| {
                name == k && inner.get("key").and_then(Value::as_str) == Some("mark")
            })
        };
        match which {
            // `meta mark set ct mark`, `ct mark set meta mark`: CONNMARK restore/save.
            Some(("meta", "mark")) if reads("ct") => Stmt::Effect(Target::CopyMark {
                restore: true,
                nfmask: u32::MAX,
                ctmask: u32::MAX,
            }),
            Some(("ct", "mark")) if reads("meta") => Stmt::Effect(Target::CopyMark {
                restore: false,
                nfmask: u32::MAX,
                ctmask: u32::MAX,
            }),
            Some(("meta", "mark")) => match mark_op(v, key) {
                Some(op) => Stmt::Effect(Target::Mark(op)),
                None => Stmt::Effect(Target::Continue {
                    name: render::statement(s),
                }),
            },
            Some(("ct", "mark")) if key.get("ct").and_then(|c| c.get("dir")).is_none() => {
                match mark_op(v, key) {
                    Some(op) => Stmt::Effect(Target::ConnMark(op)),
                    None => Stmt::Effect(Target::Continue {
                        name: render::statement(s),
                    }),
                }
            }
            Some(("meta", "nftrace")) => Stmt::Effect(Target::Log),
            _ => Stmt::Effect(Target::Continue {
                name: render::statement(s),
            }),
        }
    }

    fn vmap(&mut self, val: &Value, s: &Value) -> Target {
        let (Some(k), Some(data)) = (val.get("key"), val.get("data")) else {
            return unknown("vmap", s);
        };
        self.map(k, data, s, verdict)
    }

    /// A lookup keyed by `key` in `data` (an anonymous map or `@name`), each element's
    /// value read by `f` into a branch; `numgen` keys give each branch its share.
    fn map(
        &mut self,
        key: &Value,
        data: &Value,
        s: &Value,
        f: impl Fn(&Value) -> Option<Target>,
    ) -> Target {
        let elems: Vec<&Value> = match data.as_str().and_then(|d| d.strip_prefix('@')) {
            Some(name) => match self.map_elements(name) {
                Some(e) => e.iter().collect(),
                None => {
                    return Target::Unknown {
                        name: render::statement(s),
                        text: format!("map @{name} is not in this input"),
                    }
                }
            },
            None => members(data),
        };
        if elems.len() > *self.branches_left {
            *self.branches_left = 0;
            return Target::Unknown {
                name: render::statement(s),
                text: "map too large to follow: the rule set's maps hold too many branches".into(),
            };
        }
        *self.branches_left -= elems.len();
        let modulus = key
            .get("numgen")
            .and_then(|n| n.get("mod"))
            .and_then(value::num)
            .filter(|&m| m > 0);
        let branches = elems
            .iter()
            .map(|e| {
                let e = unwrap_elem(e);
                let (k, d) = match e {
                    Value::Array(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
                    other => (other, &Value::Null),
                };
                let target = f(d).unwrap_or_else(|| Target::Unknown {
                    name: render::expr(d),
                    text: format!("map value {} not understood", render::expr(d)),
                });
                Branch {
                    share: modulus.map(|m| numgen_values(k) / m as f64),
                    key: render::expr(unwrap_elem(k)),
                    target: Box::new(target),
                }
            })
            .collect();
        Target::Map {
            by: render::expr(key),
            branches,
        }
    }
}

fn unknown(name: &str, s: &Value) -> Target {
    Target::Unknown {
        name: name.to_string(),
        text: render::statement(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mark_values_become_clear_and_xor() {
        let own = json!({"meta": {"key": "mark"}});
        let op = |v: Value| mark_op(&v, &own);
        // meta mark set meta mark | 0x4000
        let or = op(json!({"|": [{"meta": {"key": "mark"}}, 0x4000]})).unwrap();
        assert_eq!(or.apply(0x1), 0x4001);
        assert_eq!(or.apply(0x4001), 0x4001);
        // meta mark set meta mark ^ 0x4000
        let xor = op(json!({"^": [{"meta": {"key": "mark"}}, 0x4000]})).unwrap();
        assert_eq!(xor.apply(0x4001), 0x1);
        // iptables-nft MARK --set-xmark 0x10/0xff: mark and 0xffffff00 xor 0x10
        let x =
            op(json!({"^": [{"&": [{"meta": {"key": "mark"}}, 0xffffff00u32]}, 0x10]})).unwrap();
        assert_eq!(
            x,
            MarkOp {
                clear: 0xff,
                xor: 0x10
            }
        );
        assert_eq!(x.apply(0x1234), 0x1210);
        // meta mark set 0x10
        assert_eq!(
            op(json!(16)).unwrap(),
            MarkOp {
                clear: u32::MAX,
                xor: 0x10
            }
        );
        // meta mark set meta mark & 0xff
        assert_eq!(
            op(json!({"&": [{"meta": {"key": "mark"}}, 0xff]}))
                .unwrap()
                .apply(0x1234),
            0x34
        );
        // ct mark set meta mark: a copy, not expressible
        assert_eq!(
            mark_op(
                &json!({"meta": {"key": "mark"}}),
                &json!({"ct": {"key": "mark"}})
            ),
            None
        );
    }

    #[test]
    fn nat_destinations() {
        let a = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            nat_to(Some(&json!("10.244.1.5")), Some(&json!(8080))),
            Some(NatTo {
                addrs: Some((a("10.244.1.5"), a("10.244.1.5"))),
                ports: Some((8080, 8080))
            })
        );
        assert_eq!(
            nat_to(Some(&json!({"concat": ["10.1.1.1", 4242]})), None),
            Some(NatTo {
                addrs: Some((a("10.1.1.1"), a("10.1.1.1"))),
                ports: Some((4242, 4242))
            })
        );
        assert_eq!(
            nat_to(
                Some(&json!({"prefix": {"addr": "10.0.0.0", "len": 30}})),
                None
            ),
            Some(NatTo {
                addrs: Some((a("10.0.0.0"), a("10.0.0.3"))),
                ports: None
            })
        );
        assert_eq!(
            nat_to(None, Some(&json!({"range": [1024, 65535]}))),
            Some(NatTo {
                addrs: None,
                ports: Some((1024, 65535))
            })
        );
        assert_eq!(nat_to(Some(&json!({"payload": {}})), None), None);
        assert_eq!(
            nat_flags(&json!({"flags": ["random", "persistent"]})),
            NatFlags {
                random: true,
                random_fully: false,
                persistent: true
            }
        );
        assert!(nat_flags(&json!({"flags": "fully-random"})).random_fully);
    }
}
