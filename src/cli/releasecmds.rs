//! `hdev releases`: the git tags of the Envfile's repository with their environment hashes.

use std::path::Path;

use serde::Serialize;

use super::CmdResult;
use crate::output::Printer;
use crate::project::find_envfile;
use crate::release;

#[derive(Serialize)]
struct Row {
    tag: String,
    commit: String,
    date: String,
    hash: Option<String>,
    /// Hash recorded in the tag message by `hdev release`.
    recorded_hash: Option<String>,
    /// Why the hash could not be computed at this tag.
    error: Option<String>,
}

pub fn releases(p: &Printer, file: Option<&Path>) -> CmdResult {
    let envfile = find_envfile(file)?;
    let dir = envfile.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let (repo, _) = release::repo_of(dir)?;
    let mut rows = Vec::new();
    for tag in release::tags(&repo)? {
        let (hash, error) = match release::hash_at(&envfile, &tag.name) {
            Ok((_, report)) => (Some(report.hash.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        rows.push(Row {
            tag: tag.name,
            commit: tag.commit,
            date: tag.date,
            hash,
            recorded_hash: tag.recorded_hash,
            error,
        });
    }
    if p.json {
        p.json(&rows);
        return Ok(0);
    }
    if rows.is_empty() {
        p.note("no releases yet: `hdev release TAG` tests a fresh copy and tags it");
        return Ok(0);
    }
    for r in &rows {
        let hash = match (&r.hash, &r.error) {
            (Some(h), _) => {
                let short = h.strip_prefix("sha256:").unwrap_or(h);
                let mut s = short[..12.min(short.len())].to_string();
                if r.recorded_hash.as_deref().is_some_and(|rec| rec != h) {
                    s.push_str(" (differs from the hash recorded in the tag)");
                }
                s
            }
            (None, Some(e)) => format!("no hash: {e}"),
            (None, None) => String::new(),
        };
        p.line(format!(
            "{:<16} {}  {}  {}",
            r.tag,
            &r.commit[..r.commit.len().min(10)],
            &r.date[..r.date.len().min(10)],
            hash
        ));
    }
    Ok(0)
}
