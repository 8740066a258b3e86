//! Mistakes that pass `validate` (they depend on this machine or on a box) and used to
//! fail during `up` after networks and machines existed (issue 16, case 8): `up` now
//! stops on them before it creates anything.

use crate::support::engines::{labelled_counts, libvirt_leftovers};
use crate::support::{require_docker, require_libvirt, subnet, TestEnv};

#[test]
fn up_refuses_too_many_cpus_and_a_vm_without_a_disk_before_creating_anything() {
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
}
