//! Provisioning: a machine's steps run in order over its backend's exec and file copy.
//!
//! Shell steps run with `sh -ec`; script steps are copied in under
//! `/tmp/hdev-provision/` and run with their arguments; file steps pack a host file or
//! folder into a tar archive that the backend unpacks at the destination. A failing step
//! stops the machine's provisioning with an error that names the machine, the step and its
//! last output lines; the machine itself is left as it is, for inspection.

pub(crate) mod ansible;

use std::path::{Path, PathBuf};

use crate::backend::{AnyBackend, BackendError, Engine, LineSink};
use crate::envfile::{Env, Machine, ProvisionStep};

/// Folder in the machine where script steps are copied.
pub(crate) const SCRIPT_DIR: &str = "/tmp/hdev-provision";

/// Why a provisioning step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProvisionError {
    /// The step ran and exited non-zero.
    #[error("machine `{machine}`: provisioning step {index} {step} failed with exit code {code}{}", tail_text(.tail))]
    Failed {
        machine: String,
        index: usize,
        step: String,
        code: i64,
        tail: Vec<String>,
    },
    /// The backend could not run the step.
    #[error("machine `{machine}`: provisioning step {index} {step}: {source}")]
    Backend {
        machine: String,
        index: usize,
        step: String,
        source: BackendError,
    },
    /// A host file of the step could not be read.
    #[error("machine `{machine}`: provisioning step {index} {step}: cannot read `{}`: {source}", path.display())]
    Io {
        machine: String,
        index: usize,
        step: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `ansible-playbook` could not be run.
    #[error("machine `{machine}`: provisioning step {index} {step}: {source}")]
    Ansible {
        machine: String,
        index: usize,
        step: String,
        source: ansible::AnsibleError,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return "; it printed nothing".to_string();
    }
    let mut s = String::from("; its last output:");
    for l in tail {
        s.push_str("\n    ");
        s.push_str(l);
    }
    s
}

/// Runs every provisioning step of `machine` in order; `on_step` hears each step's
/// 1-based index and description before it runs, `sink` every output line.
pub(crate) async fn run(
    env: &Env,
    backend: &AnyBackend,
    id: &str,
    machine: &Machine,
    on_step: &(dyn Fn(usize, &str) + Send + Sync),
    sink: LineSink<'_>,
) -> Result<(), ProvisionError> {
    for (i, step) in machine.provision.iter().enumerate() {
        let index = i + 1;
        let desc = step.describe();
        on_step(index, &desc);
        run_step(env, backend, id, machine, index, step, sink).await?;
    }
    Ok(())
}

async fn run_step(
    env: &Env,
    backend: &AnyBackend,
    id: &str,
    machine: &Machine,
    index: usize,
    step: &ProvisionStep,
    sink: LineSink<'_>,
) -> Result<(), ProvisionError> {
    let s = StepRun {
        env,
        backend,
        id,
        machine,
        index,
        desc: step.describe(),
        sink,
    };
    match step {
        ProvisionStep::Shell { inline, .. } => {
            s.exec(vec!["sh".into(), "-ec".into(), inline.clone()])
                .await
        }
        ProvisionStep::Script { path, args, .. } => {
            let cmd = s.copy_script(path, args).await?;
            s.exec(cmd).await
        }
        ProvisionStep::File {
            source,
            destination,
            ..
        } => s.copy_file(source, destination).await,
        ProvisionStep::Ansible {
            playbook,
            extra_vars,
            ..
        } => s.ansible(playbook, extra_vars).await,
    }
}

/// One step being run: where it runs, and what its errors name (machine, 1-based index,
/// description).
struct StepRun<'a> {
    env: &'a Env,
    backend: &'a AnyBackend,
    id: &'a str,
    machine: &'a Machine,
    index: usize,
    desc: String,
    sink: LineSink<'a>,
}

impl StepRun<'_> {
    fn backend_err(&self, source: BackendError) -> ProvisionError {
        ProvisionError::Backend {
            machine: self.machine.name.clone(),
            index: self.index,
            step: self.desc.clone(),
            source,
        }
    }

    fn io_err(&self, path: &Path, source: std::io::Error) -> ProvisionError {
        ProvisionError::Io {
            machine: self.machine.name.clone(),
            index: self.index,
            step: self.desc.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn failed(&self, code: i64, tail: Vec<String>) -> ProvisionError {
        ProvisionError::Failed {
            machine: self.machine.name.clone(),
            index: self.index,
            step: self.desc.clone(),
            code,
            tail,
        }
    }

    /// Runs `cmd` in the machine; a non-zero exit fails the step.
    async fn exec(&self, cmd: Vec<String>) -> Result<(), ProvisionError> {
        let out = self
            .backend
            .exec(self.id, &cmd, self.sink)
            .await
            .map_err(|e| self.backend_err(e))?;
        if out.exit_code != 0 {
            return Err(self.failed(out.exit_code, out.tail));
        }
        Ok(())
    }

    /// Copies a host script into [`SCRIPT_DIR`] (named by the step's index, so steps
    /// never overwrite each other) and returns the command that runs it: directly when it
    /// has a `#!` line, with `sh` otherwise.
    async fn copy_script(
        &self,
        path: &str,
        args: &[String],
    ) -> Result<Vec<String>, ProvisionError> {
        let host = self.env.resolve(path);
        let bytes = std::fs::read(&host).map_err(|e| self.io_err(&host, e))?;
        let base = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        let inside = format!("{SCRIPT_DIR}/{}-{base}", self.index);
        let tar = pack_bytes(&inside, &bytes, 0o755).map_err(|e| self.io_err(&host, e))?;
        self.backend
            .copy_in(self.id, "/", tar)
            .await
            .map_err(|e| self.backend_err(e))?;
        let mut cmd = if bytes.starts_with(b"#!") {
            vec![inside]
        } else {
            vec!["sh".into(), inside]
        };
        cmd.extend(args.iter().cloned());
        Ok(cmd)
    }

    /// Copies a host file or folder to `destination` in the machine.
    async fn copy_file(&self, source: &str, destination: &str) -> Result<(), ProvisionError> {
        let host = self.env.resolve(source);
        let tar = pack_path(&host, destination).map_err(|e| self.io_err(&host, e))?;
        self.backend
            .copy_in(self.id, "/", tar)
            .await
            .map_err(|e| self.backend_err(e))
    }

    /// Runs a playbook from the host against the machine; a non-zero exit fails the step.
    async fn ansible(
        &self,
        playbook: &str,
        extra_vars: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ProvisionError> {
        let host = self.env.resolve(playbook);
        let vars = self
            .backend
            .ansible_vars(self.id)
            .await
            .map_err(|e| self.backend_err(e))?;
        let (code, tail) = ansible::run(
            &host,
            &self.machine.name,
            &self.machine.group,
            &vars,
            extra_vars,
            self.sink,
        )
        .await
        .map_err(|source| ProvisionError::Ansible {
            machine: self.machine.name.clone(),
            index: self.index,
            step: self.desc.clone(),
            source,
        })?;
        if code != 0 {
            return Err(self.failed(code, tail));
        }
        Ok(())
    }
}

/// A tar holding one file at absolute path `inside` (unpacked at `/`).
fn pack_bytes(inside: &str, bytes: &[u8], mode: u32) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, inside.trim_start_matches('/'), bytes)?;
    b.into_inner()
}

/// A tar that, unpacked at `/`, puts host file or folder `host` at `destination` (inside a
/// folder destination ending in `/` for a file). Owners are root, modes kept.
pub(crate) fn pack_path(host: &Path, destination: &str) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(host)?;
    let mut dest = destination.trim_start_matches('/').to_string();
    if destination.ends_with('/') && meta.is_file() {
        if let Some(n) = host.file_name() {
            dest.push_str(&n.to_string_lossy());
        }
    }
    let dest = dest.trim_end_matches('/');
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(dest, host)?;
    } else {
        b.append_path_with_name(host, dest)?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        let mut out: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn files_and_folders_land_at_their_destination() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "a").unwrap();
        std::fs::create_dir(d.path().join("site")).unwrap();
        std::fs::write(d.path().join("site/index.html"), "x").unwrap();
        let t = pack_path(&d.path().join("a.txt"), "/etc/a.conf").unwrap();
        assert_eq!(names(&t), ["etc/a.conf"]);
        let t = pack_path(&d.path().join("a.txt"), "/srv/").unwrap();
        assert_eq!(names(&t), ["srv/a.txt"]);
        let t = pack_path(&d.path().join("site"), "/var/www").unwrap();
        assert!(names(&t).contains(&"var/www/index.html".to_string()));
        let t = pack_bytes("/tmp/hdev-provision/1-x.sh", b"#!/bin/sh\n", 0o755).unwrap();
        assert_eq!(names(&t), ["tmp/hdev-provision/1-x.sh"]);
    }

    #[test]
    fn a_failure_message_carries_the_output() {
        let e = ProvisionError::Failed {
            machine: "db".into(),
            index: 2,
            step: "shell `false`".into(),
            code: 1,
            tail: vec!["boom".into()],
        };
        let s = e.to_string();
        assert!(s.contains("machine `db`") && s.contains("step 2") && s.contains("boom"));
    }
}
