//! The daemons: tests that need one say so first (`require_docker()`, `require_libvirt()`)
//! and fail with what to do when it is missing, with or without CI; none skips. Then what
//! the tests read back from Docker and libvirt.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder,
};

/// The libvirt connection every test uses.
pub(crate) const LIBVIRT_URI: &str = "qemu:///system";

const FAST_TIER: &str =
    "or run only the fast tier: cargo test --lib (and the tests that need no daemon: \
     cargo test --test it offline::)";

/// Fails the test, saying what to do, when the Docker engine is not reachable.
pub(crate) fn require_docker() {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = REACHABLE.get_or_init(|| {
        if !Path::new("/var/run/docker.sock").exists() {
            return Err("no /var/run/docker.sock".into());
        }
        // On a thread of its own: the caller may be a test inside a Tokio runtime.
        std::thread::spawn(|| {
            rt().block_on(async {
                let d =
                    bollard::Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
                d.negotiate_version().await.map_err(|e| e.to_string())?;
                Ok(())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the check panicked".into()))
    });
    if let Err(why) = r {
        panic!("Docker is not reachable ({why}): start it (bash .ci/setup) {FAST_TIER}");
    }
}

/// Fails the test, saying what to do, when libvirtd is not reachable at [`LIBVIRT_URI`].
pub(crate) fn require_libvirt() {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = REACHABLE.get_or_init(|| {
        if !Path::new("/var/run/libvirt/libvirt-sock").exists() {
            return Err("no /var/run/libvirt/libvirt-sock".into());
        }
        match Command::new("virsh")
            .args(["-c", LIBVIRT_URI, "version"])
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Err(format!("virsh: {e}")),
        }
    });
    if let Err(why) = r {
        panic!(
            "libvirtd is not reachable at {LIBVIRT_URI} ({why}): start it (bash .ci/setup) \
             {FAST_TIER}"
        );
    }
}

/// Held by a test while it boots VMs: one such test at a time. VMs run under software
/// emulation on few cores; two VM tests at once (each test binary used to run alone)
/// starve each other's guests past hdev's SSH deadline.
pub(crate) struct VmSlot(());

static VM_SLOT: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// Waits until no other test of this run boots VMs; the slot is free again on drop.
pub(crate) fn one_vm_test_at_a_time() -> VmSlot {
    let (busy, freed) = &VM_SLOT;
    let mut b = busy.lock().unwrap_or_else(|e| e.into_inner());
    while *b {
        b = freed.wait(b).unwrap_or_else(|e| e.into_inner());
    }
    *b = true;
    VmSlot(())
}

impl Drop for VmSlot {
    fn drop(&mut self) {
        let (busy, freed) = &VM_SLOT;
        *busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        freed.notify_one();
    }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The Docker engine, connected (call [`require_docker`] first).
pub(crate) async fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("docker version")
}

/// Counts of containers, networks and volumes in Docker labelled for `instance`.
pub(crate) fn labelled_counts(instance: &str) -> (usize, usize, usize) {
    rt().block_on(async {
        let d = docker().await;
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

/// The Docker image the busybox box was imported as (after some `up` built it).
pub(crate) fn busybox_image() -> String {
    rt().block_on(async {
        let d = docker().await;
        let filters = HashMap::from([("label", vec!["hdev.box=busybox"])]);
        let images = d
            .list_images(Some(
                ListImagesOptionsBuilder::default()
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

/// Snapshot images in Docker of an environment instance.
pub(crate) fn snapshot_images(instance: &str) -> usize {
    rt().block_on(async {
        let d = docker().await;
        let filters = HashMap::from([(
            "label",
            vec![format!("hdev.env={instance}"), "hdev.snapshot".to_string()],
        )]);
        d.list_images(Some(
            ListImagesOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .len()
    })
}

/// The libvirt domains (any state) of an environment instance.
pub(crate) fn libvirt_domains(instance: &str) -> Vec<String> {
    virsh_names(instance, &["list", "--all", "--name"])
}

/// The volumes of an environment instance in the `hdev` pool.
pub(crate) fn libvirt_volumes(instance: &str) -> Vec<String> {
    let prefix = format!("hdev-{instance}-");
    let mut out: Vec<String> = std::fs::read_dir("/var/lib/libvirt/images/hdev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Volumes, domains (`domain NAME`) and networks (`network NAME`) in libvirt named
/// after an environment instance.
pub(crate) fn libvirt_leftovers(instance: &str) -> Vec<String> {
    let mut out = libvirt_volumes(instance);
    out.extend(
        libvirt_domains(instance)
            .into_iter()
            .map(|d| format!("domain {d}")),
    );
    out.extend(
        virsh_names(instance, &["net-list", "--all", "--name"])
            .into_iter()
            .map(|n| format!("network {n}")),
    );
    out.sort();
    out
}

/// The names `virsh ARGS` lists that belong to an environment instance.
fn virsh_names(instance: &str, args: &[&str]) -> Vec<String> {
    let prefix = format!("hdev-{instance}-");
    let o = Command::new("virsh")
        .args(["-c", LIBVIRT_URI])
        .args(args)
        .output()
        .expect("virsh");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Builds the debian box into the test store. It takes minutes on a fresh machine, so it
/// gets a bound of its own and `up` is measured on its own.
pub(crate) fn build_debian_box(env: &crate::support::TestEnv, recipe: &Path) {
    let build = env
        .cmd()
        .args(["box", "build"])
        .arg(recipe)
        .timeout(std::time::Duration::from_secs(1500))
        .output()
        .expect("box build");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
}
