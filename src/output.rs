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

/// Reports `message(elapsed)` through [`progress`] every `every` while long work runs,
/// until dropped.
pub(crate) struct Watch {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub(crate) fn start(
        every: std::time::Duration,
        message: impl Fn(std::time::Duration) -> String + Send + 'static,
    ) -> Watch {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
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
                progress(&message(t0.elapsed()));
            }
        });
        Watch {
            stop,
            thread: Some(thread),
        }
    }

    /// How often long work reports: every 10 s, or `HDEV_PROGRESS_MS`.
    pub(crate) fn period() -> std::time::Duration {
        std::time::Duration::from_millis(
            std::env::var("HDEV_PROGRESS_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000),
        )
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
pub(crate) fn last_line(log: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .split(['\n', '\r'])
        .map(str::trim)
        .rfind(|l| !l.is_empty())?;
    // Without terminal escapes (colours: ESC [ ... letter) and other control characters.
    let mut out = String::new();
    let mut chars = line.chars().peekable();
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
    Some(out.chars().take(100).collect())
}

/// `what for N s: LAST LINE` (or without the line when there is none).
pub(crate) fn waiting(what: &str, elapsed: std::time::Duration, last: Option<String>) -> String {
    match last.filter(|l| !l.is_empty()) {
        Some(l) => format!("{what} for {} s: {l}", elapsed.as_secs()),
        None => format!("{what} for {} s", elapsed.as_secs()),
    }
}

#[cfg(test)]
mod progress_tests {
    #[test]
    fn a_progress_line_shows_a_logs_last_line_without_terminal_escapes() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        std::fs::write(
            &log,
            "first\r\nStarting \u{1b}[0;1;39mmodprobe@configfs\u{1b}[0m - Load\u{7}\r\n\n  \n",
        )
        .unwrap();
        assert_eq!(
            super::last_line(&log).as_deref(),
            Some("Starting modprobe@configfs - Load")
        );
        assert_eq!(super::last_line(&d.path().join("none")), None);
        assert_eq!(
            super::waiting("VM `a`: booting", std::time::Duration::from_secs(12), None),
            "VM `a`: booting for 12 s"
        );
    }
}
