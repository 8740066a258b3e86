//! Baseline, drift, reset and a named snapshot of a real VM, through the `hdev` binary:
//! the disk is a chain of qcow2 layers in the `hdev` pool with the running VM's memory
//! saved beside each, drift is read inside the guest, reset resumes the guest from the
//! baseline's memory on a fresh overlay (no boot, no provisioning again; halted or not),
//! and destroy removes every layer and memory file. One VM under software emulation: the test takes a few minutes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The store shared with `tests/libvirt_vm.rs`, so the debian box is built once.
fn shared_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hdev-home")
}

struct Env {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n{}\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Env {
    fn run(&self, args: &[&str]) -> Out {
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

    fn sh(&self, script: &str) -> Out {
        self.run(&["exec", "vm", "--", "sh", "-c", script])
    }

    fn drift(&self) -> (i32, serde_json::Value) {
        let o = self.run(&["drift", "--json"]);
        let v: serde_json::Value =
            serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
        (o.code, v["machines"][0].clone())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "-y"]);
    }
}

fn list(v: &serde_json::Value, kind: &str) -> Vec<String> {
    v[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no `{kind}` in {v}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn volumes_of(instance: &str) -> Vec<String> {
    let prefix = format!("hdev-{instance}-");
    std::fs::read_dir("/var/lib/libvirt/images/hdev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The guest runs the boot it was provisioned in (reset resumed it rather than booting),
/// and its clock is current again.
fn assert_resumed(env: &Env) {
    let c = env.sh("cat /root/boot /proc/sys/kernel/random/boot_id; date +%s");
    assert_eq!(c.code, 0, "{c}");
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{c}");
    assert_eq!(
        lines[0], lines[1],
        "reset booted the guest instead of resuming it"
    );
    let guest: i64 = lines[2].parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (host - guest).abs() < 30,
        "guest clock {guest} vs host {host} after resuming"
    );
}

#[test]
fn a_vm_drifts_resets_without_provisioning_and_restores_a_snapshot() {
    if !Path::new("/var/run/libvirt/libvirt-sock").exists() {
        assert!(!in_ci(), "under CI=true libvirtd must be running");
        eprintln!("note: skipping outside CI, libvirtd is not running");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let subnet = format!("10.233.{}.0/24", std::process::id() % 200 + 20);
    std::fs::write(
        dir.path().join("Envfile"),
        format!(
            r#"
[env]
name = "vmsnap"

[box.debian]
recipe = "{}"

[network.lan]
subnet = "{subnet}"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["lan"]
provision = [{{ shell = "echo 1 >> /root/provisioned; echo vm > /etc/role; echo d > /etc/doomed; cat /proc/sys/kernel/random/boot_id > /root/boot" }}]
"#,
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("boxes/debian-bookworm")
                .display()
        ),
    )
    .unwrap();
    let env = Env { dir };
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let st = env.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let instance = st["instance"].as_str().unwrap().to_string();
    assert_eq!(st["machines"][0]["baseline"], true, "{st}");
    assert_eq!(st["machines"][0]["drifted"], false, "{st}");

    let (code, d) = env.drift();
    assert_eq!(code, 0, "no drift after up: {d}");
    let e = env.sh("echo changed > /etc/role && echo new > /etc/added && rm /etc/doomed");
    assert_eq!(e.code, 0, "{e}");
    let (code, d) = env.drift();
    assert_eq!(code, 1, "{d}");
    assert_eq!(list(&d, "added"), ["/etc/added"]);
    assert_eq!(list(&d, "changed"), ["/etc/role"]);
    assert_eq!(list(&d, "deleted"), ["/etc/doomed"]);

    let s = env.run(&["snapshot", "save", "s1"]);
    assert_eq!(s.code, 0, "{s}");
    let e = env.sh("echo later > /root/later");
    assert_eq!(e.code, 0, "{e}");

    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    assert_resumed(&env);
    let (code, d) = env.drift();
    assert_eq!(code, 0, "no drift after reset: {d}");
    let c = env.sh("cat /etc/role /root/provisioned; test ! -e /root/later");
    assert_eq!(
        c.stdout, "vm\n1\n",
        "baseline content, provisioned once: {c}"
    );
    let state = std::fs::read_to_string(env.dir.path().join(".hdev/state.json")).unwrap();
    assert!(state.contains("\"provision_runs\": 1"), "{state}");

    let r = env.run(&["snapshot", "restore", "s1"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, d) = env.drift();
    assert_eq!(code, 1, "{d}");
    assert_eq!(list(&d, "added"), ["/etc/added"]);
    assert_eq!(list(&d, "deleted"), ["/etc/doomed"]);
    let c = env.sh("cat /etc/role /root/provisioned; test ! -e /root/later");
    assert_eq!(c.stdout, "changed\n1\n", "{c}");

    let l = env.run(&["snapshot", "list", "--json"]);
    let l: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let s1 = &l["snapshots"]["s1"][0];
    assert!(
        s1["chain_bytes"].as_u64() > s1["own_bytes"].as_u64(),
        "a snapshot's chain includes the baseline under it: {l}"
    );
    let memory_files = |i: &str| {
        volumes_of(i)
            .into_iter()
            .filter(|v| v.ends_with(".mem"))
            .count()
    };
    assert_eq!(memory_files(&instance), 2, "baseline and s1 memory");
    let del = env.run(&["snapshot", "delete", "s1"]);
    assert_eq!(del.code, 0, "{del}");
    assert!(
        volumes_of(&instance).len() >= 3,
        "baseline layer, its memory and the top stay"
    );
    assert_eq!(memory_files(&instance), 1, "s1's memory is deleted with it");

    // A halted VM resets the same way: resumed from the baseline's memory.
    let h = env.run(&["halt"]);
    assert_eq!(h.code, 0, "{h}");
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    assert_resumed(&env);

    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
    assert_eq!(
        volumes_of(&instance),
        Vec::<String>::new(),
        "destroy removes every layer"
    );
}
