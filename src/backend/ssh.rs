//! Commands in VMs over SSH, through the system's OpenSSH client.
//!
//! Every environment has its own key pair in `.hdev/ssh/` (never a shared insecure key);
//! the public half reaches the guest at first boot. Every VM has its own host key, made by
//! hdev before the VM first boots and handed to it through its seed disk ([`HostKey`]);
//! hdev pins it in the environment's own `.hdev/ssh/known_hosts` and checks it on every
//! connection (`StrictHostKeyChecking=yes`), so nothing on the network can stand in for a
//! VM, not even at first contact.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

// Quoting is pure and shared with the `ProxyCommand` the Envfile's remote hosts call for.
pub use crate::envfile::topology::shell_quote;

/// The readiness command: true once SSH works and cloud-init (if any) is done, whatever
/// cloud-init's own verdict (a failed module is the image's business, not a hang).
const READY: &str = "if command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait >/dev/null 2>&1 || true; fi";

/// How long a booting guest may answer with a host key other than the pinned one
/// before hdev gives up on it.
const HOST_KEY_GRACE: Duration = Duration::from_secs(10);

/// Why an SSH operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// `ssh` or `ssh-keygen` could not be started or its key files written.
    #[error("cannot run `{program}`: {source}; install openssh-client")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    /// `ssh-keygen` failed.
    #[error("`ssh-keygen` failed for `{}`: {message}", path.display())]
    Keygen { path: PathBuf, message: String },
    /// The guest answered with a host key other than the one hdev gave it.
    #[error("{host} presented an SSH host key other than the one hdev gave it (pinned in `{}`): either its box does not take host keys from hdev's seed (rebuild or re-import the box) or something else answers at that address; hdev does not connect", known_hosts.display())]
    HostKey { host: String, known_hosts: PathBuf },
    /// The guest's SSH server did not answer in time.
    #[error("{host} did not accept SSH within {secs}s (last error: {last})")]
    Timeout {
        host: String,
        secs: u64,
        last: String,
    },
}

/// The environment's key pair, created on first use.
#[derive(Debug, Clone)]
pub struct SshKey {
    pub private: PathBuf,
    pub public: String,
}

impl SshKey {
    pub fn ensure(state_root: &Path) -> Result<SshKey, SshError> {
        let dir = state_root.join("ssh");
        let private = dir.join("id_ed25519");
        let public = keygen(&private, "hdev")?.trim().to_string();
        Ok(SshKey { private, public })
    }
}

/// The ed25519 key pair at `private` and `private.pub`, made (with `comment`) when either
/// half is missing; returns the public half as the file holds it.
///
/// Two hdev processes of one project (an `up` and a `status`, say) may both find the pair
/// missing: one makes it under a lock (`.keygen.lock` in the key's folder) in a folder of
/// its own and moves it into place, the private half first, so that a pair is only ever
/// seen whole; the other then finds it made.
fn keygen(private: &Path, comment: &str) -> Result<String, SshError> {
    let public = PathBuf::from(format!("{}.pub", private.display()));
    if !private.exists() || !public.exists() {
        let dir = private.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error("ssh-keygen"))?;
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".keygen.lock"))
            .map_err(io_error("ssh-keygen"))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(io_error("ssh-keygen"))?;
        if !private.exists() || !public.exists() {
            let tmp = dir.join(format!(".keygen-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir(&tmp).map_err(io_error("ssh-keygen"))?;
            let made = make_pair(&tmp.join("key"), comment).and_then(|()| {
                std::fs::rename(tmp.join("key"), private).map_err(io_error("ssh-keygen"))?;
                std::fs::rename(tmp.join("key.pub"), &public).map_err(io_error("ssh-keygen"))
            });
            let _ = std::fs::remove_dir_all(&tmp);
            made.map_err(|e| match e {
                SshError::Keygen { message, .. } => SshError::Keygen {
                    path: private.to_path_buf(),
                    message,
                },
                e => e,
            })?;
        }
    }
    std::fs::read_to_string(&public).map_err(io_error("ssh-keygen"))
}

/// Runs `ssh-keygen` for a new ed25519 pair at `path` and `path.pub` (neither exists).
fn make_pair(path: &Path, comment: &str) -> Result<(), SshError> {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(io_error("ssh-keygen"))?;
    if !out.status.success() {
        return Err(SshError::Keygen {
            path: path.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// A VM's own SSH host key (ed25519), made by hdev before the VM's first boot: the private
/// half goes to the guest through its seed disk, the public half is pinned in the
/// environment's `known_hosts` under the VM's domain name (`HostKeyAlias`), so the pin
/// does not depend on the VM's address.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostKey {
    pub private: String,
    pub public: String,
}

/// How a connection checks the VM's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPin {
    /// The name the key is pinned under (the VM's domain).
    pub alias: String,
    pub known_hosts: PathBuf,
}

fn host_key_dir(state_root: &Path) -> PathBuf {
    state_root.join("ssh").join("hosts")
}

/// The environment's `known_hosts`: one line per VM host key hdev made.
pub fn known_hosts(state_root: &Path) -> PathBuf {
    state_root.join("ssh").join("known_hosts")
}

fn io_error(program: &'static str) -> impl Fn(std::io::Error) -> SshError {
    move |source| SshError::Spawn { program, source }
}

impl HostKey {
    /// The host key of VM `domain`, made on first use and pinned.
    pub fn ensure(state_root: &Path, domain: &str) -> Result<HostKey, SshError> {
        let private = host_key_dir(state_root).join(domain);
        let public = keygen(&private, domain)?.trim().to_string();
        let key = HostKey {
            private: std::fs::read_to_string(&private).map_err(io_error("ssh-keygen"))?,
            public,
        };
        write_known_hosts(state_root)?;
        Ok(key)
    }

    /// The host key pinned for VM `domain`, if there is one.
    pub fn read(state_root: &Path, domain: &str) -> Option<HostKey> {
        let dir = host_key_dir(state_root);
        Some(HostKey {
            private: std::fs::read_to_string(dir.join(domain)).ok()?,
            public: std::fs::read_to_string(dir.join(format!("{domain}.pub")))
                .ok()?
                .trim()
                .to_string(),
        })
    }

    /// Pins `key` as VM `domain`'s host key in place of any other: for a VM that resumes
    /// a guest which already runs with it. Each half is replaced whole (readable by the
    /// user only), the private one first.
    pub fn install(state_root: &Path, domain: &str, key: &HostKey) -> Result<(), SshError> {
        let dir = host_key_dir(state_root);
        for (path, text) in [
            (dir.join(domain), key.private.clone()),
            (
                dir.join(format!("{domain}.pub")),
                format!("{}\n", key.public.trim()),
            ),
        ] {
            crate::state::write_atomic(&path, text.as_bytes()).map_err(|e| SshError::Spawn {
                program: "install a host key",
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        write_known_hosts(state_root)
    }

    /// How to check VM `domain`'s host key: pinned when hdev made one, otherwise `None`
    /// (a VM defined by an hdev from before host keys were pinned).
    pub fn pin(state_root: &Path, domain: &str) -> Option<HostPin> {
        host_key_dir(state_root)
            .join(format!("{domain}.pub"))
            .exists()
            .then(|| HostPin {
                alias: domain.to_string(),
                known_hosts: known_hosts(state_root),
            })
    }

    /// Forgets VM `domain`'s host key, when the VM is gone.
    pub fn forget(state_root: &Path, domain: &str) -> Result<(), SshError> {
        let dir = host_key_dir(state_root);
        for f in [dir.join(domain), dir.join(format!("{domain}.pub"))] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error("rm")(e))
                }
                _ => {}
            }
        }
        write_known_hosts(state_root)
    }
}

/// Rewrites `known_hosts` from the host keys hdev holds (atomically: a reader never sees
/// half a file).
fn write_known_hosts(state_root: &Path) -> Result<(), SshError> {
    if !host_key_dir(state_root).is_dir() {
        return Ok(());
    }
    let mut lines = String::new();
    if let Ok(rd) = std::fs::read_dir(host_key_dir(state_root)) {
        let mut pubs: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        pubs.sort();
        for p in pubs {
            let (Some(alias), Ok(key)) = (p.file_stem(), std::fs::read_to_string(&p)) else {
                continue;
            };
            // `type base64` only: the comment is not part of the pin.
            let mut parts = key.split_whitespace();
            if let (Some(kind), Some(b64)) = (parts.next(), parts.next()) {
                lines.push_str(&format!("{} {kind} {b64}\n", alias.to_string_lossy()));
            }
        }
    }
    crate::state::write_atomic(&known_hosts(state_root), lines.as_bytes()).map_err(|e| {
        SshError::Spawn {
            program: "write known_hosts",
            source: std::io::Error::other(e.to_string()),
        }
    })
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub key: PathBuf,
    pub user: String,
    pub host: Ipv4Addr,
    /// How to get to `host` when it is not reachable from here: the `ProxyCommand` of a
    /// VM on a remote libvirt host.
    pub proxy: Option<String>,
    /// The pinned host key; `None` only for VMs defined before hdev pinned host keys.
    pub pin: Option<HostPin>,
    /// The socket of the connection shared by every session to this VM (OpenSSH's
    /// ControlMaster, kept [`CONTROL_PERSIST`] after its last session); `None`: a
    /// connection per session.
    pub control: Option<PathBuf>,
}

/// How long a shared connection outlives its last session, so that the commands a
/// developer runs one after another reuse it.
pub const CONTROL_PERSIST: &str = "60";

/// The control socket of the connection shared by the sessions to VM `domain`, under
/// the environment's `.hdev/ssh/`; `None` when that path would be too long for a Unix
/// socket (OpenSSH adds a temporary suffix of 17 bytes to it; the limit is 108).
pub fn control_path(state_root: &Path, domain: &str) -> Option<PathBuf> {
    let digest = hex::encode(sha2::Sha256::digest(domain.as_bytes()));
    let p = state_root.join("ssh").join("c").join(&digest[..16]);
    (p.as_os_str().len() <= 88).then_some(p)
}

/// Ends the connection shared through `control`, if one is open: the VM is about to
/// stop, or to return to a state whose network connections are not this one.
pub fn close_shared(control: &Path) {
    if !control.exists() {
        return;
    }
    let _ = std::process::Command::new("ssh")
        .arg("-o")
        .arg(format!("ControlPath={}", control.display()))
        .args(["-O", "exit", "hdev-vm"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(control);
}

/// Ends every connection shared with a VM of the environment whose state folder is
/// `state_root`: its VMs are about to go (`destroy`).
pub fn close_all_shared(state_root: &Path) {
    let Ok(dir) = std::fs::read_dir(state_root.join("ssh").join("c")) else {
        return;
    };
    for e in dir.flatten() {
        close_shared(&e.path());
    }
}

/// What a remote command reads.
enum Stdin {
    Empty,
    Bytes(Vec<u8>),
    /// A pipe hdev holds open, never written, until the command ends.
    HeldOpen,
}

/// Output of a remote command: its exit code and its last lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOutcome {
    pub exit_code: i64,
    pub tail: Vec<String>,
}

/// Makes a child process end (SIGTERM) when hdev does, however hdev ends: ssh sessions
/// and forwards must not outlive the command that needed them.
pub fn dies_with_hdev(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

impl SshTarget {
    /// The `-o` options of every connection, ansible's included: the environment key
    /// only, the VM's pinned host key only, no prompts.
    pub fn options(&self) -> Vec<String> {
        let mut o = vec!["IdentitiesOnly=yes".to_string()];
        match &self.pin {
            Some(pin) => o.extend([
                "StrictHostKeyChecking=yes".to_string(),
                format!("UserKnownHostsFile={}", pin.known_hosts.display()),
                "GlobalKnownHostsFile=/dev/null".to_string(),
                format!("HostKeyAlias={}", pin.alias),
                "HostKeyAlgorithms=ssh-ed25519".to_string(),
                "UpdateHostKeys=no".to_string(),
            ]),
            None => o.extend([
                "StrictHostKeyChecking=no".to_string(),
                "UserKnownHostsFile=/dev/null".to_string(),
            ]),
        }
        if let Some(p) = &self.proxy {
            o.push(format!("ProxyCommand={p}"));
        }
        o
    }

    /// The options that share one connection per VM, when it has a control socket.
    fn sharing(&self) -> Vec<String> {
        match &self.control {
            Some(c) => {
                if let Some(dir) = c.parent() {
                    let _ = std::fs::create_dir_all(dir);
                    let _ = std::fs::set_permissions(
                        dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o700),
                    );
                }
                vec![
                    "ControlMaster=auto".to_string(),
                    format!("ControlPath={}", c.display()),
                    format!("ControlPersist={CONTROL_PERSIST}"),
                ]
            }
            None => vec![],
        }
    }

    /// Arguments of `ssh` for a connection: [`Self::options`], the key, and the target.
    pub fn args(&self, connect_timeout_secs: u64) -> Vec<String> {
        let mut a = vec!["-i".into(), self.key.to_string_lossy().into_owned()];
        let mut options = self.options();
        options.extend(self.sharing());
        options.extend([
            "LogLevel=ERROR".to_string(),
            format!("ConnectTimeout={connect_timeout_secs}"),
            "ServerAliveInterval=15".to_string(),
        ]);
        for o in options {
            a.push("-o".into());
            a.push(o);
        }
        a.push(format!("{}@{}", self.user, self.host));
        a
    }

    /// The error for an ssh that ended with `stderr`, when it refused the VM's host key.
    fn host_key_refused(&self, stderr: &str) -> Option<SshError> {
        let pin = self.pin.as_ref()?;
        (stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
        .then(|| SshError::HostKey {
            host: self.host.to_string(),
            known_hosts: pin.known_hosts.clone(),
        })
    }

    /// An interactive session, or one command (with a terminal when `tty`), for
    /// `hdev ssh` and `hdev exec`. The arguments are quoted for the remote shell.
    pub fn interactive(&self, command: &[String], tty: bool) -> std::process::Command {
        let mut c = std::process::Command::new("ssh");
        c.args(self.args(10));
        if !command.is_empty() {
            c.arg(if tty { "-t" } else { "-T" }).arg("--").arg(
                command
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        c
    }

    /// Runs a shell command, streaming each output line to `sink`; stdin gets `input`.
    pub async fn run(
        &self,
        script: &str,
        input: Option<Vec<u8>>,
        sink: &(dyn Fn(&str) + Send + Sync),
        tail_lines: usize,
    ) -> Result<RemoteOutcome, SshError> {
        let stdin = match input {
            Some(bytes) => Stdin::Bytes(bytes),
            None => Stdin::Empty,
        };
        self.run_with(script, stdin, sink, tail_lines).await
    }

    /// Runs `script` (its stdin empty) so that it stops in the guest when hdev no longer
    /// watches it (see [`Self::guarded`]).
    pub async fn run_guarded(
        &self,
        script: &str,
        sink: &(dyn Fn(&str) + Send + Sync),
        tail_lines: usize,
    ) -> Result<RemoteOutcome, SshError> {
        self.run_with(&Self::guarded(script), Stdin::HeldOpen, sink, tail_lines)
            .await
    }

    async fn run_with(
        &self,
        script: &str,
        input: Stdin,
        sink: &(dyn Fn(&str) + Send + Sync),
        tail_lines: usize,
    ) -> Result<RemoteOutcome, SshError> {
        let mut cmd = Command::new("ssh");
        // If hdev dies (even by SIGKILL), ssh goes with it: the session closes and the
        // guard of `guarded` stops the command in the guest.
        dies_with_hdev(&mut cmd);
        let mut child = cmd
            .args(self.args(10))
            .arg("-o")
            .arg("BatchMode=yes")
            .arg("--")
            .arg(script)
            .stdin(match input {
                Stdin::Empty => Stdio::null(),
                Stdin::Bytes(_) | Stdin::HeldOpen => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SshError::Spawn {
                program: "ssh",
                source,
            })?;
        // Held open until the command ends: the guard of `guarded` reads it, and its end
        // is how the guest learns that hdev is gone.
        let mut held = None;
        match (input, child.stdin.take()) {
            (Stdin::Bytes(bytes), Some(mut stdin)) => {
                tokio::spawn(async move {
                    let _ = stdin.write_all(&bytes).await;
                    let _ = stdin.shutdown().await;
                });
            }
            (Stdin::HeldOpen, stdin) => held = stdin,
            _ => {}
        }
        let stdout = child.stdout.take().map(BufReader::new);
        let stderr = child.stderr.take().map(BufReader::new);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for reader in [
            stdout.map(|r| Box::new(r) as Box<dyn tokio::io::AsyncBufRead + Unpin + Send>),
            stderr.map(|r| Box::new(r) as _),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = reader.lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut tail = std::collections::VecDeque::new();
        while let Some(line) = rx.recv().await {
            sink(&line);
            tail.push_back(line);
            if tail.len() > tail_lines {
                tail.pop_front();
            }
        }
        let status = child.wait().await.map_err(|source| SshError::Spawn {
            program: "ssh",
            source,
        })?;
        drop(held);
        if status.code() == Some(255) {
            if let Some(e) =
                self.host_key_refused(&tail.iter().cloned().collect::<Vec<_>>().join("\n"))
            {
                return Err(e);
            }
        }
        Ok(RemoteOutcome {
            exit_code: status.code().map(i64::from).unwrap_or(-1),
            tail: tail.into_iter().collect(),
        })
    }

    /// `script` wrapped so that it stops when the SSH session that started it is gone
    /// (hdev killed, the connection lost): run in a session of its own with an empty
    /// stdin, while a guard reads the session's stdin, which hdev holds open and never
    /// writes; when that ends, hdev is gone, and the script's whole process group is ended
    /// (TERM, then KILL). Without it a step whose hdev died kept running, and the next
    /// `up` started the same step beside it. (Watching the session's sshd process would
    /// not do: sessions on a shared connection all have the same one.)
    pub fn guarded(script: &str) -> String {
        format!(
            "exec 3<&0; setsid sh -c {} </dev/null & c=$!; \
             {{ cat <&3 >/dev/null 2>&1; kill -0 $c 2>/dev/null && \
                {{ kill -TERM -$c; sleep 2; kill -KILL -$c; }}; }} >/dev/null 2>&1 & w=$!; \
             exec 3<&-; wait $c; rc=$?; kill $w 2>/dev/null; exit $rc",
            shell_quote(script)
        )
    }

    /// Waits until the guest accepts SSH and, where it runs cloud-init, until cloud-init
    /// has finished (it may restart sshd or reconfigure the network after SSH first
    /// answers, which would break work started too early); at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), SshError> {
        self.run_when_ready(timeout, &|| READY.to_string()).await
    }

    /// Runs `command()` (built afresh for each attempt) until it succeeds, for at most
    /// `timeout`. Polls quickly at first, since a resumed guest answers within a second,
    /// then every 2 s while a guest boots.
    pub async fn run_when_ready(
        &self,
        timeout: Duration,
        command: &dyn Fn() -> String,
    ) -> Result<(), SshError> {
        let start = Instant::now();
        let mut last = String::from("no attempt finished");
        // When the host key was first refused: a guest still booting might answer with
        // another key for a moment (an image's own, before the seed's is in place), so
        // the refusal counts once it has lasted HOST_KEY_GRACE.
        let mut refused_since: Option<Instant> = None;
        let mut pause = Duration::from_millis(200);
        while start.elapsed() < timeout {
            let out = Command::new("ssh")
                .args(self.args(5))
                .args(["-o", "BatchMode=yes", "--", &command()])
                .stdin(Stdio::null())
                .output();
            match tokio::time::timeout(Duration::from_secs(20), out).await {
                Ok(Ok(o)) if o.status.success() => return Ok(()),
                Ok(Ok(o)) => {
                    last = String::from_utf8_lossy(&o.stderr).trim().to_string();
                    // A wrong host key does not get better by waiting long.
                    match self.host_key_refused(&last) {
                        Some(e)
                            if refused_since.get_or_insert_with(Instant::now).elapsed()
                                >= HOST_KEY_GRACE =>
                        {
                            return Err(e)
                        }
                        Some(_) => {}
                        None => refused_since = None,
                    }
                }
                Ok(Err(source)) => {
                    return Err(SshError::Spawn {
                        program: "ssh",
                        source,
                    })
                }
                Err(_) => last = "ssh did not finish within 20s".into(),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Err(SshError::Timeout {
            host: self.host.to_string(),
            secs: timeout.as_secs(),
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pair_is_made_once_per_environment() {
        let dir = tempfile::tempdir().unwrap();
        let a = SshKey::ensure(dir.path()).unwrap();
        assert!(a.public.starts_with("ssh-ed25519 "), "{}", a.public);
        let b = SshKey::ensure(dir.path()).unwrap();
        assert_eq!(a.public, b.public);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(SshKey::ensure(other.path()).unwrap().public, a.public);
    }

    #[test]
    fn an_installed_host_key_replaces_the_made_one_and_is_pinned() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let made = HostKey::ensure(dir.path(), "hdev-e-1-vm").unwrap();
        let other = HostKey::ensure(dir.path(), "hdev-e-2-vm").unwrap();
        HostKey::install(dir.path(), "hdev-e-1-vm", &other).unwrap();
        let now = HostKey::read(dir.path(), "hdev-e-1-vm").unwrap();
        assert_eq!(now.private, other.private);
        assert_eq!(now.public, other.public.trim());
        assert_ne!(now.public, made.public.trim());
        let private = dir.path().join("ssh/hosts/hdev-e-1-vm");
        let mode = std::fs::metadata(private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private half readable by others: {mode:o}");
        let pinned = std::fs::read_to_string(known_hosts(dir.path())).unwrap();
        let b64 = other.public.split_whitespace().nth(1).unwrap();
        assert!(
            pinned
                .lines()
                .any(|l| l.starts_with("hdev-e-1-vm ") && l.contains(b64)),
            "{pinned}"
        );
    }

    #[test]
    fn commands_that_make_the_key_at_once_share_one_whole_pair() {
        // Separate processes in life (`up` and `status`); threads with their own lock
        // handles here, which exclude each other the same way.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SshKey::ensure(&root).map(|k| k.public)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("ensure"))
                .collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
        // The private half on disk is the one the public half names.
        let derived = std::process::Command::new("ssh-keygen")
            .args(["-y", "-f"])
            .arg(root.join("ssh").join("id_ed25519"))
            .output()
            .unwrap();
        let derived = String::from_utf8_lossy(&derived.stdout);
        let b64 = |k: &str| k.split_whitespace().nth(1).unwrap_or_default().to_string();
        assert_eq!(b64(&derived), b64(&keys[0]));
        // Nothing of the making is left beside the pair but the lock.
        let mut left: Vec<String> = std::fs::read_dir(root.join("ssh"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, [".keygen.lock", "id_ed25519", "id_ed25519.pub"]);
    }
}
