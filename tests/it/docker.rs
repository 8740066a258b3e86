//! The Docker backend end to end, on the real engine.

use std::time::{Duration, Instant};

use crate::support::{docker_or_skip, labelled_counts, subnet, TestEnv};

fn machines(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["machines"].as_array().cloned().unwrap_or_default()
}

fn machine<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["machines"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no machine `{name}` in {status}"))
}

#[test]
fn a_dependency_chain_with_a_health_check_comes_up_in_order() {
    if !docker_or_skip() {
        return;
    }
    let net = subnet();
    let db_ip = net.replace(".0/24", ".10");
    let env = TestEnv::new(
        "chain",
        &format!(
            r#"
[network.lan]
subnet = "{net}"

[machine.db]
backend = "docker"
box = "busybox"
networks = [{{ name = "lan", address = "{db_ip}" }}]
command = "httpd -f -p 80 -h /var/www"
env = {{ ROLE = "database" }}

[[machine.db.provision]]
shell = "sleep 1; mkdir -p /var/www && echo \"$ROLE ready\" > /var/www/health"

[machine.db.healthcheck]
command = "wget -q -O- http://127.0.0.1/health"
interval = "100ms"
retries = 100

[machine.api]
backend = "docker"
box = "busybox"
networks = ["lan"]
depends_on = ["db"]

[[machine.api.provision]]
name = "reach the database"
script = "scripts/api.sh"
args = ["db"]

[[machine.api.provision]]
file = "site"
destination = "/srv/site"

[[machine.api.provision]]
file = "conf.txt"
destination = "/etc/api.conf"

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
depends_on = ["api"]
synced_folders = [{{ host = "site", guest = "/mnt/site", readonly = true }}]

[[machine.web.provision]]
shell = "ping -c 1 -W 2 api > /dev/null && echo web sees api"
"#
        ),
    );
    env.write(
        "scripts/api.sh",
        "#!/bin/sh\nset -e\nwget -q -O- http://$1/health | tee /tmp/db-said\n",
    );
    env.write("site/index.html", "hello site\n");
    env.write("site/sub/deep.txt", "deep\n");
    env.write("conf.txt", "key=value\n");

    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    // api's provisioning read db's health page: db was provisioned and healthy first.
    assert!(
        up.stderr.contains("api") && up.stderr.contains("database ready"),
        "{up}"
    );
    assert!(up.stderr.contains("web sees api"), "{up}");
    let pos = |needle: &str| {
        up.stderr
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not in {up}"))
    };
    assert!(pos("db  ✓") < pos("api : creating"), "{up}");
    assert!(pos("api ✓") < pos("web : creating"), "{up}");

    let st = env.status();
    for m in machines(&st) {
        assert_eq!(m["state"], "running", "{m}");
        assert_eq!(m["provisioned"], true, "{m}");
        assert_eq!(m["definition"], "current", "{m}");
        assert!(m["addresses"]["lan"].is_string(), "{m}");
    }
    let r = env.run(&[
        "exec",
        "api",
        "--",
        "cat",
        "/tmp/db-said",
        "/srv/site/sub/deep.txt",
        "/etc/api.conf",
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout, "database ready\ndeep\nkey=value\n");
    let r = env.run(&["exec", "web", "--", "cat", "/mnt/site/index.html"]);
    assert_eq!(r.stdout, "hello site\n", "{r}");
    let piped = env
        .cmd()
        .args(["exec", "web", "--", "sh", "-c", "tr a-z A-Z"])
        .write_stdin("through stdin\n")
        .output()
        .expect("exec with stdin");
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "THROUGH STDIN\n");
    let r = env.run(&["exec", "web", "--", "sh", "-c", "echo $HOSTNAME; exit 3"]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "web\n"), "{r}");
}

#[test]
fn twenty_replicas_come_up_in_parallel() {
    if !docker_or_skip() {
        return;
    }
    let env = TestEnv::new(
        "replicas",
        r#"
[machine.node]
backend = "docker"
box = "busybox"
count = 20

[[machine.node.provision]]
shell = "hostname > /tmp/me"
"#,
    );
    let t0 = Instant::now();
    let up = env.run(&["up", "--parallel", "8", "--json"]);
    assert_eq!(up.code, 0, "{up}");
    // `--json` is one event per line, ending with the summary.
    let events: Vec<serde_json::Value> = up
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect();
    let done = events.iter().filter(|e| e["event"] == "done").count();
    assert_eq!(done, 20, "{up}");
    // Bounded and parallel: between "creating" and "done" at most 8 machines, but more than 1.
    let (mut now, mut most) = (0i32, 0i32);
    for e in &events {
        if e["message"] == "creating" {
            now += 1;
            most = most.max(now);
        } else if e["event"] == "done" {
            now -= 1;
        }
    }
    assert!((2..=8).contains(&most), "at most {most} machines at once");
    let last = events.last().expect("events");
    assert_eq!(
        (&last["event"], &last["ok"]),
        (&"summary".into(), &true.into())
    );
    let st = env.status();
    let ms = machines(&st);
    assert_eq!(ms.len(), 20, "{st}");
    let mut addrs: Vec<String> = ms
        .iter()
        .map(|m| {
            assert_eq!(m["state"], "running", "{m}");
            m["addresses"]["_default"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(
        addrs.len(),
        20,
        "every replica has its own address: {addrs:?}"
    );
    // Replicas reach each other by name on the environment's default network.
    let r = env.run(&[
        "exec", "node-1", "--", "ping", "-c", "1", "-W", "2", "node-20",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let r = env.run(&["exec", "node-17", "--", "cat", "/tmp/me"]);
    assert_eq!(r.stdout, "node-17\n", "{r}");
    eprintln!("20 replicas up in {:?}", t0.elapsed());
}

#[test]
fn a_second_up_changes_nothing_and_a_changed_machine_alone_is_recreated() {
    if !docker_or_skip() {
        return;
    }
    let env = TestEnv::new(
        "idem",
        &format!(
            r#"
[network.lan]
subnet = "{}"

[machine.a]
backend = "docker"
box = "busybox"
networks = ["lan"]
env = {{ V = "1" }}

[machine.b]
backend = "docker"
box = "busybox"
networks = ["lan"]
"#,
            subnet()
        ),
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let before = env.ids();
    let again = env.run(&["up"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(
        again
            .stderr
            .contains("nothing to do: 2 machines up to date"),
        "{again}"
    );
    assert_eq!(env.ids(), before);

    env.set_envfile(&env.envfile().replace("V = \"1\"", "V = \"2\""));
    let st = env.status();
    assert_eq!(machine(&st, "a")["definition"], "changed");
    assert_eq!(machine(&st, "b")["definition"], "current");
    let plan = env.run(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan json");
    let changes: Vec<(String, String)> = plan["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("a".to_string(), "recreate".to_string()),
            ("b".into(), "keep".into())
        ]
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let after = env.ids();
    assert_ne!(after["a"], before["a"]);
    assert_eq!(after["b"], before["b"]);
    let r = env.run(&["exec", "a", "--", "sh", "-c", "echo $V"]);
    assert_eq!(r.stdout, "2\n", "{r}");
}

#[test]
fn destroy_leaves_nothing_labelled_for_the_environment() {
    if !docker_or_skip() {
        return;
    }
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
    assert!(
        machine(&st, "web")["ports"][0]
            .as_str()
            .unwrap()
            .contains("->80/tcp"),
        "{st}"
    );

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
    if !docker_or_skip() {
        return;
    }
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
fn libvirt_machines_fail_clearly_and_docker_machines_still_come_up() {
    if !docker_or_skip() {
        return;
    }
    let env = TestEnv::new(
        "mixed",
        r#"
[machine.vm]
backend = "libvirt"
box = "busybox"

[machine.needs-vm]
backend = "docker"
box = "busybox"
depends_on = ["vm"]

[machine.ct]
backend = "docker"
box = "busybox"
"#,
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 1, "{up}");
    assert!(
        up.stderr
            .contains("machine `vm`: the libvirt backend is not available in this build"),
        "{up}"
    );
    let st = env.status();
    assert_eq!(machine(&st, "ct")["state"], "running");
    assert_eq!(machine(&st, "vm")["state"], "unavailable");
    assert_eq!(machine(&st, "needs-vm")["state"], "not created");
}

#[test]
fn ctrl_c_during_up_leaves_a_true_state_that_the_next_up_finishes() {
    if !docker_or_skip() {
        return;
    }
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
    std::thread::sleep(Duration::from_millis(500));
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
    if !docker_or_skip() {
        return;
    }
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
    assert_eq!(gc.code, 0, "{gc}");
    assert!(gc.stdout.contains(&format!("removed `{instance}`")), "{gc}");
    assert_eq!(labelled_counts(&instance), (0, 0, 0));
}

#[test]
fn an_unhealthy_machine_holds_back_its_dependants_until_it_passes() {
    if !docker_or_skip() {
        return;
    }
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
}
