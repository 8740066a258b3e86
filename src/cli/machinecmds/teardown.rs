//! Commands that stop or remove: halt, destroy (everything the environment created, and
//! nothing else), gc (leftovers of environments whose folder is gone).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::{load_state, open, runtime};
use crate::backend::docker::Labelled;
use crate::backend::{Backends, RunState};
use crate::cli::CmdResult;
use crate::output::Printer;
use crate::state::State;

/// `hdev halt`: stops every running machine; they keep their state for the next `up`.
pub fn halt(p: &Printer, file: Option<&Path>) -> CmdResult {
    let o = open(file)?;
    let _lock = o.project.state.lock()?;
    let stopped = runtime()?.block_on(async {
        let backends = Backends::connect(Some(&o.project.env)).await?;
        let obs = backends.observe(&o.ctx).await?;
        let running: Vec<_> = obs
            .machines
            .values()
            .filter(|m| m.state == RunState::Running)
            .collect();
        let stops = running.iter().map(|m| async {
            let b = backends.get_kind(m.backend).ok_or_else(|| {
                anyhow::anyhow!("machine `{}`: its backend is not available", m.name)
            })?;
            b.stop(&m.id).await?;
            p.note(format!("{}: stopped", m.name));
            anyhow::Ok(m.name.clone())
        });
        let mut names = Vec::new();
        for r in futures_util::future::join_all(stops).await {
            names.push(r?);
        }
        anyhow::Ok(names)
    })?;
    if p.json {
        p.json(&serde_json::json!({ "halted": stopped }));
    } else {
        p.line(format!("halted {} machine(s)", stopped.len()));
    }
    Ok(0)
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

fn counts_json(c: [usize; 4]) -> serde_json::Value {
    serde_json::json!({"containers": c[0], "networks": c[1], "volumes": c[2], "images": c[3]})
}

/// `hdev destroy [-f]`: removes every object labelled with this environment's instance.
pub fn destroy(p: &Printer, file: Option<&Path>, force: bool) -> CmdResult {
    let o = open(file)?;
    let lock = o.project.state.lock()?;
    let instance = o.ctx.instance.clone();
    let removed = runtime()?.block_on(async {
        let backends = Backends::connect(Some(&o.project.env)).await?;
        let docker = backends
            .docker()
            .ok_or_else(|| anyhow::anyhow!("the docker backend is not available"))?;
        let l = docker.labelled(Some(&instance)).await?;
        let vms = super::vms::domains(&o.project.env, Some(&instance)).await?;
        let total =
            l.containers.len() + l.networks.len() + l.volumes.len() + l.images.len() + vms.len();
        if total > 0 && !force && std::io::stdin().is_terminal() && !p.json {
            let q = format!(
                "destroy environment `{instance}`: {} VM(s), {} container(s), {} network(s), {} volume(s), {} image(s)?",
                vms.len(),
                l.containers.len(),
                l.networks.len(),
                l.volumes.len(),
                l.images.len()
            );
            if !confirm(&q) {
                return anyhow::Ok(None);
            }
        }
        // VMs first: their NICs sit on the networks' bridges.
        let removed_vms = super::vms::destroy(&vms).await?;
        let remote_nets = super::vms::remove_remote_networks(&o.project.env, &instance).await?;
        let mut counts = docker.remove_labelled(&l).await?;
        counts[1] += remote_nets;
        anyhow::Ok(Some((removed_vms, counts)))
    })?;
    let Some((vms, removed)) = removed else {
        p.note("nothing destroyed");
        return Ok(1);
    };
    let mut st = load_state(&o.project)?;
    if !st.machines.is_empty() || st.env_hash.is_some() {
        st = State::new(&instance);
        o.project.state.save(&lock, &st)?;
    }
    if p.json {
        let mut counts = counts_json(removed);
        counts["vms"] = vms.into();
        p.json(&serde_json::json!({ "instance": instance, "removed": counts }));
    } else {
        p.line(format!(
            "destroyed `{instance}`: {vms} VM(s), {} container(s), {} network(s), {} volume(s), {} image(s) removed",
            removed[0], removed[1], removed[2], removed[3]
        ));
    }
    Ok(0)
}

/// `hdev gc [--dry-run]`: removes objects of environments whose folder no longer exists.
pub fn gc(p: &Printer, dry_run: bool) -> CmdResult {
    let mut failures: Vec<String> = Vec::new();
    // Libvirt hosts an environment once used that cannot be reached now: said, not fatal.
    let mut skipped: Vec<String> = Vec::new();
    let report = runtime()?.block_on(async {
        let backends = Backends::connect(None).await?;
        let docker = backends
            .docker()
            .ok_or_else(|| anyhow::anyhow!("the docker backend is not available"))?;
        let all = docker.labelled(None).await?;
        // A folder that exists is alive, unless it is a ci copy no process runs any more
        // (its run lock is free): then its objects are collected with the folder, the
        // lock held meanwhile.
        let mut idle_copies: BTreeMap<
            String,
            Option<(crate::throwaway::Copy, crate::throwaway::RunLock)>,
        > = BTreeMap::new();
        let mut alive = |dir: &str| -> bool {
            if dir.is_empty() || !Path::new(dir).exists() {
                return false;
            }
            idle_copies
                .entry(dir.to_string())
                .or_insert_with(|| crate::throwaway::idle_at(Path::new(dir)))
                .is_none()
        };
        let mut dead: BTreeMap<String, (String, Labelled)> = BTreeMap::new();
        let mut add = |kind: usize, (id, env, dir): &(String, String, String)| {
            if alive(dir) {
                return;
            }
            let e = dead
                .entry(env.clone())
                .or_insert_with(|| (dir.clone(), Labelled::default()));
            let item = (id.clone(), env.clone(), dir.clone());
            match kind {
                0 => e.1.containers.push(item),
                1 => e.1.networks.push(item),
                2 => e.1.volumes.push(item),
                _ => e.1.images.push(item),
            }
        };
        for x in &all.containers {
            add(0, x);
        }
        for x in &all.networks {
            add(1, x);
        }
        for x in &all.volumes {
            add(2, x);
        }
        for x in &all.images {
            add(3, x);
        }
        // VMs on every libvirt host an environment used; a host that cannot be reached
        // is reported and the others are collected.
        type DeadVms = Vec<(String, super::vms::ObservedVm)>;
        let mut dead_vms: BTreeMap<String, (String, DeadVms)> = BTreeMap::new();
        let default_uri = super::vms::gc_default_uri();
        for uri in super::vms::gc_uris() {
            let found = match super::vms::domains_at(&uri, None, None).await {
                Ok(f) => f,
                Err(e) if uri == default_uri => return Err(e),
                Err(e) => {
                    skipped.push(format!("libvirt `{uri}`: {e:#}"));
                    continue;
                }
            };
            for v in found {
                let dir = v.dir.clone().unwrap_or_default();
                if alive(&dir) {
                    continue;
                }
                dead_vms
                    .entry(v.instance.clone())
                    .or_insert_with(|| (dir, Vec::new()))
                    .1
                    .push((uri.clone(), v));
            }
        }
        for (env, (dir, _)) in &dead_vms {
            dead.entry(env.clone())
                .or_insert_with(|| (dir.clone(), Labelled::default()));
        }
        let mut out = Vec::new();
        for (env, (dir, l)) in dead {
            let vms = dead_vms.remove(&env).map(|(_, v)| v).unwrap_or_default();
            if dry_run {
                let counts = [
                    l.containers.len(),
                    l.networks.len(),
                    l.volumes.len(),
                    l.images.len(),
                ];
                out.push((env, dir, counts, vms.len()));
                continue;
            }
            // One environment that cannot be removed does not keep the others.
            let removed = async {
                let v = super::vms::destroy(&vms).await?;
                let uris: std::collections::BTreeSet<&String> =
                    vms.iter().map(|(u, _)| u).collect();
                let mut nets = 0;
                for uri in uris {
                    nets += super::vms::remove_networks_at(uri, &env).await?;
                }
                let mut c = docker.remove_labelled(&l).await?;
                c[1] += nets;
                anyhow::Ok((c, v))
            }
            .await;
            match removed {
                Ok((counts, vm_count)) => {
                    if let Some(Some((copy, _lock))) = idle_copies.remove(&dir) {
                        copy.remove_dir();
                    }
                    out.push((env, dir, counts, vm_count))
                }
                Err(e) => failures.push(format!("`{env}`: {e:#}")),
            }
        }
        anyhow::Ok(out)
    })?;
    if p.json {
        let envs: Vec<_> = report
            .iter()
            .map(|(e, d, c, v)| {
                let mut removed = counts_json(*c);
                removed["vms"] = (*v).into();
                serde_json::json!({"instance": e, "dir": d, "removed": removed})
            })
            .collect();
        p.json(
            &serde_json::json!({ "dry_run": dry_run, "environments": envs, "failed": failures, "skipped": skipped }),
        );
        return Ok(i32::from(!failures.is_empty()));
    }
    if report.is_empty() && failures.is_empty() {
        p.line("nothing to collect: every labelled environment still has its folder");
    }
    for (env, dir, c, v) in &report {
        p.line(format!(
            "{} `{env}` ({}): {v} VM(s), {} container(s), {} network(s), {} volume(s), {} image(s)",
            if dry_run { "would remove" } else { "removed" },
            if Path::new(dir).exists() {
                format!("ci copy `{dir}` left by a run that ended")
            } else {
                format!("folder `{dir}` is gone")
            },
            c[0],
            c[1],
            c[2],
            c[3]
        ));
    }
    for s in &skipped {
        p.note(format!("not looked at, unreachable: {s}"));
    }
    for f in &failures {
        eprintln!("{} cannot remove {f}", p.red("error:"));
    }
    Ok(i32::from(!failures.is_empty()))
}
