//! Live progress of work on many machines at once: one updating line per machine on a
//! terminal, plain timestamped lines otherwise, or one JSON event per line with `--json`.
//!
//! Everything goes to stderr except JSON events, which go to stdout so that a consumer
//! reads one stream of events.
//!
//! Long waits (a box build, an import, an upload, a VM boot, a health check) report often
//! through [`Progress::tick`] and [`Progress::bytes`]: on a terminal their line changes
//! live (a bar for bytes); in plain lines and JSON events a wait says nothing for its
//! first [`FIRST`], then at most once every [`EVERY`]. Work far below the command line
//! (the box store, the engines) reports through [`report`] to the [`Progress`] that the
//! command installed, which shows such a subject (`box NAME`) on a line of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{timestamp, Printer};

/// How long a wait goes unreported in plain lines and JSON events.
pub(crate) const FIRST: Duration = Duration::from_secs(2);
/// How often, at most, a wait is reported in plain lines and JSON events.
pub(crate) const EVERY: Duration = Duration::from_secs(3);

enum Mode {
    Tty {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
        /// The bars that show bytes now (the others are spinners).
        byte_bars: BTreeSet<String>,
    },
    Plain,
    /// Plain lines (without the timestamp) to the printer's sink.
    Sink(crate::output::Sink),
    Json,
}

/// When a line about a long wait is due: the first once the wait has lasted `first`, then
/// at most one every `every`. The time is passed in, so that tests choose it.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    since: Instant,
    last: Option<Instant>,
    first: Duration,
    every: Duration,
}

impl Throttle {
    pub(crate) fn new(now: Instant, first: Duration, every: Duration) -> Throttle {
        Throttle {
            since: now,
            last: None,
            first,
            every,
        }
    }

    /// A new wait begins at `now`.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.since = now;
        self.last = None;
    }

    /// Whether a line is due at `now` (and if so, it counts as said).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = match self.last {
            None => now.saturating_duration_since(self.since) >= self.first,
            Some(l) => now.saturating_duration_since(l) >= self.every,
        };
        if due {
            self.last = Some(now);
        }
        due
    }
}

type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// Progress of one command over a set of machines.
pub(crate) struct Progress {
    mode: Mutex<Mode>,
    /// Per machine or subject: when its current wait is next worth a plain line.
    waits: Mutex<BTreeMap<String, Throttle>>,
    /// Subjects reported through [`report`] that have a line (they get a closing one).
    shown: Mutex<BTreeSet<String>>,
    color: bool,
    width: usize,
    start: Instant,
    now: Clock,
}

/// What long work reports through [`report`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Update<'a> {
    /// A step of it began (said at once).
    Status(&'a str),
    /// How it goes now (said live on a terminal, else throttled).
    Tick(&'a str),
    /// Bytes done of a total, when known (a bar on a terminal, else throttled).
    Bytes {
        what: &'a str,
        done: u64,
        total: Option<u64>,
    },
    /// It ended (said only where something was said of it before).
    Done { ok: bool, message: &'a str },
}

impl Progress {
    /// Progress for `machines` (the lines appear in this order on a terminal).
    pub(crate) fn new(p: &Printer, machines: &[String]) -> Progress {
        let width = machines.iter().map(String::len).max().unwrap_or(0);
        let mode = if let Some(sink) = p.sink {
            Mode::Sink(sink)
        } else if p.json {
            Mode::Json
        } else if p.tty {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bars = machines
                .iter()
                .map(|m| (m.clone(), spinner(&multi, m, width)))
                .collect();
            Mode::Tty {
                multi,
                bars,
                byte_bars: BTreeSet::new(),
            }
        } else {
            Mode::Plain
        };
        Progress {
            mode: Mutex::new(mode),
            waits: Mutex::new(BTreeMap::new()),
            shown: Mutex::new(BTreeSet::new()),
            color: p.color,
            width,
            start: Instant::now(),
            now: Box::new(Instant::now),
        }
    }

    /// The same with the time taken from `now` (tests).
    #[cfg(test)]
    pub(crate) fn with_clock(
        p: &Printer,
        machines: &[String],
        now: impl Fn() -> Instant + Send + Sync + 'static,
    ) -> Progress {
        Progress {
            now: Box::new(now),
            ..Progress::new(p, machines)
        }
    }

    fn event(&self, kind: &str, machine: &str, message: &str, extra: Option<serde_json::Value>) {
        let mut ev = serde_json::json!({
            "event": kind,
            "machine": machine,
            "message": message,
            "time": timestamp(),
            "elapsed_ms": self.start.elapsed().as_millis() as u64,
        });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (extra, ev.as_object_mut()) {
            obj.extend(extra);
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ev}");
    }

    fn plain(&self, mode: &Mode, machine: &str, sep: &str, message: &str) {
        if let Mode::Sink(crate::output::Sink(f)) = mode {
            return f(&format!("{machine:<w$} {sep} {message}", w = self.width));
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "[{}] {:<w$} {sep} {message}",
            timestamp(),
            machine,
            w = self.width
        );
    }

    /// The live line of `machine` on a terminal; `create`: added below the others when it
    /// has none (a subject reported from below, such as a box).
    fn bar<'m>(&self, mode: &'m mut Mode, machine: &str, create: bool) -> Option<&'m ProgressBar> {
        let Mode::Tty {
            multi,
            bars,
            byte_bars,
        } = mode
        else {
            return None;
        };
        if create && !bars.contains_key(machine) {
            bars.insert(machine.to_string(), spinner(multi, machine, self.width));
        }
        let b = bars.get(machine)?;
        if byte_bars.remove(machine) {
            b.set_style(spinner_style(self.width));
        }
        Some(b)
    }

    /// A new wait of `machine` begins now.
    fn begin_wait(&self, machine: &str) {
        let now = (self.now)();
        if let Ok(mut w) = self.waits.lock() {
            w.entry(machine.to_string())
                .or_insert_with(|| Throttle::new(now, FIRST, EVERY))
                .restart(now);
        }
    }

    /// Whether a throttled line about `machine`'s wait is due.
    fn due(&self, machine: &str) -> bool {
        let now = (self.now)();
        let Ok(mut w) = self.waits.lock() else {
            return false;
        };
        w.entry(machine.to_string())
            .or_insert_with(|| Throttle::new(now, FIRST, EVERY))
            .due(now)
    }

    /// What a machine is doing now.
    pub(crate) fn status(&self, machine: &str, message: &str) {
        self.status_in(machine, message, false)
    }

    fn status_in(&self, machine: &str, message: &str, create: bool) {
        self.begin_wait(machine);
        let Ok(mut mode) = self.mode.lock() else {
            return;
        };
        match &*mode {
            Mode::Tty { .. } => {
                if let Some(b) = self.bar(&mut mode, machine, create) {
                    b.set_message(message.to_string());
                }
            }
            Mode::Plain | Mode::Sink(_) => self.plain(&mode, machine, ":", message),
            Mode::Json => self.event("status", machine, message, None),
        }
    }

    /// How a long wait of a machine goes now: live on a terminal; otherwise a line only
    /// once the wait has lasted [`FIRST`], then at most one every [`EVERY`].
    pub(crate) fn tick(&self, machine: &str, message: &str) {
        self.tick_in(machine, message, false)
    }

    fn tick_in(&self, machine: &str, message: &str, create: bool) {
        let Ok(mut mode) = self.mode.lock() else {
            return;
        };
        match &*mode {
            Mode::Tty { .. } => {
                if let Some(b) = self.bar(&mut mode, machine, create) {
                    b.set_message(message.to_string());
                }
            }
            Mode::Plain | Mode::Sink(_) => {
                if self.due(machine) {
                    self.plain(&mode, machine, ":", message)
                }
            }
            Mode::Json => {
                if self.due(machine) {
                    self.event("progress", machine, message, None)
                }
            }
        }
    }

    /// Bytes `done` of `total` of a transfer (`what`: an import, an upload): a bar on a
    /// terminal; otherwise throttled like [`Progress::tick`].
    fn bytes_in(&self, machine: &str, what: &str, done: u64, total: Option<u64>, create: bool) {
        let Ok(mut mode) = self.mode.lock() else {
            return;
        };
        match &mut *mode {
            Mode::Tty {
                multi,
                bars,
                byte_bars,
            } => {
                if create && !bars.contains_key(machine) {
                    bars.insert(machine.to_string(), spinner(multi, machine, self.width));
                }
                let Some(b) = bars.get(machine) else { return };
                if byte_bars.insert(machine.to_string()) {
                    b.set_style(byte_style(self.width, total.is_some()));
                }
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(done);
                b.set_message(what.to_string());
            }
            Mode::Plain | Mode::Sink(_) => {
                if self.due(machine) {
                    self.plain(&mode, machine, ":", &bytes_line(what, done, total))
                }
            }
            Mode::Json => {
                if self.due(machine) {
                    let extra = serde_json::json!({"done": done, "total": total});
                    self.event(
                        "bytes",
                        machine,
                        &bytes_line(what, done, total),
                        Some(extra),
                    )
                }
            }
        }
    }

    /// Shows what long work reported through [`report`] about `subject`.
    fn update(&self, subject: &str, u: Update<'_>) {
        if !matches!(u, Update::Done { .. }) {
            if let Ok(mut s) = self.shown.lock() {
                s.insert(subject.to_string());
            }
        }
        match u {
            Update::Status(m) => self.status_in(subject, m, true),
            Update::Tick(m) => self.tick_in(subject, m, true),
            Update::Bytes { what, done, total } => self.bytes_in(subject, what, done, total, true),
            Update::Done { ok, message } => {
                let shown = self.shown.lock().is_ok_and(|mut s| s.remove(subject));
                if shown {
                    self.finish(subject, ok, message)
                }
            }
        }
    }

    /// A line of output from a machine (provisioning, health checks).
    pub(crate) fn output(&self, machine: &str, line: &str) {
        let Ok(mode) = self.mode.lock() else { return };
        match &*mode {
            Mode::Tty { multi, .. } => {
                let prefix = format!("{machine:<w$} |", w = self.width);
                let prefix = if self.color {
                    console::style(prefix).dim().to_string()
                } else {
                    prefix
                };
                let _ = multi.println(format!("{prefix} {line}"));
            }
            Mode::Plain | Mode::Sink(_) => self.plain(&mode, machine, "|", line),
            Mode::Json => self.event("output", machine, line, None),
        }
    }

    /// A machine finished: `ok` or failed, with a closing message.
    pub(crate) fn finish(&self, machine: &str, ok: bool, message: &str) {
        let Ok(mode) = self.mode.lock() else { return };
        match &*mode {
            Mode::Tty { bars, .. } => {
                if let Some(b) = bars.get(machine) {
                    let mark = match (ok, self.color) {
                        (true, true) => console::style("✓").green().to_string(),
                        (false, true) => console::style("✗").red().to_string(),
                        (true, false) => "ok".to_string(),
                        (false, false) => "failed".to_string(),
                    };
                    b.set_style(
                        ProgressStyle::with_template(&format!(
                            "{mark} {{prefix:<{}}} {{msg}}",
                            self.width
                        ))
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.finish_with_message(format!("{message} ({:.1}s)", b.elapsed().as_secs_f64()));
                }
            }
            Mode::Plain | Mode::Sink(_) => {
                self.plain(&mode, machine, if ok { "✓" } else { "✗" }, message)
            }
            Mode::Json => self.event(if ok { "done" } else { "failed" }, machine, message, None),
        }
    }

    /// Stops drawing (bars stay on screen as they last were).
    pub(crate) fn close(&self) {
        if let Ok(mut mode) = self.mode.lock() {
            if let Mode::Tty { bars, .. } = &mut *mode {
                for b in bars.values() {
                    if !b.is_finished() {
                        b.abandon();
                    }
                }
            }
        }
    }

    /// Makes this the progress that [`report`] shows, until the guard is dropped.
    pub(crate) fn install(self: &Arc<Self>) -> Installed {
        let mut cur = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        let previous = cur.replace(Arc::downgrade(self));
        Installed { previous }
    }
}

fn spinner_style(width: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix:<{width}}} {{msg}} {{elapsed:.dim}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn byte_style(width: usize, total: bool) -> ProgressStyle {
    let t = match total {
        true => format!(
            "{{spinner}} {{prefix:<{width}}} {{msg}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{elapsed:.dim}}"
        ),
        false => format!(
            "{{spinner}} {{prefix:<{width}}} {{msg}} {{bytes}} {{bytes_per_sec}} {{elapsed:.dim}}"
        ),
    };
    ProgressStyle::with_template(&t)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn spinner(multi: &MultiProgress, name: &str, width: usize) -> ProgressBar {
    let b = multi.add(ProgressBar::new_spinner());
    b.set_style(spinner_style(width));
    b.set_prefix(name.to_string());
    b.set_message("waiting");
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

/// `what: 12.0 MiB of 40.0 MiB (30%)`, or without the total when it is unknown.
pub(crate) fn bytes_line(what: &str, done: u64, total: Option<u64>) -> String {
    match total {
        Some(t) if t > 0 => format!(
            "{what}: {} of {} ({}%)",
            human_bytes(done),
            human_bytes(t),
            done.saturating_mul(100) / t
        ),
        _ => format!("{what}: {}", human_bytes(done)),
    }
}

/// Bytes as people read them: `512 B`, `1.5 KiB`, `12.0 MiB`, `2.0 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// The progress that [`report`] shows (one command's at a time).
static CURRENT: Mutex<Option<Weak<Progress>>> = Mutex::new(None);

/// Where [`report`] goes when no progress is installed: one throttle per subject.
static FALLBACK: Mutex<BTreeMap<String, Throttle>> = Mutex::new(BTreeMap::new());

/// Keeps a [`Progress`] installed (see [`Progress::install`]).
pub(crate) struct Installed {
    previous: Option<Weak<Progress>>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut cur = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        *cur = self.previous.take();
    }
}

fn current() -> Option<Arc<Progress>> {
    CURRENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(Weak::upgrade)
}

/// Whether a command shows progress (so that lower layers leave waits to it).
pub(crate) fn installed() -> bool {
    current().is_some()
}

/// Reports how long work on `subject` (`box NAME`) goes: to the installed [`Progress`], or
/// else as a note through [`crate::output::progress`] at most every
/// [`Watch::period`] (steps and ends at once).
pub(crate) fn report(subject: &str, u: Update<'_>) {
    if let Some(p) = current() {
        return p.update(subject, u);
    }
    let message = match u {
        Update::Status(m) | Update::Tick(m) => m.to_string(),
        Update::Bytes { what, done, total } => bytes_line(what, done, total),
        Update::Done { .. } => return,
    };
    let now = Instant::now();
    let due = {
        let mut f = FALLBACK.lock().unwrap_or_else(|p| p.into_inner());
        // The first report comes a tick into the work: the first line one period into it.
        let period = Watch::period();
        let first = period.saturating_sub(Watch::tick());
        let t = f
            .entry(subject.to_string())
            .or_insert_with(|| Throttle::new(now, first, period));
        match u {
            Update::Status(_) => {
                t.restart(now);
                true
            }
            _ => t.due(now),
        }
    };
    if due {
        crate::output::progress(&format!("{subject}: {message}"));
    }
}

/// A reader that reports the bytes read through it as `what` of `subject` (at most every
/// quarter second; [`report`] throttles further).
pub(crate) struct Counting<R> {
    inner: R,
    subject: String,
    what: String,
    done: u64,
    total: Option<u64>,
    last: Option<Instant>,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R, subject: &str, what: &str, total: Option<u64>) -> Counting<R> {
        Counting {
            inner,
            subject: subject.to_string(),
            what: what.to_string(),
            done: 0,
            total,
            last: None,
        }
    }

    /// Counts `n` more bytes.
    pub(crate) fn add(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|l| now.duration_since(l) >= Duration::from_millis(250))
        {
            self.last = Some(now);
            report(
                &self.subject,
                Update::Bytes {
                    what: &self.what,
                    done: self.done,
                    total: self.total,
                },
            );
        }
    }
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.add(n as u64);
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.add(amt as u64);
    }
}

/// What a box build's log says of how far it got: the stage a script announced
/// (`==> STAGE`), debootstrap's stages and counts of packages (`I: Retrieving PKG`, ...),
/// and the last line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BuildLog {
    pub stage: Option<String>,
    pub retrieved: u32,
    pub validated: u32,
    pub unpacked: u32,
    pub configured: u32,
    pub last: Option<String>,
    partial: String,
}

impl BuildLog {
    /// Reads more of the log (lines may be cut anywhere).
    pub(crate) fn feed(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(i) = self.partial.find(['\n', '\r']) {
            let line: String = self.partial.drain(..=i).collect();
            self.line(&line);
        }
    }

    fn line(&mut self, raw: &str) {
        let l = clean(raw);
        if l.is_empty() {
            return;
        }
        if let Some(stage) = l.strip_prefix("==> ") {
            self.stage = Some(stage.trim().to_string());
            // The stage says it: the line is not repeated.
            self.last = None;
            return;
        } else if let Some(rest) = l.strip_prefix("I: ") {
            let (verb, what) = rest.split_once(' ').unwrap_or((rest, ""));
            // One package (`I: Retrieving libc6 2.36-9`, `I: Unpacking libc6...`), not a
            // phase (`I: Unpacking required packages...`) or an index (`InRelease`).
            let one = is_package(what);
            let count = match (verb, one) {
                ("Retrieving", true) => Some((&mut self.retrieved, "retrieving packages")),
                ("Validating", true) => Some((&mut self.validated, "validating packages")),
                ("Unpacking", true) => Some((&mut self.unpacked, "unpacking packages")),
                ("Configuring", true) => Some((&mut self.configured, "configuring packages")),
                _ => None,
            };
            match count {
                Some((n, stage)) => {
                    *n += 1;
                    self.stage = Some(format!("debootstrap: {stage}"));
                }
                None => {
                    self.stage = Some(format!("debootstrap: {}", rest.trim_end_matches('.')));
                    self.last = None;
                    return;
                }
            }
        }
        self.last = Some(l);
    }

    /// `STAGE (N retrieved, N unpacked, N configured): LAST LINE`, what of it is known.
    pub(crate) fn summary(&self) -> String {
        let counts: Vec<String> = [
            (self.retrieved, "retrieved"),
            (self.validated, "validated"),
            (self.unpacked, "unpacked"),
            (self.configured, "configured"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}"))
        .collect();
        let mut s = self.stage.clone().unwrap_or_default();
        if !counts.is_empty() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("({})", counts.join(", ")));
        }
        if let Some(l) = &self.last {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(l);
        }
        s
    }
}

/// Whether `what` names one package, with its version or not: `libc6 2.36-9+deb12u4`,
/// `libc6...`.
fn is_package(what: &str) -> bool {
    let mut words = what.trim_end_matches('.').split(' ');
    let name = words.next().unwrap_or_default();
    let version = words.next();
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:".contains(c))
        && version.is_none_or(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        && words.next().is_none()
}

/// A log line without terminal escapes and control characters, trimmed, at most 100
/// characters long.
pub(crate) fn clean(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out.trim().chars().take(100).collect()
}

/// Reports `message(elapsed)` about `subject` through [`report`] every
/// `every` while long work runs, until dropped.
pub(crate) struct Watch {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub(crate) fn start(
        subject: String,
        every: Duration,
        mut message: impl FnMut(Duration) -> String + Send + 'static,
    ) -> Watch {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let (lock, cv) = &*s;
            let mut done = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (d, _) = cv
                    .wait_timeout(done, every)
                    .unwrap_or_else(|p| p.into_inner());
                done = d;
                if *done {
                    return;
                }
                let m = message(t0.elapsed());
                report(&subject, Update::Tick(&m));
            }
        });
        Watch {
            stop,
            thread: Some(thread),
        }
    }

    /// How often long work reports where no live progress shows it: every 10 s, or
    /// `HDEV_PROGRESS_MS`.
    pub(crate) fn period() -> Duration {
        Duration::from_millis(
            std::env::var("HDEV_PROGRESS_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000),
        )
    }

    /// How often long work looks at how it goes: every second (or the period, if shorter);
    /// [`report`] decides what is said.
    pub(crate) fn tick() -> Duration {
        Self::period().min(Duration::from_secs(1))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The last non-empty line of a log file (read from its last 4 KiB), without control
/// characters and at most 100 characters long: what a progress line shows of it.
pub(crate) fn last_line(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf)
        .split(['\n', '\r'])
        .map(clean)
        .rfind(|l| !l.is_empty())
}

/// `what for N s: LAST LINE` (or without the line when there is none).
pub(crate) fn waiting(what: &str, elapsed: Duration, last: Option<String>) -> String {
    match last.filter(|l| !l.is_empty()) {
        Some(l) => format!("{what} for {} s: {l}", elapsed.as_secs()),
        None => format!("{what} for {} s", elapsed.as_secs()),
    }
}

#[cfg(test)]
mod tests;
