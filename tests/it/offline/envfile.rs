//! The Envfile as users meet it: every invalid fixture is reported with the right line and
//! column (and its full rendering is snapshotted), templates validate, and the environment
//! hash ignores form but follows meaning.

use std::path::PathBuf;

use crate::support::{repo, EnvBuilder, TestEnv};

/// A folder for these tests: hdev with a store of its own, without colours.
fn env() -> EnvBuilder {
    TestEnv::build().own_home().var("NO_COLOR", "1")
}

fn fixtures() -> Vec<PathBuf> {
    let dir = repo().join("tests/fixtures/invalid");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// `# expect: LINE:COL fragment` lines at the top of a fixture.
fn expectations(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let (pos, msg) = rest.split_once(' ').expect("`# expect: L:C message`");
            (pos.to_string(), msg.to_string())
        })
        .collect()
}

#[test]
fn every_invalid_fixture_is_reported_at_its_line_and_column() {
    let all = fixtures();
    assert!(
        all.len() >= 15,
        "at least 15 distinct mistakes, found {}",
        all.len()
    );
    let mut failures = Vec::new();
    for fixture in &all {
        let text = std::fs::read_to_string(fixture).unwrap();
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            fixture.display()
        );
        let dir = env().envfile(&text).create();
        let out = dir.cmd().arg("validate").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let name = fixture.file_stem().unwrap().to_string_lossy().to_string();
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{name}: exit {:?}, want 1\n{stderr}",
                out.status.code()
            ));
            continue;
        }
        for (pos, msg) in &expected {
            if !stderr.contains(&format!("[Envfile:{pos}]")) || !stderr.contains(msg.as_str()) {
                failures.push(format!("{name}: want `{msg}` at {pos}, got:\n{stderr}"));
            }
        }
        let problems = stderr.matches("help:").count();
        if !stderr.contains(&format!("error: {} problem", expected.len())) {
            failures.push(format!(
                "{name}: want {} problem(s) ({problems} help lines), got:\n{stderr}",
                expected.len()
            ));
        }
        let normalized = stderr.replace(&dir.path().display().to_string(), "[DIR]");
        insta::with_settings!({ snapshot_suffix => name.clone(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("diagnostic", normalized);
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn json_diagnostics_carry_file_line_and_column() {
    let fixture = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("07-unknown-box"))
        .unwrap();
    let dir = env()
        .envfile(&std::fs::read_to_string(&fixture).unwrap())
        .create();
    let out = dir.cmd().args(["validate", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["problems"][0];
    assert_eq!(p["file"], "Envfile");
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(10), Some(7))
    );
    assert_eq!(p["help"], "did you mean `busybox`?");
}

#[test]
fn templates_and_the_example_validate() {
    for template in ["minimal", "harness"] {
        let dir = env().create();
        dir.cmd()
            .args(["init", "--template", template])
            .assert()
            .success();
        let out = dir.cmd().arg("validate").output().unwrap();
        assert!(
            out.status.success(),
            "{template}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A second init refuses to overwrite.
        dir.cmd()
            .args(["init", "--template", template])
            .assert()
            .code(1);
    }
    env()
        .create()
        .cmd()
        .current_dir(repo())
        .args(["-f", "Envfile.example", "validate"])
        .assert()
        .success();
}

#[test]
fn lock_records_the_hash_and_check_notices_a_change() {
    let dir = env().create();
    dir.cmd()
        .args(["init", "--template", "minimal"])
        .assert()
        .success();
    dir.cmd().arg("lock").assert().success();
    let lock = std::fs::read_to_string(dir.path().join("Envfile.lock")).unwrap();
    let hash = String::from_utf8(dir.cmd().arg("hash").output().unwrap().stdout).unwrap();
    assert!(lock.contains(hash.trim()), "lock {lock} lacks hash {hash}");
    dir.cmd().args(["lock", "--check"]).assert().success();

    let envfile = dir.path().join("Envfile");
    let text = std::fs::read_to_string(&envfile).unwrap();
    std::fs::write(&envfile, text.replace("hello from hdev", "hello again")).unwrap();
    dir.cmd().args(["lock", "--check"]).assert().code(1);
}
