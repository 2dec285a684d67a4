//! `correlate --tables DIR`: the report's three tables (`frame.rs`) as Parquet files,
//! `DIR/connections.parquet`, `DIR/findings.parquet` and `DIR/points.parquet`; or, with
//! `--partition host,date`, Hive-partitioned so that the runs of a fleet gather in one
//! directory and read as one table:
//! `DIR/connections/host=H/date=YYYY-MM-DD/part-RUN.parquet`. The partition keys are
//! the directories only, never columns in the files (the Hive convention), and every
//! file of a table has the same schema. `RUN` is a hash of the tables' content: the
//! same run writes the same files again, another run adds its own. Files are written
//! beside their place and renamed into it, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use polars::prelude::*;
use sha2::{Digest, Sha256};

use super::frame::{self, Dated, FrameFormat};
use super::Model;

/// How the tables are partitioned; neither key: one file per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    /// `host=H`: the host the captures were taken on.
    pub host: Option<String>,
    /// `date=YYYY-MM-DD`: the UTC day of each row's first packet.
    pub date: bool,
}

impl Partition {
    /// The partitioning asked for; a host name must be usable as a directory name
    /// (letters, digits, `.`, `_`, `-`).
    pub fn new(host: Option<String>, date: bool) -> anyhow::Result<Partition> {
        if let Some(h) = &host {
            let ok = !h.is_empty()
                && !h.starts_with('.')
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            anyhow::ensure!(
                ok,
                "host name `{h}` cannot name a partition directory: use letters, digits, `.`, `_` and `-`"
            );
        }
        Ok(Partition { host, date })
    }

    fn is_none(&self) -> bool {
        self.host.is_none() && !self.date
    }
}

/// Writes the tables of `m` into `dir`; returns the files written, in order.
pub fn write(m: &Model, dir: &Path, p: &Partition) -> anyhow::Result<Vec<PathBuf>> {
    let mut tables = frame::tables(m)?;
    let whole = tables
        .iter_mut()
        .map(|t| parquet(&mut t.df))
        .collect::<PolarsResult<Vec<_>>>()?;
    if p.is_none() {
        return tables
            .iter()
            .zip(&whole)
            .map(|(t, bytes)| put(&dir.join(format!("{}.parquet", t.name)), bytes))
            .collect();
    }
    let run = run_id(&tables, &whole);
    // Rows no packet dates (a finding without connection or time, a point that saw
    // nothing) take the run's first packet's day.
    let run_first = m.correlation.points.iter().filter_map(|p| p.first_ns).min();
    let mut files = Vec::new();
    for t in &tables {
        for (place, rows) in groups(t, p, run_first)? {
            let idx = IdxCa::from_vec("".into(), rows);
            let mut part = t.df.take(&idx)?;
            let path = dir
                .join(t.name)
                .join(place)
                .join(format!("part-{run}.parquet"));
            files.push(put(&path, &parquet(&mut part)?)?);
        }
    }
    Ok(files)
}

/// The rows of each partition directory (`host=H/date=D`), in directory order.
fn groups(
    t: &Dated,
    p: &Partition,
    run_first: Option<i64>,
) -> anyhow::Result<Vec<(PathBuf, Vec<IdxSize>)>> {
    let mut out: std::collections::BTreeMap<PathBuf, Vec<IdxSize>> = Default::default();
    for (i, first) in t.first_ns.iter().enumerate() {
        let mut place = PathBuf::new();
        if let Some(h) = &p.host {
            place.push(format!("host={h}"));
        }
        if p.date {
            let ns = first
                .or(run_first)
                .context("--partition date: the captures hold no packet to date the tables by")?;
            place.push(format!("date={}", super::fmt::utc_date(ns)));
        }
        out.entry(place).or_default().push(i as IdxSize);
    }
    Ok(out.into_iter().collect())
}

fn parquet(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut bytes = Vec::new();
    frame::write(df, FrameFormat::Parquet, &mut bytes)?;
    Ok(bytes)
}

/// 16 hex digits of the SHA-256 of every table, by name and content.
fn run_id(tables: &[Dated], bytes: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for (t, b) in tables.iter().zip(bytes) {
        h.update(t.name.as_bytes());
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` through a hidden file beside it, creating directories.
fn put(path: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_a_directory_or_is_refused() {
        for ok in ["router", "node-1.example.org", "k8s_worker"] {
            assert!(Partition::new(Some(ok.into()), false).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a=b", "tab\there", "ünï"] {
            assert!(Partition::new(Some(bad.into()), false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_group_by_host_and_day() {
        let day = 86_400_000_000_000i64;
        let t = Dated {
            name: "points",
            df: DataFrame::empty(),
            first_ns: vec![Some(day + 5), None, Some(3 * day - 1), Some(day)],
        };
        let p = Partition::new(Some("h".into()), true).unwrap();
        let g = groups(&t, &p, Some(2 * day)).unwrap();
        let got: Vec<(String, Vec<IdxSize>)> = g
            .into_iter()
            .map(|(d, rows)| (d.display().to_string(), rows))
            .collect();
        assert_eq!(
            got,
            [
                ("host=h/date=1970-01-02".to_string(), vec![0, 3]),
                ("host=h/date=1970-01-03".to_string(), vec![1, 2]),
            ]
        );
        // Nothing dates a row: refused rather than guessed.
        assert!(groups(&t, &p, None).is_err());
        // Host only: one directory.
        let host = Partition::new(Some("h".into()), false).unwrap();
        assert_eq!(groups(&t, &host, None).unwrap().len(), 1);
    }
}
