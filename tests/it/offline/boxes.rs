//! Box store tests: the built binary with `HDEV_HOME` in a temp folder, and real archives
//! (built from the busybox recipe, or crafted to be hostile).

use std::io::Read;
use std::path::{Path, PathBuf};

use predicates::str::contains;
use serde_json::Value;

use crate::support::{repo, TestEnv};

/// A temp box-store world: an empty folder, hdev with a store of its own.
fn world() -> TestEnv {
    TestEnv::build().own_home().create()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn qcow2(path: &Path) {
    let ok = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg("8M")
        .status()
        .expect("qemu-img")
        .success();
    assert!(ok, "qemu-img create");
}

#[test]
fn busybox_builds_once_and_lists() {
    let w = world();
    let (archive, digest) = w.build_busybox();
    assert!(archive.is_file());
    assert_eq!(digest.len(), "sha256:".len() + 64);
    // Unchanged recipe: found in the store, not built again.
    let recipe = repo().join("boxes/busybox");
    let again = w.json(&["box", "build", recipe.to_str().expect("utf-8")]);
    assert_eq!(again["built"], false);
    assert_eq!(again["digest"], digest.as_str());
    let list = w.json(&["box", "list"]);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "busybox");
    assert_eq!(list[0]["providers"][0], "docker");
    assert!(list[0]["recipe"]["digest"].as_str().is_some());
}

#[test]
fn add_verify_remove_round_trip() {
    let w = world();
    let (archive, digest) = w.build_busybox();
    w.cmd()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();
    assert!(w.stored().is_empty());

    w.cmd()
        .args([
            "box",
            "add",
            archive.to_str().expect("utf-8"),
            "--sha256",
            &digest,
        ])
        .assert()
        .success()
        .stdout(contains(&digest));
    let v = w.json(&["box", "verify"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["boxes"][0]["digest"], digest.as_str());

    // A stored artifact changed behind hdev's back is found by `verify`.
    let stored = w.stored().pop().expect("one box");
    let rootfs = stored.join("rootfs.tar");
    let mut bytes = std::fs::read(&rootfs).expect("read");
    bytes[1000] ^= 0x01;
    std::fs::write(&rootfs, &bytes).expect("write");
    w.cmd()
        .args(["box", "verify"])
        .assert()
        .code(1)
        .stdout(contains("corrupt"))
        .stdout(contains("expected sha256:"));

    let short = &digest["sha256:".len().."sha256:".len() + 12];
    w.cmd().args(["box", "remove", short]).assert().success();
    assert!(w.stored().is_empty());
    w.cmd()
        .args(["box", "remove", short])
        .assert()
        .code(1)
        .stderr(contains("no box"));
}

#[test]
fn tampered_boxes_are_refused_and_leave_nothing() {
    let w = world();
    let (archive, digest) = w.build_busybox();
    w.cmd()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();

    // One byte of the root file system (past the manifest's 1 KiB of headers).
    let mut bytes = std::fs::read(&archive).expect("read");
    let bad = w.path().join("bad.box");
    bytes[200_000] ^= 0x20;
    std::fs::write(&bad, &bytes).expect("write");
    w.cmd()
        .args(["box", "add", bad.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("tampered"))
        .stderr(contains("expected sha256:"))
        .stderr(contains("actual sha256:"));

    // One byte of the manifest, with the expected digest given.
    let mut bytes = std::fs::read(&archive).expect("read");
    let pos = find(&bytes, b"\"busybox\"").expect("name in manifest");
    bytes[pos + 1] = b'B';
    std::fs::write(&bad, &bytes).expect("write");
    w.cmd()
        .args([
            "box",
            "add",
            bad.to_str().expect("utf-8"),
            "--sha256",
            &digest,
        ])
        .assert()
        .code(1)
        .stderr(contains(format!("expected {digest}")));

    // A wrong --sha256 for an intact box.
    let other = format!("sha256:{}", "ab".repeat(32));
    w.cmd()
        .args([
            "box",
            "add",
            archive.to_str().expect("utf-8"),
            "--sha256",
            &other,
        ])
        .assert()
        .code(1)
        .stderr(contains(format!("expected {other}, actual {digest}")));

    assert!(w.stored().is_empty(), "nothing stored: {:?}", w.stored());
    assert!(
        w.leftovers().is_empty(),
        "no partial files: {:?}",
        w.leftovers()
    );
}

/// A tar entry written with raw header fields, so that hostile names get through.
/// Appends a regular file of `size` bytes read from `data` to a tar archive.
fn append_file<W: std::io::Write>(t: &mut tar::Builder<W>, name: &str, size: u64, data: impl Read) {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, name, data).expect("append");
}

fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn hostile(dir: &Path, file: &str, entries: &[(&str, tar::EntryType, &str)]) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let meta = br#"{"provider":"libvirt","format":"qcow2"}"#;
    raw_entry(&mut b, "metadata.json", tar::EntryType::Regular, "", meta);
    for (name, kind, link) in entries {
        raw_entry(&mut b, name, *kind, link, b"x");
    }
    let p = dir.join(file);
    std::fs::write(&p, b.into_inner().expect("tar")).expect("write");
    p
}

#[test]
fn unsafe_archives_are_refused() {
    let w = world();
    use tar::EntryType as T;
    type Entries<'a> = &'a [(&'a str, T, &'a str)];
    let cases: [(&str, Entries, &str); 5] = [
        ("dotdot.box", &[("../escaped", T::Regular, "")], "leads out"),
        (
            "abs.box",
            &[("/tmp/hdev-escaped", T::Regular, "")],
            "absolute",
        ),
        (
            "link.box",
            &[("evil", T::Symlink, "../../etc")],
            "pointing out",
        ),
        (
            "abslink.box",
            &[("evil", T::Symlink, "/etc/passwd")],
            "absolute path",
        ),
        ("dev.box", &[("null", T::Char, "")], "device"),
    ];
    for (file, entries, why) in cases {
        let p = hostile(w.path(), file, entries);
        w.cmd()
            .args(["box", "add", p.to_str().expect("utf-8")])
            .assert()
            .code(1)
            .stderr(contains("unsafe"))
            .stderr(contains(why));
    }
    assert!(!w.path().parent().expect("parent").join("escaped").exists());
    assert!(!Path::new("/tmp/hdev-escaped").exists());

    // The same inside an hdev box archive: an entry after the manifest.
    let (archive, _) = w.build_busybox();
    w.cmd()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();
    let mut bytes = std::fs::read(&archive).expect("read");
    // Rename the `rootfs.tar` entry (second header) to `../rootfs.t`.
    let pos = find(&bytes, b"rootfs.tar\0").expect("entry");
    bytes[pos..pos + 11].copy_from_slice(b"../rootfs.t");
    let mut b = tar::Header::new_gnu();
    b.as_mut_bytes().copy_from_slice(&bytes[pos..pos + 512]);
    b.set_cksum();
    bytes[pos..pos + 512].copy_from_slice(b.as_bytes());
    let bad = w.path().join("traversal.box");
    std::fs::write(&bad, &bytes).expect("write");
    w.cmd()
        .args(["box", "add", bad.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("entry `../rootfs.t` is unsafe"));
    assert!(w.stored().is_empty());
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
}

#[test]
fn an_archive_that_is_no_box_says_what_each_kind_of_box_would_have() {
    let w = world();
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "notes.txt", tar::EntryType::Regular, "", b"hello");
    let p = w.path().join("notes.tar");
    std::fs::write(&p, b.into_inner().expect("tar")).expect("write");
    w.cmd()
        .args(["box", "add", p.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains(
            "neither an hdev box (whose first entry is `manifest.json`)",
        ))
        .stderr(contains("nor a vagrant box (which has a `metadata.json`"));
    assert!(w.stored().is_empty());
}

#[test]
fn a_compression_bomb_is_refused_by_its_ratio_before_it_is_written() {
    let w = world();
    // 100 MiB of zeros as a vagrant box's disk: about 100 KiB once gzip'd (it used to be
    // accepted up to the 64 GiB limit).
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let meta = br#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#;
    append_file(&mut t, "metadata.json", meta.len() as u64, &meta[..]);
    let size = 100u64 << 20;
    append_file(&mut t, "box.img", size, std::io::repeat(0).take(size));
    let bytes = t.into_inner().expect("tar").finish().expect("gzip");
    let bomb = w.path().join("bomb.box");
    std::fs::write(&bomb, &bytes).expect("write");
    w.cmd()
        .args([
            "box",
            "add",
            bomb.to_str().expect("utf-8"),
            "--name",
            "bomb",
        ])
        .assert()
        .code(1)
        .stderr(contains("more than 32 times its compressed size"))
        .stderr(contains("compression bomb"));
    assert!(w.stored().is_empty());
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
}

#[test]
fn archives_past_the_size_limit_are_refused() {
    let w = world();
    let (archive, _) = w.build_busybox();
    w.cmd()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();
    w.cmd()
        .env("HDEV_BOX_MAX_BYTES", "1000000")
        .args(["box", "add", archive.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("expands past the limit of 1000000 bytes"));
    assert!(w.stored().is_empty());
    assert!(w.leftovers().is_empty());
}

#[test]
fn hash_counts_the_built_box_once_it_is_in_the_store() {
    let w = TestEnv::build().own_home().busybox_copy().create();
    let before = w.json(&["hash", "--explain"]);
    let item = |v: &Value| -> (String, String) {
        let it = v["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .find(|i| {
                i["what"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("box `busybox`"))
            })
            .expect("box input")
            .clone();
        (
            it["what"].as_str().expect("what").to_string(),
            it["digest"].as_str().expect("digest").to_string(),
        )
    };
    let (what, _) = item(&before);
    assert!(what.contains("not built"), "{what}");
    let built = w.json(&["box", "build", "boxes/busybox"]);
    let after = w.json(&["hash", "--explain"]);
    let (what, digest) = item(&after);
    assert!(what.contains("store"), "{what}");
    assert_eq!(digest, built["digest"].as_str().expect("digest"));
    assert_ne!(before["hash"], after["hash"]);
}

#[test]
fn file_box_digest_is_cached_by_file_identity() {
    let w = world();
    let (archive, digest) = w.build_busybox();
    std::fs::write(
        w.path().join("Envfile"),
        "[env]\nname = \"filebox\"\n\n[box.bb]\nfile = \"busybox.box\"\n",
    )
    .expect("write");
    let first = w.json(&["hash", "--explain"]);
    assert!(first.to_string().contains(&digest), "{first}");
    let cache = std::fs::read_to_string(w.home().join("cache/digests.json")).expect("cache");
    assert!(cache.contains("busybox.box") && cache.contains(&digest[7..]));
    // Damage the file: its identity changes, so the cache is not trusted and the damage found.
    let mut bytes = std::fs::read(&archive).expect("read");
    bytes[200_000] ^= 1;
    std::fs::write(&archive, &bytes).expect("write");
    w.cmd()
        .args(["hash"])
        .assert()
        .code(1)
        .stderr(contains("tampered"));
}

#[test]
fn cloud_qcow2_and_vagrant_boxes_are_added_for_libvirt() {
    let w = world();
    let img = w.path().join("cloud.qcow2");
    qcow2(&img);
    let a = w.json(&["box", "add", img.to_str().expect("utf-8")]);
    assert_eq!(a["name"], "cloud");
    assert_eq!(a["providers"][0], "libvirt-disk");
    // The same unchanged file is the same box.
    let b = w.json(&["box", "add", img.to_str().expect("utf-8")]);
    assert_eq!(a["digest"], b["digest"]);
    let stored = PathBuf::from(a["path"].as_str().expect("path"));
    let manifest = std::fs::read_to_string(stored.join("manifest.json")).expect("manifest");
    assert!(manifest.contains("\"boot\": \"cloud-init\""), "{manifest}");
    assert_eq!(
        std::fs::read(stored.join("disk.qcow2")).expect("disk"),
        std::fs::read(&img).expect("img")
    );

    // A vagrant-libvirt box: gzip'd tar with metadata.json, box.img and a Vagrantfile.
    let disk = w.path().join("box.img");
    qcow2(&disk);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    let meta = br#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#;
    append_file(&mut t, "metadata.json", meta.len() as u64, &meta[..]);
    t.append_path_with_name(&disk, "box.img").expect("img");
    let vf = b"Vagrant.configure(2) {}\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(vf.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "Vagrantfile", &vf[..])
        .expect("vagrantfile");
    let bytes = t.into_inner().expect("tar").finish().expect("gzip");
    let vbox = w.path().join("generic-debian.box");
    std::fs::write(&vbox, bytes).expect("write");
    let v = w.json(&[
        "box",
        "add",
        vbox.to_str().expect("utf-8"),
        "--name",
        "vdeb",
    ]);
    assert_eq!(v["name"], "vdeb");
    assert_eq!(v["providers"][0], "libvirt-disk");
    w.cmd().args(["box", "verify", "vdeb"]).assert().success();

    // A vagrant box for another provider is refused with the reason.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    let meta = br#"{"provider":"virtualbox"}"#;
    append_file(&mut t, "metadata.json", meta.len() as u64, &meta[..]);
    let bytes = t.into_inner().expect("tar").finish().expect("gzip");
    std::fs::write(&vbox, bytes).expect("write");
    w.cmd()
        .args(["box", "add", vbox.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("provider `virtualbox`"));
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
}

#[test]
fn parallel_builds_in_separate_processes_build_once() {
    let w = world();
    let recipe = repo().join("boxes/busybox");
    let children: Vec<_> = (0..4)
        .map(|_| {
            w.std_cmd()
                .args(["--json", "box", "build"])
                .arg(&recipe)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut built = 0;
    let mut digests = std::collections::BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        built += usize::from(v["built"] == true);
        digests.insert(v["digest"].as_str().expect("digest").to_string());
    }
    assert_eq!(built, 1, "one process builds, the others find its box");
    assert_eq!(digests.len(), 1);
    assert_eq!(w.stored().len(), 1);
}

/// Serves `body` once over HTTP on a loopback port; returns the URL of `path`.
fn serve_once(body: Vec<u8>, status: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/busybox.box")
}

#[test]
fn boxes_are_added_from_a_url_with_a_checksum() {
    let w = world();
    let (archive, digest) = w.build_busybox();
    w.cmd()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();
    let bytes = std::fs::read(&archive).expect("read");

    let url = serve_once(bytes.clone(), "200 OK");
    w.cmd()
        .args(["box", "add", &url, "--sha256", &digest])
        .assert()
        .success()
        .stdout(contains(&digest));
    w.cmd()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();

    let mut bad = bytes;
    bad[200_000] ^= 4;
    let url = serve_once(bad, "200 OK");
    w.cmd()
        .args(["box", "add", &url, "--sha256", &digest])
        .assert()
        .code(1)
        .stderr(contains("tampered"));

    let url = serve_once(b"gone".to_vec(), "404 Not Found");
    w.cmd()
        .args(["box", "add", &url])
        .assert()
        .code(1)
        .stderr(contains("cannot download"))
        .stderr(contains("404"));
    assert!(w.stored().is_empty());
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
}

#[test]
fn prune_keeps_the_newest_versions_and_clears_leftovers() {
    let w = TestEnv::build().own_home().recipe_copy("busybox").create();
    let recipe = w.path().join("boxes/busybox");
    let r = recipe.to_str().expect("utf-8");
    let first = w.json(&["box", "build", r]);
    // A rebuild is the same box; a changed recipe is a new version of it.
    let again = w.json(&["box", "build", r, "--force"]);
    assert_eq!(first["digest"], again["digest"]);
    let toml = recipe.join("box.toml");
    let text = std::fs::read_to_string(&toml).expect("read box.toml");
    std::fs::write(
        &toml,
        text.replace("version = \"1.35.0\"", "version = \"1.35.0-2\""),
    )
    .expect("write box.toml");
    let second = w.json(&["box", "build", r]);
    assert_ne!(first["digest"], second["digest"]);
    assert_eq!(w.stored().len(), 2);
    // What an interrupted add would leave.
    let leftover = w.home().join("tmp/add-XXXX.partial");
    std::fs::create_dir_all(&leftover).expect("mkdir");
    std::fs::write(leftover.join("rootfs.tar"), b"half").expect("write");

    let dry = w.json(&["box", "prune", "--dry-run"]);
    assert_eq!(dry["removed"][0]["digest"], first["digest"]);
    assert_eq!(w.stored().len(), 2);

    let done = w.json(&["box", "prune"]);
    assert_eq!(done["removed"][0]["digest"], first["digest"]);
    assert_eq!(done["leftovers"].as_array().expect("leftovers").len(), 1);
    let list = w.json(&["box", "list"]);
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["digest"], second["digest"]);
    assert!(w.leftovers().is_empty());
}

/// Reproducible boxes (#14): the busybox recipe built twice, into two stores, from two
/// paths (a copy of the recipe), some time apart, gives one box digest; the manifest
/// records the recipe, its fixed build time and the packages; and the digest still moves
/// with the recipe (another `source_date_epoch`, another digest).
#[test]
fn two_builds_of_one_recipe_give_one_digest() {
    let a = world();
    let b = TestEnv::build()
        .own_home()
        .recipe_copy("busybox")
        .var("HDEV_PROGRESS_MS", "300")
        .create();
    let (_, first) = a.build_busybox();
    // Let the clock move on: a wall-clock time anywhere in the manifest would show.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let copy = b.path().join("boxes/busybox");
    let copy = copy.to_str().expect("utf-8");
    let second = b.json(&["box", "build", copy]);
    assert_eq!(second["built"], true);
    assert_eq!(second["digest"], first.as_str(), "two builds, two digests");
    let ma = std::fs::read(
        a.home()
            .join("boxes")
            .join(&first[7..])
            .join("manifest.json"),
    )
    .expect("manifest a");
    let mb = std::fs::read(
        b.home()
            .join("boxes")
            .join(&first[7..])
            .join("manifest.json"),
    )
    .expect("manifest b");
    assert_eq!(ma, mb);

    let shown = b.json(&["box", "show", "busybox"]);
    assert_eq!(shown["digest"], first.as_str());
    let toml = std::fs::read_to_string(b.path().join("boxes/busybox/box.toml")).expect("toml");
    let epoch: i64 = toml
        .lines()
        .find_map(|l| l.strip_prefix("source_date_epoch = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("source_date_epoch in box.toml");
    assert_eq!(shown["source_date_epoch"], epoch);
    assert_eq!(shown["recipe"]["path"], "busybox");
    assert!(shown["recipe"]["digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    let packages = shown["packages"].as_array().expect("packages");
    assert!(
        packages.iter().any(
            |p| p["name"].as_str().is_some_and(|n| n.starts_with("busybox"))
                && p["version"].as_str().is_some_and(|v| v.contains("1.35"))
        ),
        "{packages:?}"
    );
    assert!(shown["artifacts"]["docker"]["size"].as_u64().unwrap_or(0) > 0);
    // By a digest prefix, as text.
    let text = b.ok(&["box", "show", &first[7..19]]);
    assert!(
        text.contains(&format!("SOURCE_DATE_EPOCH={epoch}")),
        "{text}"
    );
    assert!(text.contains("packages ("), "{text}");

    // The digest depends on the recipe: a changed build time is another box.
    let path = b.path().join("boxes/busybox/box.toml");
    std::fs::write(
        &path,
        toml.replace(
            &format!("source_date_epoch = {epoch}"),
            &format!("source_date_epoch = {}", epoch + 86_400),
        ),
    )
    .expect("write box.toml");
    let built = b.run(&["--json", "box", "build", copy]);
    assert_eq!(built.code, 0, "{built}");
    // A build says how it goes while it runs: how long, and its log's last line.
    assert!(
        built.stderr.contains("box busybox: building for "),
        "{built}"
    );
    let third: Value = serde_json::from_str(&built.stdout).expect("json");
    assert_eq!(third["built"], true);
    assert_ne!(third["digest"], first.as_str());
    // ... and `box show busybox` now names the newest.
    assert_eq!(
        b.json(&["box", "show", "busybox"])["digest"],
        third["digest"]
    );

    // Bad input says what is wrong.
    std::fs::write(
        &path,
        toml.replace(
            &format!("source_date_epoch = {epoch}"),
            "source_date_epoch = -5",
        ),
    )
    .expect("write box.toml");
    b.cmd()
        .args(["box", "build", copy])
        .assert()
        .code(1)
        .stderr(contains("source_date_epoch = -5"));
    b.cmd()
        .args(["box", "show", "nosuchbox"])
        .assert()
        .code(1)
        .stderr(contains("no box `nosuchbox`"));
}
