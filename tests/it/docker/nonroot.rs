//! hdev run by a user who is not root, as people run it: a member of the `docker` group
//! with its own box store, bringing up, testing, resetting and destroying a container
//! environment. Under root the test makes such a user (`hdev-nonroot`) and runs the
//! binary as it; run by anyone else, it runs as that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{hdev_bin, require_docker, subnet};

const USER: &str = "hdev-nonroot";

/// Who runs the binary: this process's user, or (under root) a user made for it.
pub(crate) struct RunAs {
    user: Option<String>,
    /// A copy of the binary the user can execute (the build folder may be closed to it).
    bin: PathBuf,
}

impl RunAs {
    pub(crate) fn new(dir: &Path) -> RunAs {
        RunAs::in_groups(dir, &["docker"])
    }

    /// The user in `groups` (`docker`, and `libvirt` for VMs) besides its own.
    pub(crate) fn in_groups(dir: &Path, groups: &[&str]) -> RunAs {
        if !is_root() {
            let bin = dir.join("hdev");
            std::fs::copy(hdev_bin(), &bin).expect("copy the binary");
            return RunAs { user: None, bin };
        }
        RunAs::made(dir, USER, groups)
    }

    /// A user made for the test, in exactly `groups` besides its own: only root can make
    /// one. Without root, under CI that is a failure; elsewhere the test says it did not
    /// run and returns `None`.
    pub(crate) fn outsider(dir: &Path, user: &str, groups: &[&str]) -> Option<RunAs> {
        if !is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "this test makes a user: run it as root"
            );
            eprintln!("not run: this test makes a user, which needs root");
            return None;
        }
        Some(RunAs::made(dir, user, groups))
    }

    fn made(dir: &Path, user: &str, groups: &[&str]) -> RunAs {
        let bin = dir.join("hdev");
        std::fs::copy(hdev_bin(), &bin).expect("copy the binary");
        let exists = Command::new("id")
            .arg(user)
            .output()
            .expect("id")
            .status
            .success();
        if !exists {
            let ok = Command::new("useradd")
                .args(["--no-create-home", "--shell", "/bin/sh", user])
                .status()
                .expect("useradd")
                .success();
            assert!(ok, "cannot create user {user}");
        }
        // Exactly these groups (`-G` replaces; an empty list leaves none).
        let ok = Command::new("usermod")
            .args(["-G", &groups.join(","), user])
            .status()
            .expect("usermod")
            .success();
        assert!(ok, "cannot put {user} in the groups {groups:?}");
        let ok = Command::new("chown")
            .args(["-R", user])
            .arg(dir)
            .status()
            .expect("chown")
            .success();
        assert!(ok, "cannot give {} to {user}", dir.display());
        RunAs {
            user: Some(user.to_string()),
            bin,
        }
    }

    pub(crate) fn run(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", u, "--regid", u, "--init-groups", "--"]);
                // The user's own home and name, not root's.
                c.arg(&self.bin).env("HOME", dir).env("USER", u);
                c
            }
            None => Command::new(&self.bin),
        };
        c.args(args)
            .current_dir(dir)
            .env("HDEV_HOME", dir.join("home"))
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env_remove("HDEV_INSTANCE")
            .env_remove("HDEV_ENVFILE");
        c.output().expect("run hdev")
    }

    pub(crate) fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let o = self.run(dir, args);
        assert!(
            o.status.success(),
            "hdev {args:?} as {} failed: {}\n{}",
            self.user.as_deref().unwrap_or("this user"),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Destroys what the environment made even when an assertion fails.
pub(crate) struct Cleanup<'a>(pub(crate) &'a RunAs, pub(crate) &'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(self.1, &["destroy", "-y"]);
    }
}

#[test]
fn a_user_who_is_not_root_brings_up_tests_resets_and_destroys() {
    require_docker();
    let tmp = tempfile::tempdir().expect("temp folder");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let who = RunAs::new(dir);
    // The minimal template, as a new user starts: `hdev init`, written by the user. Its
    // fixed subnet and host port are swapped for this run's own (tests run side by side).
    who.ok(dir, &["init"]);
    let envfile = dir.join("Envfile");
    let text = std::fs::read_to_string(&envfile).expect("Envfile");
    assert!(
        text.contains("10.77.0.0/24") && text.contains("127.0.0.1:8080:80"),
        "{text}"
    );
    let text = text
        .replace("10.77.0.0/24", &subnet())
        .replace("127.0.0.1:8080:80", "80");
    std::fs::write(&envfile, text).expect("write Envfile");
    let _cleanup = Cleanup(&who, dir);

    who.ok(dir, &["up"]);
    who.ok(dir, &["test"]);
    who.ok(dir, &["exec", "web", "--", "touch", "/scratch"]);
    let drift = who.run(dir, &["drift"]);
    assert_eq!(drift.status.code(), Some(1), "the new file is drift");
    who.ok(dir, &["reset"]);
    who.ok(dir, &["drift"]);
    let st: serde_json::Value =
        serde_json::from_str(&who.ok(dir, &["--json", "status"])).expect("status json");
    assert_eq!(st["machines"][0]["state"], "running", "{st}");
    assert_eq!(st["machines"][0]["provisioned"], true, "{st}");
    // What the user's hdev wrote is the user's, not root's.
    if let Some(user) = &who.user {
        let owner = Command::new("stat")
            .args(["-c", "%U"])
            .arg(dir.join(".hdev/state.json"))
            .output()
            .expect("stat");
        assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), user);
    }
    let out = who.ok(dir, &["destroy", "-y"]);
    assert!(out.contains("1 container(s)"), "{out}");
}

/// A user outside the `docker` group is told so, and what to do, in hdev's words.
#[test]
fn a_user_outside_the_docker_group_is_told_which_group_to_join() {
    require_docker();
    let tmp = tempfile::tempdir().expect("temp folder");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        dir.join("Envfile"),
        "[env]\nname = \"outsider\"\n\n[machine.web]\nbackend = \"docker\"\nimage = \"busybox\"\n",
    )
    .expect("Envfile");
    let Some(who) = RunAs::outsider(dir, "hdev-nogroups", &[]) else {
        return;
    };
    for args in [&["status"][..], &["up"]] {
        let o = who.run(dir, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "hdev {args:?} cannot work: {err}");
        assert!(
            err.contains("Permission denied") && err.contains("add it to the `docker` group"),
            "hdev {args:?} says why and what to do: {err}"
        );
        assert!(!err.contains("is the daemon running"), "{err}");
    }
}
