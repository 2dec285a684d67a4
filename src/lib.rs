//! natcheck: rebuild what Linux NAT did to each connection from packet captures taken
//! on several interfaces, check it against conntrack, and report findings.
//!
//! Layers, lowest first; a module uses only modules of lower layers (a test checks
//! every `crate::` path against this list):
//!
//! <!-- layers -->
//! 1. `diag`, `model`: located warnings; packets, tuples, translations
//! 2. `decode`: bytes of one frame → owned packet summary
//! 3. `capture`: pcap/pcapng files → capture points and their packets
//! 4. `flows`, `conntrack`: per-point flows; the conntrack witness's readers
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
pub mod model;
pub mod report;
