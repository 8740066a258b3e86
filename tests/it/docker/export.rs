//! An environment packed by `hdev export` and brought back by `hdev up --from` with no
//! recipe, no box, no Docker image and no folder left behind, and no network to a mirror:
//! `hdev verify` accepts it under the original hash. Archives that were tampered with or
//! cut short are refused before a machine is touched.

use std::path::{Path, PathBuf};

use crate::support::{require_docker, subnet, Run, TestEnv};

/// Destroys the environment of an Envfile when dropped (the test's own store is never
/// cleaned by `TestEnv`).
struct Destroy<'a>(&'a TestEnv, PathBuf);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        if self.1.exists() {
            let f = self.1.display().to_string();
            let _ = self.0.run(&["-f", &f, "destroy", "-y"]);
        }
    }
}

fn up_from(w: &TestEnv, archive: &Path, dir: &Path, more: &[&str]) -> Run {
    let (a, d) = (archive.display().to_string(), dir.display().to_string());
    let mut args = vec!["up", "--from", &a, "--dir", &d];
    args.extend_from_slice(more);
    let out = w
        .cmd()
        // No mirror, no registry: anything that tried the network would fail.
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env("MIRROR", "http://127.0.0.1:9/debian")
        .args(&args)
        .output()
        .expect("run hdev");
    Run::from(out)
}

#[test]
fn an_environment_comes_back_from_its_archive_alone() {
    require_docker();
    let w = TestEnv::build()
        .own_home()
        .recipe_copy("busybox")
        // A recipe of this test's own: its box (and Docker image) is nobody else's, so
        // removing it cannot disturb a test running beside this one.
        .file(
            "boxes/busybox/this-test",
            &format!("{}\n", std::process::id()),
        )
        .file("scripts/setup.sh", "echo provisioned > /etc/provisioned\n")
        .file("site/index.html", "hello from the archive\n")
        .envfile(&format!(
            r#"[env]
name = "exported"

[box.busybox]
recipe = "boxes/busybox"

[network.lan]
subnet = "{}"

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
command = "httpd -f -p 80 -h /srv/site"
synced_folders = [{{ host = "site", guest = "/srv/site" }}]
provision = [{{ script = "scripts/setup.sh" }}]
"#,
            subnet()
        ))
        .create();
    let _first = Destroy(&w, w.path().join("Envfile"));
    w.ok(&["up"]);
    let hashes = w.json(&["hash", "--json"]);
    let hash = hashes["hash"].as_str().expect("hash").to_string();

    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("env.hdev.tar");
    let a = archive.display().to_string();
    let report = w.json(&["export", "-o", &a, "--json"]);
    assert_eq!(report["hash"], hash.as_str(), "{report}");
    let digest = report["boxes"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(report["boxes"][0]["included"], true, "{report}");
    let small = out.path().join("small.hdev.tar");
    let s = small.display().to_string();
    let named = w.json(&["export", "-o", &s, "--without-boxes", "--json"]);
    assert_eq!(named["boxes"][0]["included"], false, "{named}");
    assert!(
        std::fs::metadata(&small).expect("small").len() * 20
            < std::fs::metadata(&archive).expect("archive").len(),
        "an archive without boxes is small"
    );

    // Everything goes: the machines, the box, its Docker image, the folder's files.
    w.ok(&["destroy", "-y"]);
    w.ok(&["box", "remove", "busybox"]);
    let short = &digest.trim_start_matches("sha256:")[..12];
    let rmi = std::process::Command::new("docker")
        .args(["rmi", "-f", &format!("hdev-box/busybox:{short}")])
        .output()
        .expect("docker rmi");
    assert!(rmi.status.success(), "{rmi:?}");
    for f in ["Envfile", "boxes", "scripts", "site", ".hdev"] {
        let p = w.path().join(f);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm");
        } else if p.exists() {
            std::fs::remove_file(&p).expect("rm");
        }
    }

    // A wrong hash is refused before anything is written.
    let dir = w.path().join("restored");
    let r = up_from(&w, &archive, &dir, &["--expect-hash", "sha256:0000000"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("nothing was unpacked"), "{r}");
    assert!(!dir.exists());
    // The small archive names a box nobody has now.
    let r = up_from(&w, &small, &w.path().join("small"), &[]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("does not carry"), "{r}");

    let _restored = Destroy(&w, dir.join("Envfile"));
    let r = up_from(&w, &archive, &dir, &["--expect-hash", &hash]);
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.stderr.contains("building box"), "no recipe ran: {r}");
    assert!(r.stderr.contains("1 added from the archive"), "{r}");
    let f = dir.join("Envfile").display().to_string();
    let v = w.json(&["-f", &f, "verify", &hash, "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["machines"], hashes["machines"], "{v}");
    let seen = w.ok(&[
        "-f",
        &f,
        "exec",
        "web",
        "--",
        "cat",
        "/etc/provisioned",
        "/srv/site/index.html",
    ]);
    assert_eq!(seen, "provisioned\nhello from the archive\n");
    // `--deep` also holds the machines to their baselines; a container's drift lists
    // every file written since (Docker's diff).
    let v = w.json(&["-f", &f, "verify", &hash, "--deep", "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["drift_checks"]["web"], "writes", "{v}");
    w.ok(&[
        "-f",
        &f,
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo x > /etc/extra",
    ]);
    let v = w.run(&["-f", &f, "verify", &hash, "--deep", "--json"]);
    assert_eq!(v.code, 1, "{v}");
    let v: serde_json::Value = serde_json::from_str(&v.stdout).expect("json");
    assert_eq!(v["differences"][0]["kind"], "drifted", "{v}");
    w.ok(&["-f", &f, "reset"]);

    // Again into the same folder: found unpacked, nothing to do.
    let r = up_from(&w, &archive, &dir, &[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("found unpacked"), "{r}");

    // Tampered with, or cut short: refused, and saying which.
    let bytes = std::fs::read(&archive).expect("read");
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x55;
    let tampered = out.path().join("tampered.tar");
    std::fs::write(&tampered, &bad).expect("write");
    let r = up_from(&w, &tampered, &w.path().join("t"), &[]);
    assert_ne!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("is refused") || r.stderr.contains("does not match"),
        "{r}"
    );
    let cut = out.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let r = up_from(&w, &cut, &w.path().join("c"), &[]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("truncated"), "{r}");
    assert!(!w.path().join("c").exists() && !w.path().join("t").exists());
}
