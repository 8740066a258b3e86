//! A developer who is not root, in the `docker` and `libvirt` groups (libvirtd's socket
//! opened to that group by `.ci/setup`, as a laptop without polkit needs), brings up a VM
//! beside a container, reaches both, resets and destroys them. Building the debian box
//! needs root (debootstrap), so the user adds it as an archive, as a team would share it.

use std::os::unix::fs::PermissionsExt;

use crate::docker::nonroot::{Cleanup, RunAs};
use crate::support::engines::{build_debian_box, libvirt_leftovers, one_vm_test_at_a_time};
use crate::support::{hdev_home, repo, require_docker, require_libvirt, subnet, TestEnv};

/// The repository's busybox recipe, copied into `dir/boxes/busybox` (the user cannot
/// read the build folder).
fn copy_busybox_recipe(dir: &std::path::Path) {
    let recipe = dir.join("boxes/busybox");
    std::fs::create_dir_all(&recipe).expect("mkdir");
    for f in ["box.toml", "build.sh"] {
        std::fs::copy(repo().join("boxes/busybox").join(f), recipe.join(f)).expect("copy");
    }
}

#[test]
fn a_user_in_the_libvirt_group_brings_up_a_vm_and_a_container() {
    require_docker();
    require_libvirt();
    let _slot = one_vm_test_at_a_time();
    // The debian box from the shared store, written out as an archive.
    let builder = TestEnv::new("nonrootvm-box", "");
    build_debian_box(&builder, &repo().join("boxes/debian-bookworm"));
    // The newest debian box (older builds of an older recipe may be there too).
    let list = builder.json(&["box", "list"]);
    let digest = list
        .as_array()
        .expect("box list")
        .iter()
        .filter(|b| b["name"] == "debian-bookworm")
        .max_by_key(|b| b["created"].as_str().unwrap_or_default().to_string())
        .and_then(|b| b["digest"].as_str())
        .expect("the debian box is in the store")
        .to_string();
    let store = hdev::boxes::Store::at(hdev_home().to_path_buf());
    let stored = store
        .load(&hdev::boxes::BoxDigest::parse(&digest).expect("digest"))
        .expect("stored box");

    let tmp = tempfile::tempdir().expect("temp folder");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    hdev::boxes::archive::write_archive(&stored.manifest, &stored.dir, &dir.join("debian.box"))
        .expect("write the box archive");
    copy_busybox_recipe(dir);
    std::fs::write(
        dir.join("Envfile"),
        format!(
            r#"
[env]
name = "nonrootvm"

[box.debian]
file = "debian.box"

[box.busybox]
recipe = "boxes/busybox"

[network.lan]
subnet = "{}"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["lan"]
provision = [{{ shell = "echo mine > /root/owner" }}]

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]

[[test]]
name = "the container reaches the VM"
machine = "web"
run = "ping -c1 -W3 vm"
"#,
            subnet()
        ),
    )
    .expect("Envfile");
    let who = RunAs::in_groups(dir, &["docker", "libvirt"]);
    let _cleanup = Cleanup(&who, dir);
    who.ok(dir, &["up"]);
    assert_eq!(
        who.ok(dir, &["exec", "vm", "--", "cat", "/root/owner"])
            .trim(),
        "mine"
    );
    let t = who.ok(dir, &["test"]);
    assert!(t.contains("1 passed"), "{t}");
    who.ok(
        dir,
        &["exec", "vm", "--", "sh", "-c", "echo x > /root/drifted"],
    );
    who.ok(dir, &["reset"]);
    let d = who.run(dir, &["drift"]);
    assert!(
        d.status.success(),
        "no drift after reset: {}",
        String::from_utf8_lossy(&d.stdout)
    );
    let status = who.ok(dir, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    let instance = status["instance"].as_str().expect("instance").to_string();
    who.ok(dir, &["destroy", "-y"]);
    assert!(libvirt_leftovers(&instance).is_empty());
}

/// A user in the `docker` group but not in `libvirt`: `status` shows the VM unreachable
/// with why and what to do, `up` refuses before it creates anything, and libvirt's own
/// error printing (`libvirt: XML-RPC error : …` on stderr) stays silent.
#[test]
fn a_user_outside_the_libvirt_group_is_told_why_in_hdevs_words() {
    require_docker();
    require_libvirt();
    let tmp = tempfile::tempdir().expect("temp folder");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy_busybox_recipe(dir);
    std::fs::write(
        dir.join("Envfile"),
        format!(
            r#"
[env]
name = "nolibvirt"

[box.busybox]
recipe = "boxes/busybox"

[network.lan]
subnet = "{}"

[machine.vm]
backend = "libvirt"
image = "disk.qcow2"
networks = ["lan"]

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
"#,
            subnet()
        ),
    )
    .expect("Envfile");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(dir.join("disk.qcow2"))
        .arg("64M")
        .status()
        .expect("qemu-img");
    assert!(made.success(), "qemu-img create");
    let Some(who) = RunAs::outsider(dir, "hdev-nolibvirt", &["docker"]) else {
        return;
    };
    let _cleanup = Cleanup(&who, dir);
    let quiet = |err: &str| {
        assert!(
            !err.lines().any(|l| l.starts_with("libvirt:")),
            "libvirt prints nothing itself: {err}"
        );
    };
    let o = who.run(dir, &["status"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    quiet(&err);
    assert!(
        out.lines()
            .any(|l| l.starts_with("vm ") && l.contains("unreachable")),
        "{out}"
    );
    assert!(
        err.contains("Permission denied") && err.contains("add it to the `libvirt` group"),
        "status says why and what to do: {err}"
    );
    let o = who.run(dir, &["up"]);
    let err = String::from_utf8_lossy(&o.stderr);
    quiet(&err);
    assert!(!o.status.success());
    assert!(
        err.contains("nothing was created") && err.contains("add it to the `libvirt` group"),
        "{err}"
    );
    let status = who.ok(dir, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    let web = status["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .find(|m| m["name"] == "web")
        .expect("web");
    assert_eq!(web["state"], "not created", "{status}");
    assert_eq!(
        status["networks"],
        serde_json::json!({}),
        "no network was made: {status}"
    );
}
