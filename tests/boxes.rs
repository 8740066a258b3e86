//! Box store tests: the built binary with `HDEV_HOME` in a temp folder, real archives
//! (built from the busybox recipe, or crafted to be hostile) and the real Docker daemon.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

/// A temp home for the store and a temp project folder.
struct World {
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl World {
    fn new() -> World {
        World {
            home: tempfile::tempdir().expect("home"),
            work: tempfile::tempdir().expect("work"),
        }
    }

    fn hdev(&self) -> Command {
        let mut c = Command::cargo_bin("hdev").expect("binary");
        c.env("HDEV_HOME", self.home.path())
            .env_remove("HDEV_BOX_MAX_BYTES")
            .current_dir(self.work.path());
        c
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.hdev().arg("--json").args(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("json output")
    }

    /// Builds the busybox box and writes its archive; returns (archive, digest).
    fn busybox(&self) -> (PathBuf, String) {
        let archive = self.work.path().join("busybox.box");
        let recipe = repo().join("boxes/busybox");
        let v = self.json(&[
            "box",
            "build",
            recipe.to_str().expect("utf-8"),
            "-o",
            archive.to_str().expect("utf-8"),
        ]);
        (archive, v["digest"].as_str().expect("digest").to_string())
    }

    fn stored(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.home.path().join("boxes")) {
            Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
            Err(_) => vec![],
        }
    }

    fn leftovers(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.home.path().join("tmp")) {
            Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
            Err(_) => vec![],
        }
    }
}

#[test]
fn busybox_builds_once_and_lists() {
    let w = World::new();
    let (archive, digest) = w.busybox();
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
    let w = World::new();
    let (archive, digest) = w.busybox();
    w.hdev()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();
    assert!(w.stored().is_empty());

    w.hdev()
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
    w.hdev()
        .args(["box", "verify"])
        .assert()
        .code(1)
        .stdout(contains("corrupt"))
        .stdout(contains("expected sha256:"));

    let short = &digest["sha256:".len().."sha256:".len() + 12];
    w.hdev().args(["box", "remove", short]).assert().success();
    assert!(w.stored().is_empty());
    w.hdev()
        .args(["box", "remove", short])
        .assert()
        .code(1)
        .stderr(contains("no box"));
}

#[test]
fn tampered_boxes_are_refused_and_leave_nothing() {
    let w = World::new();
    let (archive, digest) = w.busybox();
    w.hdev()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();

    // One byte of the root file system (past the manifest's 1 KiB of headers).
    let mut bytes = std::fs::read(&archive).expect("read");
    let bad = w.work.path().join("bad.box");
    bytes[200_000] ^= 0x20;
    std::fs::write(&bad, &bytes).expect("write");
    w.hdev()
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
    w.hdev()
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
    w.hdev()
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A tar entry written with raw header fields, so that hostile names get through.
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
    let w = World::new();
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
        let p = hostile(w.work.path(), file, entries);
        w.hdev()
            .args(["box", "add", p.to_str().expect("utf-8")])
            .assert()
            .code(1)
            .stderr(contains("unsafe"))
            .stderr(contains(why));
    }
    assert!(!w
        .work
        .path()
        .parent()
        .expect("parent")
        .join("escaped")
        .exists());
    assert!(!Path::new("/tmp/hdev-escaped").exists());

    // The same inside an hdev box archive: an entry after the manifest.
    let (archive, _) = w.busybox();
    w.hdev()
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
    let bad = w.work.path().join("traversal.box");
    std::fs::write(&bad, &bytes).expect("write");
    w.hdev()
        .args(["box", "add", bad.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("entry `../rootfs.t` is unsafe"));
    assert!(w.stored().is_empty());
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
}

#[test]
fn archives_past_the_size_limit_are_refused() {
    let w = World::new();
    let (archive, _) = w.busybox();
    w.hdev()
        .args(["box", "remove", "busybox"])
        .assert()
        .success();
    w.hdev()
        .env("HDEV_BOX_MAX_BYTES", "1000000")
        .args(["box", "add", archive.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("expands past the limit of 1000000 bytes"));
    assert!(w.stored().is_empty());
    assert!(w.leftovers().is_empty());
}

/// Docker, or None (with a note) when it is not reachable outside CI.
async fn docker() -> Option<bollard::Docker> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let connected = match bollard::Docker::connect_with_local_defaults() {
        Ok(d) => d.negotiate_version().await.ok(),
        Err(_) => None,
    };
    match connected {
        Some(d) if d.ping().await.is_ok() => Some(d),
        _ if ci => panic!("Docker is not reachable, and CI=true: run .ci/setup"),
        _ => {
            eprintln!("note: Docker is not reachable; skipping this test outside CI");
            None
        }
    }
}

/// An environment with the busybox recipe copied in (the copy has the same recipe digest).
fn busybox_env(dir: &Path) -> hdev::envfile::Env {
    let recipe = dir.join("boxes/busybox");
    std::fs::create_dir_all(&recipe).expect("mkdir");
    for f in ["box.toml", "build.sh"] {
        std::fs::copy(repo().join("boxes/busybox").join(f), recipe.join(f)).expect("copy");
    }
    let envfile = dir.join("Envfile");
    std::fs::write(
        &envfile,
        "[env]\nname = \"boxtest\"\n\n[box.busybox]\nrecipe = \"boxes/busybox\"\n",
    )
    .expect("write Envfile");
    hdev::envfile::load(&envfile).expect("valid Envfile")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_image_builds_and_imports_once_for_parallel_callers() {
    let Some(docker) = docker().await else {
        return;
    };
    let w = World::new();
    let env = busybox_env(w.work.path());
    let store = hdev::boxes::Store::at(w.home.path().to_path_buf());

    let calls = (0..20).map(|_| hdev::boxes::docker_image_in(&store, &docker, &env, "busybox"));
    let refs = futures_util::future::join_all(calls).await;
    let refs: Vec<String> = refs.into_iter().map(|r| r.expect("image")).collect();
    assert!(refs.iter().all(|r| r == &refs[0]), "{refs:?}");
    assert!(refs[0].starts_with("hdev-box/busybox:"), "{}", refs[0]);
    assert_eq!(store.list().expect("list").len(), 1, "built once");

    let b = store.list().expect("list").remove(0);
    let img = docker.inspect_image(&refs[0]).await.expect("inspect");
    let labels = img.config.and_then(|c| c.labels).expect("labels");
    assert_eq!(labels.get("hdev.box").map(String::as_str), Some("busybox"));
    assert_eq!(labels.get("hdev.box.digest"), Some(&b.digest.to_string()));
    let created = img.created.clone();

    // Again: reused, not imported again.
    let again = hdev::boxes::docker_image_in(&store, &docker, &env, "busybox")
        .await
        .expect("image");
    assert_eq!(again, refs[0]);
    let img = docker.inspect_image(&again).await.expect("inspect");
    assert_eq!(img.created, created);

    // A box that is not declared is named in the error.
    let err = hdev::boxes::docker_image_in(&store, &docker, &env, "nope")
        .await
        .expect_err("unknown box");
    assert!(err.to_string().contains("no box `nope`"), "{err}");

    docker
        .remove_image(
            &refs[0],
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .expect("remove the test's image");
}

#[test]
fn hash_counts_the_built_box_once_it_is_in_the_store() {
    let w = World::new();
    busybox_env(w.work.path());
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
    let w = World::new();
    let (archive, digest) = w.busybox();
    std::fs::write(
        w.work.path().join("Envfile"),
        "[env]\nname = \"filebox\"\n\n[box.bb]\nfile = \"busybox.box\"\n",
    )
    .expect("write");
    let first = w.json(&["hash", "--explain"]);
    assert!(first.to_string().contains(&digest), "{first}");
    let cache = std::fs::read_to_string(w.home.path().join("cache/digests.json")).expect("cache");
    assert!(cache.contains("busybox.box") && cache.contains(&digest[7..]));
    // Damage the file: its identity changes, so the cache is not trusted and the damage found.
    let mut bytes = std::fs::read(&archive).expect("read");
    bytes[200_000] ^= 1;
    std::fs::write(&archive, &bytes).expect("write");
    w.hdev()
        .args(["hash"])
        .assert()
        .code(1)
        .stderr(contains("tampered"));
}

/// An environment with a tiny box for libvirt: a small qcow2, a "kernel" and an "initrd".
#[cfg(feature = "libvirt")]
fn tiny_vm_env(dir: &Path) -> hdev::envfile::Env {
    let recipe = dir.join("tiny");
    std::fs::create_dir_all(&recipe).expect("mkdir");
    std::fs::write(
        recipe.join("box.toml"),
        "name = \"tiny\"\nversion = \"1\"\nscript = \"build.sh\"\nboot = \"kernel\"\n\n\
         [artifacts]\nlibvirt-disk = \"disk.qcow2\"\nlibvirt-kernel = \"vmlinuz\"\n\
         libvirt-initrd = \"initrd.img\"\n",
    )
    .expect("box.toml");
    std::fs::write(
        recipe.join("build.sh"),
        format!(
            "set -eu\nqemu-img create -q -f qcow2 \"$1/disk.qcow2\" 16M\n\
             echo kernel-{n} > \"$1/vmlinuz\"\necho initrd-{n} > \"$1/initrd.img\"\n",
            n = std::process::id()
        ),
    )
    .expect("build.sh");
    let envfile = dir.join("Envfile");
    std::fs::write(
        &envfile,
        "[env]\nname = \"vmbox\"\n\n[box.tiny]\nrecipe = \"tiny\"\n",
    )
    .expect("write Envfile");
    hdev::envfile::load(&envfile).expect("valid Envfile")
}

#[cfg(feature = "libvirt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn libvirt_base_volumes_are_uploaded_once() {
    const URI: &str = "qemu:///system";
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if virt::connect::Connect::open(Some(URI)).is_err() {
        assert!(
            !ci,
            "libvirt is not reachable at {URI}, and CI=true: run .ci/setup"
        );
        eprintln!("note: libvirt is not reachable; skipping this test outside CI");
        return;
    }
    let w = World::new();
    let env = tiny_vm_env(w.work.path());
    let store = hdev::boxes::Store::at(w.home.path().to_path_buf());

    let calls = (0..5).map(|_| hdev::boxes::libvirt::libvirt_base_in(&store, URI, &env, "tiny"));
    let all: Vec<_> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("base volumes"))
        .collect();
    let v = &all[0];
    assert!(all.iter().all(|x| x.disk == v.disk), "one upload");
    let b = store.list().expect("list").remove(0);
    let same = |vol: &Path, provider: &str| {
        let stored = std::fs::read(b.artifact(provider).expect("artifact")).expect("read");
        assert_eq!(std::fs::read(vol).expect("volume"), stored, "{provider}");
    };
    same(&v.disk, "libvirt-disk");
    same(v.kernel.as_deref().expect("kernel"), "libvirt-kernel");
    same(v.initrd.as_deref().expect("initrd"), "libvirt-initrd");
    assert_eq!(v.boot, hdev::boxes::manifest::Boot::Kernel);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&v.disk)
        .output()
        .expect("qemu-img");
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"qcow2\""));

    // An upload interrupted before its end (no marker): deleted and done again.
    let marker_dir = w.home.path().join("imports/libvirt");
    for m in walk(&marker_dir) {
        std::fs::remove_file(m).expect("remove marker");
    }
    std::fs::write(&v.disk, b"half").expect("damage");
    let again = hdev::boxes::libvirt::libvirt_base_in(&store, URI, &env, "tiny")
        .await
        .expect("again");
    same(&again.disk, "libvirt-disk");

    let removed = hdev::boxes::libvirt::remove_volumes(&store, URI, &b).expect("remove");
    assert_eq!(removed, 3);
    assert!(!v.disk.exists());
}

#[cfg(feature = "libvirt")]
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
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
fn cloud_qcow2_and_vagrant_boxes_are_added_for_libvirt() {
    let w = World::new();
    let img = w.work.path().join("cloud.qcow2");
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
    let disk = w.work.path().join("box.img");
    qcow2(&disk);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    let meta = br#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(meta.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "metadata.json", &meta[..])
        .expect("meta");
    t.append_path_with_name(&disk, "box.img").expect("img");
    let vf = b"Vagrant.configure(2) {}\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(vf.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "Vagrantfile", &vf[..])
        .expect("vagrantfile");
    let bytes = t.into_inner().expect("tar").finish().expect("gzip");
    let vbox = w.work.path().join("generic-debian.box");
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
    w.hdev().args(["box", "verify", "vdeb"]).assert().success();

    // A vagrant box for another provider is refused with the reason.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    let meta = br#"{"provider":"virtualbox"}"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(meta.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "metadata.json", &meta[..])
        .expect("meta");
    let bytes = t.into_inner().expect("tar").finish().expect("gzip");
    std::fs::write(&vbox, bytes).expect("write");
    w.hdev()
        .args(["box", "add", vbox.to_str().expect("utf-8")])
        .assert()
        .code(1)
        .stderr(contains("provider `virtualbox`"));
    assert!(w.leftovers().is_empty(), "{:?}", w.leftovers());
}
