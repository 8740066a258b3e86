//! Day-to-day commands on a running environment: local images, logs, provision again,
//! halt and up.

use crate::support::engines::busybox_image;
use crate::support::{machine, require_docker, TestEnv};

#[test]
fn local_images_logs_provision_halt_and_up_again() {
    require_docker();
    // Bring one box machine up, so the box is imported and its image can be named.
    let env = TestEnv::new(
        "ops",
        r#"
[machine.boxed]
backend = "docker"
box = "busybox"
command = "sh -c 'echo started; echo oops >&2; trap \"exit 0\" TERM; while :; do sleep 1; done'"

[[machine.boxed.provision]]
shell = "echo run >> /tmp/runs"
"#,
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");

    let logs = env.run(&["logs", "boxed"]);
    assert_eq!(logs.code, 0, "{logs}");
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("started\n", "oops\n")
    );
    let all = env.run(&["logs"]);
    assert!(all.stdout.contains("boxed | started"), "{all}");

    let p = env.run(&["provision", "boxed"]);
    assert_eq!(p.code, 0, "{p}");
    let runs = env.run(&["exec", "boxed", "--", "cat", "/tmp/runs"]);
    assert_eq!(runs.stdout, "run\nrun\n", "provisioning ran again: {runs}");

    let h = env.run(&["halt"]);
    assert_eq!(h.code, 0, "{h}");
    assert_eq!(machine(&env.status(), "boxed")["state"], "stopped");
    let e = env.run(&["exec", "boxed", "--", "true"]);
    assert!(e.code != 0 && e.stderr.contains("is not running"), "{e}");
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(up.stderr.contains("start"), "{up}");
    let st = env.status();
    assert_eq!(machine(&st, "boxed")["state"], "running");
    let runs = env.run(&["exec", "boxed", "--", "cat", "/tmp/runs"]);
    assert_eq!(
        runs.stdout, "run\nrun\n",
        "a restart does not provision again: {runs}"
    );

    // A machine may name a local image instead of a box; a missing one is a clear error.
    let image = busybox_image();
    let local = TestEnv::new(
        "image",
        &format!(
            r#"
[machine.local]
backend = "docker"
image = "{image}"

[machine.missing]
backend = "docker"
image = "hdev-no-such-image:never"
"#
        ),
    );
    let up = local.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(
        up.stderr.contains(
            "image `hdev-no-such-image:never` of machine `missing` is not in the local Docker engine"
        ),
        "{up}"
    );
    // Found before anything is made, so the other machine is not made either.
    assert!(up.stderr.contains("nothing was created"), "{up}");
    let st = local.status();
    assert_eq!(machine(&st, "local")["state"], "not created");
    assert_eq!(machine(&st, "missing")["state"], "not created");
}
