//! Archives written and read back, and archives that were tampered with, truncated or
//! made by hand to escape: no engine, a box store in a temporary folder.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::boxes::Store;

fn folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("Envfile"), "[env]\nname = \"x\"\n").expect("write");
    std::fs::create_dir_all(d.path().join("scripts/lib")).expect("mkdir");
    std::fs::write(d.path().join("scripts/run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(
        d.path().join("scripts/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::write(d.path().join("scripts/lib/data"), "data").expect("write");
    std::os::unix::fs::symlink("run.sh", d.path().join("scripts/again.sh")).expect("link");
    d
}

fn packing(dir: &Path) -> Packing {
    let mut files = BTreeMap::new();
    tree_files(dir, "Envfile", &[], &mut files).expect("Envfile");
    tree_files(dir, "scripts", &[], &mut files).expect("scripts");
    files.insert("Envfile.lock".into(), Content::Bytes(b"# lock\n".to_vec()));
    Packing {
        name: "x".into(),
        hash: "sha256:abc".into(),
        machines: BTreeMap::from([("web".to_string(), "sha256:def".to_string())]),
        envfile: "Envfile".into(),
        files,
        boxes: BTreeMap::new(),
    }
}

fn written() -> (tempfile::TempDir, PathBuf) {
    let src = folder();
    let out = src.path().join("x.hdev.tar");
    write(packing(src.path()), &out, src.path()).expect("write");
    (src, out)
}

#[test]
fn an_archive_reads_back_into_the_same_files_and_the_same_bytes_twice() {
    let (src, out) = written();
    let store = Store::at(src.path().join("store"));
    let dest = src.path().join("dest");
    std::fs::create_dir(&dest).expect("mkdir");
    let u = unpack(&out, Some(&dest), &store).expect("unpack");
    assert_eq!(u.index.hash, "sha256:abc");
    assert_eq!(u.index.files.len(), 5, "{:?}", u.index.files);
    for f in ["Envfile", "scripts/run.sh", "scripts/lib/data"] {
        assert_eq!(
            std::fs::read(dest.join(f)).expect("read"),
            std::fs::read(src.path().join(f)).expect("read"),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read(dest.join("Envfile.lock")).expect("lock"),
        b"# lock\n"
    );
    let mode = std::fs::metadata(dest.join("scripts/run.sh")).expect("meta");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(dest.join("scripts/again.sh")).expect("link"),
        Path::new("run.sh")
    );
    // The same inputs give the same archive, byte for byte.
    let again = src.path().join("again.tar");
    write(packing(src.path()), &again, src.path()).expect("write");
    assert_eq!(
        std::fs::read(&out).expect("read"),
        std::fs::read(&again).expect("read")
    );
    assert_eq!(read_index(&out).expect("index"), u.index);
}

/// The archive's bytes with the first occurrence of `from` replaced by `to` (same length).
fn patched(out: &Path, from: &[u8], to: &[u8]) -> PathBuf {
    let mut bytes = std::fs::read(out).expect("read");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in the archive");
    bytes[at..at + to.len()].copy_from_slice(to);
    let p = out.with_extension("patched");
    std::fs::write(&p, bytes).expect("write");
    p
}

fn refused(archive: &Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::at(dir.path().join("store"));
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).expect("mkdir");
    let err = unpack(archive, Some(&dest), &store).expect_err("refused");
    err.to_string()
}

#[test]
fn a_file_altered_inside_the_archive_is_refused_by_name() {
    let (_src, out) = written();
    let bad = patched(&out, b"echo hi", b"echo HI");
    let e = refused(&bad);
    assert!(e.contains("`scripts/run.sh` has been altered"), "{e}");
}

#[test]
fn a_truncated_archive_is_refused_as_truncated() {
    let (_src, out) = written();
    let bytes = std::fs::read(&out).expect("read");
    for keep in [700, 2048, bytes.len() - 1024 - 1536] {
        let cut = out.with_extension(format!("cut{keep}"));
        std::fs::write(&cut, &bytes[..keep]).expect("write");
        let e = refused(&cut);
        assert!(e.contains("truncated"), "{keep} bytes: {e}");
    }
}

#[test]
fn an_index_that_lies_or_a_foreign_tar_is_refused_before_anything_is_written() {
    let (src, out) = written();
    // The index says another size for the Envfile than its entry has.
    let idx = read_index(&out).expect("index");
    let size = idx
        .files
        .iter()
        .find(|f| f.path == "Envfile")
        .expect("Envfile")
        .size;
    let e = refused(&patched(
        &out,
        format!("\"size\": {size},").as_bytes(),
        format!("\"size\": {},", size + 1).as_bytes(),
    ));
    assert!(e.contains("is not the"), "{e}");
    // A tar that is no export.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "other", &b"hi"[..]).expect("entry");
    let foreign = src.path().join("foreign.tar");
    std::fs::write(&foreign, b.into_inner().expect("tar")).expect("write");
    let e = refused(&foreign);
    assert!(e.contains("no hdev export"), "{e}");
}

/// An archive made by hand: an index listing `files`, then `entries` as given.
fn handmade(dir: &Path, files: Vec<FileEntry>, entries: &[(&str, Option<&str>, &[u8])]) -> PathBuf {
    let index = Index {
        format: FORMAT,
        name: "x".into(),
        hash: "h".into(),
        machines: BTreeMap::new(),
        envfile: files[0].path.clone(),
        files,
        boxes: Vec::new(),
        written_by: "test".into(),
    };
    let mut b = tar::Builder::new(Vec::new());
    let json = serde_json::to_vec(&index).expect("json");
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, INDEX, &json[..]).expect("index");
    for (name, link, data) in entries {
        // Names written into the header as they are: the tar crate refuses `..` itself.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        match link {
            Some(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
            }
            None => h.set_size(data.len() as u64),
        }
        h.set_cksum();
        b.append(&h, *data).expect("entry");
    }
    let p = dir.join(format!("hand{}.tar", entries.len()));
    std::fs::write(&p, b.into_inner().expect("tar")).expect("write");
    p
}

fn file(path: &str, bytes: &[u8]) -> FileEntry {
    let (sha256, size) = HashingReader::new(bytes).finish().expect("hash");
    FileEntry {
        path: path.into(),
        link: None,
        size,
        sha256,
        executable: false,
    }
}

fn link(path: &str, target: &str) -> FileEntry {
    FileEntry {
        path: path.into(),
        link: Some(target.into()),
        size: 0,
        sha256: String::new(),
        executable: false,
    }
}

#[test]
fn hostile_archives_write_nothing_outside_their_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An index listing a path that climbs out.
    let e = refused(&handmade(
        dir.path(),
        vec![file("../evil", b"x")],
        &[("env/../evil", None, b"x")],
    ));
    assert!(e.contains("unsafe path"), "{e}");
    // A link placed first, then a file written through it: `a/b -> ..` stays inside on
    // its own, `a/b/c -> ..` too, lexically, but the file would land outside.
    let e = refused(&handmade(
        dir.path(),
        vec![
            file("Envfile", b"e"),
            link("a/b", ".."),
            link("a/b/c", ".."),
            file("a/b/c/evil", b"x"),
        ],
        &[
            ("env/Envfile", None, b"e"),
            ("env/a/b", Some(".."), b""),
            ("env/a/b/c", Some(".."), b""),
            ("env/a/b/c/evil", None, b"x"),
        ],
    ));
    assert!(e.contains("through a link"), "{e}");
    assert!(!dir.path().join("evil").exists());
    // An entry the index does not list.
    let e = refused(&handmade(
        dir.path(),
        vec![file("Envfile", b"e")],
        &[("env/Envfile", None, b"e"), ("env/extra", None, b"x")],
    ));
    assert!(e.contains("not listed"), "{e}");
}
