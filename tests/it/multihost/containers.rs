//! Containers on three hosts: one overlay network across them, names that resolve from
//! every host to every other, reset and drift of the whole topology, and destroy leaving
//! nothing on any host.

use super::{hosts_file, leftovers_after_destroy, require_rig};
use crate::support::{machine, require_docker, subnet, TestEnv};

fn three_hosts(prefix: &str) -> TestEnv {
    let lan = subnet();
    let fixed = lan.replace(".0/24", ".10");
    TestEnv::build()
        .machines(
            prefix,
            &format!(
                r#"
[host.n1]
[host.n2]
[host.n3]

[network.lan]
subnet = "{lan}"

[machine.sched]
backend = "docker"
box = "busybox"
host = "n1"
networks = [{{ name = "lan", address = "{fixed}" }}]

[machine.store]
backend = "docker"
box = "busybox"
host = "n2"
networks = ["lan"]
depends_on = ["sched"]
provision = [{{ shell = "echo stored > /srv-mark" }}, {{ ansible = "site.yml" }}]

[machine.paas]
backend = "docker"
box = "busybox"
host = "n3"
networks = ["lan"]

[[test]]
name = "n2 reaches n1 by name"
machine = "store"
run = "ping -c1 -W3 sched"

[[test]]
name = "n1 reaches n3 by name"
machine = "sched"
run = "ping -c1 -W3 paas"

[[test]]
name = "n3 reaches n2 by name"
machine = "paas"
run = "ping -c1 -W3 store"
"#
            ),
        )
        .file("testbed.toml", &hosts_file())
        .file(
            "site.yml",
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - raw: echo \"ansible on {{ inventory_hostname }}\" > /srv-ansible\n",
        )
        .create()
}

#[test]
fn one_envfile_on_one_host_or_three() {
    require_docker();
    require_rig();
    let env = three_hosts("mh");
    // Without a hosts file, the hosts are this machine: the same environment, one hash.
    let here = env.ok(&["hash"]);
    let spread = env.ok(&["--hosts", "testbed.toml", "hash"]);
    assert_eq!(here, spread, "placement is not part of the hash");

    // The hosts file is remembered: later commands need not name it.
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let status = env.status();
    for (m, host) in [("sched", "n1"), ("store", "n2"), ("paas", "n3")] {
        assert_eq!(machine(&status, m)["host"], host, "{status}");
        assert_eq!(machine(&status, m)["state"], "running", "{status}");
    }
    let text = env.ok(&["status"]);
    assert!(text.contains("HOST"), "{text}");
    let instance = env.instance();
    // Each container is on its host's engine and nowhere else.
    let all = ["sched", "store", "paas"];
    for (n, m) in [(1, "sched"), (2, "store"), (3, "paas")] {
        let out = super::docker(n, &["ps", "--format", "{{.Names}}"]);
        let names: Vec<&str> = out.lines().collect();
        for other in all {
            let here = names.contains(&format!("{instance}-{other}").as_str());
            assert_eq!(here, other == m, "node{n} holds {other}? {names:?}");
        }
        // The overlay stays on the workers between a container and its successor.
        let keeper = names.contains(&format!("{instance}--keep-lan").as_str());
        assert_eq!(keeper, n != 1, "node{n}: {names:?}");
    }

    // Provisioning reached the container on its host, ansible included.
    let a = env.ok(&["exec", "store", "--", "cat", "/srv-ansible"]);
    assert_eq!(a.trim(), "ansible on store");

    // Across hosts, both ways, by name.
    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "{t}");
    assert!(t.stdout.contains("3 passed"), "{t}");

    // Drift on one host, reset of the whole topology.
    env.ok(&["exec", "paas", "--", "sh", "-c", "echo x > /etc/drifted"]);
    let d = env.run(&["drift"]);
    assert_eq!(d.code, 1, "drift exits 1 when a machine drifted: {d}");
    assert!(d.stdout.contains("1 of 3 machines drifted"), "{d}");
    let r = env.run(&["reset"]);
    assert_eq!(r.code, 0, "{r}");
    let d = env.ok(&["drift"]);
    assert!(d.contains("0 of 3 machines drifted"), "{d}");
    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "after reset: {t}");

    // A throwaway copy on the same hosts, on moved overlay subnets.
    let ci = env.run(&["ci"]);
    assert_eq!(ci.code, 0, "{ci}");
    assert!(ci.stdout.contains("3 passed"), "{ci}");

    let gone = env.run(&["destroy", "-y"]);
    assert_eq!(gone.code, 0, "{gone}");
    let left: Vec<String> = leftovers_after_destroy(&instance);
    assert!(left.is_empty(), "left on the hosts: {left:?}");
}

#[test]
fn a_host_that_cannot_be_reached_is_named() {
    require_docker();
    let env = three_hosts("mhbad");
    env.write(
        "testbed.toml",
        "[host.n1]\ndocker = \"unix:///nonexistent/n1.sock\"\n[host.n2]\n[host.n3]\n",
    );
    let up = env.run(&["--hosts", "testbed.toml", "up"]);
    assert_ne!(up.code, 0, "{up}");
    assert!(
        up.stderr.contains("/nonexistent/n1.sock") || up.stdout.contains("/nonexistent/n1.sock"),
        "{up}"
    );
    // Status says what it cannot know. (Nothing came up: `lan` spans the hosts, and a
    // network that cannot be made stops the run before any machine.)
    let st = env.status();
    assert_eq!(machine(&st, "sched")["state"], "unreachable", "{st}");
    assert_eq!(machine(&st, "store")["state"], "not created", "{st}");
    // Removing the environment needs every host it used: refused, naming the host.
    let d = env.run(&["destroy", "-y"]);
    assert_ne!(d.code, 0, "{d}");
    assert!(d.stderr.contains("/nonexistent/n1.sock"), "{d}");
    // The remembered hosts file is forgotten with `--hosts none`: everything runs here.
    let hash = env.run(&["--hosts", "none", "validate"]);
    assert_eq!(hash.code, 0, "{hash}");
}

#[test]
fn an_encrypted_overlay_needs_esp_in_the_kernel() {
    require_docker();
    require_rig();
    let lan = subnet();
    let env = TestEnv::build()
        .machines(
            "mhesp",
            &format!(
                "[host.n1]\n[host.n2]\n\n[network.lan]\nsubnet = \"{lan}\"\nencrypted = true\n\n\
                 [machine.a]\nbackend = \"docker\"\nbox = \"busybox\"\nhost = \"n1\"\nnetworks = [\"lan\"]\n\n\
                 [machine.b]\nbackend = \"docker\"\nbox = \"busybox\"\nhost = \"n2\"\nnetworks = [\"lan\"]\n"
            ),
        )
        .file("testbed.toml", &hosts_file())
        .create();
    let doctor = env.json(&["--hosts", "testbed.toml", "doctor"]);
    let esp = doctor["kernel"]["esp"].clone();
    let up = env.run(&["up"]);
    if esp == false {
        assert_ne!(
            up.code, 0,
            "an encrypted overlay without ESP passes nothing: {up}"
        );
        assert!(up.stderr.contains("ESP"), "{up}");
        assert!(up.stderr.contains("encrypted = true"), "{up}");
    } else {
        assert_eq!(up.code, 0, "{up}");
        env.ok(&["exec", "a", "--", "ping", "-c1", "-W3", "b"]);
    }
}

/// Containers created on rig engine `n` since `since` (a Unix time) whose name starts
/// with `prefix`.
fn created_since(n: u8, since: u64, prefix: &str) -> Vec<String> {
    super::docker(
        n,
        &[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            "0s",
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    )
    .lines()
    .filter(|l| l.starts_with(prefix))
    .map(str::to_string)
    .collect()
}

#[test]
fn the_gatekeeper_tests_a_release_on_the_hosts_and_update_goes_there() {
    require_docker();
    require_rig();
    let env = three_hosts("mhrel");
    env.ok(&["--hosts", "testbed.toml", "lock"]);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(env.path())
            .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    env.write(".gitignore", ".hdev/\n");
    git(&["add", "-A"]);
    git(&["commit", "-qm", "v1"]);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    // The remembered hosts file places the release's throwaway copy too.
    let r = env.run(&["release", "v1"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("released: tagged `v1`"), "{r}");
    let name = env.ok(&["--json", "status"]);
    let name: serde_json::Value = serde_json::from_str(&name).unwrap();
    let copy_prefix = format!("{}-ci-", name["env"].as_str().unwrap());
    for (n, m) in [(1, "sched"), (2, "store"), (3, "paas")] {
        let made = created_since(n, since, &copy_prefix);
        assert!(
            made.iter().any(|c| c.ends_with(&format!("-{m}"))),
            "node{n}: {made:?}"
        );
    }
    // A tagged release comes up on the hosts as well.
    let up = env.run(&["up", "--at", "v1"]);
    assert_eq!(up.code, 0, "{up}");
    let st = env.status();
    assert_eq!(machine(&st, "paas")["host"], "n3", "{st}");
    let v = env.run(&["verify"]);
    assert_eq!(v.code, 0, "{v}");
}

#[test]
fn a_user_who_is_not_root_places_containers_on_the_hosts() {
    use std::os::unix::fs::PermissionsExt;

    use crate::docker::nonroot::{Cleanup, RunAs};
    require_docker();
    require_rig();
    let tmp = tempfile::tempdir().expect("temp folder");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let recipe = dir.join("boxes/busybox");
    std::fs::create_dir_all(&recipe).expect("mkdir");
    for f in ["box.toml", "build.sh"] {
        std::fs::copy(
            crate::support::repo().join("boxes/busybox").join(f),
            recipe.join(f),
        )
        .expect("copy");
    }
    let lan = subnet();
    std::fs::write(
        dir.join("Envfile"),
        format!(
            "[env]\nname = \"nonroot-mh\"\n\n[host.n1]\n[host.n2]\n\n[box.busybox]\nrecipe = \"boxes/busybox\"\n\n\
             [network.lan]\nsubnet = \"{lan}\"\n\n\
             [machine.a]\nbackend = \"docker\"\nbox = \"busybox\"\nhost = \"n1\"\nnetworks = [\"lan\"]\n\n\
             [machine.b]\nbackend = \"docker\"\nbox = \"busybox\"\nhost = \"n2\"\nnetworks = [\"lan\"]\n\n\
             [[test]]\nname = \"b reaches a\"\nmachine = \"b\"\nrun = \"ping -c1 -W3 a\"\n"
        ),
    )
    .expect("write Envfile");
    std::fs::write(dir.join("testbed.toml"), hosts_file()).expect("hosts file");
    // The rig's sockets are the docker group's: a member reaches every host.
    let who = RunAs::new(dir);
    let _cleanup = Cleanup(&who, dir);
    who.ok(dir, &["--hosts", "testbed.toml", "up"]);
    who.ok(dir, &["test"]);
    let st: serde_json::Value =
        serde_json::from_str(&who.ok(dir, &["--json", "status"])).expect("status json");
    assert_eq!(machine(&st, "b")["host"], "n2", "{st}");
    let out = who.ok(dir, &["destroy", "-y"]);
    // The two machines and the keeper of `lan` on n2.
    assert!(out.contains("3 container(s)"), "{out}");
}
