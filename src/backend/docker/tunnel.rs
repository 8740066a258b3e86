//! The Docker engine inside one of the environment's VMs (`host = "VM"`): reached through
//! an SSH forward of the VM's `/var/run/docker.sock` to a socket in a private folder of
//! this machine (mode 0700, the socket 0600: ssh's default `StreamLocalBindMask`), for as
//! long as the connection lives.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::DockerBackend;
use crate::backend::ssh::SshTarget;
use crate::backend::BackendError;
use crate::envfile::Backend;

/// How long the VM's engine may take to answer after the forward is up (dockerd starts
/// after sshd at boot, slowly under software emulation).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The forward: the ssh process (killed when dropped) and the folder of its socket.
pub struct Tunnel {
    _ssh: tokio::process::Child,
    _dir: tempfile::TempDir,
}

fn unreachable(vm: &str, message: impl std::fmt::Display) -> BackendError {
    BackendError::Unreachable {
        backend: Backend::Docker,
        message: format!("the Docker engine in VM `{vm}`: {message}"),
    }
}

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
        let sock = dir.path().join("docker.sock");
        let mut c = tokio::process::Command::new("ssh");
        c.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("{}:/var/run/docker.sock", sock.display()))
            .args(target.args(10))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut ssh = c
            .spawn()
            .map_err(|e| unreachable(vm, format!("ssh: {e}")))?;
        let t0 = Instant::now();
        let local = format!("unix://{}", sock.display());
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
            if Path::new(&sock).exists() {
                if let Ok(d) = DockerBackend::connect_to(Some(&local)).await {
                    break d;
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
        Ok(DockerBackend {
            docker: docker.docker,
            endpoint: Some(endpoint.to_string()),
            _tunnel: Some(std::sync::Arc::new(Tunnel {
                _ssh: ssh,
                _dir: dir,
            })),
        })
    }
}
