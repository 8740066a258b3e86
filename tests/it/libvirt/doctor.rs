//! `hdev doctor` against the real daemons: an unreachable Docker engine or libvirtd is a
//! failure, CI or not (the rest of this tier needs them too).

use crate::support::{require_docker, require_libvirt, TestEnv};

#[test]
fn doctor_reaches_docker_and_libvirt_and_names_the_acceleration() {
    require_docker();
    require_libvirt();
    let out = TestEnv::build()
        .create()
        .cmd()
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    let checks = v["checks"].as_array().expect("checks");
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).expect(n).clone();
    for daemon in ["docker", "libvirt"] {
        let c = by_name(daemon);
        assert!(
            c["ok"] == true,
            "{daemon} must be reachable: {}",
            c["detail"]
        );
    }
    // The domain type follows from the probe: KVM only with /dev/kvm and a vmx/svm flag.
    let kvm = v["kvm"]["dev_kvm"] == true && v["kvm"]["cpu_virt_flag"] == true;
    assert_eq!(v["domain_type"], if kvm { "kvm" } else { "qemu" });
    let accel = by_name("acceleration");
    assert!(accel["detail"]
        .as_str()
        .unwrap()
        .contains(if kvm { "KVM" } else { "emulation" }));
    assert_eq!(out.status.success(), v["ok"] == true);
}
