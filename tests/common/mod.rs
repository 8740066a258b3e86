//! Shared pieces of the box tests: a temp store home and project folder, and the binary.
#![allow(dead_code)]

pub mod live;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// A temp home for the store and a temp project folder.
pub struct World {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl World {
    pub fn new() -> World {
        World {
            home: tempfile::tempdir().expect("home"),
            work: tempfile::tempdir().expect("work"),
        }
    }

    pub fn hdev(&self) -> Command {
        let mut c = Command::cargo_bin("hdev").expect("binary");
        c.env("HDEV_HOME", self.home.path())
            .env_remove("HDEV_BOX_MAX_BYTES")
            .current_dir(self.work.path());
        c
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.hdev().arg("--json").args(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("json output")
    }

    /// Builds the busybox box and writes its archive; returns (archive, digest).
    pub fn busybox(&self) -> (PathBuf, String) {
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

    pub fn stored(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.home.path().join("boxes")) {
            Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
            Err(_) => vec![],
        }
    }

    pub fn leftovers(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.home.path().join("tmp")) {
            Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
            Err(_) => vec![],
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An environment with the busybox recipe copied in (the copy has the same recipe digest).
pub fn busybox_env(dir: &Path) -> hdev::envfile::Env {
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

pub fn qcow2(path: &Path) {
    let ok = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg("8M")
        .status()
        .expect("qemu-img")
        .success();
    assert!(ok, "qemu-img create");
}
