//! Baseline, drift, reset and named snapshots of containers: files changed, added and
//! deleted show up in `drift`; `reset` makes them go without provisioning again (a
//! counter on the host, in a synced folder that no snapshot holds, proves it); a named
//! snapshot comes back after further changes; destroy removes every snapshot image.

use crate::support::engines::snapshot_images;
use crate::support::{machine, require_docker, TestEnv};

fn drift(env: &TestEnv, args: &[&str]) -> (i32, serde_json::Value) {
    let mut a = vec!["drift", "--json"];
    a.extend_from_slice(args);
    let r = env.run(&a);
    let v = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"));
    (r.code, v)
}

fn paths(v: &serde_json::Value, machine: &str, kind: &str) -> Vec<String> {
    v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["machine"] == machine)
        .unwrap_or_else(|| panic!("no `{machine}` in {v}"))[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no `{kind}` for `{machine}` in {v}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn drift_reset_and_named_snapshots_of_containers() {
    require_docker();
    let env = TestEnv::new(
        "snap",
        r#"
[machine.db]
backend = "docker"
box = "busybox"
synced_folders = [{ host = "counter", guest = "/counter" }]
provision = [{ shell = "echo 1 >> /counter/db; echo db > /etc/role; mkdir -p /srv && echo keep > /srv/keep" }]
healthcheck = { command = "test -f /etc/role" }

[machine.web]
backend = "docker"
box = "busybox"
depends_on = ["db"]
synced_folders = [{ host = "counter", guest = "/counter" }]
provision = [{ shell = "echo 1 >> /counter/web; echo web > /etc/role; echo d > /etc/doomed" }]
"#,
    );
    env.write("counter/.keep", "");
    let counter = |m: &str| {
        std::fs::read_to_string(env.path().join("counter").join(m))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!((counter("db"), counter("web")), (1, 1));
    let st = env.status();
    for m in ["db", "web"] {
        assert_eq!(machine(&st, m)["baseline"], true, "{st}");
        assert_eq!(machine(&st, m)["drifted"], false, "{st}");
    }
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "no drift right after up: {v}");

    // Change, add and delete files in one machine.
    let e = env.run(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo changed > /etc/role && echo new > /etc/added && rm /etc/doomed && mkdir -p /opt/x && echo y > /opt/x/y",
    ]);
    assert_eq!(e.code, 0, "{e}");
    // `status` asks no machine: after an exec, the last check no longer holds.
    let st = env.status();
    assert_eq!(
        machine(&st, "web")["drifted"],
        serde_json::Value::Null,
        "{st}"
    );
    assert_eq!(machine(&st, "db")["drifted"], false, "{st}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 1, "drift exits 1: {v}");
    assert_eq!(paths(&v, "web", "changed"), ["/etc/role"]);
    assert_eq!(
        paths(&v, "web", "added"),
        ["/etc/added", "/opt", "/opt/x", "/opt/x/y"]
    );
    assert_eq!(paths(&v, "web", "deleted"), ["/etc/doomed"]);
    assert!(paths(&v, "db", "added").is_empty(), "{v}");
    assert_eq!(v["summary"]["added"], 4);
    let human = env.run(&["drift", "web"]);
    assert_eq!(human.code, 1, "{human}");
    assert!(human.stdout.contains("  ~ /etc/role"), "{human}");
    assert!(
        human
            .stdout
            .contains("1 of 1 machine drifted: 4 added, 1 changed, 1 deleted"),
        "{human}"
    );
    // What `drift` found is what `status` shows, with its age; `status --drift` checks.
    let st = env.status();
    assert_eq!(machine(&st, "web")["drifted"], true, "{st}");
    assert!(machine(&st, "web")["drift_age"].is_u64(), "{st}");
    let fresh = env.run(&["status", "--drift"]);
    assert_eq!(fresh.code, 0, "{fresh}");
    assert!(
        fresh
            .stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" yes ")),
        "{fresh}"
    );

    // A named snapshot of the whole environment, then more changes.
    let s = env.run(&["snapshot", "save", "s1"]);
    assert_eq!(s.code, 0, "{s}");
    let again = env.run(&["snapshot", "save", "s1"]);
    assert!(
        again.code != 0 && again.stderr.contains("exists"),
        "{again}"
    );
    let bad = env.run(&["snapshot", "save", "baseline"]);
    assert!(bad.code != 0 && bad.stderr.contains("not allowed"), "{bad}");
    let e = env.run(&[
        "exec",
        "db",
        "--",
        "sh",
        "-c",
        "rm /srv/keep && echo z > /z",
    ]);
    assert_eq!(e.code, 0, "{e}");
    let (_, v) = drift(&env, &["db"]);
    assert_eq!(paths(&v, "db", "deleted"), ["/srv/keep"]);

    // Reset: back to the baseline, without provisioning.
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "no drift after reset: {v}");
    let role = env.run(&["exec", "web", "--", "cat", "/etc/role", "/srv/keep"]);
    assert_eq!(role.stdout, "web\n", "{role}");
    let keep = env.run(&["exec", "db", "--", "cat", "/srv/keep"]);
    assert_eq!(keep.stdout, "keep\n", "{keep}");
    assert_eq!(
        (counter("db"), counter("web")),
        (1, 1),
        "reset does not provision"
    );
    let state = std::fs::read_to_string(env.path().join(".hdev/state.json")).unwrap();
    assert_eq!(state.matches("\"provision_runs\": 1").count(), 2, "{state}");

    // Restore the named snapshot: the changes made before it are back, and drift since
    // the baseline says so.
    let r = env.run(&["snapshot", "restore", "s1"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(paths(&v, "web", "changed"), ["/etc/role"]);
    assert_eq!(paths(&v, "web", "deleted"), ["/etc/doomed"]);
    assert!(paths(&v, "db", "deleted").is_empty(), "{v}");
    let role = env.run(&["exec", "web", "--", "cat", "/etc/role"]);
    assert_eq!(role.stdout, "changed\n", "{role}");
    assert_eq!((counter("db"), counter("web")), (1, 1));

    let list = env.run(&["snapshot", "list", "--json"]);
    let l: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<&String> = l["snapshots"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["baseline", "s1"], "{l}");
    assert_eq!(l["snapshots"]["s1"].as_array().unwrap().len(), 2);

    // One machine only; the baseline taken again makes the restored state the new normal.
    let b = env.run(&["baseline", "web"]);
    assert_eq!(b.code, 0, "{b}");
    let (code, v) = drift(&env, &["web"]);
    assert_eq!(code, 0, "{v}");
    let d = env.run(&["snapshot", "delete", "s1"]);
    assert_eq!(d.code, 0, "{d}");
    let d = env.run(&["snapshot", "delete", "s1"]);
    assert!(d.code != 0 && d.stderr.contains("no snapshot `s1`"), "{d}");
    let none = env.run(&["snapshot", "restore", "s1"]);
    assert!(none.code != 0, "{none}");

    let instance = env.instance();
    assert!(snapshot_images(&instance) >= 2);
    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
    assert_eq!(
        snapshot_images(&instance),
        0,
        "destroy removes snapshot images"
    );
}

#[test]
fn a_machine_without_provisioning_drifts_and_resets_like_any_other() {
    require_docker();
    // Nothing changes such a container before its baseline, so `up` keeps the container
    // on its box image instead of recreating it; drift and reset must not notice.
    let env = TestEnv::new(
        "plain",
        r#"
[machine.plain]
backend = "docker"
box = "busybox"

[machine.served]
backend = "docker"
box = "busybox"
command = "httpd -f -p 80 -h /var/www"
"#,
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let id = env.ids()["plain"].clone();
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");
    let e = env.run(&[
        "exec",
        "plain",
        "--",
        "sh",
        "-c",
        "echo x > /etc/stray && rm /etc/group",
    ]);
    assert_eq!(e.code, 0, "{e}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(paths(&v, "plain", "added"), ["/etc/stray"]);
    assert_eq!(paths(&v, "plain", "deleted"), ["/etc/group"]);
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    assert_ne!(env.ids()["plain"], id, "reset recreates the container");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");
    let group = env.run(&["exec", "plain", "--", "cat", "/etc/group"]);
    assert_eq!(group.code, 0, "{group}");
}

#[test]
fn a_machine_without_provisioning_has_its_image_as_baseline_and_commits_nothing() {
    require_docker();
    // Its baseline is the image it was created from: `up` commits no baseline image, yet
    // status, the snapshot list, drift, reset, named snapshots and a baseline taken later
    // all hold.
    let env = TestEnv::new(
        "imgbase",
        r#"
[machine.plain]
backend = "docker"
box = "busybox"
command = "httpd -f -p 80 -h /var/www"
"#,
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let instance = env.instance();
    assert_eq!(snapshot_images(&instance), 0, "up commits no baseline");
    let st = env.status();
    assert_eq!(machine(&st, "plain")["baseline"], true, "{st}");
    let list = env.run(&["snapshot", "list", "--json"]);
    let l: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(
        l["snapshots"]["baseline"].as_array().unwrap().len(),
        1,
        "{l}"
    );
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");

    let change = |script: &str| {
        let e = env.run(&["exec", "plain", "--", "sh", "-c", script]);
        assert_eq!(e.code, 0, "{e}");
    };
    change("echo x > /etc/stray");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(paths(&v, "plain", "added"), ["/etc/stray"]);

    // A named snapshot, more changes, a reset: back on the image, still no commit of it.
    let s = env.run(&["snapshot", "save", "s1"]);
    assert_eq!(s.code, 0, "{s}");
    change("rm /etc/group");
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(snapshot_images(&instance), 1, "only `s1`");

    // Restored from the snapshot: its drift since the baseline is what it held; a reset
    // from there goes back to the image.
    let r = env.run(&["snapshot", "restore", "s1"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(paths(&v, "plain", "added"), ["/etc/stray"]);
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");
    let stray = env.run(&["exec", "plain", "--", "test", "-e", "/etc/stray"]);
    assert_ne!(stray.code, 0, "{stray}");

    // A baseline taken later holds what the container holds then (committed).
    change("echo y > /etc/kept");
    let b = env.run(&["baseline", "plain"]);
    assert_eq!(b.code, 0, "{b}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");
    change("rm /etc/kept");
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let kept = env.run(&["exec", "plain", "--", "cat", "/etc/kept"]);
    assert_eq!(kept.stdout, "y\n", "{kept}");
    let (code, v) = drift(&env, &[]);
    assert_eq!(code, 0, "{v}");

    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
    assert_eq!(snapshot_images(&instance), 0);
}
