//! Baseline, drift, reset and a named snapshot of a real VM, through the `hdev` binary:
//! the disk is a chain of qcow2 layers in the `hdev` pool with the running VM's memory
//! saved beside each, drift is read inside the guest, reset resumes the guest from the
//! baseline's memory on a fresh overlay (no boot, no provisioning again; halted or not),
//! and destroy removes every layer and memory file. One VM under software emulation: the
//! test takes a few minutes.

use crate::support::engines::{libvirt_volumes, one_vm_test_at_a_time};
use crate::support::{repo, require_docker, require_libvirt, Run, TestEnv};

fn sh(env: &TestEnv, script: &str) -> Run {
    env.run(&["exec", "vm", "--", "sh", "-c", script])
}

fn drift(env: &TestEnv) -> (i32, serde_json::Value) {
    let o = env.run(&["drift", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    (o.code, v["machines"][0].clone())
}

fn list(v: &serde_json::Value, kind: &str) -> Vec<String> {
    v[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no `{kind}` in {v}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// The guest runs the boot it was provisioned in (reset resumed it rather than booting),
/// and its clock is current again.
fn assert_resumed(env: &TestEnv) {
    let c = sh(
        env,
        "cat /root/boot /proc/sys/kernel/random/boot_id; date +%s",
    );
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
    // hdev connects to Docker for any environment, VMs only or not.
    require_docker();
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    let subnet = format!("10.233.{}.0/24", std::process::id() % 200 + 20);
    let env = TestEnv::build()
        .envfile(&format!(
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
            repo().join("boxes/debian-bookworm").display()
        ))
        .no_timeout()
        .var("HDEV_PROGRESS_MS", "4000")
        .create();
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    // While the VM boots, hdev says so with the console's last line.
    assert!(up.stderr.contains(": booting for "), "{up}");
    let st = env.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let instance = st["instance"].as_str().unwrap().to_string();
    assert_eq!(st["machines"][0]["baseline"], true, "{st}");
    assert_eq!(st["machines"][0]["drifted"], false, "{st}");

    let (code, d) = drift(&env);
    assert_eq!(code, 0, "no drift after up: {d}");
    // Many short commands over the shared connection: each ends while the runtime's
    // threads wind down. With the C library's exit handlers (OpenSSL's cleanup) racing
    // them, about one in two hundred aborted with "malloc_consolidate(): invalid chunk
    // size" after its work was done.
    for i in 0..200 {
        let e = env.run(&["exec", "vm", "--", "true"]);
        assert_eq!(e.code, 0, "exec {i}: {e}");
    }
    let e = sh(
        &env,
        "echo changed > /etc/role && echo new > /etc/added && rm /etc/doomed",
    );
    assert_eq!(e.code, 0, "{e}");
    let (code, d) = drift(&env);
    assert_eq!(code, 1, "{d}");
    assert_eq!(list(&d, "added"), ["/etc/added"]);
    assert_eq!(list(&d, "changed"), ["/etc/role"]);
    assert_eq!(list(&d, "deleted"), ["/etc/doomed"]);
    // A change that keeps the file's size and time: the metadata list cannot see it, a
    // comparison of contents (the baseline's layer read in the guest) does.
    let e = sh(
        &env,
        "f=/etc/debian_version; cp -p $f /tmp/ref && tr 0-9 9876543210 < /tmp/ref > $f && touch -r /tmp/ref $f && cmp -s /tmp/ref $f; test $? = 1",
    );
    assert_eq!(e.code, 0, "{e}");
    let (_, d) = drift(&env);
    assert_eq!(list(&d, "changed"), ["/etc/role"], "{d}");
    assert_eq!(d["check"], "metadata", "{d}");
    let deep = env.run(&["drift", "--deep", "--json"]);
    assert_eq!(deep.code, 1, "{deep}");
    let deep: serde_json::Value = serde_json::from_str(&deep.stdout).expect("json");
    let d = &deep["machines"][0];
    assert_eq!(d["check"], "contents", "{d}");
    assert_eq!(list(d, "changed"), ["/etc/debian_version", "/etc/role"]);
    assert_eq!(list(d, "added"), ["/etc/added"]);
    assert_eq!(list(d, "deleted"), ["/etc/doomed"]);

    let s = env.run(&["snapshot", "save", "s1"]);
    assert_eq!(s.code, 0, "{s}");
    let e = sh(&env, "echo later > /root/later");
    assert_eq!(e.code, 0, "{e}");

    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    assert_resumed(&env);
    // Status reads the same record of the layers as reset (issue 16, case 12: it said
    // BASELINE no after a reset).
    let st = env.run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["machines"][0]["baseline"], true, "after reset: {st}");
    let (code, d) = drift(&env);
    assert_eq!(code, 0, "no drift after reset: {d}");
    let c = sh(
        &env,
        "cat /etc/role /root/provisioned; test ! -e /root/later",
    );
    assert_eq!(
        c.stdout, "vm\n1\n",
        "baseline content, provisioned once: {c}"
    );
    let state = std::fs::read_to_string(env.dir.path().join(".hdev/state.json")).unwrap();
    assert!(state.contains("\"provision_runs\": 1"), "{state}");

    let r = env.run(&["snapshot", "restore", "s1"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, d) = drift(&env);
    assert_eq!(code, 1, "{d}");
    assert_eq!(list(&d, "added"), ["/etc/added"]);
    assert_eq!(list(&d, "deleted"), ["/etc/doomed"]);
    let c = sh(
        &env,
        "cat /etc/role /root/provisioned; test ! -e /root/later",
    );
    assert_eq!(c.stdout, "changed\n1\n", "{c}");

    let l = env.run(&["snapshot", "list", "--json"]);
    let l: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let s1 = &l["snapshots"]["s1"][0];
    assert!(
        s1["chain_bytes"].as_u64() > s1["own_bytes"].as_u64(),
        "a snapshot's chain includes the baseline under it: {l}"
    );
    let memory_files = |i: &str| {
        libvirt_volumes(i)
            .into_iter()
            .filter(|v| v.ends_with(".mem"))
            .count()
    };
    assert_eq!(memory_files(&instance), 2, "baseline and s1 memory");
    let del = env.run(&["snapshot", "delete", "s1"]);
    assert_eq!(del.code, 0, "{del}");
    assert!(
        libvirt_volumes(&instance).len() >= 3,
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
        libvirt_volumes(&instance),
        Vec::<String>::new(),
        "destroy removes every layer"
    );
}
