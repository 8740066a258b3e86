//! Boxes in the real backends: Docker images and libvirt base volumes, imported once
//! however many machines ask at the same time.

mod common;

use std::path::{Path, PathBuf};

use common::{busybox_env, World};

/// Docker, or None (with a note) when it is not reachable outside CI.
async fn docker() -> Option<bollard::Docker> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let connected = match bollard::Docker::connect_with_local_defaults() {
        Ok(d) => d.negotiate_version().await.ok(),
        Err(_) => None,
    };
    match connected {
        Some(d) if d.ping().await.is_ok() => Some(d),
        _ if ci => panic!("Docker is not reachable, and CI=true: run .ci/setup"),
        _ => {
            eprintln!("note: Docker is not reachable; skipping this test outside CI");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_image_builds_and_imports_once_for_parallel_callers() {
    let Some(docker) = docker().await else {
        return;
    };
    let w = World::new();
    let env = busybox_env(w.work.path());
    let store = hdev::boxes::Store::at(w.home.path().to_path_buf());

    let calls = (0..20).map(|_| hdev::boxes::docker_image_in(&store, &docker, &env, "busybox"));
    let refs = futures_util::future::join_all(calls).await;
    let refs: Vec<String> = refs.into_iter().map(|r| r.expect("image")).collect();
    assert!(refs.iter().all(|r| r == &refs[0]), "{refs:?}");
    assert!(refs[0].starts_with("hdev-box/busybox:"), "{}", refs[0]);
    assert_eq!(store.list().expect("list").len(), 1, "built once");

    let b = store.list().expect("list").remove(0);
    let img = docker.inspect_image(&refs[0]).await.expect("inspect");
    let labels = img.config.and_then(|c| c.labels).expect("labels");
    assert_eq!(labels.get("hdev.box").map(String::as_str), Some("busybox"));
    assert_eq!(labels.get("hdev.box.digest"), Some(&b.digest.to_string()));
    let created = img.created.clone();

    // Again: reused, not imported again.
    let again = hdev::boxes::docker_image_in(&store, &docker, &env, "busybox")
        .await
        .expect("image");
    assert_eq!(again, refs[0]);
    let img = docker.inspect_image(&again).await.expect("inspect");
    assert_eq!(img.created, created);

    // A box that is not declared is named in the error.
    let err = hdev::boxes::docker_image_in(&store, &docker, &env, "nope")
        .await
        .expect_err("unknown box");
    assert!(err.to_string().contains("no box `nope`"), "{err}");

    docker
        .remove_image(
            &refs[0],
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .expect("remove the test's image");
}

/// An environment with a tiny box for libvirt: a small qcow2, a "kernel" and an "initrd".
#[cfg(feature = "libvirt")]
fn tiny_vm_env(dir: &Path) -> hdev::envfile::Env {
    let recipe = dir.join("tiny");
    std::fs::create_dir_all(&recipe).expect("mkdir");
    std::fs::write(
        recipe.join("box.toml"),
        "name = \"tiny\"\nversion = \"1\"\nscript = \"build.sh\"\nboot = \"kernel\"\n\n\
         [artifacts]\nlibvirt-disk = \"disk.qcow2\"\nlibvirt-kernel = \"vmlinuz\"\n\
         libvirt-initrd = \"initrd.img\"\n",
    )
    .expect("box.toml");
    std::fs::write(
        recipe.join("build.sh"),
        format!(
            "set -eu\nqemu-img create -q -f qcow2 \"$1/disk.qcow2\" 16M\n\
             echo kernel-{n} > \"$1/vmlinuz\"\necho initrd-{n} > \"$1/initrd.img\"\n",
            n = std::process::id()
        ),
    )
    .expect("build.sh");
    let envfile = dir.join("Envfile");
    std::fs::write(
        &envfile,
        "[env]\nname = \"vmbox\"\n\n[box.tiny]\nrecipe = \"tiny\"\n",
    )
    .expect("write Envfile");
    hdev::envfile::load(&envfile).expect("valid Envfile")
}

#[cfg(feature = "libvirt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn libvirt_base_volumes_are_uploaded_once() {
    const URI: &str = "qemu:///system";
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if virt::connect::Connect::open(Some(URI)).is_err() {
        assert!(
            !ci,
            "libvirt is not reachable at {URI}, and CI=true: run .ci/setup"
        );
        eprintln!("note: libvirt is not reachable; skipping this test outside CI");
        return;
    }
    let w = World::new();
    let env = tiny_vm_env(w.work.path());
    let store = hdev::boxes::Store::at(w.home.path().to_path_buf());

    let calls = (0..5).map(|_| hdev::boxes::libvirt::libvirt_base_in(&store, URI, &env, "tiny"));
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
    let marker_dir = w.home.path().join("imports/libvirt");
    for m in walk(&marker_dir) {
        std::fs::remove_file(m).expect("remove marker");
    }
    std::fs::write(&v.disk, b"half").expect("damage");
    let again = hdev::boxes::libvirt::libvirt_base_in(&store, URI, &env, "tiny")
        .await
        .expect("again");
    same(&again.disk, "libvirt-disk");

    let removed = hdev::boxes::libvirt::remove_volumes(&store, URI, &b).expect("remove");
    assert_eq!(removed, 3);
    assert!(!v.disk.exists());
}

#[cfg(feature = "libvirt")]
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
