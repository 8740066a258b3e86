//! The provisioned-state cache with a VM: provisioned once in one folder, the VM is kept
//! as a disk layer with its memory in the pool; `up` after `destroy` in that folder
//! resumes the memory (no boot, the same boot id), and a later boot keeps its host key;
//! the same Envfile in another folder (another instance:
//! other MAC addresses, another SSH key, another host key) boots from that layer without
//! provisioning, answers with its own identity, and resets to a baseline taken on it.
//! `cache prune` while the VM stands on the layer stops serving it but keeps the volume
//! until the VM goes.

use crate::support::engines::one_vm_test_at_a_time;
use crate::support::{repo, require_docker, require_libvirt, subnet, TestEnv};

fn pool_has(volume: &str) -> bool {
    std::path::Path::new("/var/lib/libvirt/images/hdev")
        .join(volume)
        .exists()
}

/// SSH connection masters running for the environment in `dir` (OpenSSH names its mux
/// process after the control socket, under `.hdev/ssh/c/`).
fn shared_connections(dir: &std::path::Path) -> usize {
    let needle = dir.join(".hdev/ssh/c/").display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&needle))
        .count()
}

/// The memory image kept beside cache volume `volume`.
fn memory_of(volume: &str) -> String {
    volume.replace(".qcow2", ".mem")
}

fn entry_of<'a>(listed: &'a serde_json::Value, env: &str) -> Option<&'a serde_json::Value> {
    listed["entries"]
        .as_array()?
        .iter()
        .find(|e| e["env"] == env && e["engine"] == "libvirt")
}

#[test]
fn a_provisioned_vm_boots_from_the_cache_in_another_folder_with_its_own_identity() {
    require_docker();
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    let envfile = format!(
        r#"[env]
name = "vmcache"

[box.debian]
recipe = "{}"

[network.lan]
subnet = "{}"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["lan"]
provision = [{{ shell = "echo provisioned-$RANDOM > /root/mark" }}]
"#,
        repo().join("boxes/debian-bookworm").display(),
        subnet()
    );
    let make = || {
        TestEnv::build()
            .envfile(&envfile)
            .var("HDEV_NO_CACHE", "0")
            .no_timeout()
            .create()
    };

    // First folder: provisioned, kept.
    let a = make();
    let up = a.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(up.stderr.contains("provisioning 1/1"), "{up}");
    let mark = a.ok(&["exec", "vm", "--", "cat", "/root/mark"]);
    let listed = a.json(&["cache", "list"]);
    let entry = entry_of(&listed, "vmcache").unwrap_or_else(|| panic!("no VM entry: {listed}"));
    let hash = entry["hash"].as_str().expect("hash").to_string();
    let volume = format!("hdev-cache-{}.qcow2", &hash["sha256:".len()..]);
    assert!(pool_has(&volume), "{listed}");
    assert!(pool_has(&memory_of(&volume)), "no memory kept: {listed}");
    let boot_id = || "cat /proc/sys/kernel/random/boot_id".to_string();
    let first_boot = a.ok(&["exec", "vm", "--", "sh", "-c", &boot_id()]);
    assert!(
        shared_connections(a.path()) > 0,
        "exec left no shared connection"
    );
    assert_eq!(a.run(&["destroy", "-y"]).code, 0);
    assert!(pool_has(&volume), "destroy removed the cache entry");
    // Destroy ends the SSH connection kept open between commands: a VM made again at
    // the same address would otherwise be asked through a connection to the one gone.
    assert_eq!(
        shared_connections(a.path()),
        0,
        "destroy left a shared connection"
    );

    // Same folder again (same identity): resumed from the kept memory, not booted.
    let up = a.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(
        up.stderr.contains("from the provisioned-state cache"),
        "{up}"
    );
    assert!(!up.stderr.contains("provisioning 1/1"), "{up}");
    assert!(up.stderr.contains("resumed from the memory kept"), "{up}");
    assert_eq!(
        a.ok(&["exec", "vm", "--", "sh", "-c", &boot_id()]),
        first_boot,
        "booted, not resumed: {up}"
    );
    assert_eq!(a.ok(&["exec", "vm", "--", "cat", "/root/mark"]), mark);
    let skew = a.ok(&["exec", "vm", "--", "date", "+%s"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let guest: i64 = skew.trim().parse().expect("guest time");
    assert!(
        (guest - now).abs() < 30,
        "the guest's clock: {guest}, now {now}"
    );
    // Its seed gives the host key the resumed guest runs with: a boot keeps it.
    assert_eq!(a.run(&["halt"]).code, 0);
    let up = a.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert_ne!(
        a.ok(&["exec", "vm", "--", "sh", "-c", &boot_id()]),
        first_boot
    );
    assert_eq!(a.run(&["destroy", "-y"]).code, 0);

    // Second folder, same Envfile: from the cache, not provisioned, its own identity.
    let b = make();
    let up = b.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(
        up.stderr.contains("from the provisioned-state cache"),
        "{up}"
    );
    assert!(
        !up.stderr.contains("provisioning 1/1"),
        "provisioned again: {up}"
    );
    assert!(!up.stderr.contains("resumed from the memory kept"), "{up}");
    assert_eq!(b.ok(&["exec", "vm", "--", "cat", "/root/mark"]), mark);
    assert_ne!(
        b.ok(&["exec", "vm", "--", "sh", "-c", &boot_id()]),
        first_boot,
        "another identity resumed the first one's memory"
    );
    assert_eq!(b.ok(&["exec", "vm", "--", "hostname"]).trim(), "vm");
    let key = std::fs::read_to_string(b.path().join(".hdev/ssh/id_ed25519.pub"))
        .expect("the second folder's key");
    let authorized = b.ok(&["exec", "vm", "--", "cat", "/root/.ssh/authorized_keys"]);
    assert_eq!(
        authorized.trim(),
        key.trim(),
        "the first folder's key is in force"
    );
    let hashes = b.json(&["hash", "--json"]);
    assert_eq!(
        hashes["machines"]["vm"].as_str(),
        Some(hash.as_str()),
        "{hashes}"
    );

    // Its baseline is taken on the cached layer: reset returns to it.
    b.ok(&["exec", "vm", "--", "sh", "-c", "echo changed > /root/mark"]);
    let reset = b.run(&["reset"]);
    assert_eq!(reset.code, 0, "{reset}");
    assert_eq!(b.ok(&["exec", "vm", "--", "cat", "/root/mark"]), mark);

    // Pruned while the VM stands on it: no longer served, the volume kept for the VM.
    let p = b.run(&["cache", "prune", "--all"]);
    assert_eq!(p.code, 0, "{p}");
    let listed = b.json(&["cache", "list"]);
    assert!(entry_of(&listed, "vmcache").is_none(), "{listed}");
    assert!(pool_has(&volume), "the volume went under a running VM");
    assert_eq!(b.ok(&["exec", "vm", "--", "cat", "/root/mark"]), mark);
    // The VM gone, the next look at the cache removes the volume.
    assert_eq!(b.run(&["destroy", "-y"]).code, 0);
    b.ok(&["cache", "list"]);
    assert!(!pool_has(&volume), "the pruned volume outlived its last VM");
    assert!(
        !pool_has(&memory_of(&volume)),
        "the pruned memory outlived its last VM"
    );
}
