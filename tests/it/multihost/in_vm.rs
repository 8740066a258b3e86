//! A host that is one of the environment's own VMs: a container placed with
//! `host = "VM"` runs in the Docker engine inside that VM (the debian-docker box), reached
//! over SSH. It is provisioned, checked, drifts and resets like any container; it stops
//! and starts with its VM; the VM's baseline holds it; destroy leaves nothing.

use crate::support::engines::{libvirt_leftovers, one_vm_test_at_a_time};
use crate::support::{machine, repo, require_docker, require_libvirt, subnet, TestEnv};

#[test]
fn a_container_runs_inside_a_vm_of_the_environment() {
    require_docker();
    require_libvirt();
    let _slot = one_vm_test_at_a_time();
    let lan = subnet();
    let env = TestEnv::build()
        .machines(
            "invm",
            &format!(
                r#"
[box.dockerhost]
recipe = "{recipe}"

[network.lan]
subnet = "{lan}"

[machine.accel]
backend = "libvirt"
box = "dockerhost"
memory = "768M"
networks = ["lan"]

[machine.worker]
backend = "docker"
box = "busybox"
host = "accel"
provision = [{{ shell = "mkdir -p /srv && echo provisioned > /srv/mark" }}]

[[test]]
name = "the container in the VM was provisioned"
machine = "worker"
run = "grep -q provisioned /srv/mark"

[[test]]
name = "the VM's engine runs the container"
machine = "accel"
run = "docker ps --format '{{{{.Names}}}}' | grep -q worker"
"#,
                recipe = repo().join("boxes/debian-docker").display()
            ),
        )
        .no_timeout()
        .create();
    let plan = env.ok(&["plan"]);
    assert!(plan.contains("create"), "{plan}");
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");

    let status = env.status();
    let worker = machine(&status, "worker");
    assert_eq!(worker["host"], "accel", "{status}");
    assert_eq!(worker["state"], "running", "{status}");
    assert_eq!(worker["baseline"], true, "{status}");
    assert_eq!(machine(&status, "accel")["baseline"], true, "{status}");
    // The container is in the VM's engine, not this machine's.
    let instance = env.instance();
    let here = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=hdev.env={instance}"),
        ])
        .args(["--format", "{{.Names}}"])
        .output()
        .expect("docker CLI");
    let here = String::from_utf8_lossy(&here.stdout);
    assert!(
        !here.contains("worker"),
        "worker runs on this machine: {here}"
    );

    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "{t}");
    assert!(t.stdout.contains("2 passed"), "{t}");

    // Drift in the container, found through the VM's engine; reset of that one machine.
    env.ok(&["exec", "worker", "--", "sh", "-c", "echo x > /srv/drifted"]);
    let d = env.run(&["drift"]);
    assert_ne!(d.code, 0, "drift must be found: {d}");
    assert!(d.stdout.contains("drifted"), "{d}");
    let r = env.run(&["reset", "worker"]);
    assert_eq!(r.code, 0, "{r}");
    let d = env.run(&["drift"]);
    assert_eq!(d.code, 0, "no drift after reset: {d}");

    // Halted with its VM: status says so without reaching the engine in it; up starts
    // both and finds the container there (no second one is made).
    let h = env.run(&["halt"]);
    assert_eq!(h.code, 0, "{h}");
    let status = env.status();
    assert_eq!(machine(&status, "worker")["state"], "stopped", "{status}");
    let plan = env.ok(&["plan"]);
    assert!(plan.contains("later"), "{plan}");
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let status = env.status();
    assert_eq!(machine(&status, "worker")["state"], "running", "{status}");
    let again = env.ok(&["plan"]);
    assert!(again.contains("nothing to do"), "{again}");

    // The whole environment back to its baseline: the VM from its memory (with the
    // container in it), then the container; the engine in the VM is reached again.
    env.ok(&["exec", "worker", "--", "sh", "-c", "echo y > /srv/drifted"]);
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let d = env.run(&["drift"]);
    assert_eq!(d.code, 0, "no drift after reset: {d}");
    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "after reset: {t}");

    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
    let left = libvirt_leftovers(&instance);
    assert!(left.is_empty(), "left behind: {left:?}");
    let status = env.status();
    assert_eq!(
        machine(&status, "worker")["state"],
        "not created",
        "{status}"
    );
}
