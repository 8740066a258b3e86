//! The test builder: a temporary environment folder with an Envfile, the built `hdev`
//! binary run inside it, a box store shared by the whole run, and a guard that destroys
//! what the environment created even when the test fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// HDEV_HOME shared by every test (and kept between runs under the target folder), so
/// boxes, the debian one above all, are built once.
pub fn hdev_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hdev-home");
        std::fs::create_dir_all(&p).expect("test store");
        p
    })
}

/// Whether Docker is reachable; under CI a missing daemon fails the test instead.
pub fn docker_or_skip() -> bool {
    let ok = Path::new("/var/run/docker.sock").exists()
        && rt().block_on(async {
            match bollard::Docker::connect_with_local_defaults() {
                Ok(d) => d.negotiate_version().await.is_ok(),
                Err(_) => false,
            }
        });
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the Docker engine is not reachable, and CI=true forbids skipping");
        }
        eprintln!("note: Docker is not reachable; skipping");
    }
    ok
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A subnet no other test of this run (or, most likely, of a parallel run) uses.
pub fn subnet() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    format!("10.{}.{}.0/24", 150 + (pid % 90), (n * 7 + pid / 90) % 250)
}

/// An environment in a temporary folder, destroyed on drop.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    /// `body` is the Envfile after `[env]` and `[box.busybox]`.
    pub fn new(prefix: &str, body: &str) -> TestEnv {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("it-{prefix}-{}-{n}", std::process::id());
        let dir = tempfile::tempdir().expect("temp env dir");
        let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("boxes/busybox");
        let text = format!(
            "[env]\nname = \"{name}\"\nparallel = 8\n\n[box.busybox]\nrecipe = \"{}\"\n\n{body}",
            recipe.display()
        );
        std::fs::write(dir.path().join("Envfile"), text).expect("write Envfile");
        TestEnv { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }

    pub fn envfile(&self) -> String {
        std::fs::read_to_string(self.path().join("Envfile")).expect("read Envfile")
    }

    pub fn set_envfile(&self, text: &str) {
        std::fs::write(self.path().join("Envfile"), text).expect("write Envfile");
    }

    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("hdev").expect("hdev binary");
        c.current_dir(self.path())
            .env("HDEV_HOME", hdev_home())
            .env_remove("HDEV_INSTANCE")
            .env_remove("HDEV_ENVFILE")
            .timeout(std::time::Duration::from_secs(180));
        c
    }

    /// A plain process command, for tests that signal the process.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hdev"));
        c.current_dir(self.path())
            .env("HDEV_HOME", hdev_home())
            .env_remove("HDEV_INSTANCE")
            .env_remove("HDEV_ENVFILE");
        c
    }

    /// Runs hdev with `args`; returns the output with stderr and stdout as text.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd().args(args).output().expect("run hdev");
        Run::from(out)
    }

    pub fn status(&self) -> serde_json::Value {
        let r = self.run(&["status", "--json"]);
        assert_eq!(r.code, 0, "status failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("status json")
    }

    pub fn instance(&self) -> String {
        self.status()["instance"]
            .as_str()
            .expect("instance")
            .to_string()
    }

    /// Container ids by machine, from `status --json`.
    pub fn ids(&self) -> HashMap<String, String> {
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
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = self.cmd().args(["destroy", "-y"]).output();
    }
}

pub struct Run {
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

/// Counts of containers, networks and volumes in Docker labelled for `instance`.
pub fn labelled_counts(instance: &str) -> (usize, usize, usize) {
    rt().block_on(async {
        let d = bollard::Docker::connect_with_local_defaults()
            .expect("docker")
            .negotiate_version()
            .await
            .expect("docker version");
        let filters = HashMap::from([("label", vec![format!("hdev.env={instance}")])]);
        let c = d
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list containers")
            .len();
        let n = d
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list networks")
            .len();
        let v = d
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list volumes")
            .volumes
            .unwrap_or_default()
            .len();
        (c, n, v)
    })
}

/// Machines of `status --json`.
pub fn machines(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["machines"].as_array().cloned().unwrap_or_default()
}

/// One machine of `status --json`.
pub fn machine<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["machines"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no machine `{name}` in {status}"))
}

/// The Docker image the busybox box was imported as (after some `up` built it).
pub fn busybox_image() -> String {
    rt().block_on(async {
        let d = bollard::Docker::connect_with_local_defaults()
            .expect("docker")
            .negotiate_version()
            .await
            .expect("docker version");
        let filters = HashMap::from([("label", vec!["hdev.box=busybox"])]);
        let images = d
            .list_images(Some(
                bollard::query_parameters::ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list images");
        images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .next()
            .expect("a busybox box image")
    })
}
