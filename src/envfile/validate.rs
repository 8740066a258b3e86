//! Cross-reference checks that turn drafts into the validated [`Env`].
//!
//! Every check here looks at more than one field: references to boxes, networks and
//! machines, names after `count` expansion, dependency cycles, addresses against subnets,
//! and host ports that two machines would both claim.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;

use super::diag::{did_you_mean, Diagnostic};
use super::model::*;
use super::parse::{Draft, MachineDraft};
use super::read::{Ctx, Sp};

fn unknown_ref(ctx: &mut Ctx, r: &Sp<String>, what: &str, known: &[&str], declare: &str) {
    let help = match did_you_mean(&r.value, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("declare it with `{declare}`"),
        None => format!("known {what}s: {}", known.join(", ")),
    };
    ctx.push(
        Diagnostic::new(r.span.clone(), format!("unknown {what} `{}`", r.value))
            .label(format!("no such {what}"))
            .help(help),
    );
}

pub(super) fn build(ctx: &mut Ctx, draft: Draft, dir: &Path, file: &Path) -> Option<Env> {
    let settings = match draft.env {
        Some(e) => match e.name {
            Some(name) => Some(EnvSettings {
                name: name.value,
                description: e.description,
                libvirt_uri: e.libvirt_uri,
                parallel: e.parallel.unwrap_or(8),
                accel: e.accel.unwrap_or(Accel::Auto),
            }),
            None => {
                ctx.push(
                    Diagnostic::new(0..0, "`[env]` has no `name`")
                        .label("missing `name`")
                        .help("add `name = \"my-env\"` under `[env]`"),
                );
                None
            }
        },
        None => {
            ctx.push(
                Diagnostic::new(0..0, "the Envfile has no `[env]` table")
                    .label("expected `[env]`")
                    .help("start the file with `[env]` and `name = \"my-env\"`"),
            );
            None
        }
    };

    let boxes: BTreeMap<String, BoxDef> = draft
        .boxes
        .into_iter()
        .filter_map(|b| {
            Some((
                b.name.value.clone(),
                BoxDef {
                    name: b.name.value,
                    source: b.source?,
                    sha256: b.sha256,
                    version: b.version,
                },
            ))
        })
        .collect();
    let networks: BTreeMap<String, (Network, Range<usize>)> = draft
        .networks
        .into_iter()
        .filter_map(|n| {
            let subnet = n.subnet?;
            Some((
                n.name.value.clone(),
                (
                    Network {
                        name: n.name.value,
                        subnet: subnet.value,
                    },
                    subnet.span,
                ),
            ))
        })
        .collect();
    check_subnet_overlaps(ctx, &networks);

    let box_names: Vec<&str> = boxes.keys().map(String::as_str).collect();
    let net_names: Vec<&str> = networks.keys().map(String::as_str).collect();

    // Names after expansion, with the definition each came from.
    let mut instances: BTreeMap<String, (String, Range<usize>)> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &draft.machines {
        let count = m.count.as_ref().map(|c| c.value).unwrap_or(1);
        let names: Vec<String> = if count > 1 {
            (1..=count)
                .map(|i| format!("{}-{i}", m.name.value))
                .collect()
        } else {
            vec![m.name.value.clone()]
        };
        for n in &names {
            if let Some((other, _)) = instances.get(n) {
                let span = m
                    .count
                    .as_ref()
                    .filter(|_| count > 1)
                    .map(|c| c.span.clone())
                    .unwrap_or(m.name.span.clone());
                ctx.push(
                    Diagnostic::new(span, format!("machine name `{n}` is used twice"))
                        .label(format!("`{n}` also comes from `[machine.{other}]`"))
                        .help("replicas of `count = N` are named `NAME-1` .. `NAME-N`; rename one of the machines"),
                );
            } else {
                instances.insert(n.clone(), (m.name.value.clone(), m.name.span.clone()));
            }
        }
        groups.insert(m.name.value.clone(), names);
    }

    let mut machines = BTreeMap::new();
    let mut dep_spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut fixed_addrs: BTreeMap<(String, Ipv4Addr), String> = BTreeMap::new();
    let mut host_ports: BTreeMap<(u16, Protocol), String> = BTreeMap::new();
    for m in &draft.machines {
        let base = check_base(ctx, m, &box_names);
        for a in &m.networks {
            if !networks.contains_key(&a.network.value) {
                unknown_ref(ctx, &a.network, "network", &net_names, "[network.NAME]");
            }
        }
        let mut deps = Vec::new();
        for d in &m.depends_on {
            if let Some(g) = groups.get(&d.value) {
                deps.extend(g.iter().cloned());
            } else if instances.contains_key(&d.value) {
                deps.push(d.value.clone());
            } else {
                let known: Vec<&str> = groups.keys().map(String::as_str).collect();
                unknown_ref(ctx, d, "machine", &known, "[machine.NAME]");
            }
        }
        let count = m.count.as_ref().map(|c| c.value).unwrap_or(1);
        let names = &groups[&m.name.value];
        for (i, inst) in names.iter().enumerate() {
            if deps.contains(inst) || m.depends_on.iter().any(|d| d.value == m.name.value) {
                let d = m
                    .depends_on
                    .iter()
                    .find(|d| d.value == m.name.value || d.value == *inst)
                    .map(|d| d.span.clone())
                    .unwrap_or(m.name.span.clone());
                ctx.push(
                    Diagnostic::new(d, format!("machine `{}` depends on itself", m.name.value))
                        .label("self-dependency")
                        .help("remove it from `depends_on`"),
                );
                break;
            }
            let mut attaches = Vec::new();
            for a in &m.networks {
                let Some((net, _)) = networks.get(&a.network.value) else {
                    continue;
                };
                let address = a.address.as_ref().and_then(|addr| {
                    let ip = Ipv4Net::offset(addr.value, i as u32)?;
                    check_address(ctx, net, ip, addr, count > 1, inst, &mut fixed_addrs);
                    Some(ip)
                });
                attaches.push(NetAttach {
                    network: net.name.clone(),
                    address,
                });
            }
            for p in &m.ports {
                if let Some(h) = p.value.host {
                    if let Some(other) = host_ports.insert((h, p.value.protocol), inst.clone()) {
                        let help = if other.starts_with(&format!("{}-", m.name.value)) && count > 1
                        {
                            "replicas of `count = N` cannot share a host port; publish only the guest port (`\"80\"`) or set `count = 1`".to_string()
                        } else {
                            "pick another host port for one of them".to_string()
                        };
                        ctx.push(
                            Diagnostic::new(
                                p.span.clone(),
                                format!(
                                    "host port {h}/{} is claimed by `{other}` and `{inst}`",
                                    p.value.protocol
                                ),
                            )
                            .label("port clash on the host")
                            .help(help),
                        );
                    }
                }
            }
            dep_spans.insert(
                inst.clone(),
                m.depends_on
                    .first()
                    .map(|d| d.span.clone())
                    .unwrap_or(m.name.span.clone()),
            );
            if let (Some(backend), Some(base)) = (&m.backend, &base) {
                machines.insert(
                    inst.clone(),
                    Machine {
                        name: inst.clone(),
                        group: m.name.value.clone(),
                        replica: (count > 1).then_some(i as u32 + 1),
                        backend: backend.value,
                        base: base.clone(),
                        cpus: m.cpus,
                        memory: m.memory,
                        disk: m.disk,
                        networks: attaches,
                        ports: m.ports.iter().map(|p| p.value.clone()).collect(),
                        synced_folders: m.synced_folders.iter().map(|(s, _)| s.clone()).collect(),
                        env: m.env.clone(),
                        command: m.command.clone(),
                        provision: m.provision.iter().map(|s| s.step.clone()).collect(),
                        depends_on: deps.clone(),
                        healthcheck: m.healthcheck.clone(),
                        libvirt_uri: m.libvirt_uri.clone(),
                        accel: m.accel,
                    },
                );
            }
        }
    }
    check_cycles(ctx, &machines, &dep_spans);

    let mut tests = Vec::new();
    let mut test_names = BTreeSet::new();
    for t in draft.tests {
        let (Some(name), Some(machine), Some(run)) = (t.name, t.machine, t.run) else {
            continue;
        };
        if !instances.contains_key(&machine.value) {
            let known: Vec<&str> = instances.keys().map(String::as_str).collect();
            unknown_ref(ctx, &machine, "machine", &known, "[machine.NAME]");
            continue;
        }
        if !test_names.insert(name.clone()) {
            ctx.push(
                Diagnostic::new(t.span.clone(), format!("two tests are named `{name}`"))
                    .label("duplicate test name")
                    .help("test names identify results in JUnit reports; make them unique"),
            );
        }
        tests.push(TestCheck {
            name,
            machine: machine.value,
            run,
            expect_exit: t.expect_exit,
            expect_output: t.expect_output,
            timeout_ms: t.timeout_ms,
            span: t.span,
        });
    }

    if !ctx.diags.is_empty() {
        return None;
    }
    let spans: BTreeMap<String, Range<usize>> = networks
        .iter()
        .map(|(k, (_, span))| (k.clone(), span.clone()))
        .collect();
    let env = Env {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        settings: settings?,
        boxes,
        networks: networks.into_iter().map(|(k, (n, _))| (k, n)).collect(),
        machines,
        tests,
    };
    // A network lives on one host: VMs on a remote libvirt host cannot share it with
    // machines on this one.
    if let Err(e) = super::topology::check_spans(&env) {
        let span = spans.get(&e.network).cloned().unwrap_or(0..0);
        ctx.push(
            Diagnostic::new(span, e.to_string())
                .label("used on more than one host")
                .help("VMs on a remote libvirt host get their own networks there; containers and local VMs share this host's"),
        );
        return None;
    }
    Some(env)
}

fn check_base(ctx: &mut Ctx, m: &MachineDraft, box_names: &[&str]) -> Option<Base> {
    match (&m.box_name, &m.image) {
        (Some(b), None) => {
            if box_names.contains(&b.value.as_str()) {
                Some(Base::Box(b.value.clone()))
            } else {
                unknown_ref(ctx, b, "box", box_names, "[box.NAME]");
                None
            }
        }
        (None, Some(i)) => Some(Base::Image(i.value.clone())),
        (Some(_), Some(i)) => {
            ctx.push(
                Diagnostic::new(
                    i.span.clone(),
                    format!("machine `{}` has both `box` and `image`", m.name.value),
                )
                .label("second base")
                .help("keep one: `box` for a box from `[box.NAME]`, `image` for a local image"),
            );
            None
        }
        (None, None) => {
            ctx.push(
                Diagnostic::new(
                    m.name.span.clone(),
                    format!("machine `{}` has no `box` or `image`", m.name.value),
                )
                .label("nothing to start from")
                .help("add `box = \"NAME\"` naming a `[box.NAME]`, or `image = \"...\"`"),
            );
            None
        }
    }
}

fn check_address(
    ctx: &mut Ctx,
    net: &Network,
    ip: Ipv4Addr,
    written: &Sp<Ipv4Addr>,
    replicated: bool,
    inst: &str,
    taken: &mut BTreeMap<(String, Ipv4Addr), String>,
) {
    let s = net.subnet;
    let note = if replicated && ip != written.value {
        format!(" (replica `{inst}` gets `{ip}`)")
    } else {
        String::new()
    };
    if !s.contains(ip) {
        ctx.push(
            Diagnostic::new(
                written.span.clone(),
                format!(
                    "address `{ip}` is outside network `{}` ({s}){note}",
                    net.name
                ),
            )
            .label("outside the subnet")
            .help(format!(
                "pick an address between {} and {}",
                Ipv4Net::offset(s.gateway(), 1).unwrap_or(s.gateway()),
                Ipv4Addr::from(u32::from(s.auto_start()) - 1)
            )),
        );
        return;
    }
    if ip == s.network() || ip == s.broadcast() || ip == s.gateway() {
        let what = if ip == s.gateway() {
            "the gateway"
        } else if ip == s.network() {
            "the network address"
        } else {
            "the broadcast address"
        };
        ctx.push(
            Diagnostic::new(
                written.span.clone(),
                format!("address `{ip}` is {what} of network `{}`{note}", net.name),
            )
            .label("reserved address")
            .help(format!(
                "machines may use {} and above",
                Ipv4Net::offset(s.gateway(), 1).unwrap_or(ip)
            )),
        );
        return;
    }
    if ip >= s.auto_start() {
        ctx.push(
            Diagnostic::new(
                written.span.clone(),
                format!(
                    "address `{ip}` is in the upper half of network `{}`, which hdev assigns to machines without a fixed address{note}",
                    net.name
                ),
            )
            .label("automatically assigned range")
            .help(format!(
                "fixed addresses go between {} and {}",
                Ipv4Net::offset(s.gateway(), 1).unwrap_or(ip),
                Ipv4Addr::from(u32::from(s.auto_start()) - 1)
            )),
        );
        return;
    }
    if let Some(other) = taken.insert((net.name.clone(), ip), inst.to_string()) {
        ctx.push(
            Diagnostic::new(
                written.span.clone(),
                format!(
                    "address `{ip}` on network `{}` is given to both `{other}` and `{inst}`",
                    net.name
                ),
            )
            .label("address clash")
            .help("give each machine its own address, or leave `address` out to have one assigned"),
        );
    }
}

fn check_subnet_overlaps(ctx: &mut Ctx, networks: &BTreeMap<String, (Network, Range<usize>)>) {
    let list: Vec<_> = networks.values().collect();
    for (i, (a, _)) in list.iter().enumerate() {
        for (b, span_b) in &list[i + 1..] {
            if a.subnet.contains(b.subnet.network()) || b.subnet.contains(a.subnet.network()) {
                ctx.push(
                    Diagnostic::new(
                        span_b.clone(),
                        format!(
                            "subnet {} of network `{}` overlaps subnet {} of network `{}`",
                            b.subnet, b.name, a.subnet, a.name
                        ),
                    )
                    .label("overlapping subnet")
                    .help("give every network its own range"),
                );
            }
        }
    }
}

fn check_cycles(
    ctx: &mut Ctx,
    machines: &BTreeMap<String, Machine>,
    spans: &BTreeMap<String, Range<usize>>,
) {
    // Depth-first search with colours; each cycle is reported once, at its first member.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Fresh,
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> =
        machines.keys().map(|k| (k.as_str(), Mark::Fresh)).collect();
    let mut reported = BTreeSet::new();
    for start in machines.keys() {
        if marks[start.as_str()] != Mark::Fresh {
            continue;
        }
        // Iterative DFS: (node, next child index), plus the current path.
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start.as_str(), Mark::Active);
        while let Some((node, idx)) = stack.last().copied() {
            let deps = &machines[node].depends_on;
            if idx < deps.len() {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                let next = deps[idx].as_str();
                match marks.get(next).copied() {
                    Some(Mark::Fresh) => {
                        marks.insert(next, Mark::Active);
                        stack.push((next, 0));
                    }
                    Some(Mark::Active) => {
                        let pos = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        let key: BTreeSet<&str> = cycle.iter().copied().collect();
                        if reported.insert(key.into_iter().collect::<Vec<_>>().join(",")) {
                            cycle.push(next);
                            let first = machines[cycle[0]].group.clone();
                            let span = spans.get(cycle[0]).cloned().unwrap_or(0..0);
                            ctx.push(
                                Diagnostic::new(
                                    span,
                                    format!("dependency cycle: {}", cycle.join(" -> ")),
                                )
                                .label(format!("`{first}` waits for itself through this"))
                                .help("remove one of the `depends_on` entries in the cycle"),
                            );
                        }
                    }
                    _ => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
}
