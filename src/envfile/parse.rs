//! Reads the spanned TOML tree into drafts: every field typed and checked on its own,
//! with spans kept for the cross-reference checks in `validate`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use toml::de::{DeTable, DeValue};

use super::diag::Diagnostic;
use super::model::{
    Accel, Backend, BoxSource, HealthCheck, Ipv4Net, PortMap, ProvisionStep, SyncedFolder,
};
use super::read::{entries_in_order, get, Ctx, Sp, Value};
use super::units;

pub(super) struct Draft {
    pub env: Option<EnvDraft>,
    pub boxes: Vec<BoxDraft>,
    pub networks: Vec<NetworkDraft>,
    pub machines: Vec<MachineDraft>,
    pub tests: Vec<TestDraft>,
    pub hosts: Vec<super::hosts::HostDraft>,
    pub sources: Vec<super::model::SourceDef>,
}

pub(super) struct EnvDraft {
    pub name: Option<Sp<String>>,
    pub description: Option<String>,
    pub libvirt_uri: Option<String>,
    pub parallel: Option<u32>,
    pub accel: Option<Accel>,
    pub swarm: Option<super::model::SwarmMode>,
    pub host_paths: bool,
}

pub(super) struct BoxDraft {
    pub name: Sp<String>,
    pub source: Option<BoxSource>,
    pub sha256: Option<String>,
    pub version: Option<String>,
    /// The recipe or file path as written, for paths in sources.
    pub path: Option<Sp<String>>,
}

pub(super) struct NetworkDraft {
    pub name: Sp<String>,
    pub subnet: Option<Sp<Ipv4Net>>,
    pub encrypted: bool,
}

pub(super) struct NetAttachDraft {
    pub network: Sp<String>,
    pub address: Option<Sp<Ipv4Addr>>,
}

pub(super) struct StepDraft {
    pub step: ProvisionStep,
    /// Span of each host path the step reads, for "file not found" errors.
    pub input_spans: Vec<Sp<String>>,
}

pub(super) struct MachineDraft {
    pub name: Sp<String>,
    pub backend: Option<Sp<Backend>>,
    pub box_name: Option<Sp<String>>,
    pub image: Option<Sp<String>>,
    pub cpus: u32,
    pub memory: Option<u64>,
    pub disk: Option<u64>,
    pub networks: Vec<NetAttachDraft>,
    pub ports: Vec<Sp<PortMap>>,
    pub synced_folders: Vec<(SyncedFolder, Sp<String>)>,
    pub env: BTreeMap<String, String>,
    pub command: Option<Vec<String>>,
    pub provision: Vec<StepDraft>,
    pub depends_on: Vec<Sp<String>>,
    pub healthcheck: Option<HealthCheck>,
    pub count: Option<Sp<u32>>,
    pub libvirt_uri: Option<Sp<String>>,
    pub accel: Option<Accel>,
    pub host: Option<Sp<String>>,
}

pub(super) struct TestDraft {
    pub span: std::ops::Range<usize>,
    pub name: Option<String>,
    pub machine: Option<Sp<String>>,
    pub run: Option<String>,
    pub expect_exit: i32,
    pub expect_output: Option<String>,
    pub timeout_ms: Option<u64>,
}

const TOP_KEYS: &[&str] = &["env", "box", "network", "machine", "test", "host", "source"];
const ENV_KEYS: &[&str] = &[
    "name",
    "description",
    "libvirt_uri",
    "parallel",
    "accel",
    "swarm",
    "host_paths",
];
const BOX_KEYS: &[&str] = &["recipe", "file", "url", "sha256", "version"];
const NETWORK_KEYS: &[&str] = &["subnet", "encrypted"];
const MACHINE_KEYS: &[&str] = &[
    "backend",
    "box",
    "image",
    "cpus",
    "memory",
    "disk",
    "networks",
    "ports",
    "synced_folders",
    "env",
    "command",
    "provision",
    "depends_on",
    "healthcheck",
    "count",
    "libvirt_uri",
    "accel",
    "host",
];
const ATTACH_KEYS: &[&str] = &["name", "address"];
const SYNCED_KEYS: &[&str] = &["host", "source", "guest", "readonly"];
const STEP_KINDS: &[&str] = &["shell", "script", "file", "ansible"];
const STEP_KEYS: &[&str] = &[
    "name",
    "shell",
    "script",
    "args",
    "file",
    "destination",
    "ansible",
    "extra_vars",
];
const HEALTH_KEYS: &[&str] = &["command", "interval", "timeout", "retries"];
const TEST_KEYS: &[&str] = &[
    "name",
    "machine",
    "run",
    "expect_exit",
    "expect_output",
    "timeout",
];

/// Names of environments, machines, networks and boxes: they end up in container, bridge
/// and domain names, so they are kept to what every backend accepts.
pub(super) fn check_name(ctx: &mut Ctx, name: &Sp<String>, what: &str) -> bool {
    let n = &name.value;
    let ok = !n.is_empty()
        && n.len() <= 40
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !n.ends_with('-');
    if !ok {
        let suggestion: String = n
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        ctx.push(
            Diagnostic::new(name.span.clone(), format!("invalid {what} name `{n}`"))
                .label("not a valid name")
                .help(format!(
                    "names use lower-case letters, digits and `-`, start with a letter and are at most 40 characters long, e.g. `{}`",
                    suggestion.trim_matches('-')
                )),
        );
    }
    ok
}

pub(super) fn read(ctx: &mut Ctx, root: &DeTable<'_>) -> Draft {
    ctx.check_keys(root, TOP_KEYS, "the Envfile");
    let mut draft = Draft {
        env: None,
        boxes: Vec::new(),
        networks: Vec::new(),
        machines: Vec::new(),
        tests: Vec::new(),
        hosts: super::hosts::read_hosts(ctx, root),
        sources: super::sources::read_sources(ctx, root),
    };
    if let Some((_, v)) = get(root, "env") {
        if let Some(t) = ctx.table(v, "env") {
            draft.env = Some(read_env(ctx, t));
        }
    }
    for (name, t) in named_tables(ctx, root, "box") {
        draft.boxes.push(read_box(ctx, name, t));
    }
    for (name, t) in named_tables(ctx, root, "network") {
        draft.networks.push(read_network(ctx, name, t));
    }
    for (name, t) in named_tables(ctx, root, "machine") {
        draft.machines.push(read_machine(ctx, name, t));
    }
    if let Some((_, v)) = get(root, "test") {
        if let Some(items) = ctx.array(v, "test") {
            for item in items {
                if let Some(t) = ctx.table(item, "test") {
                    draft.tests.push(read_test(ctx, t, item.span()));
                }
            }
        }
    }
    draft
}

pub(super) fn named_tables<'a, 'i>(
    ctx: &mut Ctx,
    root: &'a DeTable<'i>,
    section: &str,
) -> Vec<(Sp<String>, &'a DeTable<'i>)> {
    named_tables_spanned(ctx, root, section)
        .into_iter()
        .map(|(n, t, _)| (n, t))
        .collect()
}

fn named_tables_spanned<'a, 'i>(
    ctx: &mut Ctx,
    root: &'a DeTable<'i>,
    section: &str,
) -> Vec<(Sp<String>, &'a DeTable<'i>, std::ops::Range<usize>)> {
    let Some((_, v)) = get(root, section) else {
        return Vec::new();
    };
    let Some(t) = ctx.table(v, section) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in entries_in_order(t) {
        let what = format!("{section}.{}", name.value);
        if let Some(inner) = ctx.table(value, &what) {
            out.push((name, inner, value.span()));
        }
    }
    out
}

pub(super) fn opt_string(
    ctx: &mut Ctx,
    t: &DeTable<'_>,
    key: &str,
    what: &str,
) -> Option<Sp<String>> {
    get(t, key).and_then(|(_, v)| ctx.string(v, &format!("{what}.{key}")))
}

fn opt_u32(ctx: &mut Ctx, t: &DeTable<'_>, key: &str, what: &str, min: i64) -> Option<Sp<u32>> {
    let (_, v) = get(t, key)?;
    let n = ctx.integer(v, &format!("{what}.{key}"))?;
    if n.value < min || n.value > u32::MAX as i64 {
        ctx.push(
            Diagnostic::new(n.span, format!("`{what}.{key}` must be at least {min}"))
                .label(format!("{} is out of range", n.value)),
        );
        return None;
    }
    Some(Sp::new(n.value as u32, n.span))
}

fn opt_size(ctx: &mut Ctx, t: &DeTable<'_>, key: &str, what: &str) -> Option<u64> {
    let (_, v) = get(t, key)?;
    if let DeValue::Integer(_) = v.get_ref() {
        ctx.wrong_type(
            v,
            &format!("{what}.{key}"),
            "a size with a unit",
            Some("write the unit, e.g. `\"512M\"` or `\"2G\"`"),
        );
        return None;
    }
    let s = ctx.string(v, &format!("{what}.{key}"))?;
    match units::parse_size(&s.value) {
        Ok(n) => Some(n),
        Err(e) => {
            ctx.push(
                Diagnostic::new(s.span, format!("bad size for `{what}.{key}`: {e}"))
                    .label("not a size")
                    .help("sizes are a number and a unit: `512M`, `2G`, `1GiB`, `500MB`"),
            );
            None
        }
    }
}

fn opt_duration(ctx: &mut Ctx, t: &DeTable<'_>, key: &str, what: &str) -> Option<u64> {
    let s = opt_string(ctx, t, key, what)?;
    match units::parse_duration_ms(&s.value) {
        Ok(n) => Some(n),
        Err(e) => {
            ctx.push(
                Diagnostic::new(s.span, format!("bad duration for `{what}.{key}`: {e}"))
                    .label("not a duration")
                    .help("durations are a whole number and a unit: `500ms`, `2s`, `1m`"),
            );
            None
        }
    }
}

fn enum_value<T: Copy>(
    ctx: &mut Ctx,
    s: Sp<String>,
    what: &str,
    options: &[(&str, T)],
) -> Option<Sp<T>> {
    if let Some((_, v)) = options.iter().find(|(n, _)| *n == s.value) {
        return Some(Sp::new(*v, s.span));
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let help = match super::diag::did_you_mean(&s.value, names.iter().copied()) {
        Some(m) => format!("did you mean `{m}`?"),
        None => format!("use one of: {}", names.join(", ")),
    };
    ctx.push(
        Diagnostic::new(s.span, format!("unknown {what} `{}`", s.value))
            .label(format!("not a known {what}"))
            .help(help),
    );
    None
}

fn read_accel(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Option<Accel> {
    let s = opt_string(ctx, t, "accel", what)?;
    let opts = [
        ("auto", Accel::Auto),
        ("kvm", Accel::Kvm),
        ("qemu", Accel::Qemu),
    ];
    enum_value(ctx, s, "acceleration", &opts).map(|a| a.value)
}

fn read_env(ctx: &mut Ctx, t: &DeTable<'_>) -> EnvDraft {
    ctx.check_keys(t, ENV_KEYS, "[env]");
    let name = opt_string(ctx, t, "name", "env");
    if let Some(n) = &name {
        check_name(ctx, n, "environment");
    }
    EnvDraft {
        name,
        description: opt_string(ctx, t, "description", "env").map(|s| s.value),
        libvirt_uri: opt_string(ctx, t, "libvirt_uri", "env").map(|s| s.value),
        parallel: opt_u32(ctx, t, "parallel", "env", 1).map(|n| n.value),
        accel: read_accel(ctx, t, "env"),
        swarm: super::hosts::read_swarm(ctx, t, "env"),
        host_paths: get(t, "host_paths")
            .and_then(|(_, v)| ctx.boolean(v, "env.host_paths"))
            .is_some_and(|b| b.value),
    }
}

fn read_box(ctx: &mut Ctx, name: Sp<String>, t: &DeTable<'_>) -> BoxDraft {
    let what = format!("box.{}", name.value);
    ctx.check_keys(t, BOX_KEYS, &format!("[{what}]"));
    check_name(ctx, &name, "box");
    let recipe = opt_string(ctx, t, "recipe", &what);
    let file = opt_string(ctx, t, "file", &what);
    let url = opt_string(ctx, t, "url", &what);
    let sha256 = read_sha256(ctx, t, &what);
    let path = recipe.clone().or_else(|| file.clone());
    let sources: Vec<BoxSource> = [
        recipe.map(|s| BoxSource::Recipe(s.value)),
        file.map(|s| BoxSource::File(s.value)),
        url.map(|s| BoxSource::Url(s.value)),
    ]
    .into_iter()
    .flatten()
    .collect();
    check_box_sources(ctx, &name, &sources, sha256.is_some());
    BoxDraft {
        name,
        source: sources.into_iter().next(),
        sha256: sha256.map(|s| {
            s.value
                .strip_prefix("sha256:")
                .unwrap_or(&s.value)
                .to_ascii_lowercase()
        }),
        version: opt_string(ctx, t, "version", &what).map(|s| s.value),
        path,
    }
}

/// `sha256`, as written; a value that is not a digest is reported.
fn read_sha256(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Option<Sp<String>> {
    let sha256 = opt_string(ctx, t, "sha256", what);
    if let Some(s) = &sha256 {
        let hex = s.value.strip_prefix("sha256:").unwrap_or(&s.value);
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            ctx.push(
                Diagnostic::new(
                    s.span.clone(),
                    format!("`{what}.sha256` is not a sha256 digest"),
                )
                .label("expected 64 hex digits")
                .help("`hdev box list` shows the digest of every box in the store"),
            );
        }
    }
    sha256
}

/// A box has exactly one source, and a downloaded one is pinned by a checksum.
fn check_box_sources(ctx: &mut Ctx, name: &Sp<String>, sources: &[BoxSource], pinned: bool) {
    if sources.len() != 1 {
        ctx.push(
            Diagnostic::new(
                name.span.clone(),
                format!(
                    "box `{}` needs exactly one of `recipe`, `file` or `url`",
                    name.value
                ),
            )
            .label(if sources.is_empty() {
                "no source"
            } else {
                "more than one source"
            })
            .help("e.g. `recipe = \"boxes/busybox\"`"),
        );
    }
    if let Some(BoxSource::Url(_)) = sources.first() {
        if !pinned {
            ctx.push(
                Diagnostic::new(
                    name.span.clone(),
                    format!("box `{}` is downloaded without a checksum", name.value),
                )
                .label("no `sha256`")
                .help("add `sha256 = \"...\"` so that a changed or corrupt download is refused"),
            );
        }
    }
}

fn read_network(ctx: &mut Ctx, name: Sp<String>, t: &DeTable<'_>) -> NetworkDraft {
    let what = format!("network.{}", name.value);
    ctx.check_keys(t, NETWORK_KEYS, &format!("[{what}]"));
    check_name(ctx, &name, "network");
    let subnet = match opt_string(ctx, t, "subnet", &what) {
        Some(s) => match units::parse_subnet(&s.value) {
            Ok(n) => Some(Sp::new(n, s.span)),
            Err(e) => {
                ctx.push(
                    Diagnostic::new(
                        s.span,
                        format!("bad subnet for network `{}`: {e}", name.value),
                    )
                    .label("not a usable subnet")
                    .help("write an IPv4 network with its prefix, e.g. `10.42.0.0/24`"),
                );
                None
            }
        },
        None => {
            ctx.push(
                Diagnostic::new(
                    name.span.clone(),
                    format!("network `{}` has no `subnet`", name.value),
                )
                .label("missing `subnet`")
                .help("add e.g. `subnet = \"10.42.0.0/24\"`"),
            );
            None
        }
    };
    let encrypted = get(t, "encrypted")
        .and_then(|(_, v)| ctx.boolean(v, &format!("{what}.encrypted")))
        .is_some_and(|b| b.value);
    NetworkDraft {
        name,
        subnet,
        encrypted,
    }
}

fn read_attach(ctx: &mut Ctx, v: &Value<'_>, what: &str) -> Option<NetAttachDraft> {
    match v.get_ref() {
        DeValue::String(s) => Some(NetAttachDraft {
            network: Sp::new(s.to_string(), v.span()),
            address: None,
        }),
        DeValue::Table(t) => {
            ctx.check_keys(t, ATTACH_KEYS, &format!("an entry of `{what}`"));
            let network = opt_string(ctx, t, "name", what);
            if network.is_none() {
                ctx.push(
                    Diagnostic::new(v.span(), format!("an entry of `{what}` has no `name`"))
                        .label("missing `name`")
                        .help("e.g. `{ name = \"mgmt\", address = \"10.42.0.10\" }`"),
                );
            }
            let address = opt_string(ctx, t, "address", what).and_then(|a| {
                match a.value.parse::<Ipv4Addr>() {
                    Ok(ip) => Some(Sp::new(ip, a.span)),
                    Err(_) => {
                        ctx.push(
                            Diagnostic::new(
                                a.span,
                                format!("`{}` is not an IPv4 address", a.value),
                            )
                            .label("not an address")
                            .help("write four numbers, e.g. `10.42.0.10`"),
                        );
                        None
                    }
                }
            });
            network.map(|network| NetAttachDraft { network, address })
        }
        _ => {
            ctx.wrong_type(
                v,
                &format!("{what}[]"),
                "a network name or a table",
                Some("e.g. `\"mgmt\"` or `{ name = \"mgmt\", address = \"10.42.0.10\" }`"),
            );
            None
        }
    }
}

fn read_step(ctx: &mut Ctx, v: &Value<'_>, what: &str) -> Option<StepDraft> {
    let t = ctx.table(v, what)?;
    ctx.check_keys(t, STEP_KEYS, &format!("a step of `{what}`"));
    let kind = step_kind(ctx, t, v)?;
    let name = opt_string(ctx, t, "name", what).map(|s| s.value);
    match kind {
        "shell" => Some(StepDraft {
            step: ProvisionStep::Shell {
                name,
                inline: opt_string(ctx, t, "shell", what)?.value,
            },
            input_spans: Vec::new(),
        }),
        "script" => read_script_step(ctx, t, what, name),
        "file" => read_file_step(ctx, t, v, what, name),
        _ => read_ansible_step(ctx, t, what, name),
    }
}

/// The one key of `STEP_KINDS` a step has; none or several is reported.
fn step_kind(ctx: &mut Ctx, t: &DeTable<'_>, v: &Value<'_>) -> Option<&'static str> {
    let kinds: Vec<&'static str> = STEP_KINDS
        .iter()
        .copied()
        .filter(|k| get(t, k).is_some())
        .collect();
    if kinds.len() == 1 {
        return Some(kinds[0]);
    }
    ctx.push(
        Diagnostic::new(
            v.span(),
            format!(
                "a provision step needs exactly one of `shell`, `script`, `file` or `ansible`, found {}",
                if kinds.is_empty() {
                    "none".to_string()
                } else {
                    kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
                }
            ),
        )
        .label("ambiguous step")
        .help("split it into one step per action"),
    );
    None
}

fn read_script_step(
    ctx: &mut Ctx,
    t: &DeTable<'_>,
    what: &str,
    name: Option<String>,
) -> Option<StepDraft> {
    let path = opt_string(ctx, t, "script", what)?;
    let args = get(t, "args")
        .map(|(_, a)| ctx.string_list(a, &format!("{what}.args")))
        .unwrap_or_default();
    Some(StepDraft {
        step: ProvisionStep::Script {
            name,
            path: path.value.clone(),
            args: args.into_iter().map(|s| s.value).collect(),
        },
        input_spans: vec![path],
    })
}

fn read_file_step(
    ctx: &mut Ctx,
    t: &DeTable<'_>,
    v: &Value<'_>,
    what: &str,
    name: Option<String>,
) -> Option<StepDraft> {
    let source = opt_string(ctx, t, "file", what)?;
    let Some(dest) = opt_string(ctx, t, "destination", what) else {
        ctx.push(
            Diagnostic::new(v.span(), "a `file` step has no `destination`")
                .label("missing `destination`")
                .help("add the path inside the machine, e.g. `destination = \"/etc/app/\"`"),
        );
        return None;
    };
    if !dest.value.starts_with('/') {
        ctx.push(
            Diagnostic::new(dest.span, "`destination` must be an absolute path")
                .label("relative path")
                .help("start it with `/`"),
        );
        return None;
    }
    Some(StepDraft {
        step: ProvisionStep::File {
            name,
            source: source.value.clone(),
            destination: dest.value,
        },
        input_spans: vec![source],
    })
}

fn read_ansible_step(
    ctx: &mut Ctx,
    t: &DeTable<'_>,
    what: &str,
    name: Option<String>,
) -> Option<StepDraft> {
    let playbook = opt_string(ctx, t, "ansible", what)?;
    let mut extra_vars = BTreeMap::new();
    if let Some((_, ev)) = get(t, "extra_vars") {
        if let Some(et) = ctx.table(ev, "extra_vars") {
            for (k, val) in entries_in_order(et) {
                if let Some(s) = scalar_string(ctx, val, &format!("extra_vars.{}", k.value)) {
                    extra_vars.insert(k.value, s);
                }
            }
        }
    }
    Some(StepDraft {
        step: ProvisionStep::Ansible {
            name,
            playbook: playbook.value.clone(),
            extra_vars,
        },
        input_spans: vec![playbook],
    })
}

/// Strings, integers and booleans, as an environment variable would hold them.
fn scalar_string(ctx: &mut Ctx, v: &Value<'_>, what: &str) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        // The integer's value in decimal, however it is written (`0xff` is `255`, `+3` is
        // `3`): what the machine gets is what the TOML means.
        DeValue::Integer(i) => match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
            Ok(n) => Some(n.to_string()),
            Err(e) => {
                ctx.push(
                    Diagnostic::new(v.span(), format!("`{what}` is not a 64-bit integer: {e}"))
                        .label("here"),
                );
                None
            }
        },
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => {
            ctx.wrong_type(v, what, "a string, integer or boolean", None);
            None
        }
    }
}

fn read_healthcheck(ctx: &mut Ctx, v: &Value<'_>, what: &str) -> Option<HealthCheck> {
    let what = format!("{what}.healthcheck");
    let t = match v.get_ref() {
        DeValue::String(s) => {
            return Some(HealthCheck {
                command: s.to_string(),
                interval_ms: 500,
                timeout_ms: 5_000,
                retries: 60,
            })
        }
        _ => ctx.table(v, &what)?,
    };
    ctx.check_keys(t, HEALTH_KEYS, &format!("`{what}`"));
    let Some(command) = opt_string(ctx, t, "command", &what) else {
        ctx.push(
            Diagnostic::new(v.span(), format!("`{what}` has no `command`"))
                .label("missing `command`")
                .help("e.g. `command = \"wget -q -O- http://localhost/health\"`"),
        );
        return None;
    };
    Some(HealthCheck {
        command: command.value,
        interval_ms: opt_duration(ctx, t, "interval", &what).unwrap_or(500),
        timeout_ms: opt_duration(ctx, t, "timeout", &what).unwrap_or(5_000),
        retries: opt_u32(ctx, t, "retries", &what, 1)
            .map(|n| n.value)
            .unwrap_or(60),
    })
}

fn read_machine(ctx: &mut Ctx, name: Sp<String>, t: &DeTable<'_>) -> MachineDraft {
    let what = format!("machine.{}", name.value);
    ctx.check_keys(t, MACHINE_KEYS, &format!("[{what}]"));
    check_name(ctx, &name, "machine");
    // Struct fields are evaluated in the order written, which is the order the readers
    // push their diagnostics in: keep it.
    MachineDraft {
        backend: read_backend(ctx, &name, t, &what),
        box_name: opt_string(ctx, t, "box", &what),
        image: opt_string(ctx, t, "image", &what),
        cpus: opt_u32(ctx, t, "cpus", &what, 1)
            .map(|n| n.value)
            .unwrap_or(1),
        memory: opt_size(ctx, t, "memory", &what),
        disk: opt_size(ctx, t, "disk", &what),
        count: opt_u32(ctx, t, "count", &what, 1),
        libvirt_uri: opt_string(ctx, t, "libvirt_uri", &what),
        accel: read_accel(ctx, t, &what),
        host: opt_string(ctx, t, "host", &what),
        networks: read_attaches(ctx, t, &what),
        ports: read_ports(ctx, t, &what),
        synced_folders: read_synced_folders(ctx, t, &what),
        env: read_env_vars(ctx, t, &what),
        command: read_command(ctx, t, &what),
        provision: read_provision(ctx, t, &what),
        depends_on: get(t, "depends_on")
            .map(|(_, v)| ctx.string_list(v, &format!("{what}.depends_on")))
            .unwrap_or_default(),
        healthcheck: get(t, "healthcheck").and_then(|(_, v)| read_healthcheck(ctx, v, &what)),
        name,
    }
}

/// `backend`, which every machine needs.
fn read_backend(
    ctx: &mut Ctx,
    name: &Sp<String>,
    t: &DeTable<'_>,
    what: &str,
) -> Option<Sp<Backend>> {
    let backend = opt_string(ctx, t, "backend", what).and_then(|s| {
        enum_value(
            ctx,
            s,
            "backend",
            &[("docker", Backend::Docker), ("libvirt", Backend::Libvirt)],
        )
    });
    if get(t, "backend").is_none() {
        ctx.push(
            Diagnostic::new(
                name.span.clone(),
                format!("machine `{}` has no `backend`", name.value),
            )
            .label("missing `backend`")
            .help("add `backend = \"docker\"` for a container or `backend = \"libvirt\"` for a VM"),
        );
    }
    backend
}

fn read_attaches(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Vec<NetAttachDraft> {
    let what = format!("{what}.networks");
    let Some((_, v)) = get(t, "networks") else {
        return Vec::new();
    };
    let Some(items) = ctx.array(v, &what) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| read_attach(ctx, item, &what))
        .collect()
}

fn read_ports(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Vec<Sp<PortMap>> {
    let Some((_, v)) = get(t, "ports") else {
        return Vec::new();
    };
    let mut ports = Vec::new();
    for p in ctx.string_list(v, &format!("{what}.ports")) {
        match units::parse_port_map(&p.value) {
            Ok(pm) => ports.push(Sp::new(pm, p.span)),
            Err(e) => ctx.push(
                Diagnostic::new(p.span, format!("bad port mapping `{}`: {e}", p.value))
                    .label("not a port mapping")
                    .help("write `GUEST`, `HOST:GUEST` or `IP:HOST:GUEST`, optionally ending in `/tcp` or `/udp`, with ports 1-65535"),
            ),
        }
    }
    ports
}

fn read_synced_folders(
    ctx: &mut Ctx,
    t: &DeTable<'_>,
    what: &str,
) -> Vec<(SyncedFolder, Sp<String>)> {
    let Some((_, v)) = get(t, "synced_folders") else {
        return Vec::new();
    };
    let Some(items) = ctx.array(v, &format!("{what}.synced_folders")) else {
        return Vec::new();
    };
    let what = format!("{what}.synced_folders[]");
    items
        .iter()
        .filter_map(|item| read_synced_folder(ctx, item, &what))
        .collect()
}

/// One synced folder, with the span of its host path for "file not found" errors.
fn read_synced_folder(
    ctx: &mut Ctx,
    item: &Value<'_>,
    what: &str,
) -> Option<(SyncedFolder, Sp<String>)> {
    let st = ctx.table(item, what)?;
    ctx.check_keys(st, SYNCED_KEYS, &format!("`{what}`"));
    let from_source = opt_string(ctx, st, "source", what);
    let host = opt_string(ctx, st, "host", what);
    let guest = opt_string(ctx, st, "guest", what);
    let readonly = get(st, "readonly").and_then(|(_, b)| ctx.boolean(b, "readonly"));
    let host = match from_source {
        Some(src) => source_folder(ctx, src, host.as_ref(), readonly.as_ref())?,
        None => host,
    };
    let readonly = match &host {
        // A pinned source's files are shared by every environment at its commit.
        Some(h) if h.value.starts_with(super::model::SOURCE_PREFIX) => true,
        _ => readonly.is_some_and(|b| b.value),
    };
    match (host, guest) {
        (Some(h), Some(g)) if g.value.starts_with('/') => Some((
            SyncedFolder {
                host: h.value.clone(),
                guest: g.value,
                readonly,
            },
            h,
        )),
        (Some(_), Some(g)) => {
            ctx.push(
                Diagnostic::new(g.span, "`guest` must be an absolute path")
                    .label("relative path")
                    .help("start it with `/`"),
            );
            None
        }
        _ => {
            ctx.push(
                Diagnostic::new(item.span(), "a synced folder needs `host` and `guest`")
                    .label("incomplete")
                    .help("e.g. `{ host = \"./src\", guest = \"/src\" }` or `{ source = \"scheduler\", guest = \"/srv/scheduler\" }`"),
            );
            None
        }
    }
}

/// `{ source = "NAME", guest = ... }`: the source's folder, written `source:NAME` in the
/// model. Not with `host`; read-only, always.
fn source_folder(
    ctx: &mut Ctx,
    src: Sp<String>,
    host: Option<&Sp<String>>,
    readonly: Option<&Sp<bool>>,
) -> Option<Option<Sp<String>>> {
    if let Some(h) = host {
        ctx.push(
            Diagnostic::new(h.span.clone(), "a synced folder has both `host` and `source`")
                .label("one of them")
                .help("`source = \"NAME\"` syncs the source's folder; `host = \"source:NAME/PATH\"` a folder in it"),
        );
        return None;
    }
    if let Some(b) = readonly.filter(|b| !b.value) {
        ctx.push(
            Diagnostic::new(b.span.clone(), "a source's folder is synced read-only")
                .label("`readonly = false` on a source")
                .help("a pinned source is shared by every environment at its commit; copy it in with a `file` step if the machine must change it"),
        );
        return None;
    }
    let name = src.value.trim_end_matches('/');
    Some(Some(Sp::new(
        format!("{}{name}", super::model::SOURCE_PREFIX),
        src.span,
    )))
}

fn read_env_vars(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some((_, v)) = get(t, "env") else {
        return env;
    };
    if let Some(et) = ctx.table(v, &format!("{what}.env")) {
        for (k, val) in entries_in_order(et) {
            if let Some(s) = scalar_string(ctx, val, &format!("{what}.env.{}", k.value)) {
                env.insert(k.value, s);
            }
        }
    }
    env
}

/// `command`: a string runs through `/bin/sh -c`, a list is the argument vector.
fn read_command(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Option<Vec<String>> {
    let (_, v) = get(t, "command")?;
    match v.get_ref() {
        DeValue::String(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.to_string()]),
        _ => {
            let parts = ctx.string_list(v, &format!("{what}.command"));
            Some(parts.into_iter().map(|s| s.value).collect())
        }
    }
}

fn read_provision(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Vec<StepDraft> {
    let what = format!("{what}.provision");
    let Some((_, v)) = get(t, "provision") else {
        return Vec::new();
    };
    let Some(items) = ctx.array(v, &what) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| read_step(ctx, item, &what))
        .collect()
}

fn read_test(ctx: &mut Ctx, t: &DeTable<'_>, span: std::ops::Range<usize>) -> TestDraft {
    ctx.check_keys(t, TEST_KEYS, "[[test]]");
    let name = opt_string(ctx, t, "name", "test").map(|s| s.value);
    let machine = opt_string(ctx, t, "machine", "test");
    let run = opt_string(ctx, t, "run", "test").map(|s| s.value);
    for (key, present) in [
        ("name", name.is_some()),
        ("machine", machine.is_some()),
        ("run", run.is_some()),
    ] {
        if !present && get(t, key).is_none() {
            ctx.push(
                Diagnostic::new(span.clone(), format!("a `[[test]]` has no `{key}`"))
                    .label(format!("missing `{key}`"))
                    .help("a test needs `name`, `machine` and `run`"),
            );
        }
    }
    let expect_exit = get(t, "expect_exit")
        .and_then(|(_, v)| ctx.integer(v, "test.expect_exit"))
        .map(|n| n.value as i32)
        .unwrap_or(0);
    TestDraft {
        span,
        name,
        machine,
        run,
        expect_exit,
        expect_output: opt_string(ctx, t, "expect_output", "test").map(|s| s.value),
        timeout_ms: opt_duration(ctx, t, "timeout", "test"),
    }
}
