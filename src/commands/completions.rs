//! `natcheck completions SHELL`: the shell's completion script for natcheck, made
//! from the command line's own definition, so it always knows every command and
//! option.

use std::io::Write;

use super::ExitStatus;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell. Bash: `natcheck completions bash > /etc/bash_completion.d/natcheck`;
    /// zsh: into a directory of `$fpath` as `_natcheck`; fish: into
    /// ~/.config/fish/completions/natcheck.fish.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Writes the script for `cmd`, natcheck's whole command line.
pub fn run(args: &Args, mut cmd: clap::Command) -> anyhow::Result<ExitStatus> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "natcheck", &mut out);
    out.flush()?;
    Ok(ExitStatus::Clean)
}
