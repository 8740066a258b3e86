//! Releases: `hdev releases` (the git tags of the Envfile's repository with their
//! environment hashes), `hdev up --locked|--at`, `hdev update` and `hdev release` (the
//! gatekeeper). The work is in `crate::ops::release`.

use std::path::Path;
use std::time::Duration;

use super::{machinecmds, render, CmdResult};
use crate::ops::export;
use crate::ops::release::{self, Target};
use crate::ops::session::runtime;
use crate::output::Printer;

/// `hdev releases`.
pub(super) fn releases(p: &Printer, file: Option<&Path>) -> CmdResult {
    render::releases::list(p, &release::releases(file)?);
    Ok(0)
}

/// What `hdev up` was given.
#[derive(Debug, Default)]
pub(super) struct UpArgs<'a> {
    pub parallel: Option<usize>,
    pub locked: bool,
    pub at: Option<&'a str>,
    pub expect_hash: Option<&'a str>,
    pub from: Option<&'a Path>,
    pub dir: Option<&'a Path>,
}

/// `hdev up [--locked] [--at TAG | --from FILE [--dir DIR]] [--expect-hash HASH]`.
pub(super) fn up(p: &Printer, file: Option<&Path>, a: &UpArgs<'_>) -> CmdResult {
    if let Some(archive) = a.from {
        return up_from(p, archive, a);
    }
    let Some(tag) = a.at else {
        anyhow::ensure!(
            a.expect_hash.is_none(),
            "`--expect-hash` goes with `--at TAG` or `--from FILE`"
        );
        if a.locked {
            release::check_locked(&crate::throwaway::open_project(file)?)?;
        }
        return machinecmds::up(p, file, a.parallel);
    };
    let target = Target {
        tag: Some(tag),
        expect_hash: a.expect_hash,
        locked: a.locked,
        plan: false,
    };
    to_release(p, file, &target, a.parallel)
}

/// `hdev up --from FILE`: unpacks the archive (boxes verified into the store, the hash
/// checked), then brings the unpacked environment up as any other.
fn up_from(p: &Printer, archive: &Path, a: &UpArgs<'_>) -> CmdResult {
    let from = export::FromArchive {
        file: archive,
        dir: a.dir,
        expect_hash: a.expect_hash,
    };
    let u = export::unpack(&from)?;
    render::releases::unpacked(p, &u);
    if a.locked {
        release::check_locked(&crate::throwaway::open_project(Some(&u.envfile))?)?;
    }
    machinecmds::up(p, Some(&u.envfile), a.parallel)
}

/// `hdev export [-o FILE] [--without-boxes]`.
pub(super) fn export(
    p: &Printer,
    file: Option<&Path>,
    out: Option<std::path::PathBuf>,
    without_boxes: bool,
) -> CmdResult {
    let o = export::ExportOptions { out, without_boxes };
    render::releases::exported(p, &export::export(file, &o)?);
    Ok(0)
}

/// `hdev update [TAG]`: moves the environment to a release (the latest when none is
/// named), recreating only the machines whose hash changed; shows the plan first.
pub(super) fn update(p: &Printer, file: Option<&Path>, tag: Option<&str>) -> CmdResult {
    let target = Target {
        tag,
        plan: true,
        ..Target::default()
    };
    to_release(p, file, &target, None)
}

fn to_release(
    p: &Printer,
    file: Option<&Path>,
    target: &Target<'_>,
    parallel: Option<usize>,
) -> CmdResult {
    runtime()?.block_on(async {
        let m = release::prepare(p, file, target).await?;
        render::releases::moving(p, &m);
        release::move_to(p, m, parallel).await
    })
}

/// `hdev release TAG`: tests a throwaway copy of HEAD and tags it only when every check
/// passes.
pub(super) fn release(p: &Printer, file: Option<&Path>, tag: &str, timeout: u64) -> CmdResult {
    let gate = release::gate(file, tag)?;
    runtime()?.block_on(async {
        let run = release::test_candidate(p, &gate, Duration::from_secs(timeout)).await?;
        render::checks::results(p, &run.results);
        let report = release::decide(&gate, run)?;
        render::releases::release(p, &report)?;
        Ok(report.code())
    })
}

/// What `hdev cite` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CiteFormat {
    Bibtex,
    Text,
    Json,
}

/// `hdev cite [--format bibtex|text|json]`: the environment's citation; warnings (no
/// release tag at HEAD, a hash that differs from the release's) go to stderr.
pub(super) fn cite(p: &Printer, file: Option<&Path>, format: Option<CiteFormat>) -> CmdResult {
    let project = crate::throwaway::open_project(file)?;
    let report = project.hash()?;
    let env = &project.env;
    let c = crate::release::cite::cite(
        &env.settings.name,
        env.settings.description.as_deref(),
        &env.dir,
        &report,
    )?;
    let format = if p.json {
        Some(CiteFormat::Json)
    } else {
        format
    };
    render::releases::citation(p, &c, format);
    Ok(0)
}
