//! Several hosts on the rig of `.ci/rig`: three Docker engines in network namespaces of
//! this machine, each its own "host". The environments here place machines on them with a
//! hosts file and let hdev form the swarm; networks across them are overlays.

mod containers;
mod in_vm;
mod vm;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::repo;

/// Where `.ci/rig up` puts the engines' sockets.
pub(crate) const RIG: &str = "/run/hdev-rig";

/// The socket of rig engine `n` (1 to 3) as a Docker endpoint.
pub(crate) fn node(n: u8) -> String {
    format!("unix://{RIG}/node{n}.sock")
}

/// A hosts file placing hosts `n1`..`n3` on the rig's engines, hdev forming the swarm.
pub(crate) fn hosts_file() -> String {
    let mut s = String::from("swarm = \"create\"\n");
    for n in 1..=3 {
        s.push_str(&format!(
            "\n[host.n{n}]\ndocker = \"{}\"\nlabels = {{ rack = \"r{n}\" }}\n",
            node(n)
        ));
    }
    s
}

/// `docker -H` against rig engine `n`.
pub(crate) fn docker(n: u8, args: &[&str]) -> String {
    let out = Command::new("docker")
        .arg("-H")
        .arg(node(n))
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker -H node{n} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What rig engine `n` holds for an instance: containers, networks, images (by label).
pub(crate) fn leftovers(n: u8, instance: &str) -> Vec<String> {
    let filter = format!("label=hdev.env={instance}");
    let mut out = Vec::new();
    for what in ["ps -a", "network ls", "images", "volume ls"] {
        let mut args: Vec<&str> = what.split(' ').collect();
        args.extend(["-q", "--filter", &filter]);
        out.extend(
            docker(n, &args)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| format!("node{n} {what}: {l}")),
        );
    }
    out
}

/// What the three rig engines hold for an instance after its destroy. A swarm worker
/// takes an overlay network off its engine on its own, shortly after the last container
/// on it went (Docker's doing, not hdev's): while only such networks remain on workers,
/// they are looked at again, at most 20 times 500 ms apart.
pub(crate) fn leftovers_after_destroy(instance: &str) -> Vec<String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let left: Vec<String> = (1..=3).flat_map(|n| leftovers(n, instance)).collect();
        let worker_networks_only = left
            .iter()
            .all(|l| !l.starts_with("node1 ") && l.contains(" network ls: "));
        if left.is_empty() || !worker_networks_only || attempt >= 20 {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Fails the test, saying what to do, when the rig is not up. As root, starts it once
/// (`bash .ci/rig up`) when it is not.
pub(crate) fn require_rig() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let r = UP.get_or_init(|| {
        let status = |_: ()| {
            Command::new("bash")
                .arg(repo().join(".ci/rig"))
                .args(["status", RIG])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if status(()) {
            return Ok(());
        }
        if !Path::new("/proc/self").exists() || uid() != 0 {
            return Err("the rig is not up and only root can start it".into());
        }
        let out = Command::new("bash")
            .arg(repo().join(".ci/rig"))
            .args(["up", RIG])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() && status(()) {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    });
    if let Err(why) = r {
        panic!("the several-host rig is not reachable ({why}): start it with `sudo bash .ci/rig up` (bash .ci/setup does)");
    }
}

/// This process's user id, from /proc (no libc call needed).
fn uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}
