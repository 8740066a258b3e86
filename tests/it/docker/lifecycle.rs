//! The Docker backend on the real engine: failures, interruptions and teardown.

use std::time::{Duration, Instant};

use crate::support::engines::labelled_counts;
use crate::support::{machine, machines, require_docker, subnet, TestEnv};

#[test]
fn destroy_leaves_nothing_labelled_for_the_environment() {
    require_docker();
    let env = TestEnv::new(
        "destroy",
        &format!(
            r#"
[network.lan]
subnet = "{}"

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
ports = ["80"]
command = "httpd -f -p 80"

[machine.loose]
backend = "docker"
box = "busybox"
"#,
            subnet()
        ),
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let instance = env.instance();
    let (c, n, _) = labelled_counts(&instance);
    assert_eq!(
        (c, n),
        (2, 2),
        "two containers, the lan and the default network"
    );
    let st = env.status();
    let port = machine(&st, "web")["ports"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(port.contains("->80/tcp"), "{st}");
    // A port without a host address is published on loopback only (issue 16, case 13):
    // nothing on the network reaches a developer's service unless the Envfile says so.
    assert!(port.starts_with("127.0.0.1:"), "{port}");

    let d = env.run(&["destroy", "-y"]);
    assert_eq!(d.code, 0, "{d}");
    assert_eq!(labelled_counts(&instance), (0, 0, 0));
    let st = env.status();
    for m in machines(&st) {
        assert_eq!(m["state"], "not created", "{m}");
    }
    // Destroying again is fine and finds nothing.
    let d = env.run(&["destroy", "-y"]);
    assert!(d.stdout.contains("0 container(s)"), "{d}");
}

#[test]
fn a_failing_provision_step_names_machine_and_step_and_keeps_the_machine() {
    require_docker();
    let env = TestEnv::new(
        "fail",
        r#"
[machine.bad]
backend = "docker"
box = "busybox"

[[machine.bad.provision]]
shell = "echo first step fine"

[[machine.bad.provision]]
name = "break things"
shell = "echo about to fail >&2; exit 3"

[machine.after]
backend = "docker"
box = "busybox"
depends_on = ["bad"]

[machine.free]
backend = "docker"
box = "busybox"
"#,
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(
        up.stderr
            .contains("machine `bad`: provisioning step 2 break things")
            && up.stderr.contains("exit code 3")
            && up.stderr.contains("about to fail"),
        "{up}"
    );
    assert!(
        up.stderr
            .contains("machine `after` skipped: it depends on `bad`"),
        "{up}"
    );
    let st = env.status();
    let bad = machine(&st, "bad");
    assert_eq!(
        (bad["state"].as_str(), bad["provisioned"].as_bool()),
        (Some("running"), Some(false)),
        "{st}"
    );
    assert_eq!(machine(&st, "after")["state"], "not created");
    assert_eq!(machine(&st, "free")["state"], "running");
    let r = env.run(&["exec", "bad", "--", "true"]);
    assert_eq!(r.code, 0, "the failed machine is there to inspect: {r}");
    // The next `up` tries to finish it, and says the same.
    let again = env.run(&["plan"]);
    assert!(
        again.stdout.contains("finish") && again.stdout.contains("bad"),
        "{again}"
    );
}

#[test]
fn ctrl_c_during_up_leaves_a_true_state_that_the_next_up_finishes() {
    require_docker();
    let env = TestEnv::new(
        "sigint",
        r#"
[machine.slow]
backend = "docker"
box = "busybox"

[[machine.slow.provision]]
shell = "if [ ! -f /tmp/once ]; then touch /tmp/once; sleep 60; fi; echo finished"
"#,
    );
    let child = env
        .std_cmd()
        .arg("up")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn up");
    // Wait (bounded) until the machine exists, then interrupt the provisioning.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = env.status();
        if machine(&st, "slow")["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "machine never started: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // ... and provisioning is in its long step.
    while env
        .run(&["exec", "slow", "--", "test", "-f", "/tmp/once"])
        .code
        != 0
    {
        assert!(Instant::now() < deadline, "provisioning never began");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: sends SIGINT to the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("wait up");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = env.status();
    let slow = machine(&st, "slow");
    assert_eq!(slow["provisioned"], false, "{st}");
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(
        up.stderr.contains("finish") && up.stderr.contains("finished"),
        "{up}"
    );
    assert_eq!(machine(&env.status(), "slow")["provisioned"], true);
}

#[test]
fn gc_removes_what_an_environment_with_a_deleted_folder_left_behind() {
    require_docker();
    let env = TestEnv::new("gc", "");
    // The environment lives in a subfolder that the test deletes after `up`.
    let sub = env.path().join("project");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::rename(env.path().join("Envfile"), sub.join("Envfile")).expect("move Envfile");
    let text = std::fs::read_to_string(sub.join("Envfile")).expect("read");
    std::fs::write(
        sub.join("Envfile"),
        format!("{text}\n[machine.left]\nbackend = \"docker\"\nbox = \"busybox\"\n"),
    )
    .expect("write");
    let up = env.run(&["-f", "project/Envfile", "up"]);
    assert_eq!(up.code, 0, "{up}");
    let st = env.run(&["-f", "project/Envfile", "status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).expect("status json");
    let instance = st["instance"].as_str().expect("instance").to_string();
    assert_eq!(labelled_counts(&instance).0, 1);

    std::fs::remove_dir_all(&sub).expect("delete the environment's folder");
    let dry = env.run(&["gc", "--dry-run"]);
    assert!(
        dry.stdout.contains(&format!("would remove `{instance}`")),
        "{dry}"
    );
    assert_eq!(labelled_counts(&instance).0, 1, "a dry run removes nothing");
    let gc = env.run(&["gc"]);
    // Other environments on this engine may be dead too, and one of them may resist (an
    // engine holding a stale endpoint); gc goes on, says so, and exits 1. This one goes.
    assert!(
        gc.code == 0 || (gc.code == 1 && !gc.stderr.contains(&instance)),
        "{gc}"
    );
    assert!(gc.stdout.contains(&format!("removed `{instance}`")), "{gc}");
    assert_eq!(labelled_counts(&instance), (0, 0, 0));
}

#[test]
fn an_unhealthy_machine_holds_back_its_dependants_until_it_passes() {
    require_docker();
    let env = TestEnv::new(
        "health",
        r#"
[machine.svc]
backend = "docker"
box = "busybox"

[machine.svc.healthcheck]
command = "test -f /tmp/ready"
interval = "50ms"
timeout = "2s"
retries = 3

[machine.client]
backend = "docker"
box = "busybox"
depends_on = ["svc"]
"#,
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(
        up.stderr.contains(
            "machine `svc`: health check `test -f /tmp/ready` did not pass after 3 tries"
        ),
        "{up}"
    );
    assert!(up.stderr.contains("machine `client` skipped"), "{up}");
    assert_eq!(machine(&env.status(), "client")["state"], "not created");
    // What the check found is kept: status says so, in words and in JSON, and so does
    // the picture.
    assert_eq!(machine(&env.status(), "svc")["health"], "failed");
    let text = env.ok(&["status"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("svc") && l.contains("unhealthy")),
        "{text}"
    );
    let g = env.json(&["graph", "--format", "json"]);
    assert!(g.to_string().contains("unhealthy"), "{g}");
    // Once the check passes, the next `up` checks the kept machine again and goes on.
    let r = env.run(&["exec", "svc", "--", "touch", "/tmp/ready"]);
    assert_eq!(r.code, 0, "{r}");
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert!(
        up.stderr.contains("health check 1/3: test -f /tmp/ready"),
        "{up}"
    );
    assert_eq!(machine(&env.status(), "client")["state"], "running");
    assert_eq!(machine(&env.status(), "svc")["health"], "passed");
}

#[test]
fn a_subnet_another_environment_holds_is_refused_naming_that_environment() {
    require_docker();
    let lan = subnet();
    let body = format!(
        "\n[network.lan]\nsubnet = \"{lan}\"\n\n[machine.web]\nbackend = \"docker\"\nbox = \"busybox\"\nnetworks = [\"lan\"]\n"
    );
    let first = TestEnv::new("holder", &body);
    let up = first.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let second = TestEnv::new("overlap", &body);
    let up = second.run(&["up"]);
    assert_ne!(up.code, 0, "{up}");
    // Not the engine's bare "Pool overlaps": which environment holds the subnet.
    let holder = format!("of hdev environment `{}`", first.instance());
    assert!(up.stderr.contains(&holder), "{up}");
    assert!(
        up.stderr.contains(&format!("subnet {lan} overlaps")),
        "{up}"
    );
}
