//! Ansible steps: a playbook run from the host with `ansible-playbook`, against an
//! inventory hdev writes for the machine (a VM over SSH with the environment's key, a
//! container through the docker connection), limited to that machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::backend::{LineSink, TAIL_LINES};

/// Why an ansible step could not be run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnsibleError {
    /// `ansible-playbook` is not installed or could not be started.
    #[error(
        "cannot run `ansible-playbook`: {0}; install ansible (Debian: `apt-get install ansible`)"
    )]
    Spawn(std::io::Error),
    /// The inventory or variables could not be written.
    #[error("cannot write the ansible inventory: {0}")]
    Inventory(std::io::Error),
}

/// The inventory of one machine: `[group]` then the host line with its variables.
pub(crate) fn inventory(host: &str, group: &str, vars: &BTreeMap<String, String>) -> String {
    let mut line = host.to_string();
    for (k, v) in vars {
        line.push_str(&format!(" {k}={}", quote(v)));
    }
    format!("[{group}]\n{line}\n")
}

/// Quotes an inventory value when it has spaces or quotes.
fn quote(v: &str) -> String {
    if v.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

/// Runs `playbook` against the machine; returns the exit code and the last output lines.
pub(crate) async fn run(
    playbook: &Path,
    host: &str,
    group: &str,
    vars: &BTreeMap<String, String>,
    extra_vars: &BTreeMap<String, String>,
    sink: LineSink<'_>,
) -> Result<(i64, Vec<String>), AnsibleError> {
    let dir = tempfile::Builder::new()
        .prefix("hdev-ansible-")
        .tempdir()
        .map_err(AnsibleError::Inventory)?;
    let inv = dir.path().join("inventory.ini");
    std::fs::write(&inv, inventory(host, group, vars)).map_err(AnsibleError::Inventory)?;
    let extra = dir.path().join("extra_vars.json");
    let json = serde_json::to_vec(extra_vars).unwrap_or_else(|_| b"{}".to_vec());
    std::fs::write(&extra, json).map_err(AnsibleError::Inventory)?;
    let mut child = tokio::process::Command::new("ansible-playbook")
        .arg("-i")
        .arg(&inv)
        .arg("--limit")
        .arg(host)
        .arg("-e")
        .arg(format!("@{}", extra.display()))
        .arg(playbook)
        .current_dir(playbook.parent().unwrap_or(Path::new(".")))
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .env("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(AnsibleError::Spawn)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let mut tail = std::collections::VecDeque::new();
    while let Some(l) = rx.recv().await {
        if l.trim().is_empty() {
            continue;
        }
        sink(&l);
        tail.push_back(l);
        if tail.len() > TAIL_LINES {
            tail.pop_front();
        }
    }
    let status = child.wait().await.map_err(AnsibleError::Spawn)?;
    Ok((
        status.code().map(i64::from).unwrap_or(-1),
        tail.into_iter().collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_groups_the_host_and_quotes_values() {
        let vars = BTreeMap::from([
            ("ansible_host".to_string(), "10.0.0.5".to_string()),
            (
                "ansible_ssh_common_args".to_string(),
                "-o StrictHostKeyChecking=no".to_string(),
            ),
        ]);
        assert_eq!(
            inventory("osd-2", "osd", &vars),
            "[osd]\nosd-2 ansible_host=10.0.0.5 ansible_ssh_common_args=\"-o StrictHostKeyChecking=no\"\n"
        );
    }
}
