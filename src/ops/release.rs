//! Releases (git tags of the Envfile's repository): listing them with their environment
//! hashes, moving this folder's environment to one (`up --at`, `update`), checking the
//! inputs against `Envfile.lock` (`up --locked`), and the gatekeeper `release`, which
//! tags a commit only when a throwaway copy of it passed every check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::copy::{self as copyrun, CopyOptions, CopyOutcome};
use super::session::{ctrl_c, load_state, with_images, Session};
use super::up::{converge, Code};
use crate::apply::Images;
use crate::backend::Backends;
use crate::output::Printer;
use crate::plan::Plan;
use crate::project::{find_envfile, Project};
use crate::release::gatekeeper::{self, Candidate};
use crate::release::{self, update, Tag};
use crate::state::EnvLock;
use crate::throwaway::{self, Copy};

/// One release in `releases`.
#[derive(Debug, Serialize)]
pub(crate) struct ReleaseRow {
    pub tag: String,
    pub commit: String,
    pub date: String,
    pub hash: Option<String>,
    /// Hash recorded in the tag message by `hdev release`.
    pub recorded_hash: Option<String>,
    /// Why the hash could not be computed at this tag.
    pub error: Option<String>,
}

/// The releases of the Envfile's repository, newest first, each with its hash (or why
/// it has none).
pub(crate) fn releases(file: Option<&Path>) -> anyhow::Result<Vec<ReleaseRow>> {
    let envfile = find_envfile(file)?;
    let (repo, _) = release::repo_of(crate::envfile::folder_of(&envfile))?;
    let mut rows = Vec::new();
    for tag in release::tags(&repo)? {
        let (hash, error) = match release::hash_at(&envfile, &tag.name) {
            Ok((_, report)) => (Some(report.hash.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        rows.push(ReleaseRow {
            tag: tag.name,
            commit: tag.commit,
            date: tag.date,
            hash,
            recorded_hash: tag.recorded_hash,
            error,
        });
    }
    Ok(rows)
}

/// Refuses when the inputs no longer match `Envfile.lock`, naming every difference.
pub(crate) fn check_locked(project: &Project) -> anyhow::Result<()> {
    project.refuse_overrides("`hdev up --locked`")?;
    let path = project.lock_path();
    let Some(locked) = project.lockfile()? else {
        anyhow::bail!(
            "`--locked` needs `{}`, and there is none\nhelp: `hdev lock` writes it",
            crate::envfile::display_name(&path)
        );
    };
    let mut diffs = crate::lockfile::differences(&locked, &project.current_lock_against(&locked)?);
    diffs.extend(moved_sources(project)?);
    if diffs.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the environment no longer matches `{}`:\n  {}\nhelp: run `hdev lock` if these changes are meant, then commit the lock file",
        crate::envfile::display_name(&path),
        diffs.join("\n  ")
    )
}

/// A sentence for each locked source whose branch or tag moved in its repository.
fn moved_sources(project: &Project) -> anyhow::Result<Vec<String>> {
    let moved = crate::sources::moved(&project.env, &project.sources)?;
    Ok(moved
        .into_iter()
        .map(|(name, pin, now)| match now {
            Some(c) => format!(
                "source `{name}`: {pin} moved to {} in its repository; `hdev lock --update {name}` follows it",
                &c[..c.len().min(12)]
            ),
            None => format!("source `{name}`: {pin} is gone from its repository"),
        })
        .collect())
}

/// Which release to move this folder's environment to, and on what terms.
#[derive(Debug, Default)]
pub(crate) struct Target<'a> {
    /// The tag (the latest when none).
    pub tag: Option<&'a str>,
    /// Refuse, before any machine is touched, unless the release has this hash.
    pub expect_hash: Option<&'a str>,
    /// Refuse when the release's inputs no longer match its `Envfile.lock`.
    pub locked: bool,
    /// Plan against the engines first, so that the front end can show the plan (`update`).
    pub plan: bool,
}

/// A release opened as this folder's environment, checked, its images ready and the
/// state locked: what [`move_to`] runs.
pub(crate) struct Move {
    pub opened: Session,
    pub tag: Tag,
    /// The plan, when [`Target::plan`] asked for it.
    pub plan: Option<Plan>,
    dir: PathBuf,
    backends: Backends,
    images: Images,
    lock: EnvLock,
}

/// Opens the release `t` names as this folder's environment (its instance, its state).
pub(crate) async fn prepare(
    p: &Printer,
    file: Option<&Path>,
    t: &Target<'_>,
) -> anyhow::Result<Move> {
    let release = open(file, t)?;
    let (tag, dir) = (release.tag, release.dir);
    let (o, backends, images) = with_images(release.project, p).await?;
    if let Some(want) = t.expect_hash {
        anyhow::ensure!(
            o.env_hash.matches(want),
            "release `{}` has hash {}, not `{want}`; nothing was changed",
            tag.name,
            o.env_hash
        );
    }
    let lock = o.project.state.lock()?;
    let plan = if t.plan {
        Some(plan(&o, &backends).await?)
    } else {
        None
    };
    Ok(Move {
        opened: o,
        tag,
        plan,
        dir,
        backends,
        images,
        lock,
    })
}

/// Unpacks the release under this folder's instance, and checks its lock when asked.
fn open(file: Option<&Path>, t: &Target<'_>) -> anyhow::Result<update::Release> {
    let envfile = find_envfile(file)?;
    let home = copyrun::home_of(&envfile);
    // The instance of this folder, as `up` would name it.
    let here = throwaway::open_project(Some(&envfile))?;
    let release = update::open_release(&envfile, &home, &here.instance, t.tag)?;
    if t.locked {
        check_locked(&release.project)?;
    }
    Ok(release)
}

async fn plan(o: &Session, backends: &Backends) -> anyhow::Result<Plan> {
    let state = load_state(&o.project)?;
    let observed = backends.observe(&o.ctx).await?;
    Ok(crate::plan::plan(
        &o.project.env,
        &o.hashes,
        &observed,
        &state,
        &backends.available(),
    ))
}

/// Records which release the environment runs and brings it there, recreating only the
/// machines whose hash changed; the exit code.
pub(crate) async fn move_to(p: &Printer, m: Move, parallel: Option<usize>) -> Code {
    let o = &m.opened;
    update::record(
        &o.project.state,
        &update::ReleaseRecord {
            version: update::RECORD_VERSION,
            tag: m.tag.name.clone(),
            commit: m.tag.commit.clone(),
            hash: o.env_hash.0.clone(),
            dir: m.dir.clone(),
        },
    )?;
    let cancel = ctrl_c(p);
    converge(p, o, &m.backends, &m.images, None, m.lock, parallel, cancel).await
}

/// A commit about to be released: checked (clean tree, new and valid tag name) before
/// anything runs.
#[derive(Debug)]
pub(crate) struct Gate {
    cand: Candidate,
    envfile: PathBuf,
    home: PathBuf,
    /// The environment's name, for the copy's instance and the JUnit suite.
    pub env_name: String,
    /// The commit, short.
    pub short: String,
}

/// What `release` did.
#[derive(Debug, Serialize)]
pub(crate) struct ReleaseReport {
    pub tag: String,
    pub commit: String,
    pub tagged: bool,
    pub run: CopyOutcome,
    /// The commit, short (for the text report).
    #[serde(skip)]
    pub short: String,
}

impl ReleaseReport {
    /// The process exit code: 0 when tagged, never 0 when not.
    pub(crate) fn code(&self) -> i32 {
        if self.tagged {
            0
        } else {
            self.run.code().max(1)
        }
    }
}

/// Checks that HEAD of the Envfile's repository can be released as `tag`.
pub(crate) fn gate(file: Option<&Path>, tag: &str) -> anyhow::Result<Gate> {
    let envfile = find_envfile(file)?;
    let home = copyrun::home_of(&envfile);
    let here = throwaway::open_project(Some(&envfile))?;
    // A release is what the repository says, never a developer's working copy.
    here.refuse_overrides("`hdev release`")?;
    let cand = gatekeeper::preflight(&home, tag)?;
    let env_name = here.env.settings.name;
    let short = cand.commit[..12.min(cand.commit.len())].to_string();
    Ok(Gate {
        cand,
        envfile,
        home,
        env_name,
        short,
    })
}

/// Runs a throwaway copy of the candidate commit (not of the working tree) to its
/// verdict; it is always torn down.
pub(crate) async fn test_candidate(
    p: &Printer,
    g: &Gate,
    timeout: Duration,
) -> anyhow::Result<CopyOutcome> {
    let sig = copyrun::signals(p)?;
    let instance = throwaway::new_instance(&g.env_name);
    let source = format!("commit {}", g.short);
    let (mut copy, _run) = Copy::create(&g.home, &instance, &g.envfile, &source)?;
    let tree = copy.root.join("tree");
    let file_name = g.envfile.file_name().unwrap_or_else(|| "Envfile".as_ref());
    copy.record.envfile = tree.join(&g.cand.rel).join(file_name);
    let prepared = release::materialize(&g.cand.repo, &g.cand.commit, &tree)
        .map_err(anyhow::Error::from)
        .and_then(|()| copy.save().map_err(anyhow::Error::from));
    if let Err(e) = prepared {
        copy.remove_dir();
        return Err(e);
    }
    p.note(format!(
        "testing commit {} in throwaway copy `{instance}`",
        g.short
    ));
    let opts = CopyOptions {
        home: &g.home,
        timeout,
        command: &[],
        keep_on_failure: false,
    };
    // The copy's progress is plain text on stderr, so that stdout carries one document.
    Ok(copyrun::run(&Printer { json: false, ..*p }, copy, &sig, &opts).await)
}

/// Tags the candidate when its copy came up and passed every check; otherwise not.
pub(crate) fn decide(g: &Gate, run: CopyOutcome) -> anyhow::Result<ReleaseReport> {
    let tagged = match (&run.hash, run.summary) {
        (Some(hash), Some(summary)) if run.ok() => {
            let message = gatekeeper::message(&g.cand, hash, &summary, &run.results);
            gatekeeper::tag(&g.cand, &message)?;
            true
        }
        _ => false,
    };
    Ok(ReleaseReport {
        tag: g.cand.tag.clone(),
        commit: g.cand.commit.clone(),
        tagged,
        run,
        short: g.short.clone(),
    })
}
