//! Commands that reach into running machines: exec, ssh (a shell, for containers an exec),
//! logs.

use std::io::IsTerminal;
use std::path::Path;

use crate::backend::{BackendError, Backends, Engine, LogLine, ObservedMachine, RunState};
use crate::cli::CmdResult;
use crate::ops::session::{check_machine, open, runtime, Opened};
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

/// Finds a running machine of the environment in the engine.
async fn running(backends: &Backends, o: &Opened, name: &str) -> anyhow::Result<ObservedMachine> {
    check_machine(&o.project.env, name)?;
    if let Some(m) = o.project.env.machines.get(name) {
        backends.get(m)?;
    }
    let obs = backends.observe(&o.ctx).await?;
    let m =
        obs.machines.get(name).cloned().ok_or_else(|| {
            anyhow::anyhow!("machine `{name}` is not created; run `hdev up` first")
        })?;
    if m.state != RunState::Running {
        return Err(BackendError::NotRunning {
            machine: name.to_string(),
            state: m.state.to_string(),
        }
        .into());
    }
    Ok(m)
}

fn interactive(o: &Opened, machine: &str, cmd: &[String]) -> CmdResult {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let rt = runtime()?;
    let code = rt.block_on(async {
        let backends = o.connect().await?;
        let m = running(&backends, o, machine).await?;
        let b = backends.get_named(&m.name, m.backend)?;
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
    interactive(&o, machine, cmd)
}

/// `hdev ssh MACHINE`: an interactive shell in the machine (for a VM, the system's
/// OpenSSH client; for a container, an exec of a shell).
pub(crate) fn ssh(_p: &Printer, file: Option<&Path>, machine: &str) -> CmdResult {
    let o = open(file)?;
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
    if let Some(m) = machine {
        check_machine(&o.project.env, m)?;
    }
    let json = p.json;
    runtime()?.block_on(async {
        let backends = o.connect().await?;
        let obs = backends.observe(&o.ctx).await?;
        let targets: Vec<&ObservedMachine> = obs
            .machines
            .values()
            .filter(|m| machine.is_none_or(|t| t == m.name))
            .collect();
        if targets.is_empty() {
            anyhow::bail!(
                "{} not created; run `hdev up` first",
                machine.map_or("no machine is".to_string(), |m| format!("machine `{m}` is"))
            );
        }
        let w = targets.iter().map(|m| m.name.len()).max().unwrap_or(0);
        let prefixed = machine.is_none();
        let streams = targets.iter().map(|m| {
            let name = m.name.clone();
            let sink = move |l: LogLine| {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"machine": name, "stream": if l.stderr {"stderr"} else {"stdout"}, "line": l.text})
                    );
                } else if prefixed {
                    println!("{name:<w$} | {}", l.text);
                } else if l.stderr {
                    eprintln!("{}", l.text);
                } else {
                    println!("{}", l.text);
                }
            };
            let (id, b) = (m.id.clone(), backends.get_named(&m.name, m.backend));
            async move { anyhow::Ok(b?.logs(&id, follow, tail, &sink).await?) }
        });
        for r in futures_util::future::join_all(streams).await {
            r?;
        }
        Ok(0)
    })
}
