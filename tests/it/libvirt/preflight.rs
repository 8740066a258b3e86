//! Interrupting and mistakes that pass `validate` (they depend on this machine or on a box) and used to
//! fail during `up` after networks and machines existed (issue 16, case 8): `up` now
//! stops on them before it creates anything.

use std::time::{Duration, Instant};

use crate::support::engines::{
    build_debian_box, labelled_counts, libvirt_domains, libvirt_leftovers, one_vm_test_at_a_time,
};
use crate::support::{repo, require_docker, require_libvirt, subnet, TestEnv};

#[test]
fn up_refuses_too_many_cpus_a_vm_without_a_disk_or_a_network_before_creating_anything() {
    require_docker();
    require_libvirt();
    let lan = subnet();
    // More CPUs than this machine has: the Envfile is valid (it may be meant for a
    // larger machine), and `up` here says where the number is.
    let env = TestEnv::new(
        "cpus",
        &format!(
            r#"
[network.lan]
subnet = "{lan}"

[machine.db]
backend = "docker"
box = "busybox"
networks = ["lan"]

[machine.web]
backend = "docker"
box = "busybox"
cpus = 100000
networks = ["lan"]
"#
        ),
    );
    assert_eq!(env.run(&["validate"]).code, 0);
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(
        up.stderr
            .contains("machine `web` asks for 100000 CPUs; this machine has"),
        "{up}"
    );
    assert!(up.stderr.contains("[Envfile:20:8]"), "{up}");
    assert_eq!(labelled_counts(&env.instance()), (0, 0, 0), "{up}");

    // A VM on a box that has no disk for libvirt (busybox is a root file system only).
    let env = TestEnv::new(
        "nodisk",
        &format!(
            r#"
[network.lan]
subnet = "{}"

[machine.db]
backend = "docker"
box = "busybox"
networks = ["lan"]

[machine.vm]
backend = "libvirt"
box = "busybox"
networks = ["lan"]
"#,
            subnet()
        ),
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(up.stderr.contains("nothing was created"), "{up}");
    assert!(up.stderr.contains("machine `vm`"), "{up}");
    let instance = env.instance();
    assert_eq!(labelled_counts(&instance), (0, 0, 0), "{up}");
    assert!(libvirt_leftovers(&instance).is_empty());

    // A VM on no network: hdev could never reach it; said at its `backend`.
    let env = TestEnv::new(
        "nonet",
        "\n[machine.db]\nbackend = \"docker\"\nbox = \"busybox\"\n\n[machine.vm]\nbackend = \"libvirt\"\nbox = \"busybox\"\n",
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(up.stderr.contains("VM `vm` is on no network"), "{up}");
    assert!(up.stderr.contains("[Envfile:14:11]"), "{up}");
    let instance = env.instance();
    assert_eq!(labelled_counts(&instance), (0, 0, 0), "{up}");
    assert!(libvirt_leftovers(&instance).is_empty());
}

#[test]
fn ctrl_c_while_a_vm_boots_acts_at_once_and_a_killed_step_stops_in_the_guest() {
    require_docker();
    require_libvirt();
    let _slot = one_vm_test_at_a_time();
    let env = TestEnv::new(
        "bootint",
        &format!(
            r#"
[box.debian]
recipe = "{}"

[network.lan]
subnet = "{lan}"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["lan"]
provision = [{{ shell = "[ -f /root/once ] || {{ touch /root/once; sleep 299; }}; echo done > /root/done" }}]
"#,
            repo().join("boxes/debian-bookworm").display(),
            lan = subnet()
        ),
    );
    // The box first (minutes on a fresh machine), so that the interrupt lands in the boot.
    build_debian_box(&env, &repo().join("boxes/debian-bookworm"));
    let mut child = env
        .std_cmd()
        .arg("up")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn up");
    // Bounded: the VM's domain is defined and running, then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(300);
    while libvirt_domains(&env.instance()).is_empty() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            panic!(
                "up ended ({status}) before the VM was defined: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the VM was never defined");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    // SAFETY: sends SIGINT to the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("wait up");
    let waited = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    // It used to wait the boot out (88 s).
    assert!(waited < Duration::from_secs(10), "took {waited:?}: {err}");
    // Killed (-9) during provisioning: the step stops in the guest too, instead of
    // running on beside the one the next `up` starts (issue 16, case 5).
    let mut child = env
        .std_cmd()
        .arg("up")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn up");
    let deadline = Instant::now() + Duration::from_secs(300);
    while env
        .run(&["exec", "vm", "--", "test", "-f", "/root/once"])
        .code
        != 0
    {
        assert!(Instant::now() < deadline, "provisioning never began");
        std::thread::sleep(Duration::from_millis(500));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let count = "pgrep -a -x sleep | grep -c 299 || true";
    loop {
        let left = env.run(&["exec", "vm", "--", "sh", "-c", count]);
        if left.stdout.trim() == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the step still runs in the guest: {left}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!(
        env.ok(&["exec", "vm", "--", "cat", "/root/done"]).trim(),
        "done"
    );
    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
}
