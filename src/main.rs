//! The `natcheck` binary: parses the command line and dispatches to `commands`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use natcheck::commands::{self, ExitStatus};

/// Rebuild what Linux NAT did from captures taken on several interfaces, and check it
/// against conntrack.
#[derive(Parser, Debug)]
#[command(name = "natcheck", version, about, long_about = None)]
struct Cli {
    /// Worker threads for parallel stages (default: one per core). Output is the same
    /// whatever the number.
    #[arg(long, short = 'j', global = true, value_name = "N")]
    threads: Option<usize>,

    /// No progress line on stderr (shown only on a terminal, while reading an input
    /// takes more than a second).
    #[arg(long, short = 'q', global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Find the same connections at every capture point and rebuild what NAT did.
    Correlate(Box<commands::correlate::Args>),
    /// List the flows seen at each capture point.
    Flows(commands::flows::Args),
    /// Parse conntrack output and show the translation each entry implies.
    Conntrack(commands::conntrack::Args),
    /// Dump the live conntrack table over netlink.
    Snapshot(commands::snapshot::Args),
    /// Compare two `correlate --format json` reports: new, gone and changed findings
    /// and translations.
    Diff(commands::diff::Args),
    /// Walk one packet through the host's iptables/nftables rules.
    Explain(commands::explain::Args),
    /// On the NAT host (root, or CAP_NET_RAW and CAP_NET_ADMIN): capture on several
    /// interfaces at once and gather conntrack, the rules and the host's context into
    /// one bundle directory that `correlate DIR` reads whole (docs/collect.md).
    Collect(commands::collect::Args),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::Args),
    /// Print the manual page (roff), or write one per command with --dir.
    Man(commands::man::Args),
}

/// Arrays of more than this many bytes get memory of their own from the system,
/// given back when they are freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_MAPPING: libc::c_int = 4 << 20;

/// Has large arrays given back to the system as soon as they are freed. Correlation
/// builds and frees arrays of tens of megabytes one step after another (records,
/// their orders, the join's votes, components); once the first such array is freed,
/// glibc's malloc raises the size at which it maps memory of its own (up to 32 MiB)
/// and keeps the next ones on its heap, where their pages stay counted after they
/// are freed. A fixed threshold keeps the peak to what is in use.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sets one of the allocator's parameters, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // Only fails if a pool was already built, which cannot happen this early.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
    if !cli.quiet && std::io::stderr().is_terminal() {
        natcheck::input::progress::enable();
    }
    let result = match &cli.command {
        Command::Correlate(a) => commands::correlate::run(a),
        Command::Flows(a) => commands::flows::run(a),
        Command::Conntrack(a) => commands::conntrack::run(a),
        Command::Snapshot(a) => commands::snapshot::run(a),
        Command::Explain(a) => commands::explain::run(a),
        Command::Diff(a) => commands::diff::run(a),
        Command::Collect(a) => commands::collect::run(a),
        Command::Completions(a) => commands::completions::run(a, Cli::command()),
        Command::Man(a) => commands::man::run(a, Cli::command()),
    };
    match result {
        Ok(status) => ExitCode::from(status as u8),
        Err(err) => {
            // A reader that went away (`natcheck ... | head`) is not an error.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "natcheck: error: {err:#}");
            ExitCode::from(ExitStatus::Error as u8)
        }
    }
}
