//! Releases: `hdev releases` (the git tags of the Envfile's repository with their
//! environment hashes), `hdev up --locked|--at`, `hdev update` and `hdev release` (the
//! gatekeeper).

use std::path::Path;

use serde::Serialize;

use super::machinecmds;
use super::CmdResult;
use crate::output::Printer;
use crate::project::find_envfile;
use crate::release::{self, gatekeeper, update};

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

pub(super) fn releases(p: &Printer, file: Option<&Path>) -> CmdResult {
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

/// `hdev up [--locked] [--at TAG [--expect-hash HASH]]`.
pub(super) fn up(
    p: &Printer,
    file: Option<&Path>,
    parallel: Option<usize>,
    locked: bool,
    at: Option<&str>,
    expect_hash: Option<&str>,
) -> CmdResult {
    let Some(tag) = at else {
        if locked {
            check_locked(&crate::throwaway::open_project(file)?)?;
        }
        return machinecmds::up(p, file, parallel);
    };
    to_release(p, file, Some(tag), expect_hash, locked, parallel, false)
}

/// `hdev update [TAG]`: moves the environment to a release (the latest when none is
/// named), recreating only the machines whose hash changed; shows the plan first.
pub(super) fn update(p: &Printer, file: Option<&Path>, tag: Option<&str>) -> CmdResult {
    to_release(p, file, tag, None, false, None, true)
}

/// Refuses when the inputs no longer match `Envfile.lock`, naming every difference.
fn check_locked(project: &crate::project::Project) -> anyhow::Result<()> {
    let path = project.lock_path();
    let Some(locked) = project.lockfile()? else {
        anyhow::bail!(
            "`--locked` needs `{}`, and there is none\nhelp: `hdev lock` writes it",
            crate::envfile::display_name(&path)
        );
    };
    let diffs = crate::lockfile::differences(&locked, &project.current_lock_against(&locked)?);
    if diffs.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the environment no longer matches `{}`:\n  {}\nhelp: run `hdev lock` if these changes are meant, then commit the lock file",
        crate::envfile::display_name(&path),
        diffs.join("\n  ")
    )
}

fn to_release(
    p: &Printer,
    file: Option<&Path>,
    tag: Option<&str>,
    expect_hash: Option<&str>,
    locked: bool,
    parallel: Option<usize>,
    show_plan: bool,
) -> CmdResult {
    let envfile = find_envfile(file)?;
    let home = crate::ops::copy::home_of(&envfile);
    // The instance of this folder, as `up` would name it.
    let here = crate::throwaway::open_project(Some(&envfile))?;
    let release = update::open_release(&envfile, &home, &here.instance, tag)?;
    if locked {
        check_locked(&release.project)?;
    }
    let (tag, dir) = (release.tag, release.dir);
    crate::ops::session::runtime()?.block_on(async {
        let (o, backends, images) = crate::ops::session::with_images(release.project, p).await?;
        if let Some(want) = expect_hash {
            anyhow::ensure!(
                o.env_hash.matches(want),
                "release `{}` has hash {}, not `{want}`; nothing was changed",
                tag.name,
                o.env_hash
            );
        }
        let lock = o.project.state.lock()?;
        if show_plan {
            let state = crate::ops::session::load_state(&o.project)?;
            let observed = backends.observe(&o.ctx).await?;
            let plan = crate::plan::plan(
                &o.project.env,
                &o.hashes,
                &observed,
                &state,
                &backends.available(),
            );
            if p.json {
                p.line(serde_json::json!({"event": "update", "tag": tag.name, "hash": o.env_hash, "plan": plan}).to_string());
            } else {
                p.line(format!("update `{}` to release `{}` ({})", o.ctx.instance, tag.name, o.env_hash));
                for l in crate::plan::render(&plan) {
                    p.line(l);
                }
            }
        } else if !p.json {
            p.note(format!("release `{}` ({})", tag.name, o.env_hash));
        }
        update::record(
            &o.project.state,
            &update::ReleaseRecord {
                version: update::RECORD_VERSION,
                tag: tag.name.clone(),
                commit: tag.commit.clone(),
                hash: o.env_hash.0.clone(),
                dir: dir.clone(),
            },
        )?;
        let cancel = crate::ops::session::ctrl_c(p);
        crate::ops::up::converge(p, &o, &backends, &images, lock, parallel, cancel).await
    })
}

/// `hdev release TAG`: tests a throwaway copy of HEAD and tags it only when every check
/// passes.
pub(super) fn release(p: &Printer, file: Option<&Path>, tag: &str, timeout: u64) -> CmdResult {
    use crate::ops::copy::{self as copyrun, CopyOptions};
    let envfile = find_envfile(file)?;
    let home = copyrun::home_of(&envfile);
    let cand = gatekeeper::preflight(&home, tag)?;
    let env_name = crate::throwaway::open_project(Some(&envfile))?
        .env
        .settings
        .name;
    let inner = Printer { json: false, ..*p };
    let short = cand.commit[..12.min(cand.commit.len())].to_string();
    crate::ops::session::runtime()?.block_on(async {
        let sig = copyrun::signals(p)?;
        let instance = crate::throwaway::new_instance(&env_name);
        let source = format!("commit {short}");
        let (mut copy, _run) =
            crate::throwaway::Copy::create(&home, &instance, &envfile, &source)?;
        let tree = copy.root.join("tree");
        let file_name = envfile.file_name().unwrap_or_else(|| "Envfile".as_ref());
        copy.record.envfile = tree.join(&cand.rel).join(file_name);
        let prepared = release::materialize(&cand.repo, &cand.commit, &tree)
            .map_err(anyhow::Error::from)
            .and_then(|()| copy.save().map_err(anyhow::Error::from));
        if let Err(e) = prepared {
            copy.remove_dir();
            return Err(e);
        }
        p.note(format!("testing commit {short} in throwaway copy `{instance}`"));
        let opts = CopyOptions {
            home: &home,
            timeout: std::time::Duration::from_secs(timeout),
            command: &[],
            keep_on_failure: false,
        };
        let out = copyrun::run(&inner, copy, &sig, &opts).await;
        copyrun::report(p, &env_name, &out.results, None)?;
        let tagged = match (&out.hash, out.summary) {
            (Some(hash), Some(summary)) if out.ok() => {
                let message = gatekeeper::message(&cand, hash, &summary, &out.results);
                gatekeeper::tag(&cand, &message)?;
                true
            }
            _ => false,
        };
        if p.json {
            p.json(&serde_json::json!({"tag": tag, "commit": cand.commit, "tagged": tagged, "run": out}));
        } else if tagged {
            p.line(format!(
                "{} tagged `{tag}` on {short}: {}",
                p.green("released:"),
                out.hash.as_deref().unwrap_or_default()
            ));
        } else {
            if let Some(e) = &out.error {
                eprintln!("{} {e}", p.red("error:"));
            }
            p.line(format!("{} no tag `{tag}`: the checks did not all pass", p.red("refused:")));
        }
        anyhow::Ok(if tagged { 0 } else { out.code().max(1) })
    })
}
