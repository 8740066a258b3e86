//! Names for a VM. Containers resolve each other through Docker's DNS and get hosts
//! entries for the VMs; a VM has neither, so when it starts hdev writes a block of
//! `/etc/hosts` with every machine it can reach: the address each has on a network the
//! VM shares with it. VM addresses are fixed in advance, so every VM is there; of the
//! containers, those already up (its dependencies among them).

use std::collections::BTreeMap;

use crate::backend::{AnyBackend, BackendError, Engine, Observation};
use crate::envfile::{Env, Machine};

const BEGIN: &str = "# hdev: machines of this environment (rewritten at every start)";
const END: &str = "# hdev: end";

/// `address name` lines for `vm`: each other machine at its address on the first
/// network they share; machines it shares no network with are left out.
pub(super) fn entries(env: &Env, vm: &Machine, observed: &Observation) -> Vec<String> {
    let mine: Vec<&str> = vm.networks.iter().map(|a| a.network.as_str()).collect();
    let mut known: BTreeMap<String, BTreeMap<String, String>> = observed
        .machines
        .values()
        .map(|o| (o.name.clone(), o.addresses.clone()))
        .collect();
    for ((machine, network), ip) in crate::envfile::addresses::vm_addresses(env) {
        known
            .entry(machine)
            .or_default()
            .entry(network)
            .or_insert_with(|| ip.to_string());
    }
    known
        .iter()
        .filter(|(name, _)| **name != vm.name)
        .filter_map(|(name, addrs)| {
            let ip = mine.iter().find_map(|n| addrs.get(*n))?;
            Some(format!("{ip} {name}"))
        })
        .collect()
}

/// The shell script that replaces hdev's block of `/etc/hosts` with `lines`.
pub(super) fn script(lines: &[String]) -> String {
    let mut block = format!("{BEGIN}\n");
    for l in lines {
        block.push_str(l);
        block.push('\n');
    }
    block.push_str(END);
    format!(
        "set -e; t=$(mktemp); sed '/^{BEGIN}$/,/^{END}$/d' /etc/hosts > \"$t\"; printf '%s\\n' {} >> \"$t\"; cat \"$t\" > /etc/hosts; rm -f \"$t\"",
        crate::backend::ssh::shell_quote(&block)
    )
}

/// Writes the block into the running VM `id`.
pub(super) async fn write(
    backend: &AnyBackend,
    id: &str,
    lines: &[String],
) -> Result<(), BackendError> {
    let cmd = ["sh".to_string(), "-c".to_string(), script(lines)];
    let out = backend.exec(id, &cmd, &|_| {}).await?;
    if out.exit_code != 0 {
        return Err(BackendError::Engine {
            action: "write /etc/hosts".into(),
            message: out.tail.join("\n"),
        });
    }
    Ok(())
}

/// Rewrites the block in every running VM of the environment (best effort: a VM that
/// cannot be reached is said on the progress line, and keeps its old block).
pub(super) async fn refresh(
    env: &Env,
    ctx: &crate::backend::EnvCtx,
    backends: &crate::backend::Backends,
    progress: &crate::progress::Progress,
) {
    let vms: Vec<&Machine> = env
        .machines
        .values()
        .filter(|m| m.backend == crate::envfile::Backend::Libvirt)
        .collect();
    if vms.is_empty() {
        return;
    }
    let Ok(observed) = backends.observe(ctx).await else {
        return;
    };
    for vm in vms {
        let Some(o) = observed.machines.get(&vm.name) else {
            continue;
        };
        if o.state != crate::backend::RunState::Running {
            continue;
        }
        let Ok(b) = backends.get(vm) else { continue };
        let lines = entries(env, vm, &observed);
        if let Err(e) = write(b, &o.id, &lines).await {
            progress.status(&vm.name, &format!("could not update /etc/hosts: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_replaces_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let run = |lines: &[String]| {
            let s = script(lines).replace("/etc/hosts", &hosts.display().to_string());
            let o = std::process::Command::new("sh")
                .args(["-c", &s])
                .output()
                .unwrap();
            assert!(o.status.success(), "{o:?}");
            std::fs::read_to_string(&hosts).unwrap()
        };
        run(&["10.0.0.5 db".to_string()]);
        let got = run(&["10.0.0.6 db".to_string(), "10.0.0.7 web".to_string()]);
        assert_eq!(
            got,
            format!("127.0.0.1 localhost\n{BEGIN}\n10.0.0.6 db\n10.0.0.7 web\n{END}\n")
        );
    }
}
