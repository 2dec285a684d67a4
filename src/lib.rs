//! natcheck: rebuild what Linux NAT did to each connection from packet captures taken
//! on several interfaces, check it against conntrack, and report findings.
//!
//! The pipeline runs one way:
//! `capture` → `decode` → `flows` → `correlate` (+ `conntrack`) → `audit` → `report`.
//! The `commands` module holds one file per subcommand and wires the stages together.

pub mod audit;
pub mod capture;
pub mod commands;
pub mod conntrack;
pub mod correlate;
pub mod decode;
pub mod diag;
pub mod flows;
pub mod model;
pub mod report;
