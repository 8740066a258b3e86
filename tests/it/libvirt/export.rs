//! A VM brought back from its environment's archive alone: the machine destroyed, its
//! box's volumes deleted from the pool, the folder gone, and an empty box store, so that
//! the disk it boots can only come from the archive (`docker::export` does the same for
//! containers, with the tampered and truncated cases).

use std::path::Path;

use crate::support::engines::one_vm_test_at_a_time;
use crate::support::{repo, require_docker, require_libvirt, subnet, Run, TestEnv};

/// hdev with another box store than the environment's.
fn run_in(w: &TestEnv, home: &Path, args: &[&str]) -> Run {
    let out = w
        .std_cmd()
        .env("HDEV_HOME", home)
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .args(args)
        .output()
        .expect("run hdev");
    Run::from(out)
}

/// Destroys the restored environment (on its own store) when dropped.
struct Restored<'a>(&'a TestEnv, &'a Path, String);

impl Drop for Restored<'_> {
    fn drop(&mut self) {
        let _ = run_in(self.0, self.1, &["-f", &self.2, "destroy", "-y"]);
    }
}

fn pool_volumes(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/var/lib/libvirt/images/hdev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_vm_comes_back_from_its_archive_with_its_box_volumes_gone() {
    require_docker();
    require_libvirt();
    // No other test boots a VM meanwhile, so the box's volumes may go for a while: the
    // next VM (this one) uploads them again from its store.
    let _vm = one_vm_test_at_a_time();
    let w = TestEnv::build()
        .file("setup.sh", "echo from-the-archive > /root/mark\n")
        .envfile(&format!(
            r#"[env]
name = "vmexport"

[box.debian]
recipe = "{}"

[network.lan]
subnet = "{}"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["lan"]
provision = [{{ script = "setup.sh" }}]
"#,
            repo().join("boxes/debian-bookworm").display(),
            subnet()
        ))
        .no_timeout()
        .create();
    w.ok(&["up"]);
    let hashes = w.json(&["hash", "--json"]);
    let hash = hashes["hash"].as_str().expect("hash").to_string();
    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("vm.hdev.tar");
    let report = w.json(&["export", "-o", &archive.display().to_string(), "--json"]);
    let digest = report["boxes"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    w.ok(&["destroy", "-y"]);
    let prefix = format!(
        "hdev-box-debian-bookworm-{}",
        &digest.trim_start_matches("sha256:")[..12]
    );
    let volumes = pool_volumes(&prefix);
    assert!(!volumes.is_empty(), "the box's volumes were in the pool");
    for v in &volumes {
        let del = std::process::Command::new("virsh")
            .args(["-c", "qemu:///system", "vol-delete", "--pool", "hdev", v])
            .output()
            .expect("virsh");
        assert!(del.status.success(), "{del:?}");
    }
    std::fs::remove_file(w.path().join("Envfile")).expect("rm");
    std::fs::remove_file(w.path().join("setup.sh")).expect("rm");
    std::fs::remove_dir_all(w.path().join(".hdev")).expect("rm");

    let home = tempfile::tempdir().expect("empty store");
    let dir = w.path().join("restored");
    let f = dir.join("Envfile").display().to_string();
    let _restored = Restored(&w, home.path(), f.clone());
    let a = archive.display().to_string();
    let d = dir.display().to_string();
    let r = run_in(
        &w,
        home.path(),
        &["up", "--from", &a, "--dir", &d, "--expect-hash", &hash],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("1 added from the archive"), "{r}");
    assert!(!r.stderr.contains("building box"), "no recipe ran: {r}");
    assert_eq!(
        pool_volumes(&prefix),
        volumes,
        "uploaded again, from the archive's box"
    );
    let v = run_in(&w, home.path(), &["-f", &f, "verify", &hash, "--json"]);
    assert_eq!(v.code, 0, "{v}");
    let v: serde_json::Value = serde_json::from_str(&v.stdout).expect("json");
    assert_eq!(v["machines"], hashes["machines"], "{v}");
    let seen = run_in(
        &w,
        home.path(),
        &["-f", &f, "exec", "vm", "--", "cat", "/root/mark"],
    );
    assert_eq!(seen.stdout, "from-the-archive\n", "{seen}");
}
