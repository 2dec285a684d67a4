//! natcheck's integration tests, in one binary (`cargo test --test integration`): the
//! real CLI and the library on the bundled lab samples, the tcpdump corpus, a live
//! network namespace lab, the benchmarks' capture generator, and the layers of `src/`.
//! `util` holds what they share; insta keeps the snapshots in `snapshots/`.

mod util;

mod audit_cli;
mod bench_synth;
mod bundle_cli;
mod collect_netns;
mod community_id;
mod conntrack_cli;
mod correlate_cli;
mod diff_cli;
mod filter_cli;
mod flows_cli;
mod html_cli;
mod layers;
mod output_cli;
mod range_cli;
mod rules_cli;
mod segmentation;
mod snapshot_netns;
mod table_cli;
mod tables_cli;
mod truth;
