//! `--format` and `-o FILE`, shared by every command that writes a report: the format
//! named, else the one the file's extension stands for, else the command's default;
//! and the file written whole or not at all (a temporary file beside it, renamed
//! over it at the end). What is not a regular file (`/dev/null`, a FIFO, a terminal)
//! is written in place, never replaced; a symbolic link's target is the file written.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ValueEnum;

/// A command's output formats: a clap value enum whose names are the formats'.
/// The first variant is the default.
pub trait Formats: ValueEnum + Clone + Send + Sync + 'static {
    /// Binary formats are refused on a terminal.
    fn is_binary(&self) -> bool {
        false
    }

    /// The name `--format` takes.
    fn name(&self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Written when neither `--format` nor the file's extension says: the first.
    fn default_format() -> Self {
        Self::value_variants()[0].clone()
    }
}

/// Each extension `-o` knows and the formats it stands for, by name: the first that
/// the command writes is meant (`.txt` is the table, or conntrack's own text).
const EXTENSIONS: &[(&str, &[&str])] = &[
    ("txt", &["table", "text"]),
    ("json", &["json"]),
    ("ndjson", &["ndjson"]),
    ("csv", &["csv"]),
    ("parquet", &["parquet"]),
    ("md", &["markdown"]),
    ("html", &["html"]),
];

#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs<F: Formats> {
    /// Output format. Default: the one the extension of `-o FILE` stands for, else
    /// the first listed.
    #[arg(long, value_name = "FORMAT", value_parser = clap::builder::EnumValueParser::<F>::new())]
    pub format: Option<F>,

    /// Write the report to FILE, whole or not at all (`-`: standard output, the
    /// default). Its extension picks the format unless --format is given, among the
    /// command's formats: .txt (the table, or conntrack's text), .json, .ndjson,
    /// .csv, .parquet, .md (markdown), .html.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The names of the formats the extension `ext` stands for, when `-o` knows it.
fn names(ext: &str) -> Option<&'static [&'static str]> {
    let (_, names) = EXTENSIONS
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))?;
    Some(names)
}

/// The format `ext` stands for among the command's, when there is one.
fn by_extension<F: Formats>(ext: &str) -> Option<F> {
    names(ext)?.iter().find_map(|n| F::from_str(n, false).ok())
}

/// `.txt (table), .json (json), ...`: the extensions the command writes.
fn written<F: Formats>() -> String {
    EXTENSIONS
        .iter()
        .filter_map(|(e, _)| by_extension::<F>(e).map(|f| format!(".{e} ({})", f.name())))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<F: Formats> OutputArgs<F> {
    /// The file named, unless it is `-` (standard output).
    fn file(&self) -> Option<&Path> {
        self.output.as_deref().filter(|p| p.as_os_str() != "-")
    }

    /// The format to write: `--format`, else the file's extension, else the default.
    /// An extension the command cannot write is an error naming what it can.
    pub fn format(&self) -> anyhow::Result<F> {
        if let Some(f) = &self.format {
            return Ok(f.clone());
        }
        let Some(path) = self.file() else {
            return Ok(F::default_format());
        };
        let Some(ext) = path.extension().map(|e| e.to_string_lossy()) else {
            return Ok(F::default_format());
        };
        if let Some(f) = by_extension(&ext) {
            return Ok(f);
        }
        let what = match names(&ext).and_then(|n| n.first()) {
            Some(name) => format!("{name} output is not available here"),
            None => format!(".{ext} is no report format"),
        };
        anyhow::bail!(
            "{}: {what}; this command writes {}, or the format --format names",
            path.display(),
            written::<F>()
        )
    }

    /// Where the report goes, opened before any work so that a bad path fails early:
    /// a temporary file beside FILE, or standard output, which a binary `format`
    /// refuses when it is a terminal.
    pub fn open(&self, format: &F) -> anyhow::Result<Output> {
        let Some(path) = self.file() else {
            if format.is_binary() && io::stdout().is_terminal() {
                anyhow::bail!(
                    "--format {} writes binary data: redirect standard output to a file, or give -o FILE",
                    format.name()
                );
            }
            return Ok(Output::Stdout(BufWriter::with_capacity(
                BUFFER,
                io::stdout().lock(),
            )));
        };
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => anyhow::bail!("{}: is a directory", path.display()),
            // A device, FIFO or socket: renaming over it would put a regular file in
            // its place (as root, in /dev).
            Ok(m) if !m.is_file() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("{}: cannot open", path.display()))?;
                if format.is_binary() && file.is_terminal() {
                    anyhow::bail!(
                        "--format {} writes binary data: {} is a terminal",
                        format.name(),
                        path.display()
                    );
                }
                return Ok(Output::InPlace(BufWriter::with_capacity(BUFFER, file)));
            }
            _ => {}
        }
        // A link is kept, and the file it names replaced.
        let path = match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
            }
            _ => path.to_path_buf(),
        };
        let name = path
            .file_name()
            .with_context(|| format!("{}: not a file name", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            // As a file created in place would be, before the umask.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(without_path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(Output::File {
            tmp: BufWriter::with_capacity(BUFFER, tmp),
            path,
        })
    }
}

/// tempfile's error without the name of the temporary file it appends: the user
/// named another.
fn without_path(e: io::Error) -> io::Error {
    match e.to_string().split_once(" at path ") {
        Some((what, _)) => io::Error::new(e.kind(), what.to_string()),
        None => e,
    }
}

/// Bytes an output gathers before writing them: reports are written in pieces of a
/// line or a connection, or in runs of many at once that go straight through.
const BUFFER: usize = 1 << 16;

/// An opened output: [`Output::finish`] completes it; a file dropped unfinished is
/// removed and leaves FILE as it was.
pub enum Output {
    Stdout(BufWriter<io::StdoutLock<'static>>),
    File {
        tmp: BufWriter<tempfile::NamedTempFile>,
        path: PathBuf,
    },
    /// A file that is not a regular one, written as it is.
    InPlace(BufWriter<File>),
}

impl Output {
    /// Whether the report goes to a terminal (standard output, a terminal).
    pub fn is_terminal(&self) -> bool {
        match self {
            Output::Stdout(_) => io::stdout().is_terminal(),
            Output::InPlace(w) => w.get_ref().is_terminal(),
            Output::File { .. } => false,
        }
    }

    /// Flushes standard output, or puts the whole file in place.
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Stdout(mut w) => w.flush()?,
            Output::InPlace(mut w) => w.flush()?,
            Output::File { tmp, path } => {
                let cannot = || format!("{}: cannot write", path.display());
                let tmp = tmp
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(cannot)?;
                tmp.as_file().sync_all().with_context(cannot)?;
                tmp.persist(&path)
                    .map_err(|e| e.error)
                    .with_context(cannot)?;
            }
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::InPlace(w) => w.write(buf),
            Output::File { tmp, .. } => tmp.write(buf),
        }
    }

    /// Many pieces at once (a JSON report's batch of connections): standard output
    /// and a file written in place take them in one `writev`; the temporary file of
    /// `-o FILE`, whose writer does not say it takes them whole, through the buffer.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write_vectored(bufs),
            Output::InPlace(w) => w.write_vectored(bufs),
            Output::File { tmp, .. } => tmp.write_vectored(bufs),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(buf),
            Output::InPlace(w) => w.write_all(buf),
            Output::File { tmp, .. } => tmp.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::InPlace(w) => w.flush(),
            Output::File { tmp, .. } => tmp.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
    enum Two {
        Table,
        Json,
    }

    impl Formats for Two {}

    fn args(format: Option<Two>, output: Option<&str>) -> OutputArgs<Two> {
        OutputArgs {
            format,
            output: output.map(PathBuf::from),
        }
    }

    #[test]
    fn format_from_flag_extension_or_default() {
        assert_eq!(args(None, None).format().unwrap(), Two::Table);
        assert_eq!(args(None, Some("r.json")).format().unwrap(), Two::Json);
        assert_eq!(args(None, Some("r.JSON")).format().unwrap(), Two::Json);
        assert_eq!(args(None, Some("r.txt")).format().unwrap(), Two::Table);
        assert_eq!(args(None, Some("report")).format().unwrap(), Two::Table);
        assert_eq!(args(None, Some("-")).format().unwrap(), Two::Table);
        assert_eq!(
            args(Some(Two::Json), Some("r.txt")).format().unwrap(),
            Two::Json
        );
        assert_eq!(
            args(Some(Two::Table), Some("r.pcap")).format().unwrap(),
            Two::Table
        );
        let err = |o| args(None, Some(o)).format().unwrap_err().to_string();
        assert_eq!(
            err("r.csv"),
            "r.csv: csv output is not available here; this command writes .txt (table), .json (json), or the format --format names"
        );
        assert!(err("r.html").starts_with("r.html: html output is not available here;"));
        assert!(err("r.pcap").starts_with("r.pcap: .pcap is no report format;"));
    }

    #[test]
    fn a_file_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.txt");
        std::fs::write(&path, "before").unwrap();
        let a = args(None, Some(path.to_str().unwrap()));
        let mut out = a.open(&Two::Table).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before");
        let mut out = a.open(&Two::Table).unwrap();
        out.write_all(b"whole").unwrap();
        out.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whole");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        let missing = args(None, Some("/nonexistent-dir/r.txt"));
        let err = missing.open(&Two::Table).err().unwrap().to_string();
        assert_eq!(err, "/nonexistent-dir/r.txt: cannot create");
    }

    #[test]
    fn what_is_not_a_regular_file_is_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        // Renamed over, /dev/null would become a regular file (as root) or the write
        // would fail (as anyone else).
        let mut out = args(None, Some("/dev/null")).open(&Two::Table).unwrap();
        out.write_all(b"report\n").unwrap();
        out.finish().unwrap();
        let null = fs::symlink_metadata("/dev/null").unwrap();
        assert!(null.file_type().is_char_device(), "{null:?}");

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let reader = {
                let fifo = fifo.clone();
                std::thread::spawn(move || fs::read(fifo).unwrap())
            };
            let mut out = args(None, Some(fifo.to_str().unwrap()))
                .open(&Two::Table)
                .unwrap();
            out.write_all(b"through the pipe\n").unwrap();
            out.finish().unwrap();
            assert_eq!(reader.join().unwrap(), b"through the pipe\n");
            let m = fs::symlink_metadata(&fifo).unwrap();
            assert!(m.file_type().is_fifo(), "{m:?}");
        }

        let err = args(None, Some(dir.path().to_str().unwrap()))
            .open(&Two::Table)
            .err()
            .unwrap()
            .to_string();
        assert!(err.ends_with(": is a directory"), "{err}");
    }

    #[test]
    fn a_symbolic_link_is_kept_and_its_target_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("report.txt");
        let link = dir.path().join("latest.txt");
        fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink("report.txt", &link).unwrap();
        let mut out = args(None, Some(link.to_str().unwrap()))
            .open(&Two::Table)
            .unwrap();
        out.write_all(b"new").unwrap();
        out.finish().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }
}
