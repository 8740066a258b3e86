//! One printer for everything hdev reports: human lines (coloured on a terminal), or JSON.

use std::io::{IsTerminal, Write};

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    pub json: bool,
    pub color: bool,
    pub tty: bool,
}

impl Printer {
    pub(crate) fn new(json: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let color = tty && std::env::var_os("NO_COLOR").is_none();
        Printer { json, color, tty }
    }

    /// A result line on stdout.
    pub(crate) fn line(&self, s: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", s.as_ref());
    }

    /// A JSON document on stdout.
    pub(crate) fn json<T: Serialize>(&self, v: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, v);
        let _ = writeln!(out);
    }

    /// A progress or status note on stderr, with a timestamp when not on a terminal.
    pub(crate) fn note(&self, s: impl AsRef<str>) {
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
