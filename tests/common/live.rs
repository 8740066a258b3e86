//! For tests that drive the `hdev` binary against the real libvirtd and Docker: an
//! environment folder whose machines are destroyed on drop, and what hdev left in libvirt.

use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use super::repo;
use std::process::Command;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The box store shared by the test binaries, so each box is built once.
pub fn shared_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hdev-home")
}

/// Whether the daemons a test needs run; under CI=true their absence fails the test.
pub fn daemons_or_skip(docker: bool) -> bool {
    let ok = Path::new("/var/run/libvirt/libvirt-sock").exists()
        && (!docker || Path::new("/var/run/docker.sock").exists());
    if !ok {
        assert!(
            !in_ci(),
            "under CI=true libvirtd and dockerd must be running"
        );
        eprintln!("note: skipping outside CI, libvirtd or dockerd is not running");
    }
    ok
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n{}\n{}", self.code, self.stdout, self.stderr)
    }
}

/// An environment folder with its Envfile; destroyed on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(envfile: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Envfile"), envfile).unwrap();
        Env { dir }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        let o = Command::new(env!("CARGO_BIN_EXE_hdev"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HDEV_HOME", shared_home())
            .env_remove("HDEV_INSTANCE")
            .env_remove("HDEV_ENVFILE")
            .output()
            .expect("run hdev");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs hdev and insists on success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "hdev {args:?}: {o}");
        o.stdout
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A test may have removed the folder on purpose (to leave work for `gc`).
        if self.dir.path().exists() {
            let _ = self.run(&["destroy", "-y"]);
        }
    }
}

/// One machine of `status --json`.
pub fn machine<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no machine `{name}` in {status}"))
}

/// Volumes, domains and networks in libvirt named after an environment instance.
pub fn libvirt_leftovers(instance: &str) -> Vec<String> {
    let prefix = format!("hdev-{instance}-");
    let mut out: Vec<String> = std::fs::read_dir("/var/lib/libvirt/images/hdev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    for (what, args) in [
        ("domain", ["list", "--all", "--name"]),
        ("network", ["net-list", "--all", "--name"]),
    ] {
        let o = Command::new("virsh")
            .args(["-c", "qemu:///system"])
            .args(args)
            .output()
            .expect("virsh");
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with(&prefix))
                .map(|l| format!("{what} {l}")),
        );
    }
    out.sort();
    out
}
