//! Boxes in the real libvirtd: a box's base volumes uploaded once however many machines
//! ask at the same time (the Docker half is `docker::box_images`).

use std::path::{Path, PathBuf};

use crate::support::engines::LIBVIRT_URI as URI;
use crate::support::{require_libvirt, TestEnv};

/// An environment with a tiny box for libvirt: a small qcow2, a "kernel" and an "initrd";
/// hdev with a store of its own.
fn tiny_vm_env() -> TestEnv {
    TestEnv::build()
        .own_home()
        .file(
            "tiny/box.toml",
            "name = \"tiny\"\nversion = \"1\"\nscript = \"build.sh\"\nboot = \"kernel\"\n\n\
             [artifacts]\nlibvirt-disk = \"disk.qcow2\"\nlibvirt-kernel = \"vmlinuz\"\n\
             libvirt-initrd = \"initrd.img\"\n",
        )
        .file(
            "tiny/build.sh",
            &format!(
                "set -eu\nqemu-img create -q -f qcow2 \"$1/disk.qcow2\" 16M\n\
                 echo kernel-{n} > \"$1/vmlinuz\"\necho initrd-{n} > \"$1/initrd.img\"\n",
                n = std::process::id()
            ),
        )
        .envfile("[env]\nname = \"vmbox\"\n\n[box.tiny]\nrecipe = \"tiny\"\n")
        .create()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn libvirt_base_volumes_are_uploaded_once() {
    require_libvirt();
    let w = tiny_vm_env();
    let env = hdev::envfile::load(&w.path().join("Envfile")).expect("valid Envfile");
    let store = hdev::boxes::Store::at(w.home().to_path_buf());

    let calls =
        (0..5).map(|_| hdev::backend::libvirt::volumes::libvirt_base_in(&store, URI, &env, "tiny"));
    let all: Vec<_> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("base volumes"))
        .collect();
    let v = &all[0];
    assert!(all.iter().all(|x| x.disk == v.disk), "one upload");
    let b = store.list().expect("list").remove(0);
    let same = |vol: &Path, provider: &str| {
        let stored = std::fs::read(b.artifact(provider).expect("artifact")).expect("read");
        assert_eq!(std::fs::read(vol).expect("volume"), stored, "{provider}");
    };
    same(&v.disk, "libvirt-disk");
    same(v.kernel.as_deref().expect("kernel"), "libvirt-kernel");
    same(v.initrd.as_deref().expect("initrd"), "libvirt-initrd");
    assert_eq!(v.boot, hdev::boxes::manifest::Boot::Kernel);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&v.disk)
        .output()
        .expect("qemu-img");
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"qcow2\""));

    // An upload interrupted before its end (no marker): deleted and done again.
    let marker_dir = w.home().join("imports/libvirt");
    for m in walk(&marker_dir) {
        std::fs::remove_file(m).expect("remove marker");
    }
    std::fs::write(&v.disk, b"half").expect("damage");
    let again = hdev::backend::libvirt::volumes::libvirt_base_in(&store, URI, &env, "tiny")
        .await
        .expect("again");
    same(&again.disk, "libvirt-disk");

    let removed = hdev::backend::libvirt::volumes::remove_volumes(&store, URI, &b).expect("remove");
    assert_eq!(removed, 3);
    assert!(!v.disk.exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
