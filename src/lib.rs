//! natcheck: rebuild what Linux NAT did to each connection from packet captures taken
//! on several interfaces, check it against independent witnesses (conntrack), and
//! report findings.
//!
//! The pipeline runs one way. Layers, lowest first; a module uses only modules of
//! lower layers (a test checks every `crate::` path against this list):
//!
//! <!-- layers -->
//! 1. `diag`, `model`, `input`: located warnings; packets, tuples, translations; opening inputs
//! 2. `decode`: bytes of one frame → owned packet summary
//! 3. `capture`: pcap/pcapng files → capture points and their packets
//! 4. `flows`, `conntrack`, `rules`: per-point flows; the witnesses' readers (conntrack;
//!    iptables/nftables rule sets and their evaluator)
//! 5. `correlate`, `witness`: the same connections across points; witness inputs
//! 6. `audit`: findings, as data
//! 7. `report`: the report model and one renderer per format; every word users read
//! 8. `pipeline`: inputs → report model, the library entry point
//! 9. `commands`: flags → pipeline configuration and a renderer
//! <!-- /layers -->

pub mod audit;
pub mod capture;
pub mod commands;
pub mod conntrack;
pub mod correlate;
pub mod decode;
pub mod diag;
pub mod flows;
pub mod input;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod rules;
pub mod witness;
