//! natcheck: rebuild what Linux NAT did to each connection from packet captures taken
//! on several interfaces, check it against independent witnesses (conntrack), and
//! report findings.
//!
//! The pipeline runs one way. Layers, lowest first; a module uses only modules of
//! lower layers (a test checks every `crate::` path against this list):
//!
//! <!-- layers -->
//! 1. `diag`, `model`, `input`, `community_id`, `cidr`, `mem`: located warnings;
//!    packets, tuples, translations; opening inputs and how far their reading has got;
//!    the Community ID of a flow; address prefixes; cache hints
//! 2. `decode`, `filter`: bytes of one frame → owned packet summary; the `--filter`
//!    language over tuples
//! 3. `capture`: pcap/pcapng files → capture points and their packets
//! 4. `flows`, `conntrack`, `rules`, `bundle`: per-point flows; the witnesses' readers
//!    (conntrack; iptables/nftables rule sets and their evaluator); the evidence
//!    bundle's layout and manifest, and which of its files is what
//! 5. `correlate`, `witness`, `collect`: the same connections across points; witness
//!    inputs; `natcheck collect`, which captures on the NAT host and writes a bundle
//! 6. `audit`: findings, as data
//! 7. `diff`: two correlation reports compared (new, gone and changed findings and
//!    translations), as data
//! 8. `report`: the report model and one renderer per format; every word users read
//! 9. `pipeline`: inputs → report model, the library entry point
//! 10. `commands`: flags → pipeline configuration and a renderer
//! <!-- /layers -->

pub mod audit;
pub mod bundle;
pub mod capture;
pub mod cidr;
pub mod collect;
pub mod commands;
pub mod community_id;
pub mod conntrack;
pub mod correlate;
pub mod decode;
pub mod diag;
pub mod diff;
pub mod filter;
pub mod flows;
pub mod input;
pub mod mem;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod rules;
pub mod witness;
