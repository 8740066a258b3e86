//! `hdev release TAG`, the gatekeeper: the checks before a throwaway copy is brought up,
//! and the annotated tag made only after every acceptance check passed on it.
//!
//! The tag names the commit that was tested (read before the run), not whatever HEAD is
//! when the run ends, and its message records the environment hash (read back by
//! [`super::recorded_hash`]) and the test summary.

use std::path::{Path, PathBuf};

use super::{git, is_dirty, repo_of, ReleaseError};
use crate::acceptance::{Summary, TestResult};

/// What a release is made from, checked before anything runs.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub repo: PathBuf,
    /// The Envfile's folder inside the repository.
    pub rel: PathBuf,
    /// The commit under test (HEAD when the release started).
    pub commit: String,
    pub tag: String,
}

/// Refuses a dirty tree, an existing tag or an invalid tag name; returns what to test.
pub(crate) fn preflight(env_dir: &Path, tag: &str) -> Result<Candidate, ReleaseError> {
    let (repo, rel) = repo_of(env_dir)?;
    git(&repo, &["check-ref-format", &format!("refs/tags/{tag}")]).map_err(|_| {
        ReleaseError::BadTagName {
            tag: tag.to_string(),
        }
    })?;
    if is_dirty(&repo)? {
        return Err(ReleaseError::Dirty { repo });
    }
    if git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/tags/{tag}"),
        ],
    )
    .is_ok()
    {
        return Err(ReleaseError::TagExists {
            tag: tag.to_string(),
        });
    }
    let commit = git(&repo, &["rev-parse", "HEAD"])?.trim().to_string();
    Ok(Candidate {
        repo,
        rel,
        commit,
        tag: tag.to_string(),
    })
}

/// The tag message: what was released, its hash, and how its checks went.
pub(crate) fn message(
    c: &Candidate,
    hash: &str,
    summary: &Summary,
    results: &[TestResult],
) -> String {
    let mut m = format!(
        "release {}\n\nenvironment-hash: {hash}\ntests: {summary}\n",
        c.tag
    );
    for r in results {
        m.push_str(&format!(
            "  {} {} ({}, {} ms)\n",
            if r.passed { "pass" } else { "FAIL" },
            r.name,
            r.machine,
            r.duration_ms
        ));
    }
    m
}

/// Makes the annotated tag on the tested commit.
pub(crate) fn tag(c: &Candidate, message: &str) -> Result<(), ReleaseError> {
    git(
        &c.repo,
        &["tag", "--annotate", &c.tag, "--message", message, &c.commit],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_a_hash_that_reads_back() {
        let c = Candidate {
            repo: PathBuf::from("/r"),
            rel: PathBuf::new(),
            commit: "abc".into(),
            tag: "v1".into(),
        };
        let s = Summary {
            total: 1,
            passed: 1,
            failed: 0,
            duration_ms: 5,
        };
        let m = message(&c, "sha256:00ff", &s, &[]);
        assert_eq!(
            super::super::recorded_hash(&m).as_deref(),
            Some("sha256:00ff")
        );
        assert!(m.contains("tests: 1 passed, 0 failed, 1 total"));
    }
}
