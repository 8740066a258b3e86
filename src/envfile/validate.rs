//! Cross-reference checks that turn drafts into the validated [`Env`].
//!
//! Every check here looks at more than one field: references to boxes, networks and
//! machines, names after `count` expansion, dependency cycles, addresses against subnets,
//! and host ports that two machines would both claim. Each rule is one `check_` function;
//! `build` runs them in a fixed order, which is the order their diagnostics are pushed in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;

use super::diag::{did_you_mean, Diagnostic};
use super::model::*;
use super::parse::{Draft, EnvDraft, MachineDraft, TestDraft};
use super::read::{Ctx, Sp};

/// Networks by name, with the span of each one's subnet.
type Networks = BTreeMap<String, (Network, Range<usize>)>;

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

pub(super) fn build(
    ctx: &mut Ctx,
    draft: Draft,
    dir: &Path,
    file: &Path,
    hosts_file: Option<&Layout>,
) -> Option<Env> {
    let layout = layout_of(&draft, hosts_file);
    let settings = check_settings(ctx, draft.env);
    let boxes = boxes_of(draft.boxes);
    let networks = networks_of(draft.networks);
    check_subnet_overlaps(ctx, &networks);
    let names = check_names(ctx, &draft.machines);
    // Instances of VM definitions: a container's `host` may name one (a VM that hosts
    // containers in its own Docker engine).
    let vms: BTreeSet<String> = draft
        .machines
        .iter()
        .filter(|m| {
            m.backend
                .as_ref()
                .is_some_and(|b| b.value == Backend::Libvirt)
        })
        .flat_map(|m| names.groups.get(&m.name.value).cloned().unwrap_or_default())
        .collect();
    let mut fleet = Fleet {
        vms: &vms,
        box_names: boxes.keys().map(String::as_str).collect(),
        net_names: networks.keys().map(String::as_str).collect(),
        networks: &networks,
        names: &names,
        addresses: BTreeMap::new(),
        host_ports: BTreeMap::new(),
        machines: BTreeMap::new(),
        dep_spans: BTreeMap::new(),
        layout: &layout,
    };
    for m in &draft.machines {
        check_machine(ctx, &mut fleet, m);
    }
    check_capacity(ctx, &draft.machines, &networks);
    let (machines, dep_spans) = (fleet.machines, fleet.dep_spans);
    check_cycles(ctx, &machines, &dep_spans);
    let tests = check_tests(ctx, draft.tests, &names);
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
        layout,
        sources: Sources::default(),
    };
    check_topology(ctx, &env, &spans).then_some(env)
}

/// The Envfile's hosts, with the hosts file's tables in place of those of the same name,
/// and the hosts file's swarm mode before the Envfile's.
fn layout_of(draft: &Draft, hosts_file: Option<&Layout>) -> Layout {
    let mut hosts: BTreeMap<String, Host> = draft
        .hosts
        .iter()
        .map(|h| (h.host.name.clone(), h.host.clone()))
        .collect();
    let swarm = draft.env.as_ref().and_then(|e| e.swarm);
    match hosts_file {
        Some(f) => {
            hosts.extend(f.hosts.clone());
            Layout {
                hosts,
                swarm: if f.swarm == SwarmMode::Create {
                    f.swarm
                } else {
                    swarm.unwrap_or_default()
                },
                file: f.file.clone(),
            }
        }
        None => Layout {
            hosts,
            swarm: swarm.unwrap_or_default(),
            file: None,
        },
    }
}

/// A machine's `host`: declared, and able to run the machine's kind; not both `host` and
/// `libvirt_uri`.
fn check_place(ctx: &mut Ctx, m: &MachineDraft, layout: &Layout, vms: &BTreeSet<String>) -> Place {
    let Some(h) = &m.host else {
        return Place::default();
    };
    if vms.contains(&h.value) {
        return check_vm_host(ctx, m, h, layout);
    }
    let Some(host) = layout.hosts.get(&h.value) else {
        let mut known: Vec<&str> = layout.hosts.keys().map(String::as_str).collect();
        known.extend(vms.iter().map(String::as_str));
        unknown_ref(
            ctx,
            h,
            "host",
            &known,
            "[host.NAME] in the Envfile or a hosts file (`--hosts FILE`)",
        );
        return Place::default();
    };
    if let Some(uri) = &m.libvirt_uri {
        ctx.push(
            Diagnostic::new(
                uri.span.clone(),
                format!(
                    "machine `{}` has both `host` and `libvirt_uri`",
                    m.name.value
                ),
            )
            .label("`host` already says where the VM runs")
            .help(format!(
                "drop `libvirt_uri` here, or set it in `[host.{}]`",
                h.value
            )),
        );
    }
    let local = host.docker.is_none() && host.libvirt_uri.is_none();
    let lacks = match m.backend.as_ref().map(|b| b.value) {
        Some(Backend::Docker) if !local && host.docker.is_none() => Some("docker"),
        Some(Backend::Libvirt) if !local && host.libvirt_uri.is_none() => Some("libvirt_uri"),
        _ => None,
    };
    if let Some(key) = lacks {
        let kind = m
            .backend
            .as_ref()
            .map(|b| b.value.to_string())
            .unwrap_or_default();
        ctx.push(
            Diagnostic::new(
                h.span.clone(),
                format!(
                    "host `{}` has no {kind} engine for machine `{}`",
                    h.value, m.name.value
                ),
            )
            .label(format!("`[host.{}]` has no `{key}`", h.value))
            .help(format!(
                "add `{key} = …` to `[host.{}]`, or place the machine on another host",
                h.value
            )),
        );
    }
    Place {
        host: Some(h.value.clone()),
        docker: host.docker.clone(),
        libvirt_uri: host.libvirt_uri.clone(),
    }
}

/// `host = "VM"`: a container in the Docker engine of one of the environment's VMs.
fn check_vm_host(ctx: &mut Ctx, m: &MachineDraft, h: &Sp<String>, layout: &Layout) -> Place {
    let what = if layout.hosts.contains_key(&h.value) {
        Some((
            format!(
                "`{}` is both a host (`[host.{}]`) and a VM of the environment",
                h.value, h.value
            ),
            "rename the host table or the VM",
        ))
    } else if m
        .backend
        .as_ref()
        .is_some_and(|b| b.value != Backend::Docker)
    {
        Some((
            format!(
                "only containers run in a VM's Docker engine; machine `{}` is a VM",
                m.name.value
            ),
            "place the VM on a host (a `[host.NAME]` table), not in another VM",
        ))
    } else {
        None
    };
    if let Some((message, help)) = what {
        ctx.push(
            Diagnostic::new(h.span.clone(), message)
                .label("cannot host this machine")
                .help(help),
        );
        return Place::default();
    }
    Place::in_vm(&h.value)
}

/// `[env]` must be there and have a `name`.
fn check_settings(ctx: &mut Ctx, env: Option<EnvDraft>) -> Option<EnvSettings> {
    let Some(e) = env else {
        ctx.push(
            Diagnostic::new(0..0, "the Envfile has no `[env]` table")
                .label("expected `[env]`")
                .help("start the file with `[env]` and `name = \"my-env\"`"),
        );
        return None;
    };
    let Some(name) = e.name else {
        ctx.push(
            Diagnostic::new(0..0, "`[env]` has no `name`")
                .label("missing `name`")
                .help("add `name = \"my-env\"` under `[env]`"),
        );
        return None;
    };
    Some(EnvSettings {
        name: name.value,
        description: e.description,
        libvirt_uri: e.libvirt_uri,
        parallel: e.parallel.unwrap_or(8),
        accel: e.accel.unwrap_or(Accel::Auto),
        host_paths: e.host_paths,
    })
}

/// Boxes whose source was readable; the others were reported while parsing.
fn boxes_of(drafts: Vec<super::parse::BoxDraft>) -> BTreeMap<String, BoxDef> {
    drafts
        .into_iter()
        .filter_map(|b| {
            Some((
                b.name.value.clone(),
                BoxDef {
                    name: b.name.value,
                    source: b.source?,
                    sha256: b.sha256,
                    version: b.version,
                    pin: None,
                },
            ))
        })
        .collect()
}

/// Networks whose subnet was readable; the others were reported while parsing.
fn networks_of(drafts: Vec<super::parse::NetworkDraft>) -> Networks {
    drafts
        .into_iter()
        .filter_map(|n| {
            let subnet = n.subnet?;
            let network = Network {
                name: n.name.value.clone(),
                subnet: subnet.value,
                encrypted: n.encrypted,
            };
            Some((n.name.value, (network, subnet.span)))
        })
        .collect()
}

fn check_subnet_overlaps(ctx: &mut Ctx, networks: &Networks) {
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

/// Machine names after `count` expansion.
struct Names {
    /// Every instance name, with the definition it came from.
    instances: BTreeMap<String, String>,
    /// The instance names of each definition, in replica order.
    groups: BTreeMap<String, Vec<String>>,
}

fn count_of(m: &MachineDraft) -> u32 {
    m.count.as_ref().map(|c| c.value).unwrap_or(1)
}

/// Expands `count` into instance names; a name may come from only one definition.
fn check_names(ctx: &mut Ctx, machines: &[MachineDraft]) -> Names {
    let mut names = Names {
        instances: BTreeMap::new(),
        groups: BTreeMap::new(),
    };
    for m in machines {
        let count = count_of(m);
        let group: Vec<String> = if count > 1 {
            (1..=count)
                .map(|i| format!("{}-{i}", m.name.value))
                .collect()
        } else {
            vec![m.name.value.clone()]
        };
        for n in &group {
            if let Some(other) = names.instances.get(n) {
                // A replica's name comes from `count`, so that is what the caret points at.
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
                names.instances.insert(n.clone(), m.name.value.clone());
            }
        }
        names.groups.insert(m.name.value.clone(), group);
    }
    names
}

/// What the checks of every machine share: the names they may refer to, and what earlier
/// machines have built and claimed.
struct Fleet<'a> {
    box_names: Vec<&'a str>,
    net_names: Vec<&'a str>,
    networks: &'a Networks,
    names: &'a Names,
    /// Fixed addresses taken so far, by network, with the instance holding each.
    addresses: BTreeMap<(String, Ipv4Addr), String>,
    /// Host ports published so far, with the instance publishing each.
    host_ports: BTreeMap<(u16, Protocol), String>,
    machines: BTreeMap<String, Machine>,
    /// Where a dependency cycle through each instance is reported.
    dep_spans: BTreeMap<String, Range<usize>>,
    layout: &'a Layout,
    /// Instance names of the environment's VMs.
    vms: &'a BTreeSet<String>,
}

/// One instance of a machine definition: the definition itself, or one of its replicas.
struct Instance<'a> {
    name: &'a str,
    /// Zero-based replica index; replica `i` gets the written address plus `i`.
    index: usize,
    /// Whether the definition has `count` above 1.
    replicated: bool,
}

/// Checks one machine definition and builds each of its instances, in replica order.
fn check_machine(ctx: &mut Ctx, fleet: &mut Fleet<'_>, m: &MachineDraft) {
    let base = check_base(ctx, m, &fleet.box_names);
    check_vm_ports(ctx, m);
    check_networks(ctx, m, fleet);
    let mut deps = check_dependencies(ctx, m, fleet.names);
    let place = check_place(ctx, m, fleet.layout, fleet.vms);
    // A container in a VM waits for its VM.
    if let Some(vm) = place.vm_host() {
        if !deps.iter().any(|d| d == vm) {
            deps.push(vm.to_string());
        }
    }
    let replicated = count_of(m) > 1;
    let names = fleet.names;
    for (index, name) in names.groups[&m.name.value].iter().enumerate() {
        let inst = Instance {
            name,
            index,
            replicated,
        };
        // One report per definition: its other replicas would say the same.
        if check_self_dependency(ctx, m, &deps, &inst) {
            break;
        }
        let attaches = check_addresses(ctx, m, &inst, fleet);
        check_host_ports(ctx, m, &inst, &mut fleet.host_ports);
        fleet.dep_spans.insert(
            name.clone(),
            m.depends_on
                .first()
                .map(|d| d.span.clone())
                .unwrap_or(m.name.span.clone()),
        );
        if let (Some(backend), Some(base)) = (&m.backend, &base) {
            let mut machine = instance_of(m, &inst, backend.value, base.clone(), attaches, &deps);
            machine.place = place.clone();
            fleet.machines.insert(name.clone(), machine);
        }
    }
}

fn instance_of(
    m: &MachineDraft,
    inst: &Instance<'_>,
    backend: Backend,
    base: Base,
    networks: Vec<NetAttach>,
    deps: &[String],
) -> Machine {
    Machine {
        name: inst.name.to_string(),
        group: m.name.value.clone(),
        replica: inst.replicated.then_some(inst.index as u32 + 1),
        backend,
        base,
        cpus: m.cpus,
        memory: m.memory,
        disk: m.disk,
        networks,
        ports: m.ports.iter().map(|p| p.value.clone()).collect(),
        synced_folders: m.synced_folders.iter().map(|(s, _)| s.clone()).collect(),
        env: m.env.clone(),
        command: m.command.clone(),
        provision: m.provision.iter().map(|s| s.step.clone()).collect(),
        depends_on: deps.to_vec(),
        healthcheck: m.healthcheck.clone(),
        libvirt_uri: m.libvirt_uri.as_ref().map(|s| s.value.clone()),
        accel: m.accel,
        place: Place::default(),
    }
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

/// Every network a machine attaches to is declared.
fn check_networks(ctx: &mut Ctx, m: &MachineDraft, fleet: &Fleet<'_>) {
    for a in &m.networks {
        if !fleet.networks.contains_key(&a.network.value) {
            unknown_ref(
                ctx,
                &a.network,
                "network",
                &fleet.net_names,
                "[network.NAME]",
            );
        }
    }
}

/// Resolves `depends_on` to instance names: a definition's name stands for all its replicas.
fn check_dependencies(ctx: &mut Ctx, m: &MachineDraft, names: &Names) -> Vec<String> {
    let mut deps = Vec::new();
    for d in &m.depends_on {
        if let Some(g) = names.groups.get(&d.value) {
            deps.extend(g.iter().cloned());
        } else if names.instances.contains_key(&d.value) {
            deps.push(d.value.clone());
        } else {
            let known: Vec<&str> = names.groups.keys().map(String::as_str).collect();
            unknown_ref(ctx, d, "machine", &known, "[machine.NAME]");
        }
    }
    deps
}

/// Reports an instance that depends on itself (or its whole definition); true if it does.
fn check_self_dependency(
    ctx: &mut Ctx,
    m: &MachineDraft,
    deps: &[String],
    inst: &Instance<'_>,
) -> bool {
    let own = &m.name.value;
    if !deps.iter().any(|d| d == inst.name) && !m.depends_on.iter().any(|d| d.value == *own) {
        return false;
    }
    let span = m
        .depends_on
        .iter()
        .find(|d| d.value == *own || d.value == inst.name)
        .map(|d| d.span.clone())
        .unwrap_or(m.name.span.clone());
    ctx.push(
        Diagnostic::new(span, format!("machine `{own}` depends on itself"))
            .label("self-dependency")
            .help("remove it from `depends_on`"),
    );
    true
}

/// The instance's attachments to declared networks, each fixed address checked.
fn check_addresses(
    ctx: &mut Ctx,
    m: &MachineDraft,
    inst: &Instance<'_>,
    fleet: &mut Fleet<'_>,
) -> Vec<NetAttach> {
    let networks = fleet.networks;
    let mut attaches = Vec::new();
    for a in &m.networks {
        let Some((net, _)) = networks.get(&a.network.value) else {
            continue;
        };
        let address = a.address.as_ref().and_then(|addr| {
            let ip = Ipv4Net::offset(addr.value, inst.index as u32)?;
            check_address(ctx, net, ip, addr, inst, &mut fleet.addresses);
            Some(ip)
        });
        attaches.push(NetAttach {
            network: net.name.clone(),
            address,
        });
    }
    attaches
}

/// A fixed address is inside the subnet, not reserved, below the automatic range, and
/// not taken by another instance; only the first of these problems is reported.
fn check_address(
    ctx: &mut Ctx,
    net: &Network,
    ip: Ipv4Addr,
    written: &Sp<Ipv4Addr>,
    inst: &Instance<'_>,
    taken: &mut BTreeMap<(String, Ipv4Addr), String>,
) {
    // Replicas get the written address plus their index: say which one went wrong.
    let note = if inst.replicated && ip != written.value {
        format!(" (replica `{}` gets `{ip}`)", inst.name)
    } else {
        String::new()
    };
    let span = || written.span.clone();
    let misplaced = outside_subnet(span(), net, ip, &note)
        .or_else(|| reserved_address(span(), net, ip, &note))
        .or_else(|| in_automatic_range(span(), net, ip, &note));
    if let Some(d) = misplaced {
        ctx.push(d);
        return;
    }
    if let Some(other) = taken.insert((net.name.clone(), ip), inst.name.to_string()) {
        ctx.push(
            Diagnostic::new(
                span(),
                format!(
                    "address `{ip}` on network `{}` is given to both `{other}` and `{}`",
                    net.name, inst.name
                ),
            )
            .label("address clash")
            .help("give each machine its own address, or leave `address` out to have one assigned"),
        );
    }
}

fn outside_subnet(
    span: Range<usize>,
    net: &Network,
    ip: Ipv4Addr,
    note: &str,
) -> Option<Diagnostic> {
    let s = net.subnet;
    if s.contains(ip) {
        return None;
    }
    Some(
        Diagnostic::new(
            span,
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
    )
}

fn reserved_address(
    span: Range<usize>,
    net: &Network,
    ip: Ipv4Addr,
    note: &str,
) -> Option<Diagnostic> {
    let s = net.subnet;
    let what = if ip == s.gateway() {
        "the gateway"
    } else if ip == s.network() {
        "the network address"
    } else if ip == s.broadcast() {
        "the broadcast address"
    } else {
        return None;
    };
    Some(
        Diagnostic::new(
            span,
            format!("address `{ip}` is {what} of network `{}`{note}", net.name),
        )
        .label("reserved address")
        .help(format!(
            "machines may use {} and above",
            Ipv4Net::offset(s.gateway(), 1).unwrap_or(ip)
        )),
    )
}

/// The upper half of a subnet is where machines without `address` get theirs.
fn in_automatic_range(
    span: Range<usize>,
    net: &Network,
    ip: Ipv4Addr,
    note: &str,
) -> Option<Diagnostic> {
    let s = net.subnet;
    if ip < s.auto_start() {
        return None;
    }
    Some(
        Diagnostic::new(
            span,
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
    )
}

/// Machines without a fixed address fit their network's automatic range: containers the
/// third quarter of the subnet (Docker's IPAM range), VMs the fourth (less broadcast).
/// Reported at the `count` (or the name) of the definition that goes past it.
fn check_capacity(
    ctx: &mut Ctx,
    machines: &[MachineDraft],
    networks: &BTreeMap<String, (Network, Range<usize>)>,
) {
    let mut used: BTreeMap<(String, bool), u64> = BTreeMap::new();
    for m in machines {
        let vm = m
            .backend
            .as_ref()
            .is_some_and(|b| b.value == Backend::Libvirt);
        for a in m.networks.iter().filter(|a| a.address.is_none()) {
            let Some((net, _)) = networks.get(&a.network.value) else {
                continue;
            };
            let quarter = (1u64 << (32 - net.subnet.prefix)) / 4;
            let room = if vm {
                quarter.saturating_sub(1)
            } else {
                quarter
            };
            let n = used.entry((net.name.clone(), vm)).or_default();
            let before = *n;
            *n += u64::from(count_of(m));
            if before <= room && *n > room {
                let kind = if vm { "VMs" } else { "containers" };
                let span = m
                    .count
                    .as_ref()
                    .map_or(m.name.span.clone(), |c| c.span.clone());
                ctx.push(
                    Diagnostic::new(
                        span,
                        format!(
                            "network `{}` ({}) has room for {room} {kind} without a fixed address, and this makes {n}",
                            net.name, net.subnet
                        ),
                    )
                    .label(format!("{n} {kind} on `{}`", net.name))
                    .help("use a larger subnet (a /23 has twice the room of a /24), or give some machines fixed addresses"),
                );
            }
        }
    }
}

/// `ports` are published for containers only: on a VM nothing would listen on the host
/// port, and a user must never believe a port is published when it is not.
fn check_vm_ports(ctx: &mut Ctx, m: &MachineDraft) {
    let vm = m
        .backend
        .as_ref()
        .is_some_and(|b| b.value == Backend::Libvirt);
    let Some(first) = m.ports.first().filter(|_| vm) else {
        return;
    };
    ctx.push(
        Diagnostic::new(
            first.span.clone(),
            format!(
                "`ports` are published for containers only; VM `{}` would not be reachable on them",
                m.name.value
            ),
        )
        .label("not published for a VM")
        .help("reach the VM at its address on its network (`hdev status` shows it), or put the service in a container"),
    );
}

/// No two instances publish the same host port and protocol.
fn check_host_ports(
    ctx: &mut Ctx,
    m: &MachineDraft,
    inst: &Instance<'_>,
    claimed: &mut BTreeMap<(u16, Protocol), String>,
) {
    for p in &m.ports {
        let Some(h) = p.value.host else {
            continue;
        };
        let Some(other) = claimed.insert((h, p.value.protocol), inst.name.to_string()) else {
            continue;
        };
        let help = if other.starts_with(&format!("{}-", m.name.value)) && inst.replicated {
            "replicas of `count = N` cannot share a host port; publish only the guest port (`\"80\"`) or set `count = 1`"
        } else {
            "pick another host port for one of them"
        };
        ctx.push(
            Diagnostic::new(
                p.span.clone(),
                format!(
                    "host port {h}/{} is claimed by `{other}` and `{}`",
                    p.value.protocol, inst.name
                ),
            )
            .label("port clash on the host")
            .help(help),
        );
    }
}

/// A machine's state in the cycle search.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Fresh,
    Active,
    Done,
}

fn check_cycles(
    ctx: &mut Ctx,
    machines: &BTreeMap<String, Machine>,
    spans: &BTreeMap<String, Range<usize>>,
) {
    // Depth-first search with colours; each cycle is reported once, at its first member.
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

/// Tests run on a known machine instance and have unique names. Tests missing a field
/// were reported while parsing and are left out.
fn check_tests(ctx: &mut Ctx, drafts: Vec<TestDraft>, names: &Names) -> Vec<TestCheck> {
    let mut tests = Vec::new();
    let mut test_names = BTreeSet::new();
    for t in drafts {
        let (Some(name), Some(machine), Some(run)) = (t.name, t.machine, t.run) else {
            continue;
        };
        if !names.instances.contains_key(&machine.value) {
            let known: Vec<&str> = names.instances.keys().map(String::as_str).collect();
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
    tests
}

/// A network lives on one host: VMs on a remote libvirt host cannot share it with
/// machines on this one. Checked on the built `Env`, where each machine's host is known.
fn check_topology(ctx: &mut Ctx, env: &Env, subnet_spans: &BTreeMap<String, Range<usize>>) -> bool {
    if let Err(e) = super::topology::check_vm_networks(env) {
        let span = subnet_spans.get(&e.network).cloned().unwrap_or(0..0);
        ctx.push(
            Diagnostic::new(span, e.to_string())
                .label("used inside and outside a VM")
                .help("give the containers in the VM a network of their own"),
        );
        return false;
    }
    let Err(e) = super::topology::check_spans(env) else {
        return true;
    };
    let span = subnet_spans.get(&e.network).cloned().unwrap_or(0..0);
    ctx.push(
        Diagnostic::new(span, e.to_string())
            .label("used on more than one host")
            .help("VMs on a remote libvirt host get their own networks there; networks across Docker engines become Swarm overlays"),
    );
    false
}
