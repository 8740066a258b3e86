//! The dashboard's actions: up, halt, reset (one machine or all), snapshot save and
//! restore, and the checks. Each runs the same operation as its command, on a thread of
//! its own, under the environment's lock, taken before the action is accepted: while one
//! runs (from this page, another tab, or a command in a terminal) a second one is refused
//! with a message, and no command can start until it ends. Its output (the same lines the
//! command prints) is kept for the page to show as it comes.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::App;
use crate::ops::session::{open, Session};
use crate::ops::{snapshot, teardown, test, up};
use crate::output::{Printer, Sink};
use crate::state::{EnvLock, StateError};

/// The most lines kept of an action's output (the first ones go).
const MAX_LINES: usize = 2000;

/// What the page asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Request {
    Up,
    Halt,
    /// Back to the baseline: these machines, or all when empty.
    Reset {
        #[serde(default)]
        machines: Vec<String>,
    },
    Save {
        name: String,
    },
    Restore {
        name: String,
    },
    /// Runs the `[[test]]` checks.
    Test,
}

impl Request {
    /// The action in words, as the page and the refusal of a second one name it.
    pub(crate) fn label(&self) -> String {
        match self {
            Request::Up => "up".to_string(),
            Request::Halt => "halt".to_string(),
            Request::Reset { machines } if machines.is_empty() => "reset (every machine)".into(),
            Request::Reset { machines } => format!("reset {}", machines.join(" ")),
            Request::Save { name } => format!("snapshot save {name}"),
            Request::Restore { name } => format!("snapshot restore {name}"),
            Request::Test => "test (the checks)".to_string(),
        }
    }

    /// What is wrong with it before anything is opened.
    fn problem(&self) -> Option<String> {
        match self {
            Request::Save { name } | Request::Restore { name } => crate::snapshot::check_name(name)
                .err()
                .map(|e| e.to_string()),
            _ => None,
        }
    }
}

/// The last action, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActionView {
    pub id: u64,
    pub label: String,
    pub running: bool,
    /// Seconds since the epoch.
    pub started_at: u64,
    pub elapsed_ms: u64,
    pub lines: Vec<String>,
    /// Once it ended: whether it did what it was asked.
    pub ok: Option<bool>,
    /// Once it ended: the outcome in a sentence.
    pub outcome: Option<String>,
}

struct Run {
    view: ActionView,
    started: Instant,
}

/// The action now running or last run.
#[derive(Default)]
pub(crate) struct Actions {
    last: Mutex<Option<Run>>,
    sink: OnceLock<Sink>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Actions")
    }
}

/// Why an action was not started.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Another action or an hdev command runs (409).
    Busy(String),
    /// The request is wrong (400).
    Bad(String),
}

impl Actions {
    /// The action now running or last run, with its elapsed time now.
    pub(crate) fn view(&self) -> Option<ActionView> {
        let g = self.last.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|r| {
            let mut v = r.view.clone();
            if v.running {
                v.elapsed_ms = r.started.elapsed().as_millis() as u64;
            }
            v
        })
    }

    fn with_run(&self, f: impl FnOnce(&mut Run)) {
        if let Some(r) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(r);
        }
    }

    fn push(&self, line: &str) {
        self.with_run(|r| {
            r.view.lines.push(line.to_string());
            if r.view.lines.len() > MAX_LINES {
                r.view.lines.remove(0);
            }
        });
    }
}

/// Starts `req` unless something else runs; its id.
pub(crate) fn start(app: &Arc<App>, req: Request) -> Result<u64, Refused> {
    if let Some(p) = req.problem() {
        return Err(Refused::Bad(p));
    }
    let mut last = app.actions.last.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = last.as_ref().filter(|r| r.view.running) {
        return Err(Refused::Busy(format!(
            "`{}` is running (for {} s): one action at a time; wait for it to finish",
            r.view.label,
            r.started.elapsed().as_secs()
        )));
    }
    let o = open(app.file.as_deref()).map_err(|e| Refused::Bad(format!("{e:#}")))?;
    let lock = o.project.state.lock().map_err(|e| match e {
        StateError::Locked { .. } => Refused::Busy(e.to_string()),
        other => Refused::Bad(other.to_string()),
    })?;
    let id = last.as_ref().map_or(1, |r| r.view.id + 1);
    *last = Some(Run {
        view: ActionView {
            id,
            label: req.label(),
            running: true,
            started_at: crate::state::drift::now(),
            elapsed_ms: 0,
            lines: Vec::new(),
            ok: None,
            outcome: None,
        },
        started: Instant::now(),
    });
    drop(last);
    let app = app.clone();
    std::thread::spawn(move || {
        let p = Printer::to_sink(sink(&app));
        let result = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(&app, &p, &o, lock, &req)));
        finish(&app, result);
    });
    Ok(id)
}

/// The one sink of this process's action printers: the running action's lines.
fn sink(app: &Arc<App>) -> Sink {
    *app.actions.sink.get_or_init(|| {
        let a = app.clone();
        Sink(Box::leak(Box::new(move |l: &str| a.actions.push(l))))
    })
}

fn finish(app: &App, result: anyhow::Result<i32>) {
    let (ok, outcome) = match result {
        Ok(0) => (true, "done".to_string()),
        Ok(code) => (
            false,
            format!("failed (exit code {code}): see the lines above"),
        ),
        Err(e) => {
            let m = format!("{e:#}");
            app.actions.push(&format!("error: {m}"));
            (false, format!("failed: {m}"))
        }
    };
    app.actions.with_run(|r| {
        r.view.running = false;
        r.view.elapsed_ms = r.started.elapsed().as_millis() as u64;
        r.view.ok = Some(ok);
        r.view.outcome = Some(outcome);
    });
    app.poke();
}

/// Runs the operation of the command that does what `req` asks; its exit code.
async fn run(
    app: &App,
    p: &Printer,
    o: &Session,
    lock: EnvLock,
    req: &Request,
) -> anyhow::Result<i32> {
    match req {
        Request::Up => {
            // Never cancelled from here: the sender lives as long as the run.
            let (_tx, rx) = tokio::sync::watch::channel(false);
            up::up(p, app.file.as_deref(), None, Some(lock), rx).await
        }
        Request::Halt => {
            let stopped =
                teardown::halt_env(o, &lock, &|n| p.note(format!("{n}: stopped"))).await?;
            p.note(format!("{} machine(s) stopped", stopped.len()));
            Ok(0)
        }
        Request::Reset { machines } => snapshot::reset(p, o, lock, machines).await,
        Request::Save { name } => snapshot::save(p, o, lock, name).await,
        Request::Restore { name } => snapshot::restore(p, o, lock, name).await,
        Request::Test => {
            let _lock = lock;
            let report = test::run(o, Duration::from_secs(300), &[], None).await?;
            for r in &report.results {
                let mark = if r.passed { "passed" } else { "FAILED" };
                p.note(format!("{mark}: {} ({})", r.name, r.machine));
                if let Some(f) = &r.failure {
                    p.note(format!("  {f}"));
                }
            }
            let s = report.summary;
            p.note(format!("{} passed, {} failed", s.passed, s.failed));
            Ok(report.code())
        }
    }
}
