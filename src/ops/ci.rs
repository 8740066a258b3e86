//! `ci`: a throwaway copy of this folder's environment (the working tree), brought up,
//! tested and always torn down, by [`super::copy`]; and `ci --clean`, which removes the
//! copies earlier runs kept or left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::copy::{self as copyrun, CopyOptions, CopyOutcome};
use super::test::write_junit;
use crate::output::Printer;
use crate::project::{find_envfile, Placement, Project};
use crate::throwaway::{self, Copy};

/// How `ci` runs its copy.
pub(crate) struct CiOptions<'a> {
    pub junit: Option<&'a Path>,
    pub keep_on_failure: bool,
    /// Seconds a check may run when it sets none.
    pub timeout: u64,
    /// Host command run against the copy after the checks.
    pub command: &'a [String],
}

/// The Envfile, its project (opened so that a broken Envfile is refused before anything
/// is created) and the copies' home folder.
fn home(file: Option<&Path>) -> anyhow::Result<(PathBuf, Project, PathBuf)> {
    let envfile = find_envfile(file)?;
    let project = Project::open_placed(&envfile, Placement::default())?;
    let home = copyrun::home_of(&envfile);
    Ok((envfile, project, home))
}

/// The copy's own progress is plain text on stderr even under `--json`, so that stdout
/// carries one JSON document.
fn progress(p: &Printer) -> Printer {
    Printer { json: false, ..*p }
}

/// `ci --clean`: removes kept and leftover copies of this folder; their instances.
pub(crate) async fn clean(p: &Printer, file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let (_, _, home) = home(file)?;
    Ok(copyrun::sweep(&progress(p), &home, true).await)
}

/// `ci`: removes copies earlier runs left, then runs a new copy to its verdict (writing
/// the JUnit report when asked).
pub(crate) async fn run(
    p: &Printer,
    file: Option<&Path>,
    a: &CiOptions<'_>,
) -> anyhow::Result<CopyOutcome> {
    let (envfile, project, home) = home(file)?;
    let inner = progress(p);
    let sig = copyrun::signals(p)?;
    copyrun::sweep(&inner, &home, false).await;
    let instance = throwaway::new_instance(&project.env.settings.name);
    let (copy, _run_lock) = Copy::create(&home, &instance, &envfile, "working tree")?;
    p.note(format!("throwaway copy `{instance}`"));
    if let Ok(local) = crate::envfile::load_local(&crate::envfile::local_path(&envfile)) {
        for o in local.iter().filter(|o| {
            !crate::project::use_args()
                .iter()
                .any(|u| u.source == o.source)
        }) {
            p.note(format!(
                "`Envfile.local` puts `{}` in place of source `{}`: not in this copy (give `--use` to test it)",
                o.path.display(),
                o.source
            ));
        }
    }
    let opts = CopyOptions {
        home: &home,
        timeout: Duration::from_secs(a.timeout),
        command: a.command,
        keep_on_failure: a.keep_on_failure,
    };
    let run = copyrun::run(&inner, copy, &sig, &opts).await;
    write_junit(a.junit, &project.env.settings.name, &run.results)?;
    Ok(run)
}
