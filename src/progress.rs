//! Live progress of work on many machines at once: one updating line per machine on a
//! terminal, plain timestamped lines otherwise, or one JSON event per line with `--json`.
//!
//! Everything goes to stderr except JSON events, which go to stdout so that a consumer
//! reads one stream of events.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{timestamp, Printer};

enum Mode {
    Tty {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
    },
    Plain,
    /// Plain lines (without the timestamp) to the printer's sink.
    Sink(crate::output::Sink),
    Json,
}

/// Progress of one command over a set of machines.
pub(crate) struct Progress {
    mode: Mutex<Mode>,
    color: bool,
    width: usize,
    start: Instant,
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
            let style = ProgressStyle::with_template(&format!(
                "{{spinner}} {{prefix:<{width}}} {{msg}} {{elapsed:.dim}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bars = machines
                .iter()
                .map(|m| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(style.clone());
                    b.set_prefix(m.clone());
                    b.set_message("waiting");
                    b.enable_steady_tick(Duration::from_millis(120));
                    (m.clone(), b)
                })
                .collect();
            Mode::Tty { multi, bars }
        } else {
            Mode::Plain
        };
        Progress {
            mode: Mutex::new(mode),
            color: p.color,
            width,
            start: Instant::now(),
        }
    }

    fn event(&self, kind: &str, machine: &str, message: &str) {
        let ev = serde_json::json!({
            "event": kind,
            "machine": machine,
            "message": message,
            "time": timestamp(),
            "elapsed_ms": self.start.elapsed().as_millis() as u64,
        });
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

    /// What a machine is doing now.
    pub(crate) fn status(&self, machine: &str, message: &str) {
        let Ok(mode) = self.mode.lock() else { return };
        match &*mode {
            Mode::Tty { bars, .. } => {
                if let Some(b) = bars.get(machine) {
                    b.set_message(message.to_string());
                }
            }
            Mode::Plain | Mode::Sink(_) => self.plain(&mode, machine, ":", message),
            Mode::Json => self.event("status", machine, message),
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
            Mode::Json => self.event("output", machine, line),
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
            Mode::Json => self.event(if ok { "done" } else { "failed" }, machine, message),
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
}
