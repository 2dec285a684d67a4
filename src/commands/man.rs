//! `natcheck man [--dir DIR]`: the manual page of natcheck in roff, made from the
//! command line's own definition; with `--dir`, one page per command as well
//! (`natcheck.1`, `natcheck-correlate.1`, ...), for `man -l` or a `man1` directory.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write natcheck.1 and one page per command (natcheck-correlate.1, ...) into
    /// DIR (created if needed) instead of printing natcheck.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the page(s) of `cmd`, natcheck's whole command line.
pub fn run(args: &Args, cmd: clap::Command) -> anyhow::Result<ExitStatus> {
    match &args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            let cannot = || format!("{}: cannot write the pages", dir.display());
            std::fs::create_dir_all(dir).with_context(cannot)?;
            clap_mangen::generate_to(cmd, dir).with_context(cannot)?;
        }
    }
    Ok(ExitStatus::Clean)
}
