use std::io::Write;

use flate2::{write::GzEncoder, Compression};

use super::*;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("natcheck-archive-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tar header of `kind` for `name` (written raw: the builder refuses `..`) and
/// `size` bytes.
fn header(name: &[u8], kind: EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// A tar stream of the given entries, then its end.
fn tar_of(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        b.append(&header(name, *kind, data.len() as u64), *data)
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn index(tar: &[u8]) -> io::Result<Index> {
    index_tar("b.tar.gz", tar, Limits::DEFAULT)
}

fn err(tar: &[u8]) -> String {
    index(tar).unwrap_err().to_string()
}

#[test]
fn files_at_the_root_or_under_a_directory_are_read_by_path() {
    let big = vec![7u8; 5000];
    let tar = tar_of(&[
        (b"./", EntryType::Directory, b""),
        (b"./manifest.json", EntryType::Regular, b"{}"),
        (b"./capture.pcapng", EntryType::Regular, &big),
        (b"incident/conntrack.txt", EntryType::Regular, b"ct"),
    ]);
    let s = Scratch::new("read");
    let path = s.0.join("b.tar.gz");
    std::fs::write(&path, gz(&tar)).unwrap();
    // Small files are kept from the index; the large one is read again.
    let limits = Limits {
        small: 100,
        ..Limits::DEFAULT
    };
    let a = Archive::index(&path, limits).unwrap();
    let names: Vec<&str> = a.names().collect();
    assert_eq!(
        names,
        ["capture.pcapng", "incident/conntrack.txt", "manifest.json"]
    );
    assert_eq!(a.size("capture.pcapng"), Some(5000));
    assert!(a.members["capture.pcapng"].data.is_none());
    assert!(a.members["manifest.json"].data.is_some());
    let read = |name: &str| {
        let mut v = Vec::new();
        a.read(name).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    assert_eq!(read("capture.pcapng"), big);
    assert_eq!(read("manifest.json"), b"{}");
    assert_eq!(read("incident/conntrack.txt"), b"ct");
    let e = a.read("nope").err().unwrap().to_string();
    assert!(
        e.ends_with("b.tar.gz: no file `nope` in the archive"),
        "{e}"
    );

    // Through the path of a file inside the archive, as every reader opens files.
    let inside = path.join("incident/conntrack.txt");
    assert_eq!(
        split(&inside),
        Some((path.as_path(), "incident/conntrack.txt".into()))
    );
    let mut v = String::new();
    crate::input::open_file(&inside)
        .unwrap()
        .read_to_string(&mut v)
        .unwrap();
    assert_eq!(v, "ct");
    assert_eq!(
        crate::input::read_text(inside.to_str().unwrap()).unwrap(),
        "ct"
    );
    assert!(split(&s.0.join("c.tar.gz/x")).is_none(), "no such archive");
    assert!(split(Path::new("samples/x/y")).is_none());
}

#[test]
fn long_names_and_pax_paths_name_the_next_entry() {
    let long = format!("{}/capture.pcapng", "d".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let mut pax = tar::Builder::new(Vec::new());
    pax.append_pax_extensions([("path", b"x/manifest.json".as_slice())])
        .unwrap();
    pax.append(&header(b"ignored", EntryType::Regular, 2), &b"{}"[..])
        .unwrap();
    let mut tar = b.into_inner().unwrap();
    tar.truncate(tar.len() - 1024);
    tar.extend(pax.into_inner().unwrap());
    let i = index(&tar).unwrap();
    let names: Vec<&String> = i.keys().collect();
    assert_eq!(names, [&long, &"x/manifest.json".to_string()]);
}

#[test]
fn hostile_entries_are_refused_with_the_archive_and_entry_named() {
    for (name, kind, want) in [
        (
            &b"../evil"[..],
            EntryType::Regular,
            "entry `../evil`: an absolute path or one out of the archive",
        ),
        (
            b"a/../../evil",
            EntryType::Regular,
            "entry `a/../../evil`: an absolute path",
        ),
        (
            b"/etc/passwd",
            EntryType::Regular,
            "entry `/etc/passwd`: an absolute path",
        ),
        (b"link", EntryType::Symlink, "entry `link`: a link: refused"),
        (b"hard", EntryType::Link, "entry `hard`: a link: refused"),
        (
            b"dev",
            EntryType::Char,
            "entry `dev`: a device or FIFO: refused",
        ),
        (b"blk", EntryType::Block, "a device or FIFO"),
        (b"fifo", EntryType::Fifo, "a device or FIFO"),
        (
            b"sparse",
            EntryType::GNUSparse,
            "entry `sparse`: an entry of type `S`: refused",
        ),
    ] {
        let tar = tar_of(&[(b"ok", EntryType::Regular, b"1"), (name, kind, b"")]);
        let e = err(&tar);
        assert!(e.starts_with("b.tar.gz: ") && e.contains(want), "{e}");
    }
    let tar = tar_of(&[
        (b"a", EntryType::Regular, b"1"),
        (b"./a", EntryType::Regular, b"2"),
    ]);
    assert!(err(&tar).contains("entry `./a`: twice in the archive"));
    // Bounds: entries, bytes once decompressed, long names.
    let many: Vec<(Vec<u8>, EntryType, &[u8])> = (0..5)
        .map(|i| (format!("f{i}").into_bytes(), EntryType::Regular, &b"x"[..]))
        .collect();
    let refs: Vec<(&[u8], EntryType, &[u8])> = many
        .iter()
        .map(|(n, k, d)| (n.as_slice(), *k, *d))
        .collect();
    let tar = tar_of(&refs);
    let few = Limits {
        entries: 4,
        ..Limits::DEFAULT
    };
    let e = index_tar("b.tar.gz", &tar[..], few)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "b.tar.gz: more than 4 entries");
    let small = Limits {
        unpacked: 2048,
        ..Limits::DEFAULT
    };
    let e = index_tar("b.tar.gz", &tar[..], small)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than 2048 bytes once decompressed"), "{e}");
    let name = vec![b'n'; 70_000];
    let tar = tar_of(&[(b"././@LongLink", EntryType::GNULongName, &name)]);
    assert!(
        err(&tar).contains("a header of 70000 bytes (at most 65536)"),
        "{}",
        err(&tar)
    );
    // Not a tar at all, and a truncated one.
    assert!(err(b"hello").starts_with("b.tar.gz: "), "{}", err(b"hello"));
    assert!(err(&[1u8; 512]).starts_with("b.tar.gz: entry 1: "));
    let tar = tar_of(&[(b"a", EntryType::Regular, &[1u8; 600])]);
    assert!(err(&tar[..700]).starts_with("b.tar.gz: "));
}
