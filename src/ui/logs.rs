//! Following a machine's logs for the details panel: the first time the page asks for a
//! machine's lines, a thread starts following them (`logs -F`, the last 200 lines first)
//! into a buffer the page polls by sequence number. A stream that ends (the machine stops
//! or is replaced by a reset) is followed again when the page next asks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::App;
use crate::backend::LogLine;
use crate::ops::interact::{logs, LogsOptions};
use crate::ops::session::open;

/// Lines kept per machine.
const KEEP: usize = 1000;
/// How long after a stream ended it is followed again.
const AGAIN_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Buffer {
    lines: VecDeque<(u64, String)>,
    next: u64,
    following: bool,
    ended: Option<Instant>,
}

impl Buffer {
    fn push(&mut self, text: String) {
        self.lines.push_back((self.next, text));
        self.next += 1;
        if self.lines.len() > KEEP {
            self.lines.pop_front();
        }
    }
}

/// Every machine's followed lines.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    buffers: Mutex<BTreeMap<String, Buffer>>,
}

/// Lines after a sequence number, as the page gets them.
#[derive(Debug, Serialize)]
pub(crate) struct Lines {
    pub lines: Vec<String>,
    /// The sequence number to ask after next time.
    pub next: u64,
    pub following: bool,
}

impl Logs {
    fn with(&self, machine: &str, f: impl FnOnce(&mut Buffer)) {
        let mut g = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(machine.to_string()).or_default());
    }
}

/// The lines of `machine` from sequence number `after` on; starts following it when it
/// is not followed.
pub(crate) fn read(app: &Arc<App>, machine: &str, after: u64) -> Lines {
    let mut start = false;
    let mut out = Lines {
        lines: Vec::new(),
        next: after,
        following: false,
    };
    app.logs.with(machine, |b| {
        if !b.following && b.ended.is_none_or(|t| t.elapsed() >= AGAIN_AFTER) {
            b.following = true;
            b.ended = None;
            start = true;
        }
        out.lines = b
            .lines
            .iter()
            .filter(|(n, _)| *n >= after)
            .map(|(_, l)| l.clone())
            .collect();
        out.next = b.next;
        out.following = b.following;
    });
    if start {
        follow(app.clone(), machine.to_string());
    }
    out
}

fn follow(app: Arc<App>, machine: String) {
    std::thread::spawn(move || {
        let ended = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(stream(&app, &machine)),
            Err(e) => Err(e.into()),
        };
        let why = match ended {
            Ok(()) => "the log stream ended".to_string(),
            Err(e) => format!("{e:#}"),
        };
        app.logs.with(&machine, |b| {
            b.push(format!("-- {why} --"));
            b.following = false;
            b.ended = Some(Instant::now());
        });
    });
}

async fn stream(app: &Arc<App>, machine: &str) -> anyhow::Result<()> {
    let o = open(app.file.as_deref())?;
    let opts = LogsOptions {
        machine: Some(machine),
        follow: true,
        tail: Some(200),
    };
    let sink_for = |_: &str, _| {
        let app = app.clone();
        let machine = machine.to_string();
        move |l: LogLine| app.logs.with(&machine, |b| b.push(l.text))
    };
    logs(&o, opts, sink_for).await
}
