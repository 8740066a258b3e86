//! Running commands in containers (streamed line by line for provisioning, or wired to
//! the terminal for `exec` and `ssh`), copying files in, and reading logs.

use std::collections::VecDeque;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{LogsOptionsBuilder, UploadToContainerOptionsBuilder};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{map_err, DockerBackend};
use crate::backend::{BackendError, ExecOutcome, LineSink, LogLine, TAIL_LINES};

/// How an interactive command is wired to the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecOptions {
    /// Allocate a pseudo-terminal (the host's stdin is one).
    pub tty: bool,
    /// Forward the host's stdin.
    pub stdin: bool,
}

/// Splits a byte stream into lines, keeping the last few for error messages.
struct Lines<'a> {
    buf: Vec<u8>,
    tail: VecDeque<String>,
    sink: LineSink<'a>,
}

impl<'a> Lines<'a> {
    fn new(sink: LineSink<'a>) -> Self {
        Lines {
            buf: Vec::new(),
            tail: VecDeque::new(),
            sink,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            self.emit(&line[..line.len() - 1]);
        }
    }

    fn emit(&mut self, line: &[u8]) {
        let s = String::from_utf8_lossy(line);
        let s = s.trim_end_matches('\r');
        (self.sink)(s);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(s.to_string());
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.emit(&rest);
        }
        self.tail.into_iter().collect()
    }
}

impl DockerBackend {
    async fn create_exec(
        &self,
        id: &str,
        cmd: &[String],
        opts: ExecOptions,
    ) -> Result<String, BackendError> {
        let config = CreateExecOptions {
            attach_stdin: Some(opts.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(opts.tty),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        self.docker
            .create_exec(id, config)
            .await
            .map(|r| r.id)
            .map_err(map_err(
                format!("run `{}` in container `{id}`", cmd.join(" ")),
                "container",
                id,
            ))
    }

    async fn exit_code(&self, exec_id: &str) -> Result<i64, BackendError> {
        let r = self.docker.inspect_exec(exec_id).await.map_err(map_err(
            "read the exit code of a command",
            "exec",
            exec_id,
        ))?;
        Ok(r.exit_code.unwrap_or(-1))
    }

    /// Runs a command to its end, giving each output line to `sink` as it arrives.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        sink: LineSink<'_>,
    ) -> Result<ExecOutcome, BackendError> {
        let exec_id = self.create_exec(id, cmd, ExecOptions::default()).await?;
        let started = self
            .docker
            .start_exec(&exec_id, None)
            .await
            .map_err(map_err(
                format!("start `{}`", cmd.join(" ")),
                "exec",
                &exec_id,
            ))?;
        let mut lines = Lines::new(sink);
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(LogOutput::StdOut { message })
                    | Ok(LogOutput::StdErr { message })
                    | Ok(LogOutput::Console { message }) => lines.push(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        return Err(map_err(
                            format!("read the output of `{}`", cmd.join(" ")),
                            "exec",
                            &exec_id,
                        )(e))
                    }
                }
            }
        }
        let tail = lines.finish();
        Ok(ExecOutcome {
            exit_code: self.exit_code(&exec_id).await?,
            tail,
        })
    }

    /// Runs a command wired to this process's stdin, stdout and stderr; returns its exit
    /// code. The caller puts the terminal in raw mode when `opts.tty` is set.
    pub async fn exec_interactive(
        &self,
        id: &str,
        cmd: &[String],
        opts: ExecOptions,
        size: Option<(u16, u16)>,
    ) -> Result<i64, BackendError> {
        let exec_id = self.create_exec(id, cmd, opts).await?;
        let started = self
            .docker
            .start_exec(
                &exec_id,
                Some(StartExecOptions {
                    detach: false,
                    tty: opts.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(map_err(
                format!("start `{}`", cmd.join(" ")),
                "exec",
                &exec_id,
            ))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return self.exit_code(&exec_id).await;
        };
        if let (true, Some((rows, cols))) = (opts.tty, size) {
            let _ = self
                .docker
                .resize_exec(
                    &exec_id,
                    ResizeExecOptions {
                        height: rows,
                        width: cols,
                    },
                )
                .await;
        }
        // Follow the terminal's size while the session lasts.
        let resize = opts.tty.then(|| {
            let docker = self.docker.clone();
            let exec_id = exec_id.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut winch) = signal(SignalKind::window_change()) else {
                    return;
                };
                while winch.recv().await.is_some() {
                    if let Some((rows, cols)) = console::Term::stdout().size_checked() {
                        let size = ResizeExecOptions {
                            height: rows,
                            width: cols,
                        };
                        let _ = docker.resize_exec(&exec_id, size).await;
                    }
                }
            })
        });
        let pump = opts.stdin.then(|| {
            tokio::spawn(async move {
                let mut stdin = tokio::io::stdin();
                let _ = tokio::io::copy(&mut stdin, &mut input).await;
                let _ = input.shutdown().await;
            })
        });
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        while let Some(chunk) = output.next().await {
            let r = match chunk {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    out.write_all(&message).await.and(out.flush().await)
                }
                Ok(LogOutput::StdErr { message }) => {
                    err.write_all(&message).await.and(err.flush().await)
                }
                Ok(LogOutput::StdIn { .. }) => Ok(()),
                Err(_) => break,
            };
            if r.is_err() {
                break;
            }
        }
        for task in [pump, resize].into_iter().flatten() {
            task.abort();
        }
        self.exit_code(&exec_id).await
    }

    /// Unpacks a tar archive into folder `dest` of the container (which must exist).
    pub async fn copy_in(&self, id: &str, dest: &str, tar: Vec<u8>) -> Result<(), BackendError> {
        let opts = UploadToContainerOptionsBuilder::default()
            .path(dest)
            .build();
        self.docker
            .upload_to_container(id, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(map_err(
                format!("copy files into `{dest}` of container `{id}`"),
                "path or container",
                dest,
            ))
    }

    /// Streams a container's logs to `sink`; with `follow`, until the container stops.
    pub async fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u32>,
        sink: &(dyn Fn(LogLine) + Send + Sync),
    ) -> Result<(), BackendError> {
        let tail = tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into());
        let opts = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        while let Some(chunk) = stream.next().await {
            let (stderr, message) = match chunk {
                Ok(LogOutput::StdErr { message }) => (true, message),
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    (false, message)
                }
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(e) => return Err(map_err(format!("read logs of `{id}`"), "container", id)(e)),
            };
            let buf = &mut pending[usize::from(stderr)];
            buf.extend_from_slice(&message);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                sink(LogLine {
                    stderr,
                    text: String::from_utf8_lossy(&line[..line.len() - 1]).into_owned(),
                });
            }
        }
        for (i, rest) in pending.iter().enumerate() {
            if !rest.is_empty() {
                sink(LogLine {
                    stderr: i == 1,
                    text: String::from_utf8_lossy(rest).into_owned(),
                });
            }
        }
        Ok(())
    }
}
