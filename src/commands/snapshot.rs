//! `natcheck snapshot [--netns NAME]`: the live conntrack table over netlink, as
//! `conntrack -L -o extended,id` prints it (one line per entry, sorted by ORIGINAL
//! tuple, zone, REPLY tuple and id, so two snapshots diff cleanly) or as the
//! `natcheck.conntrack/1` JSON document of `natcheck conntrack`. With `--events
//! --duration S`, records the NEW, UPDATE and DESTROY events for S seconds instead,
//! as `conntrack -E -o timestamp,extended,id` prints them (each line written as it
//! arrives) or as that document's timelines.
//!
//! Entries or events the kernel sent that could not be read are warnings (exit 2);
//! everything else read is still written.

use std::io::Write;
use std::time::Duration;

use super::{print_warnings, ExitStatus, FilterArgs, Formats, Output, OutputArgs};
use crate::conntrack::{self, Dump, Entry, Event};
use crate::diag::Warning;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read the table of this network namespace: a name from `ip netns list`, or a
    /// path such as /proc/PID/ns/net (a container's).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs<SnapshotFormat>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Record conntrack events (NEW, UPDATE, DESTROY) instead of dumping the table.
    #[arg(long, requires = "duration")]
    pub events: bool,

    /// How long to record events: seconds (`2`, `0.5`) or a duration (`500ms`, `1m`).
    #[arg(long, value_name = "SECS", value_parser = parse_duration, requires = "events")]
    pub duration: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotFormat {
    /// conntrack's own text, one line per entry or event: `conntrack -L -o
    /// extended,id` (with --events, `conntrack -E -o timestamp,extended,id`).
    Text,
    /// One JSON document (docs/json-schema.md, natcheck.conntrack/1), as `natcheck
    /// conntrack` writes it.
    Json,
}

impl Formats for SnapshotFormat {}

/// Longest recording accepted: a day. Longer is almost certainly a typo, and the
/// JSON form keeps every event in memory.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::from_secs_f64(secs.min(MAX_DURATION.as_secs_f64() + 1.0))
        }
        Ok(_) => return Err(format!("`{s}` is not a number of seconds")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}"))?,
    };
    if d.is_zero() {
        return Err("the duration must be more than 0".into());
    }
    if d > MAX_DURATION {
        return Err(format!(
            "`{s}` is longer than {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

pub fn run(args: &Args) -> anyhow::Result<ExitStatus> {
    let format = args.output.format()?;
    let filter = args.filter.parse()?;
    let keep = |e: &Entry| super::keeps_entry(filter.as_ref(), e);
    let netns = args.netns.as_deref();
    let out = args.output.open(&format)?;
    let warnings = match (args.events, args.duration) {
        (true, Some(d)) => record(out, format, netns, d, keep)?,
        // clap enforces that --events comes with --duration and the reverse.
        _ => dump(out, format, netns, keep)?,
    };
    Ok(if print_warnings(&warnings) {
        ExitStatus::Error
    } else {
        ExitStatus::Clean
    })
}

fn dump(
    mut out: Output,
    format: SnapshotFormat,
    netns: Option<&str>,
    keep: impl Fn(&Entry) -> bool,
) -> anyhow::Result<Vec<Warning>> {
    let mut table = conntrack::netlink::dump(netns)?;
    table.entries.retain(|e| keep(e));
    conntrack::netlink::sort_entries(&mut table.entries);
    match format {
        SnapshotFormat::Text => {
            let mut line = String::new();
            for e in &table.entries {
                line.clear();
                conntrack::write_entry(e, &mut line);
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
        }
        SnapshotFormat::Json => {
            write_json(&mut out, netns, table.entries, Vec::new(), &table.warnings)?;
        }
    }
    out.finish()?;
    Ok(table.warnings)
}

fn record(
    mut out: Output,
    format: SnapshotFormat,
    netns: Option<&str>,
    duration: Duration,
    keep: impl Fn(&Entry) -> bool,
) -> anyhow::Result<Vec<Warning>> {
    let mut events = Vec::new();
    let mut line = String::new();
    let text = format == SnapshotFormat::Text;
    let rec = conntrack::netlink::record_events(netns, duration, |ev| {
        if !keep(&ev.entry) {
            Ok(())
        } else if text {
            // Written and flushed one by one, so `| grep` sees events as they come.
            line.clear();
            conntrack::write_event(&ev, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
            out.flush()
        } else {
            events.push(ev);
            Ok(())
        }
    })?;
    if !text {
        write_json(&mut out, netns, Vec::new(), events, &rec.warnings)?;
    }
    out.finish()?;
    Ok(rec.warnings)
}

/// Writes the `natcheck.conntrack/1` document `natcheck conntrack --format json` writes
/// for a file, with `source` "netlink" and the namespace read.
fn write_json(
    out: &mut dyn Write,
    netns: Option<&str>,
    entries: Vec<Entry>,
    events: Vec<Event>,
    warnings: &[Warning],
) -> anyhow::Result<()> {
    let dump = Dump {
        source: conntrack::netlink::SOURCE.to_string(),
        entries,
        events,
        warnings: warnings.to_vec(),
        ..Dump::default()
    };
    let host = conntrack::host_addresses(dump.all_entries());
    let view = conntrack::View::of(&dump, &host, |_, _| true);
    out.write_all(crate::report::conntrack::document(&[view], netns)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_or_with_units() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("NaN").is_err());
        assert!(parse_duration("1e30").is_err());
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
