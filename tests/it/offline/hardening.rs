//! Mistakes a user breaking things made that used to pass `validate` or take the machine
//! down (issue 16): each is now refused early, with its place in the file.

use std::time::{Duration, Instant};

use crate::support::{EnvBuilder, TestEnv};

fn env() -> EnvBuilder {
    TestEnv::build().own_home().var("NO_COLOR", "1")
}

#[test]
fn an_endless_huge_or_folder_envfile_is_refused_in_bounded_time_and_memory() {
    let dir = env().envfile("[env]\nname = \"x\"\n").create();
    // `/dev/zero` never ends: it used to grow hdev to 23.7 GB.
    let t0 = Instant::now();
    let out = dir
        .cmd()
        .args(["-f", "/dev/zero", "validate"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("larger than 4096 KiB"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    // A file past the bound is refused the same way, naming it.
    let big = dir.write("big.toml", &"# padding\n".repeat(500_000));
    let out = dir
        .cmd()
        .arg("-f")
        .arg(&big)
        .arg("validate")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("big.toml") && err.contains("larger than"),
        "{err}"
    );

    // An `Envfile` that is a folder is said to be one, not "no Envfile".
    let inner = dir.path().join("sub");
    std::fs::create_dir_all(inner.join("Envfile")).unwrap();
    let out = dir
        .cmd()
        .current_dir(&inner)
        .arg("validate")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a folder, not an Envfile"), "{err}");
    let out = dir
        .cmd()
        .arg("-f")
        .arg(inner.join("Envfile"))
        .arg("validate")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it is a folder, not a file"), "{err}");
}

#[test]
fn a_script_that_is_a_folder_fails_validate_at_its_place() {
    let dir = env()
        .envfile(
            r#"[env]
name = "x"

[machine.web]
backend = "docker"
image = "busybox"
provision = [{ script = "." }, { ansible = "provision" }]
"#,
        )
        .file("provision/site.yml", "- hosts: all\n")
        .create();
    let out = dir.cmd().arg("validate").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[Envfile:7:25]"), "the script: {err}");
    assert!(err.contains("`.` is not a file"), "{err}");
    assert!(
        err.contains("`provision` is not a file"),
        "the playbook: {err}"
    );
    assert!(err.contains("error: 2 problems"), "{err}");
}
