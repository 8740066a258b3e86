//! `hdev ui`: a local dashboard of the environment, a second front end beside the command
//! line. It serves one page on 127.0.0.1 (a random port unless told), behind a random token
//! in the address it prints; the page shows the picture of `graph` with states kept live,
//! each machine's details and logs, the last checks and the environment hash, and runs
//! the same operations as the commands, under the same lock.
//!
//! Layout: [`auth`] (the token and the checks every request passes), [`server`] (HTTP and
//! routing, the embedded page), [`live`] (the environment read again every period),
//! [`actions`] (one at a time, under the lock), [`logs`] (followed per machine).

mod actions;
mod auth;
mod live;
mod logs;
mod server;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::output::Printer;

/// What the dashboard's threads share.
#[derive(Debug)]
pub(crate) struct App {
    token: auth::Token,
    /// The Envfile as given on the command line (the project is opened again each time).
    file: Option<PathBuf>,
    live: live::Live,
    actions: actions::Actions,
    logs: logs::Logs,
    pokes: Mutex<Sender<()>>,
    /// When a page last asked for the overview (seconds since the epoch): with no page
    /// open, the refresher stops reading the engines.
    last_seen: AtomicU64,
}

impl App {
    /// Asks the refresher to read the environment now (after an action).
    fn poke(&self) {
        let _ = self
            .pokes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(());
    }

    /// A page asked for the overview: reads go on (at once, if they had stopped).
    fn seen(&self) {
        let now = crate::state::drift::now();
        if now.saturating_sub(self.last_seen.swap(now, Ordering::Relaxed)) > live::IDLE_AFTER {
            self.poke();
        }
    }

    /// Whether no page asked for a while.
    fn idle(&self) -> bool {
        crate::state::drift::now().saturating_sub(self.last_seen.load(Ordering::Relaxed))
            > live::IDLE_AFTER
    }
}

/// Options of `hdev ui`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// The port on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// Open the address in a browser (`xdg-open`).
    pub open_browser: bool,
}

/// Serves the dashboard until Ctrl-C; prints its address (with the token) first.
pub(crate) fn serve(p: &Printer, file: Option<&Path>, opts: Options) -> anyhow::Result<i32> {
    // Fail early, as any command does, on a folder without an Envfile or a broken one.
    crate::ops::session::open(file)?;
    let token = auth::Token::random().context("cannot read random bytes for the token")?;
    let rt = crate::ops::session::runtime()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", opts.port)))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", opts.port))?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = std::sync::mpsc::channel();
    let app = Arc::new(App {
        token,
        file: file.map(Path::to_path_buf),
        live: live::Live::default(),
        actions: actions::Actions::default(),
        logs: logs::Logs::default(),
        pokes: Mutex::new(tx),
        last_seen: AtomicU64::new(crate::state::drift::now()),
    });
    live::refresher(app.clone(), rx, live::period());
    let url = format!("http://127.0.0.1:{port}/?token={}", app.token.as_str());
    p.line(&url);
    p.note("the dashboard runs until Ctrl-C; anyone with this address can act on the environment");
    if opts.open_browser {
        open_browser(&url);
    }
    rt.block_on(async {
        tokio::select! {
            () = server::serve(app, listener) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    rt.shutdown_background();
    Ok(0)
}

/// Opens `url` in the desktop's browser, when there is one; quietly does nothing otherwise.
fn open_browser(url: &str) {
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
