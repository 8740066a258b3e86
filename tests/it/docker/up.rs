//! The Docker backend end to end, on the real engine: bringing environments up.

use std::time::Instant;

use crate::support::{machine, machines, require_docker, subnet, TestEnv};

#[test]
fn a_dependency_chain_with_a_health_check_comes_up_in_order() {
    require_docker();
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
    require_docker();
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
    require_docker();
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

/// #17: the waits of an `up` say how they go, in plain lines, without flooding: the build
/// of its box on a line of its own (naming its log), then a health check that takes a few
/// seconds, said at most every few seconds.
#[test]
fn an_up_says_how_its_box_build_and_health_wait_go_in_plain_lines() {
    require_docker();
    // A store of its own: the busybox box is built by this `up`.
    let env = TestEnv::build()
        .own_home()
        .machines(
            "waits",
            r#"
[machine.slow]
backend = "docker"
box = "busybox"
command = "sh -c 'sleep 4; touch /tmp/ready; exec sleep 3600'"

[machine.slow.healthcheck]
command = "test -f /tmp/ready"
interval = "100ms"
retries = 200
"#,
        )
        .create();
    let up = env.run(&["up"]);
    // A store of its own is not destroyed on drop.
    let down = env.run(&["destroy", "-y"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!(down.code, 0, "{down}");
    let lines: Vec<&str> = up.stderr.lines().collect();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has("box busybox : building (log: "), "{up}");
    assert!(has("build-busybox.log)"), "{up}");
    assert!(has("box busybox ✓ ready"), "{up}");
    assert!(has("slow : health check 1/200: test -f /tmp/ready"), "{up}");
    // About 4 s of waiting, 40 attempts: a line after 2 s, then at most one every 3 s.
    let waits = lines
        .iter()
        .filter(|l| l.contains("slow : waiting for health (attempt "))
        .count();
    assert!((1..=2).contains(&waits), "{waits} lines: {up}");
    assert!(
        lines.iter().all(|l| l.starts_with('[')),
        "timed lines: {up}"
    );
}

#[test]
fn machines_on_ready_boxes_come_up_while_another_box_builds() {
    require_docker();
    let env = TestEnv::build()
        .machines(
            "pipeline",
            r#"
[box.slow]
recipe = "boxes/slow"

[machine.fast]
backend = "docker"
box = "busybox"
command = "sleep 3600"

[machine.late]
backend = "docker"
box = "slow"
command = "sleep 3600"
depends_on = ["fast"]
"#,
        )
        .create();
    // The busybox box in the store; `slow`, a busybox recipe of its own (a digest no
    // store has: a nonce) whose build takes 8 s more.
    let busybox = crate::support::repo().join("boxes/busybox");
    env.ok(&["box", "build", &busybox.display().to_string()]);
    let toml = std::fs::read_to_string(busybox.join("box.toml")).expect("box.toml");
    env.write(
        "boxes/slow/box.toml",
        &toml.replace("name = \"busybox\"", "name = \"slow\""),
    );
    let script = std::fs::read_to_string(busybox.join("build.sh")).expect("build.sh");
    env.write(
        "boxes/slow/build.sh",
        &script.replacen("set -eu\n", "set -eu\nsleep 8\n", 1),
    );
    let _ = std::fs::set_permissions(
        env.path().join("boxes/slow/build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    let nonce = format!("{} {:?}", std::process::id(), std::time::SystemTime::now());
    env.write("boxes/slow/nonce", &nonce);

    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let all = format!("{}{}", up.stdout, up.stderr);
    assert!(all.contains("box `slow` is being built"), "{up}");
    let at = |s: &str| {
        up.stderr
            .lines()
            .position(|l| l.contains(s))
            .unwrap_or_else(|| panic!("no line with {s:?}: {up}"))
    };
    // The machine on the ready box is up before the other box is built.
    assert!(at("fast ✓") < at("box slow ✓ ready"), "{up}");
    assert!(at("box slow ✓ ready") < at("late ✓"), "{up}");
    let st = env.status();
    assert_eq!(machine(&st, "fast")["state"], "running", "{st}");
    assert_eq!(machine(&st, "late")["state"], "running", "{st}");
    // Its hash and the environment's count the built box: nothing left to do.
    let again = env.run(&["up"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(
        format!("{}{}", again.stdout, again.stderr).contains("nothing to do"),
        "{again}"
    );
}
