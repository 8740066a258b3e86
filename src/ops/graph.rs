//! `graph`: the environment as a picture. The topology comes from the Envfile; each
//! machine's state from the same reading `status` makes (the engines, and drift as last
//! recorded; no guest is asked). When no engine can be read, the picture is still drawn,
//! every state `unknown`, with a note saying why; `offline` reads no engine at all and
//! draws every machine as not created (the picture of an Envfile as such, as the README's).

use std::collections::BTreeMap;

use super::session::Session;
use super::status::{host_of, status, StatusReport};
use crate::envfile::{addresses, Backend, Env};
use crate::graph::{self, Description, Flag, Kind, Link, Picture, State};

/// What `graph` drew: the laid out picture, with its notes (what could not be read).
#[derive(Debug)]
pub(crate) struct GraphReport {
    pub picture: Picture,
}

/// Lays out the environment with its machines' states (see the module's comment).
pub(crate) async fn graph(o: &Session, offline: bool) -> GraphReport {
    let env = &o.project.env;
    let mut d = describe(env);
    if !offline {
        match status(o, false).await {
            Ok(report) => with_states(&mut d, &report),
            Err(e) => {
                for m in &mut d.machines {
                    m.state = State::Unknown;
                }
                d.notes.push(format!(
                    "engines not read ({e:#}): the topology is the Envfile's, every state unknown"
                ));
            }
        }
    }
    GraphReport {
        picture: graph::layout(&d),
    }
}

/// The Envfile's topology, every machine not created.
pub(crate) fn describe(env: &Env) -> Description {
    let vm_addresses = addresses::vm_addresses(env);
    let machines = env
        .machines
        .values()
        .map(|m| graph::Machine {
            name: m.name.clone(),
            host: host_of(env, Some(m), None),
            kind: match m.backend {
                Backend::Libvirt => Kind::Vm,
                _ => Kind::Container,
            },
            state: State::NotCreated,
            flags: Vec::new(),
            ports: m.ports.iter().map(|p| p.to_string()).collect(),
            links: m
                .networks
                .iter()
                .map(|a| Link {
                    network: a.network.clone(),
                    address: a
                        .address
                        .or_else(|| {
                            vm_addresses
                                .get(&(m.name.clone(), a.network.clone()))
                                .copied()
                        })
                        .map_or_else(|| "auto".to_string(), |ip| ip.to_string()),
                })
                .collect(),
            depends_on: m.depends_on.clone(),
        })
        .collect();
    Description {
        title: env.settings.name.clone(),
        notes: Vec::new(),
        networks: env
            .networks
            .values()
            .map(|n| graph::Network {
                name: n.name.clone(),
                subnet: n.subnet.to_string(),
            })
            .collect(),
        machines,
    }
}

/// Each machine's state, flags, host and addresses as `status` read them.
pub(crate) fn with_states(d: &mut Description, report: &StatusReport) {
    let rows: BTreeMap<&str, _> = report
        .machines
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    for m in &mut d.machines {
        let Some(row) = rows.get(m.name.as_str()) else {
            continue;
        };
        m.state = match row.state.as_str() {
            "running" => State::Running,
            "stopped" => State::Stopped,
            "paused" => State::Paused,
            "busy" => State::Busy,
            "not created" => State::NotCreated,
            _ => State::Unknown,
        };
        if row.definition == Some("changed") {
            m.flags.push(Flag::Changed);
        }
        if row.drifted == Some(true) {
            m.flags.push(Flag::Drifted);
        }
        if row.health == Some("failed") {
            m.flags.push(Flag::Unhealthy);
        }
        m.host = row.host.clone();
        for l in &mut m.links {
            if let Some(a) = row.addresses.get(&l.network) {
                l.address = a.clone();
            }
        }
    }
    if !report.unreachable.is_empty() {
        d.notes.push(format!(
            "not reached, their machines' states unknown: {}",
            report.unreachable.join("; ")
        ));
    }
    let orphans: Vec<&str> = report
        .machines
        .iter()
        .filter(|r| r.orphan)
        .map(|r| r.name.as_str())
        .collect();
    if !orphans.is_empty() {
        d.notes.push(format!(
            "in the engines but no longer in the Envfile (not drawn): {}",
            orphans.join(", ")
        ));
    }
}
