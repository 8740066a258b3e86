//! Git repositories made by tests (sources of an Envfile), reached by file path: no test
//! makes an outside connection. Author, committer and dates are fixed, so the same files
//! give the same commits and trees on every run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git ARGS` in `dir`, which must succeed; its output, trimmed.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "hdev test")
        .env("GIT_AUTHOR_EMAIL", "test@hdev.invalid")
        .env("GIT_COMMITTER_NAME", "hdev test")
        .env("GIT_COMMITTER_EMAIL", "test@hdev.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `files` (path, content; a `.sh` file is made executable) into `dir`.
pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    for (rel, content) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("folders");
        std::fs::write(&p, content).expect("write");
        if rel.ends_with(".sh") {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
}

/// A repository at `dir` with branch `main` holding `files` in one commit.
pub(crate) fn repo_with(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("repo folder");
    git(dir, &["init", "-q", "-b", "main"]);
    commit(dir, files, "first");
    dir.to_path_buf()
}

/// Writes `files` and commits everything; the new commit.
pub(crate) fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    write_files(dir, files);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The two repositories the `harness-sources` template pulls its services from, made in
/// `dir/repos/` from the HARNESS scripts: `scheduler` (its script and a `VERSION`) and
/// `resource-managers` (the service script), each with one commit on `main`.
pub(crate) fn harness_repos(dir: &Path) {
    let script = |name: &str| {
        std::fs::read_to_string(super::repo().join("templates/harness/provision").join(name))
            .expect("HARNESS script")
    };
    repo_with(
        &dir.join("repos/scheduler"),
        &[
            ("scheduler.sh", &script("scheduler.sh")),
            ("VERSION", "scheduler 1.0\n"),
        ],
    );
    repo_with(
        &dir.join("repos/resource-managers"),
        &[("service.sh", &script("service.sh"))],
    );
}

/// Whether the Envfile at `path` declares sources (a template that needs [`harness_repos`]).
pub(crate) fn has_sources(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains("[source."))
}
