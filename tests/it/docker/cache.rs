//! The provisioned-state cache on the real engine: a container provisioned once is created
//! from the cache after `destroy` (provisioning does not run again, the output says so),
//! never when its definition changed or with `--no-cache`; `destroy` leaves the entry,
//! `cache prune --all` removes it.

use crate::support::{require_docker, subnet, TestEnv};

fn cache_image_exists(hash: &str) -> bool {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            &format!("hdev-cache/{}:latest", &hex[..12]),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// How many times provisioning ran: lines it appended to a synced (host) folder.
fn runs(env: &TestEnv) -> usize {
    std::fs::read_to_string(env.path().join("count/runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_provisioned_container_comes_back_from_the_cache_until_its_definition_changes() {
    require_docker();
    let net = subnet();
    let env = TestEnv::build()
        .machines(
            "cache",
            &format!(
                r#"
[network.lan]
subnet = "{net}"

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
synced_folders = [{{ host = "count", guest = "/mnt/count" }}]

[[machine.web.provision]]
shell = "echo run >> /mnt/count/runs; echo one > /etc/provisioned"
"#
            ),
        )
        .file("count/.keep", "")
        .var("HDEV_NO_CACHE", "0")
        .create();

    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!(runs(&env), 1, "{up}");
    let listed = env.json(&["cache", "list"]);
    let hash = listed["entries"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["env"] == env_name(&env)))
        .and_then(|e| e["hash"].as_str())
        .unwrap_or_else(|| panic!("no entry of this environment: {listed}"))
        .to_string();
    assert!(cache_image_exists(&hash));

    // Destroyed and up again: created from the cache, provisioning not run.
    let d = env.run(&["destroy", "-y"]);
    assert_eq!(d.code, 0, "{d}");
    assert!(cache_image_exists(&hash), "destroy removed the cache entry");
    // The plan says what `up` will do.
    let plan = env.ok(&["plan"]);
    assert!(
        plan.contains("from the provisioned-state cache, not provisioned"),
        "{plan}"
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!(runs(&env), 1, "provisioned again: {up}");
    assert!(
        up.stderr.contains("from the provisioned-state cache"),
        "{up}"
    );
    let file = env.ok(&["exec", "web", "--", "cat", "/etc/provisioned"]);
    assert_eq!(file.trim(), "one");
    // Its baseline is taken on the cached state: no drift.
    let drift = env.run(&["drift"]);
    assert_eq!(drift.code, 0, "{drift}");
    let text = env.ok(&["cache", "list"]);
    assert!(text.contains(&hash["sha256:".len()..][..12]), "{text}");

    // `--no-cache`: provisioned.
    assert_eq!(env.run(&["destroy", "-y"]).code, 0);
    let up = env.run(&["up", "--no-cache"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!(runs(&env), 2, "{up}");
    assert!(!up.stderr.contains("provisioned-state cache"), "{up}");

    // A changed step is another hash: provisioned, never served the old state.
    let text = std::fs::read_to_string(env.path().join("Envfile")).expect("read Envfile");
    env.set_envfile(&text.replace("echo one", "echo two"));
    let plan = env.ok(&["plan"]);
    assert!(!plan.contains("provisioned-state cache"), "{plan}");
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    assert_eq!(runs(&env), 3, "{up}");
    assert!(
        !up.stderr.contains("from the provisioned-state cache"),
        "{up}"
    );
    let file = env.ok(&["exec", "web", "--", "cat", "/etc/provisioned"]);
    assert_eq!(file.trim(), "two");

    // `gc` leaves entries alone; `cache prune --all` removes them.
    let gc = env.run(&["gc"]);
    assert!(
        cache_image_exists(&hash),
        "gc removed the cache entry: {gc}"
    );
    let p = env.run(&["cache", "prune", "--all"]);
    assert_eq!(p.code, 0, "{p}");
    assert!(!cache_image_exists(&hash), "{p}");
    // The environment's machine still runs (its baseline holds what it needs).
    let status = env.run(&["exec", "web", "--", "true"]);
    assert_eq!(status.code, 0, "{status}");
}

fn env_name(env: &TestEnv) -> String {
    let text = std::fs::read_to_string(env.path().join("Envfile")).expect("read Envfile");
    text.lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"').to_string())
        .unwrap_or_default()
}
