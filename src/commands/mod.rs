//! One module per subcommand: each owns its clap `Args` and a `run` that returns the
//! process exit status. `main.rs` only parses and dispatches. What several commands
//! share (capture arguments, warning output) lives here.

pub mod collect;
pub mod conntrack;
pub mod correlate;
pub mod explain;
pub mod flows;
pub mod snapshot;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::capture::{IfNames, InputSpec, ReadOptions};
pub use crate::diag::ExitStatus;
use crate::diag::Warning;

/// Output formats shared by the commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned plain text for terminals and tickets.
    Table,
    /// One JSON document (see docs/json-schema.md).
    Json,
}

/// Capture inputs, shared by every command that reads captures.
#[derive(clap::Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Capture files: pcap or pcapng, optionally gzip-compressed; `NAME=PATH` names the
    /// capture point; `-` reads standard input.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<InputSpec>,

    /// Interface names for `tcpdump -i any` (LINUX_SLL2) captures: the output of
    /// `ip -o link` on the capturing host, or `INDEX=NAME` lines.
    #[arg(long, value_name = "FILE")]
    pub links: Option<PathBuf>,
}

impl CaptureArgs {
    /// Validates the inputs before any work starts: bad arguments fail early.
    pub fn read_options(&self) -> anyhow::Result<ReadOptions> {
        let stdin_uses = self.captures.iter().filter(|c| c.is_stdin()).count();
        anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be read only once");
        for c in &self.captures {
            if !c.is_stdin() {
                let meta =
                    std::fs::metadata(&c.path).with_context(|| format!("{}", c.path.display()))?;
                anyhow::ensure!(!meta.is_dir(), "{}: is a directory", c.path.display());
            }
        }
        let ifnames = match &self.links {
            None => IfNames::default(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
                IfNames::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
        };
        Ok(ReadOptions { ifnames })
    }
}

/// Prints warnings to stderr, one per line, prefixed like compiler diagnostics.
/// Returns true when there were any (the run then exits 2).
pub fn print_warnings<'a>(warnings: impl IntoIterator<Item = &'a Warning>) -> bool {
    let mut any = false;
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for w in warnings {
        any = true;
        let _ = writeln!(err, "natcheck: warning: {w}");
    }
    any
}
