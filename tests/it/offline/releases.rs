//! `hdev releases`: tags listed newest version first, each with the hash of the tagged
//! tree (not the working tree), and the hash `hdev release` recorded in the tag.

use std::path::Path;

use crate::support::TestEnv;

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn hdev(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.cmd().args(args).output().unwrap()
}

#[test]
fn releases_hash_each_tagged_tree() {
    let env = TestEnv::build().own_home().create();
    let d = env.path();
    git(d, &["init", "-q"]);
    assert!(hdev(&env, &["init", "--template", "minimal"])
        .status
        .success());
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "first"]);
    git(d, &["tag", "v1.0"]);
    let h1 = String::from_utf8(hdev(&env, &["hash"]).stdout).unwrap();

    let envfile = d.join("Envfile");
    let text = std::fs::read_to_string(&envfile).unwrap();
    std::fs::write(&envfile, text.replace("hello from hdev", "hello, v1.1")).unwrap();
    git(d, &["commit", "-qam", "second"]);
    let h2 = String::from_utf8(hdev(&env, &["hash"]).stdout).unwrap();
    assert_ne!(h1, h2);
    let message = format!("release v1.1\n\nenvironment-hash: {}", h2.trim());
    git(d, &["tag", "-a", "v1.1", "-m", &message]);

    // The working tree moves on; releases still report what the tags hold.
    std::fs::write(&envfile, text.replace("hello from hdev", "unreleased")).unwrap();

    let out = hdev(&env, &["releases", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["tag"], "v1.1");
    assert_eq!(rows[0]["hash"], h2.trim());
    assert_eq!(rows[0]["recorded_hash"], h2.trim());
    assert_eq!(rows[1]["tag"], "v1.0");
    assert_eq!(rows[1]["hash"], h1.trim());
    assert!(rows[1]["recorded_hash"].is_null());
}

#[test]
fn releases_outside_a_repository_say_so() {
    let env = TestEnv::build().own_home().create();
    assert!(hdev(&env, &["init", "--template", "minimal"])
        .status
        .success());
    let out = hdev(&env, &["releases"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not inside a git repository"), "{err}");
}
