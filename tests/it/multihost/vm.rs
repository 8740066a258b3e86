//! A real VM on one host of the rig, joined to an overlay network through its anchor
//! container: containers on the two other hosts reach it by name and it reaches them;
//! reset of the whole topology keeps that; destroy leaves nothing on any host.

use super::{hosts_file, leftovers_after_destroy, require_rig};
use crate::support::engines::{libvirt_leftovers, one_vm_test_at_a_time, LIBVIRT_URI};
use crate::support::{machine, repo, require_docker, require_libvirt, subnet, TestEnv};

#[test]
fn a_vm_anchored_on_one_host_meets_containers_on_two_others() {
    require_docker();
    require_libvirt();
    require_rig();
    let _slot = one_vm_test_at_a_time();
    let lan = subnet();
    // Host n1 runs the VM (this machine's libvirt) and its anchor (rig engine 1).
    let hosts = hosts_file().replace(
        "[host.n1]\n",
        &format!("[host.n1]\nlibvirt_uri = \"{LIBVIRT_URI}\"\n"),
    );
    let env = TestEnv::build()
        .machines(
            "mhvm",
            &format!(
                r#"
[box.debian]
recipe = "{debian}"

[host.n1]
[host.n2]
[host.n3]

[network.lan]
subnet = "{lan}"

[machine.accel]
backend = "libvirt"
box = "debian"
host = "n1"
memory = "384M"
networks = ["lan"]
provision = [{{ shell = "echo vm > /root/where" }}]

[machine.store]
backend = "docker"
box = "busybox"
host = "n2"
networks = ["lan"]

[machine.paas]
backend = "docker"
box = "busybox"
host = "n3"
networks = ["lan"]

[[test]]
name = "n2 reaches the VM by name"
machine = "store"
run = "ping -c1 -W3 accel"

[[test]]
name = "the VM reaches n3 by name"
machine = "accel"
run = "ping -c1 -W3 paas"

[[test]]
name = "n3 reaches the VM over TCP"
machine = "paas"
run = "echo | nc -w3 accel 22 | grep -q SSH"
"#,
                debian = repo().join("boxes/debian-bookworm").display()
            ),
        )
        .file("testbed.toml", &hosts)
        .no_timeout()
        .create();
    let up = env.run(&["--hosts", "testbed.toml", "up"]);
    assert_eq!(up.code, 0, "{up}");
    let status = env.status();
    assert_eq!(machine(&status, "accel")["host"], "n1", "{status}");
    assert_eq!(machine(&status, "accel")["state"], "running", "{status}");
    let instance = env.instance();
    // The anchor stands on host n1 with the VM's name; the VM is no container.
    let names = super::docker(1, &["ps", "--format", "{{.Names}} {{.Labels}}"]);
    assert!(names.contains(&format!("{instance}-accel")), "{names}");
    assert!(names.contains("hdev.anchor=accel"), "{names}");

    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "{t}");
    assert!(t.stdout.contains("3 passed"), "{t}");

    // Reset the whole topology: the VM comes back from its memory, on its anchor again.
    env.ok(&["exec", "accel", "--", "sh", "-c", "echo x > /root/drifted"]);
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let status = env.status();
    assert_eq!(machine(&status, "accel")["baseline"], true, "{status}");
    let d = env.run(&["drift"]);
    assert_eq!(d.code, 0, "no drift after reset: {d}");
    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "after reset: {t}");

    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
    let mut left: Vec<String> = leftovers_after_destroy(&instance);
    left.extend(libvirt_leftovers(&instance));
    assert!(left.is_empty(), "left behind: {left:?}");
}
