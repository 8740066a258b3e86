//! The one test builder: a temporary environment folder (with an Envfile or not yet), the
//! built `hdev` binary run inside it, and where hdev keeps its boxes: the store shared by
//! the whole run (so each box, the debian one above all, is built once), or a store of the
//! test's own (a temp box-store world). An environment on the shared store is destroyed
//! on drop, even when the test fails.
//!
//! ```ignore
//! // Docker and libvirt tests: a unique `[env]` name, the busybox box, then the machines.
//! let env = TestEnv::new("chain", "[machine.a]\nbackend = \"docker\"\nbox = \"busybox\"\n");
//! // Anything else, fluently.
//! let env = TestEnv::build().envfile(text).no_timeout().create();
//! let world = TestEnv::build().own_home().create(); // a temp box store, no Envfile yet
//! ```
//!
//! What needs a daemon is in [`engines`]: `require_docker()` and `require_libvirt()`, and
//! what the tests read back from Docker and libvirt.

pub(crate) mod engines;
pub(crate) mod git;
pub(crate) mod webdriver;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) use engines::{require_docker, require_libvirt};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The repository (the crate's folder): box recipes, fixtures, templates.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built `hdev` binary.
pub(crate) fn hdev_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hdev"))
}

/// HDEV_HOME shared by every test (and kept between runs under the target folder), so
/// boxes, the debian one above all, are built once.
pub(crate) fn hdev_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hdev-home");
        std::fs::create_dir_all(&p).expect("test store");
        p
    })
}

/// A subnet no other test of this run (or, most likely, of a parallel run) uses.
pub(crate) fn subnet() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    format!("10.{}.{}.0/24", 150 + (pid % 90), (n * 7 + pid / 90) % 250)
}

/// How a [`TestEnv`] is made: start with [`TestEnv::build`], end with [`EnvBuilder::create`].
pub(crate) struct EnvBuilder {
    envfile: Option<String>,
    files: Vec<(String, String)>,
    recipes: Vec<String>,
    own_home: bool,
    timeout: Option<Duration>,
    vars: Vec<(String, String)>,
}

impl EnvBuilder {
    /// The Envfile: a unique `[env]` name made from `prefix` (with `parallel = 8`), the
    /// repository's busybox box, then `body` (machines, networks, checks).
    pub(crate) fn machines(self, prefix: &str, body: &str) -> EnvBuilder {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("it-{prefix}-{}-{n}", std::process::id());
        let recipe = repo().join("boxes/busybox");
        self.envfile(&format!(
            "[env]\nname = \"{name}\"\nparallel = 8\n\n[box.busybox]\nrecipe = \"{}\"\n\n{body}",
            recipe.display()
        ))
    }

    /// The Envfile, exactly this text.
    pub(crate) fn envfile(mut self, text: &str) -> EnvBuilder {
        self.envfile = Some(text.to_string());
        self
    }

    /// A file of the environment folder (folders made as needed).
    pub(crate) fn file(mut self, rel: &str, content: &str) -> EnvBuilder {
        self.files.push((rel.to_string(), content.to_string()));
        self
    }

    /// A copy of the repository's box recipe `boxes/NAME` at `boxes/NAME` in the folder
    /// (the copy has the same recipe digest).
    pub(crate) fn recipe_copy(mut self, name: &str) -> EnvBuilder {
        self.recipes.push(name.to_string());
        self
    }

    /// The environment `boxtest` with one box, busybox, from a copy of its recipe.
    pub(crate) fn busybox_copy(self) -> EnvBuilder {
        self.recipe_copy("busybox")
            .envfile("[env]\nname = \"boxtest\"\n\n[box.busybox]\nrecipe = \"boxes/busybox\"\n")
    }

    /// An HDEV_HOME of this environment's own in a temp folder instead of the shared one:
    /// a box store nothing else touches. Such an environment is never brought up, so
    /// nothing is destroyed on drop.
    pub(crate) fn own_home(mut self) -> EnvBuilder {
        self.own_home = true;
        self
    }

    /// The bound on each `hdev` command (180 s unless told).
    pub(crate) fn timeout(mut self, t: Duration) -> EnvBuilder {
        self.timeout = Some(t);
        self
    }

    /// No bound on `hdev` commands (VMs under software emulation take their time).
    pub(crate) fn no_timeout(mut self) -> EnvBuilder {
        self.timeout = None;
        self
    }

    /// An environment variable for every `hdev` command.
    pub(crate) fn var(mut self, key: &str, value: &str) -> EnvBuilder {
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    pub(crate) fn create(self) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp env dir");
        let home = self
            .own_home
            .then(|| tempfile::tempdir().expect("temp home"));
        let env = TestEnv {
            dir,
            home,
            timeout: self.timeout,
            vars: self.vars,
        };
        for name in &self.recipes {
            let from = repo().join("boxes").join(name);
            let to = env.path().join("boxes").join(name);
            std::fs::create_dir_all(&to).expect("mkdir");
            for e in std::fs::read_dir(&from).expect("recipe folder") {
                let e = e.expect("entry");
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
        for (rel, content) in &self.files {
            env.write(rel, content);
        }
        if let Some(text) = &self.envfile {
            env.set_envfile(text);
        }
        env
    }
}

/// An environment folder and where its `hdev` keeps boxes; see [`EnvBuilder`].
pub(crate) struct TestEnv {
    pub dir: tempfile::TempDir,
    home: Option<tempfile::TempDir>,
    timeout: Option<Duration>,
    vars: Vec<(String, String)>,
}

impl TestEnv {
    /// An empty folder on the shared store, commands bounded to 180 s: add to it.
    pub(crate) fn build() -> EnvBuilder {
        EnvBuilder {
            envfile: None,
            files: vec![],
            recipes: vec![],
            own_home: false,
            timeout: Some(Duration::from_secs(180)),
            vars: vec![],
        }
    }

    /// `TestEnv::build().machines(prefix, body).create()`: `body` is the Envfile after
    /// `[env]` and `[box.busybox]`.
    pub(crate) fn new(prefix: &str, body: &str) -> TestEnv {
        TestEnv::build().machines(prefix, body).create()
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// This environment's HDEV_HOME.
    pub(crate) fn home(&self) -> &Path {
        match &self.home {
            Some(h) => h.path(),
            None => hdev_home(),
        }
    }

    pub(crate) fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }

    pub(crate) fn envfile(&self) -> String {
        std::fs::read_to_string(self.path().join("Envfile")).expect("read Envfile")
    }

    pub(crate) fn set_envfile(&self, text: &str) {
        std::fs::write(self.path().join("Envfile"), text).expect("write Envfile");
    }

    /// `hdev` in the folder, with this environment's home and bound.
    pub(crate) fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(hdev_bin());
        c.current_dir(self.path())
            .env("HDEV_HOME", self.home())
            .env_remove("HDEV_INSTANCE")
            .env_remove("HDEV_ENVFILE")
            .env_remove("HDEV_HOSTS")
            .env_remove("HDEV_BOX_MAX_BYTES")
            // The provisioned-state cache would spare provisioning that tests watch run;
            // its own tests turn it on (`var("HDEV_NO_CACHE", "0")`).
            .env("HDEV_NO_CACHE", "1")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        if let Some(t) = self.timeout {
            c.timeout(t);
        }
        c
    }

    /// A plain process command, for tests that signal the process or run several at once.
    pub(crate) fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(hdev_bin());
        c.current_dir(self.path())
            .env("HDEV_HOME", self.home())
            .env_remove("HDEV_INSTANCE")
            .env_remove("HDEV_ENVFILE")
            .env_remove("HDEV_HOSTS")
            .env_remove("HDEV_BOX_MAX_BYTES")
            // The provisioned-state cache would spare provisioning that tests watch run;
            // its own tests turn it on (`var("HDEV_NO_CACHE", "0")`).
            .env("HDEV_NO_CACHE", "1")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs hdev with `args`; returns the output with stderr and stdout as text.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd().args(args).output().expect("run hdev");
        Run::from(out)
    }

    /// Runs hdev and insists on success; its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "hdev {args:?}: {r}");
        r.stdout
    }

    /// `hdev --json ARGS`, which must succeed; its output.
    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cmd().arg("--json").args(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("json output")
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let r = self.run(&["status", "--json"]);
        assert_eq!(r.code, 0, "status failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("status json")
    }

    pub(crate) fn instance(&self) -> String {
        self.status()["instance"]
            .as_str()
            .expect("instance")
            .to_string()
    }

    /// Container ids by machine, from `status --json`.
    pub(crate) fn ids(&self) -> HashMap<String, String> {
        let s = self.status();
        s["machines"]
            .as_array()
            .expect("machines")
            .iter()
            .filter_map(|m| {
                Some((
                    m["name"].as_str()?.to_string(),
                    m["id"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Builds the repository's busybox box into this environment's store and writes its
    /// archive to `busybox.box` in the folder; returns (archive, digest).
    pub(crate) fn build_busybox(&self) -> (PathBuf, String) {
        let archive = self.path().join("busybox.box");
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

    /// The boxes in this environment's store.
    pub(crate) fn stored(&self) -> Vec<PathBuf> {
        entries(&self.home().join("boxes"))
    }

    /// What an add or a build left half done in this environment's store.
    pub(crate) fn leftovers(&self) -> Vec<PathBuf> {
        entries(&self.home().join("tmp"))
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
        Err(_) => vec![],
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // An environment with its own store was never brought up; a test may have removed
        // the folder on purpose (to leave work for `gc`); without an Envfile there is
        // nothing to destroy.
        if self.home.is_none() && self.path().join("Envfile").exists() {
            let _ = self.cmd().args(["destroy", "-y"]).output();
        }
    }
}

/// What an `hdev` command did.
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Machines of `status --json`.
pub(crate) fn machines(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["machines"].as_array().cloned().unwrap_or_default()
}

/// One machine of `status --json`.
pub(crate) fn machine<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["machines"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no machine `{name}` in {status}"))
}
