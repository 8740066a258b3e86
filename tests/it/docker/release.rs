//! Releases on the real engine: `up --at`, `update` recreating only the changed machine,
//! `verify` finding a machine built from another hash, and the `release` gatekeeper.

use std::path::Path;

use crate::support::{require_docker, TestEnv};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {:?}", out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn two_machines(prefix: &str) -> TestEnv {
    TestEnv::new(
        prefix,
        r#"
[machine.a]
backend = "docker"
box = "busybox"

[[machine.a.provision]]
shell = "echo a-v1 > /tmp/version"

[machine.b]
backend = "docker"
box = "busybox"

[[machine.b.provision]]
shell = "echo b-v1 > /tmp/version"

[[test]]
name = "b has a version"
machine = "b"
run = "cat /tmp/version"
expect_output = "b-"
"#,
    )
}

fn hash_of(env: &TestEnv, tag: &str) -> String {
    let r = env.run(&["releases", "--json"]);
    assert_eq!(r.code, 0, "{r}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    v.as_array()
        .and_then(|rows| rows.iter().find(|row| row["tag"] == tag))
        .and_then(|row| row["hash"].as_str())
        .unwrap_or_else(|| panic!("no hash for {tag}: {v}"))
        .to_string()
}

#[test]
fn update_recreates_only_the_changed_machine_and_verify_tells() {
    require_docker();
    let env = two_machines("update");
    let d = env.path();
    git(d, &["init", "-q"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "v1"]);
    git(d, &["tag", "v1"]);
    env.set_envfile(&env.envfile().replace("b-v1", "b-v2"));
    git(d, &["commit", "-qam", "v2"]);
    git(d, &["tag", "v2"]);
    // A wrong expected hash refuses before any machine exists.
    let r = env.run(&["up", "--at", "v1", "--expect-hash", "0123456789ab"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("nothing was changed"), "{r}");
    assert!(env.ids().is_empty());
    // Hashes count the built box (the refused `up` built it), as a release's record does.
    let (h1, h2) = (hash_of(&env, "v1"), hash_of(&env, "v2"));
    assert_ne!(h1, h2);

    let r = env.run(&["up", "--at", "v1", "--expect-hash", &h1[7..19]]);
    assert_eq!(r.code, 0, "{r}");
    let before = env.ids();
    assert_eq!(before.len(), 2);
    let r = env.run(&["verify", &h1]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("release `v1`"), "{r}");

    let r = env.run(&["update"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("to release `v2`"), "{r}");
    let after = env.ids();
    assert_eq!(after["a"], before["a"], "a did not change and must be kept");
    assert_ne!(after["b"], before["b"], "b changed and must be recreated");
    let out = env.run(&["exec", "b", "--", "cat", "/tmp/version"]);
    assert_eq!(out.stdout, "b-v2\n");

    // The running environment is v2 now: against v1, exactly `b` differs.
    let r = env.run(&["verify", &h1, "--json"]);
    assert_eq!(r.code, 1, "{r}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let diffs = v["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "{v}");
    assert_eq!(diffs[0]["machine"], "b");
    assert_eq!(diffs[0]["kind"], "other-hash");
    let r = env.run(&["verify", &h2]);
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn release_tags_only_when_every_check_passes() {
    require_docker();
    let env = two_machines("release");
    let d = env.path();
    env.set_envfile(
        &env.envfile()
            .replace("expect_output = \"b-\"", "expect_output = \"c-\""),
    );
    git(d, &["init", "-q"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "broken check"]);

    let r = env.run(&["release", "v1"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.contains("refused"), "{r}");
    assert_eq!(git(d, &["tag", "-l"]), "");

    env.set_envfile(
        &env.envfile()
            .replace("expect_output = \"c-\"", "expect_output = \"b-\""),
    );
    let r = env.run(&["release", "v1"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("uncommitted changes"), "{r}");
    git(d, &["commit", "-qam", "fixed check"]);

    let r = env.run(&["release", "v1"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(git(d, &["tag", "-l"]), "v1\n");
    let message = git(d, &["tag", "-l", "--format=%(contents)", "v1"]);
    let hash = hash_of(&env, "v1");
    assert!(
        message.contains(&format!("environment-hash: {hash}")),
        "{message}"
    );
    assert!(
        message.contains("tests: 1 passed, 0 failed, 1 total"),
        "{message}"
    );
    // The gatekeeper's copy is gone, and the developer's environment was never created.
    assert!(env.ids().is_empty());
    assert!(
        std::fs::read_dir(d.join(".hdev/ci"))
            .map(|r| r.count())
            .unwrap_or(0)
            == 0
    );
}
