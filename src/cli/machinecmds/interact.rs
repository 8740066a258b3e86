//! Commands that reach into running machines: exec, ssh (a shell, for containers an exec),
//! logs; the work is in `crate::ops::interact`, the terminal (raw mode) is here.

use std::io::IsTerminal;
use std::path::Path;

use crate::backend::Engine;
use crate::cli::{render, CmdResult};
use crate::ops::interact::{self, LogsOptions};
use crate::ops::session::{open, runtime, Session};
use crate::output::Printer;

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; failure leaves the
        // terminal untouched.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawMode { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return RawMode { saved: None };
            }
            RawMode { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the termios read in `enable`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

fn interactive(o: &Session, machine: &str, cmd: &[String]) -> CmdResult {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let rt = runtime()?;
    let code = rt.block_on(async {
        let backends = o.connect().await?;
        let m = interact::running(&backends, o, machine).await?;
        let b = backends.get_observed(&m)?;
        let size = console::Term::stdout().size_checked();
        // A VM's shell is the system's ssh client, which sets up the terminal itself.
        let _raw = (tty && m.backend == crate::envfile::Backend::Docker).then(RawMode::enable);
        let code = b.interactive(&m.id, cmd, tty, size).await?;
        anyhow::Ok(code)
    });
    // The stdin pump may sit in a blocking read of the terminal; do not wait for it.
    rt.shutdown_background();
    Ok(i32::try_from(code?).unwrap_or(1))
}

/// `hdev exec MACHINE -- CMD...`: the command's exit code is hdev's.
pub(crate) fn exec(_p: &Printer, file: Option<&Path>, machine: &str, cmd: &[String]) -> CmdResult {
    let o = open(file)?;
    if cmd.is_empty() {
        anyhow::bail!("no command given\nhelp: hdev exec {machine} -- COMMAND [ARGS...]");
    }
    // The command may change files: the last drift check no longer holds.
    o.project.state.forget_drift([machine]);
    interactive(&o, machine, cmd)
}

/// `hdev ssh MACHINE`: an interactive shell in the machine (for a VM, the system's
/// OpenSSH client; for a container, an exec of a shell).
pub(crate) fn ssh(_p: &Printer, file: Option<&Path>, machine: &str) -> CmdResult {
    let o = open(file)?;
    o.project.state.forget_drift([machine]);
    interactive(&o, machine, &[])
}

/// `hdev logs [MACHINE] [-f]`: a machine's main-process output, or every machine's with
/// its name before each line.
pub(crate) fn logs(
    p: &Printer,
    file: Option<&Path>,
    machine: Option<&str>,
    follow: bool,
    tail: Option<u32>,
) -> CmdResult {
    let o = open(file)?;
    let (json, prefixed) = (p.json, machine.is_none());
    let opts = LogsOptions {
        machine,
        follow,
        tail,
    };
    let sink_for = |name: &str, w| render::machines::log_sink(json, prefixed, w, name.to_string());
    runtime()?.block_on(interact::logs(&o, opts, sink_for))?;
    Ok(0)
}
