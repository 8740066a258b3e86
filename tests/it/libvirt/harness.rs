//! The HARNESS demonstrator end to end, as a developer, CI and a researcher meet it: init
//! from the template, up (nine containers and an accelerator VM provisioned by shell,
//! scripts, a file copy and ansible), the acceptance checks, drift after a deliberate
//! change, reset, the checks again, the same hash across two fresh ups, and destroy
//! leaving nothing in Docker or libvirt.

use std::time::Duration;

use crate::support::engines::{labelled_counts, libvirt_domains, one_vm_test_at_a_time};
use crate::support::{require_docker, require_libvirt, TestEnv};

#[test]
fn the_harness_demonstrator_from_init_to_destroy() {
    require_docker();
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    // A folder of its own, where the test runs `init` itself; each hdev command bounded
    // to 25 minutes (the first up builds the debian box).
    let h = TestEnv::build().timeout(Duration::from_secs(1500)).create();
    let init = h.run(&["init", "--template", "harness"]);
    assert_eq!(init.code, 0, "{init}");
    // A subnet and host ports of this run's own, so that a developer's HARNESS on the same
    // machine (or a parallel run) is left alone.
    let pid = std::process::id();
    let prefix = format!("10.{}.{}", 60 + pid % 60, (pid / 60) % 250);
    let envfile = h.path().join("Envfile");
    let text = std::fs::read_to_string(&envfile)
        .expect("Envfile")
        .replace("10.42.1.", &format!("{prefix}."))
        .replace(
            "10.42.0.",
            &format!("10.{}.{}.", 60 + pid % 60, (pid / 60 + 1) % 250),
        )
        .replace("18080", &(20000 + pid % 20000).to_string())
        .replace("18081", &(40000 + pid % 20000).to_string());
    std::fs::write(&envfile, text).expect("write Envfile");
    assert_eq!(h.run(&["validate"]).code, 0);

    let up = h.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let hash1 = h.run(&["hash"]).stdout;
    let test = h.run(&["test"]);
    assert_eq!(test.code, 0, "{test}");
    assert!(test.stdout.contains("5 passed, 0 failed"), "{test}");

    // `status` answers from the engines alone, with no SSH into the VM (issue #17): an
    // `ssh` first on PATH that records its calls and hands them on shows it, and shows
    // that `status --drift` does go into the VM.
    let shim = h.path().join("shim");
    std::fs::create_dir_all(&shim).expect("shim dir");
    let calls = h.path().join("ssh-calls");
    let ssh = shim.join("ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/bin/ssh \"$@\"\n",
            calls.display()
        ),
    )
    .expect("write shim");
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod shim");
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ssh_calls = || std::fs::read_to_string(&calls).unwrap_or_default();
    let status = h
        .cmd()
        .env("PATH", &path)
        .arg("status")
        .output()
        .expect("status");
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("accel") && text.contains("running"), "{text}");
    assert_eq!(ssh_calls(), "", "status ran ssh");
    let checked = h
        .cmd()
        .env("PATH", &path)
        .args(["status", "--drift"])
        .output()
        .expect("status --drift");
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        !ssh_calls().is_empty(),
        "status --drift checks the VM over ssh"
    );

    // A deliberate change: the scheduler loses its view of the resources, a file appears.
    let change = h.run(&[
        "exec",
        "scheduler",
        "--",
        "sh",
        "-c",
        "rm /var/www/api/resources && echo stray > /var/www/api/stray",
    ]);
    assert_eq!(change.code, 0, "{change}");
    let drift = h.run(&["drift", "--json"]);
    assert_eq!(drift.code, 1, "drift is reported with exit code 1: {drift}");
    assert!(drift.stdout.contains("/var/www/api/stray"), "{drift}");
    assert!(drift.stdout.contains("/var/www/api/resources"), "{drift}");
    let broken = h.run(&["test"]);
    assert_eq!(broken.code, 1, "the checks see the change: {broken}");

    let reset = h.run(&["reset"]);
    assert_eq!(reset.code, 0, "{reset}");
    let clean = h.run(&["drift"]);
    assert_eq!(clean.code, 0, "no drift after reset: {clean}");
    let again = h.run(&["test"]);
    assert_eq!(again.code, 0, "{again}");

    // The same environment hash, and the same machines, after a fresh up.
    let status = h.run(&["status", "--json"]);
    let instance = serde_json::from_str::<serde_json::Value>(&status.stdout).expect("status")
        ["instance"]
        .as_str()
        .expect("instance")
        .to_string();
    let destroy = h.run(&["destroy", "-y"]);
    assert_eq!(destroy.code, 0, "{destroy}");
    assert_eq!(labelled_counts(&instance), (0, 0, 0));
    assert_eq!(libvirt_domains(&instance).len(), 0);
    let up2 = h.run(&["up"]);
    assert_eq!(up2.code, 0, "{up2}");
    assert_eq!(
        h.run(&["hash"]).stdout,
        hash1,
        "the hash is stable across fresh ups"
    );
    let verify = h.run(&["verify", hash1.trim()]);
    assert_eq!(verify.code, 0, "{verify}");

    let destroy = h.run(&["destroy", "-y"]);
    assert_eq!(destroy.code, 0, "{destroy}");
    assert_eq!(
        labelled_counts(&instance),
        (0, 0, 0),
        "nothing left in Docker"
    );
    assert_eq!(
        libvirt_domains(&instance).len(),
        0,
        "nothing left in libvirt"
    );
}
