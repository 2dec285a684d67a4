//! Reading the files of a gzip'd tar archive (`tar czf b.tar.gz DIR`) where they lie,
//! without unpacking it: a file of the archive is named `ARCHIVE/PATH` (PATH as the
//! archive holds it, `./` left out), and [`open_member`] reads it as a file is read.
//!
//! Nothing is ever written to disk, so no entry can land outside anywhere. An archive
//! is indexed once per process (its entries, in order) and checked whole first:
//! every entry must be a directory or a regular file with a relative path that does
//! not climb (`..`); symbolic and hard links, devices, FIFOs and sparse files are
//! refused, as are more entries or more bytes once decompressed than [`Limits`]
//! allows (10,000 and 64 GiB). Small files (up to 16 MiB, 64 MiB in all) are
//! kept in memory from that pass; a larger one (a capture) is read again from the
//! archive when opened, streaming. Errors name the archive and the entry.
//!
//! Entries are read raw (the tar crate's own handling of GNU long names and pax
//! headers would read them whole into memory, whatever their size): a GNU long name
//! (`L`) or pax header (`x`) of at most 64 KiB names the entry after it;
//! global pax headers (`g`) are skipped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

/// What an archive may hold, and what is kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries, headers included.
    pub entries: usize,
    /// Bytes once decompressed.
    pub unpacked: u64,
    /// Bytes of a GNU long name or pax header.
    pub meta: u64,
    /// Files up to this size are kept in memory when the archive is indexed...
    pub small: u64,
    /// ... up to this much in all.
    pub small_total: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        entries: 10_000,
        unpacked: 64 << 30,
        meta: 64 << 10,
        small: 16 << 20,
        small_total: 64 << 20,
    };
}

/// Whether a file name says gzip'd tar: `.tar.gz` or `.tgz`.
pub fn is_archive_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// An archive's regular files by path.
pub type Index = BTreeMap<String, Member>;

/// One regular file of an archive.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its place among the archive's raw entries (headers included).
    raw_index: usize,
    pub size: u64,
    /// Its bytes, when small enough to be kept.
    pub data: Option<Arc<[u8]>>,
}

/// An archive's regular files, by path.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    members: Index,
    limits: Limits,
}

/// What was wrong with an archive: `ARCHIVE: entry `NAME`: what`.
fn bad(label: &str, entry: Option<&str>, what: impl std::fmt::Display) -> io::Error {
    let text = match entry {
        Some(e) => format!("{label}: entry `{}`: {what}", e.escape_debug()),
        None => format!("{label}: {what}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// A reader that fails once more than `limit` bytes went through it.
pub struct Bounded<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R> Bounded<R> {
    pub fn new(inner: R, limit: u64) -> Bounded<R> {
        Bounded {
            inner,
            limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {} bytes once decompressed", self.limit),
            ));
        }
        Ok(n)
    }
}

/// An entry's path made relative and plain (`./a/b` → `a/b`); `None` when it is
/// absolute, climbs out (`..`), is empty or not UTF-8.
fn clean_path(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = Vec::new();
    for c in Path::new(text).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The value of `key` in a pax header's records (`LEN KEY=VALUE\n`).
fn pax_value<'a>(data: &'a [u8], key: &str) -> Option<&'a [u8]> {
    tar::PaxExtensions::new(data)
        .filter_map(Result::ok)
        .filter(|e| e.key() == Ok(key))
        .last()
        .map(|e| e.value_bytes())
}

/// Reads the whole of a meta entry (a long name, a pax header) of at most `max`
/// bytes.
fn read_meta(
    r: &mut impl Read,
    size: u64,
    max: u64,
    label: &str,
    entry: &str,
) -> io::Result<Vec<u8>> {
    if size > max {
        return Err(bad(
            label,
            Some(entry),
            format!("a header of {size} bytes (at most {max})"),
        ));
    }
    let mut v = Vec::new();
    r.take(size).read_to_end(&mut v)?;
    Ok(v)
}

/// Indexes an uncompressed tar stream, `label` naming it in errors: every regular
/// file's path, size and place, and the bytes of the small ones. Refuses what the
/// module doc says.
pub fn index_tar(label: &str, tar: impl Read, limits: Limits) -> io::Result<Index> {
    let mut ar = tar::Archive::new(Bounded::new(tar, limits.unpacked));
    let mut out = BTreeMap::new();
    let mut kept = 0u64;
    // A long name or pax path for the next entry.
    let mut next_name: Option<Vec<u8>> = None;
    let mut next_size: Option<u64> = None;
    let entries = ar.entries().map_err(|e| bad(label, None, e))?.raw(true);
    for (i, entry) in entries.enumerate() {
        if i >= limits.entries {
            return Err(bad(
                label,
                None,
                format!("more than {} entries", limits.entries),
            ));
        }
        let mut entry = entry.map_err(|e| bad(label, None, format!("entry {}: {e}", i + 1)))?;
        let header_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.size();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::GNULongName => {
                let mut v = read_meta(&mut entry, size, limits.meta, label, &header_name)?;
                while v.last() == Some(&0) {
                    v.pop();
                }
                next_name = Some(v);
                continue;
            }
            EntryType::XHeader => {
                let v = read_meta(&mut entry, size, limits.meta, label, &header_name)?;
                if let Some(p) = pax_value(&v, "path") {
                    next_name = Some(p.to_vec());
                }
                if let Some(s) = pax_value(&v, "size") {
                    let s = std::str::from_utf8(s).ok().and_then(|s| s.parse().ok());
                    next_size = Some(s.ok_or_else(|| {
                        bad(label, Some(&header_name), "a pax size that is not a number")
                    })?);
                }
                continue;
            }
            EntryType::XGlobalHeader => {
                read_meta(&mut entry, size, limits.meta, label, &header_name)?;
                continue;
            }
            _ => {}
        }
        let raw_name = next_name
            .take()
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        if next_size.take().is_some_and(|s| s != size) {
            return Err(bad(
                label,
                Some(&shown),
                "a pax size other than its header's: not supported",
            ));
        }
        if kind == EntryType::Directory {
            // Nothing is made of it: the files under it carry their whole paths.
            continue;
        }
        let Some(name) = clean_path(&raw_name) else {
            return Err(bad(
                label,
                Some(&shown),
                "an absolute path or one out of the archive (`..`): refused",
            ));
        };
        match kind {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Symlink | EntryType::Link => {
                return Err(bad(
                    label,
                    Some(&shown),
                    "a link: refused (a bundle holds regular files only)",
                ))
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(bad(
                    label,
                    Some(&shown),
                    "a device or FIFO: refused (a bundle holds regular files only)",
                ))
            }
            other => {
                return Err(bad(
                    label,
                    Some(&shown),
                    format!(
                        "an entry of type `{}`: refused (a bundle holds regular files only)",
                        other.as_byte().escape_ascii()
                    ),
                ))
            }
        }
        let data = if size <= limits.small && kept + size <= limits.small_total {
            let mut v = Vec::new();
            (&mut entry)
                .take(size)
                .read_to_end(&mut v)
                .map_err(|e| bad(label, Some(&shown), e))?;
            kept += size;
            Some(v)
        } else {
            None
        };
        let m = Member {
            raw_index: i,
            size,
            data: data.map(Arc::from),
        };
        if out.insert(name, m).is_some() {
            return Err(bad(
                label,
                Some(&shown),
                "twice in the archive: which one is meant is unknown",
            ));
        }
    }
    Ok(out)
}

/// The decompressed stream of the archive at `path`.
fn stream(path: &Path) -> io::Result<MultiGzDecoder<BufReader<File>>> {
    let f = File::open(path)?;
    Ok(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, f)))
}

/// Archives indexed so far by this process.
static INDEXED: Mutex<Vec<Arc<Archive>>> = Mutex::new(Vec::new());

impl Archive {
    /// The archive at `path`, indexed (once per process).
    pub fn open(path: &Path) -> io::Result<Arc<Archive>> {
        let cached = INDEXED
            .lock()
            .ok()
            .and_then(|v| v.iter().find(|a| a.path == path).cloned());
        if let Some(a) = cached {
            return Ok(a);
        }
        let a = Arc::new(Archive::index(path, Limits::DEFAULT)?);
        if let Ok(mut v) = INDEXED.lock() {
            v.push(a.clone());
        }
        Ok(a)
    }

    /// Indexes the archive at `path` within `limits`.
    pub fn index(path: &Path, limits: Limits) -> io::Result<Archive> {
        let label = path.display().to_string();
        let s = stream(path).map_err(|e| bad(&label, None, e))?;
        Ok(Archive {
            path: path.to_path_buf(),
            members: index_tar(&label, s, limits)?,
            limits,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The regular files' paths, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The size of file `name`, if the archive holds it.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.members.get(name).map(|m| m.size)
    }

    /// Reads file `name` of the archive.
    pub fn read(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        let label = self.path.display().to_string();
        let m = self.members.get(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{label}: no file `{}` in the archive", name.escape_debug()),
            )
        })?;
        if let Some(d) = &m.data {
            return Ok(Box::new(io::Cursor::new(d.clone())));
        }
        // Walk the archive again to the entry's header; its data follows.
        let s = stream(&self.path).map_err(|e| bad(&label, None, e))?;
        let mut ar = tar::Archive::new(Bounded::new(s, self.limits.unpacked));
        // The entry's header read, the stream stands at its data.
        match ar.entries()?.raw(true).nth(m.raw_index) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(bad(&label, Some(name), e)),
            None => {
                return Err(bad(
                    &label,
                    Some(name),
                    "the archive changed since it was read",
                ))
            }
        }
        Ok(Box::new(ar.into_inner().take(m.size)))
    }
}

/// Splits `ARCHIVE/PATH` into the archive (a `.tar.gz` or `.tgz` file that exists)
/// and the path inside it.
pub fn split(path: &Path) -> Option<(&Path, String)> {
    let mut archive = path.parent()?;
    loop {
        if is_archive_name(archive) && archive.is_file() {
            let inside = path.strip_prefix(archive).ok()?;
            return Some((archive, inside.to_str()?.to_string()));
        }
        archive = archive.parent()?;
    }
}

/// Opens the file `ARCHIVE/PATH` names.
pub fn open_member(path: &Path) -> Option<io::Result<Box<dyn Read + Send>>> {
    let (archive, inside) = split(path)?;
    Some(Archive::open(archive).and_then(|a| a.read(&inside)))
}

#[cfg(test)]
mod tests;
