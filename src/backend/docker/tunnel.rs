//! The Docker engine inside one of the environment's VMs (`host = "VM"`): reached through
//! an SSH forward of the VM's `/var/run/docker.sock` to a socket in a private folder of
//! this machine (the folder 0700, the socket 0600: ssh's default `StreamLocalBindMask`),
//! for as long as the connection lives.
//!
//! A VM that is restored from a snapshot (reset, restore) or restarted forgets the SSH
//! session: the forward is then started again on the same socket path
//! ([`DockerBackend::reconnect`]), so the bollard client, which opens its connections to
//! that path, goes on working.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::DockerBackend;
use crate::backend::ssh::SshTarget;
use crate::backend::BackendError;
use crate::envfile::Backend;

/// How long the VM's engine may take to answer after the forward is up (dockerd starts
/// after sshd at boot, slowly under software emulation).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The forward: how to reach the VM, the socket, and the ssh process (killed when
/// dropped or replaced).
pub struct Tunnel {
    vm: String,
    target: SshTarget,
    sock: PathBuf,
    ssh: tokio::sync::Mutex<Option<tokio::process::Child>>,
    _dir: tempfile::TempDir,
}

fn unreachable(vm: &str, message: impl std::fmt::Display) -> BackendError {
    BackendError::Unreachable {
        backend: Backend::Docker,
        message: format!("the Docker engine in VM `{vm}`: {message}"),
    }
}

impl Tunnel {
    /// Starts ssh (replacing the one before) and waits, bounded, until the engine
    /// answers through it.
    async fn start(&self) -> Result<Docker, BackendError> {
        let vm = self.vm.as_str();
        let mut slot = self.ssh.lock().await;
        if let Some(mut old) = slot.take() {
            let _ = old.kill().await;
        }
        let mut c = tokio::process::Command::new("ssh");
        // The forward ends with hdev, even when hdev is killed.
        crate::backend::ssh::dies_with_hdev(&mut c);
        // A session the VM forgot (a restored snapshot) ends within seconds; the first
        // value of an option wins, so these come before the target's own.
        c.args(["-N", "-o", "ExitOnForwardFailure=yes"])
            .args(["-o", "StreamLocalBindUnlink=yes"])
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"])
            // A connection of its own: a forward must not ride on (or become) the VM's
            // shared connection, whose life is not the forward's.
            .args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .arg("-L")
            .arg(format!("{}:/var/run/docker.sock", self.sock.display()))
            .args(self.target.args(10))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut ssh = c
            .spawn()
            .map_err(|e| unreachable(vm, format!("ssh: {e}")))?;
        let t0 = Instant::now();
        let local = format!("unix://{}", self.sock.display());
        // Bounded: the forward comes up, then the engine behind it answers.
        let docker = loop {
            if let Ok(Some(status)) = ssh.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = ssh.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                return Err(unreachable(
                    vm,
                    format!("ssh ended ({status}): {}", err.trim()),
                ));
            }
            if self.sock.exists() {
                if let Ok(d) = DockerBackend::connect_to(Some(&local)).await {
                    break d.docker;
                }
            }
            if t0.elapsed() > READY_TIMEOUT {
                return Err(unreachable(
                    vm,
                    format!("no answer in {} s", READY_TIMEOUT.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        *slot = Some(ssh);
        Ok(docker)
    }
}

use bollard::Docker;

impl DockerBackend {
    /// Connects to the Docker engine inside VM `vm` (reached as `target`), known to hdev
    /// by `endpoint` (`vm://NAME`).
    pub async fn connect_in_vm(
        vm: &str,
        endpoint: &str,
        target: &SshTarget,
    ) -> Result<DockerBackend, BackendError> {
        let dir = tempfile::Builder::new()
            .prefix("hdev-vm-")
            .tempdir()
            .map_err(|e| unreachable(vm, e))?;
        let tunnel = Tunnel {
            vm: vm.to_string(),
            target: target.clone(),
            sock: dir.path().join("docker.sock"),
            ssh: tokio::sync::Mutex::new(None),
            _dir: dir,
        };
        let docker = tunnel.start().await?;
        Ok(DockerBackend {
            docker,
            endpoint: Some(endpoint.to_string()),
            tunnel: Some(std::sync::Arc::new(tunnel)),
        })
    }

    /// Where the `docker` CLI reaches this engine: the forwarded socket of an engine in a
    /// VM, the endpoint of others (`None`: this machine's).
    pub fn cli_endpoint(&self) -> Option<String> {
        match &self.tunnel {
            Some(t) => Some(format!("unix://{}", t.sock.display())),
            None => self.endpoint.clone(),
        }
    }

    /// Starts the SSH forward to an engine inside a VM again, after the VM forgot it
    /// (restarted, or restored from a snapshot); nothing for other engines.
    pub async fn reconnect(&self) -> Result<(), BackendError> {
        match &self.tunnel {
            Some(t) => t.start().await.map(|_| ()),
            None => Ok(()),
        }
    }
}
