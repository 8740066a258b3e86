//! One printer for everything hdev reports: human lines (coloured on a terminal), or JSON.

use std::io::{IsTerminal, Write};

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    pub json: bool,
    pub color: bool,
    pub tty: bool,
    /// Where every line goes instead of stdout and stderr (a front end that shows the
    /// progress of work itself, as the dashboard does); plain, uncoloured lines.
    pub sink: Option<Sink>,
}

/// Where a [`Printer`] sends its lines instead of the terminal: one per process (leaked
/// once), so that the printer stays `Copy`.
#[derive(Clone, Copy)]
pub(crate) struct Sink(pub &'static (dyn Fn(&str) + Send + Sync));

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl Printer {
    pub(crate) fn new(json: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let color = tty && std::env::var_os("NO_COLOR").is_none();
        Printer {
            json,
            color,
            tty,
            sink: None,
        }
    }

    /// A printer whose every line goes to `sink`: plain lines, no colour, no JSON.
    pub(crate) fn to_sink(sink: Sink) -> Self {
        Printer {
            json: false,
            color: false,
            tty: false,
            sink: Some(sink),
        }
    }

    /// A result line on stdout.
    pub(crate) fn line(&self, s: impl AsRef<str>) {
        if let Some(Sink(f)) = self.sink {
            return f(s.as_ref());
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", s.as_ref());
    }

    /// An error line on stderr (`error: ...`).
    pub(crate) fn error(&self, s: impl AsRef<str>) {
        if let Some(Sink(f)) = self.sink {
            return f(&format!("error: {}", s.as_ref()));
        }
        eprintln!("{} {}", self.red("error:"), s.as_ref());
    }

    /// A JSON document on stdout.
    pub(crate) fn json<T: Serialize>(&self, v: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, v);
        let _ = writeln!(out);
    }

    /// A progress or status note on stderr, with a timestamp when not on a terminal.
    pub(crate) fn note(&self, s: impl AsRef<str>) {
        if let Some(Sink(f)) = self.sink {
            return f(s.as_ref());
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = writeln!(err, "{}", s.as_ref());
        } else {
            let _ = writeln!(err, "[{}] {}", timestamp(), s.as_ref());
        }
    }

    pub(crate) fn bold(&self, s: &str) -> String {
        if self.color {
            console::style(s).bold().to_string()
        } else {
            s.to_string()
        }
    }

    pub(crate) fn green(&self, s: &str) -> String {
        if self.color {
            console::style(s).green().to_string()
        } else {
            s.to_string()
        }
    }

    pub(crate) fn red(&self, s: &str) -> String {
        if self.color {
            console::style(s).red().to_string()
        } else {
            s.to_string()
        }
    }
}

/// `HH:MM:SS.mmm` in UTC, for plain progress lines.
pub(crate) fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        now.subsec_millis()
    )
}

/// Where long work below the command line (a box build, a VM boot) says how it goes: set
/// once by the command line; silent otherwise (tests, the library).
static PROGRESS: std::sync::OnceLock<ProgressSink> = std::sync::OnceLock::new();

type ProgressSink = Box<dyn Fn(&str) + Send + Sync>;

/// Sets where long work reports its progress (the first call wins).
pub(crate) fn set_progress(f: impl Fn(&str) + Send + Sync + 'static) {
    let _ = PROGRESS.set(Box::new(f));
}

/// Reports progress of long work, if anyone listens.
pub(crate) fn progress(message: &str) {
    if let Some(f) = PROGRESS.get() {
        f(message);
    }
}
