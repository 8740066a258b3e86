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

/// `hdev cite` (#14): untagged, it cites the hash only and warns; at a release tag made
/// as the gatekeeper makes them (annotated, the hash recorded), it names the tag, the
/// commit and the Software Heritage id of the tagged tree (`git rev-parse TAG^{tree}`);
/// a plain tag is not taken for a release; a tag whose recorded hash differs is flagged.
#[test]
fn cite_names_the_hash_the_release_and_its_tree() {
    let env = TestEnv::build().own_home().create();
    let d = env.path();
    assert!(hdev(&env, &["init", "--template", "minimal"])
        .status
        .success());
    let out = |args: &[&str]| {
        let o = hdev(&env, args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&out(args).0).unwrap() };
    let hash = out(&["hash"]).0.trim().to_string();

    // Not even a repository: the hash only, and why it cannot be fetched by tag.
    let v = json(&["cite", "--format", "json"]);
    assert_eq!(v["hash"], hash.as_str());
    assert!(v["release"].is_null());
    let (text, err) = out(&["cite", "--format", "text"]);
    assert!(text.contains(&hash) && text.contains("untagged"), "{text}");
    assert!(err.contains("cannot be retrieved by tag"), "{err}");

    git(d, &["init", "-q"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "first"]);
    git(d, &["tag", "plain"]);
    let v = json(&["cite", "--format", "json"]);
    assert!(v["release"].is_null(), "a plain tag is no release: {v}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("`plain`") && warnings.contains("no release tag"),
        "{warnings}"
    );

    let message =
        format!("release v1.0\n\nenvironment-hash: {hash}\ntests: 1 passed, 0 failed, 1 total\n");
    git(d, &["tag", "-a", "v1.0", "-m", &message]);
    let rev = |r: &str| {
        let o = std::process::Command::new("git")
            .current_dir(d)
            .args(["rev-parse", r])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let v = json(&["cite", "--format", "json"]);
    assert_eq!(v["hash"], hash.as_str(), "the hash is `hdev hash`'s");
    assert_eq!(v["name"], "minimal");
    let r = &v["release"];
    assert_eq!(r["tag"], "v1.0");
    assert_eq!(r["commit"], rev("HEAD").as_str());
    let tree = rev("v1.0^{tree}");
    assert_eq!(tree.len(), 40);
    assert_eq!(r["tree"], tree.as_str());
    assert_eq!(r["swhid"], format!("swh:1:dir:{tree}").as_str());
    assert_eq!(r["recorded_hash"], hash.as_str());
    assert!(!v["warnings"].to_string().contains("no release tag"), "{v}");
    assert_eq!(v, json(&["--json", "cite"]), "`--json` is `--format json`");
    // The default: BibTeX, then plain text, both naming the same things.
    let (both, _) = out(&["cite"]);
    assert!(both.starts_with("@software{hdev-minimal-"), "{both}");
    assert!(
        both.contains(&format!("swhid   = {{swh:1:dir:{tree}}}")),
        "{both}"
    );
    assert!(both.contains("version = {v1.0}"), "{both}");
    assert!(
        both.contains(&format!("Software Heritage: swh:1:dir:{tree}")),
        "{both}"
    );
    assert!(both.contains(&format!("hdev verify {hash}")), "{both}");

    // The environment moves on past its release: HEAD is at no tag any more.
    let envfile = d.join("Envfile");
    let text = std::fs::read_to_string(&envfile).unwrap();
    std::fs::write(&envfile, text.replace("hello from hdev", "unreleased")).unwrap();
    git(d, &["commit", "-qam", "second"]);
    let v = json(&["cite", "--format", "json"]);
    assert!(v["release"].is_null());
    assert_ne!(v["hash"], hash.as_str());
    // A tag claiming another hash than the environment's is flagged, not trusted.
    git(d, &["tag", "-a", "v1.1", "-m", &message]);
    let v = json(&["cite", "--format", "json"]);
    assert_eq!(v["release"]["tag"], "v1.1");
    assert!(
        v["warnings"]
            .to_string()
            .contains("recorded the environment hash"),
        "{v}"
    );

    let o = hdev(&env, &["cite", "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bibtex"));
}
