//! `[host.NAME]` tables and hosts files: where machines run.
//!
//! A host says how its engines are reached (`docker`, `libvirt_uri`); a host with neither
//! is this machine, so an Envfile can name its hosts and still run on a laptop. A hosts
//! file (`hdev --hosts testbed.toml`, like an inventory) holds the same tables and
//! `swarm`; a table there replaces the Envfile's table of the same name. None of it is
//! part of a hash.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::DeTable;

use super::diag::{Diagnostic, Diagnostics, SourceFile};
use super::model::{Host, Layout, SwarmMode};
use super::parse::{check_name, named_tables, opt_string};
use super::read::{get, Ctx, Sp};
use super::LoadError;

const HOST_KEYS: &[&str] = &["docker", "libvirt_uri", "labels", "advertise"];
const HOSTS_FILE_KEYS: &[&str] = &["host", "swarm"];

/// A host as read.
pub(super) struct HostDraft {
    pub host: Host,
}

/// The `[host.NAME]` tables of a file.
pub(super) fn read_hosts(ctx: &mut Ctx, root: &DeTable<'_>) -> Vec<HostDraft> {
    named_tables(ctx, root, "host")
        .into_iter()
        .map(|(name, t)| read_host(ctx, name, t))
        .collect()
}

fn read_host(ctx: &mut Ctx, name: Sp<String>, t: &DeTable<'_>) -> HostDraft {
    let what = format!("host.{}", name.value);
    ctx.check_keys(t, HOST_KEYS, &format!("[{what}]"));
    check_name(ctx, &name, "host");
    let docker = opt_string(ctx, t, "docker", &what).filter(|s| check_docker(ctx, s));
    let libvirt_uri = opt_string(ctx, t, "libvirt_uri", &what).filter(|s| {
        let ok = s.value.contains("://") || s.value.contains(":///");
        if !ok {
            ctx.push(
                Diagnostic::new(s.span.clone(), format!("`{what}.libvirt_uri` is not a URI"))
                    .label("expected e.g. `qemu+ssh://user@host/system`"),
            );
        }
        ok
    });
    let mut labels = BTreeMap::new();
    if let Some((_, v)) = get(t, "labels") {
        if let Some(lt) = ctx.table(v, &format!("{what}.labels")) {
            for (k, v) in lt.iter() {
                if let Some(s) = ctx.string(v, &format!("{what}.labels.{}", k.get_ref())) {
                    labels.insert(k.get_ref().to_string(), s.value);
                }
            }
        }
    }
    let advertise = opt_string(ctx, t, "advertise", &what).filter(|s| {
        let ok = s.value.parse::<std::net::IpAddr>().is_ok();
        if !ok {
            ctx.push(
                Diagnostic::new(
                    s.span.clone(),
                    format!("`{what}.advertise` is not an address"),
                )
                .label("expected an IP address of the host, e.g. `10.99.0.11`"),
            );
        }
        ok
    });
    HostDraft {
        host: Host {
            name: name.value,
            docker: docker.map(|s| s.value),
            libvirt_uri: libvirt_uri.map(|s| s.value),
            labels,
            advertise: advertise.map(|s| s.value),
        },
    }
}

/// Docker endpoints hdev can reach: a socket, TCP, or SSH.
fn check_docker(ctx: &mut Ctx, s: &Sp<String>) -> bool {
    let ok = ["unix:///", "tcp://", "ssh://"]
        .iter()
        .any(|p| s.value.starts_with(p) && s.value.len() > p.len());
    if !ok {
        ctx.push(
            Diagnostic::new(
                s.span.clone(),
                format!("`{}` is not a Docker endpoint", s.value),
            )
            .label("not a Docker endpoint")
            .help("use `unix:///path/to/docker.sock`, `tcp://host:2376` or `ssh://user@host`"),
        );
    }
    ok
}

/// `swarm = "create" | "existing"`.
pub(super) fn read_swarm(ctx: &mut Ctx, t: &DeTable<'_>, what: &str) -> Option<SwarmMode> {
    let s = opt_string(ctx, t, "swarm", what)?;
    match s.value.as_str() {
        "create" => Some(SwarmMode::Create),
        "existing" => Some(SwarmMode::Existing),
        other => {
            ctx.push(
                Diagnostic::new(s.span, format!("unknown swarm mode `{other}`"))
                    .label("not a swarm mode")
                    .help("use `create` (hdev forms the swarm) or `existing` (the engines are already in one)"),
            );
            None
        }
    }
}

/// Reads a hosts file: `[host.NAME]` tables and an optional top-level `swarm`.
pub fn load_hosts_file(path: &Path) -> Result<Layout, LoadError> {
    let text = super::read_text(path, super::TEXT_LIMIT).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let source = SourceFile::new(path, super::display_name(path), text);
    let mut ctx = Ctx::default();
    let invalid =
        |ctx: Ctx| LoadError::Invalid(Box::new(Diagnostics::new(source.clone(), ctx.diags)));
    let (root, errors) = DeTable::parse_recoverable(&source.text);
    if let Some(e) = errors.into_iter().next() {
        ctx.push(
            Diagnostic::new(
                e.span().unwrap_or(0..0),
                format!("invalid TOML: {}", e.message().trim()),
            )
            .label("here"),
        );
        return Err(invalid(ctx));
    }
    let root = root.get_ref();
    ctx.check_keys(root, HOSTS_FILE_KEYS, "a hosts file");
    let hosts = read_hosts(&mut ctx, root);
    let swarm = read_swarm(&mut ctx, root, "hosts file");
    if hosts.is_empty() && ctx.diags.is_empty() {
        ctx.push(
            Diagnostic::new(0..0, "the hosts file names no host")
                .label("expected `[host.NAME]` tables")
                .help("e.g. `[host.node1]` with `docker = \"ssh://ops@node1\"`"),
        );
    }
    if !ctx.diags.is_empty() {
        return Err(invalid(ctx));
    }
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Layout {
        hosts: hosts
            .into_iter()
            .map(|h| (h.host.name.clone(), h.host))
            .collect(),
        swarm: swarm.unwrap_or_default(),
        file: Some(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Layout, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts.toml");
        std::fs::write(&p, text).unwrap();
        load_hosts_file(&p).map_err(|e| match e {
            LoadError::Invalid(d) => d.render(false),
            other => other.to_string(),
        })
    }

    #[test]
    fn reads_hosts_and_swarm() {
        let l = load(
            "swarm = \"create\"\n[host.a]\ndocker = \"unix:///run/a.sock\"\nadvertise = \"10.0.0.1\"\nlabels = { site = \"lyon\" }\n[host.b]\ndocker = \"ssh://ops@b\"\nlibvirt_uri = \"qemu+ssh://ops@b/system\"\n",
        )
        .unwrap();
        assert_eq!(l.swarm, SwarmMode::Create);
        assert_eq!(l.hosts["a"].docker.as_deref(), Some("unix:///run/a.sock"));
        assert_eq!(l.hosts["a"].labels["site"], "lyon");
        assert_eq!(
            l.hosts["b"].libvirt_uri.as_deref(),
            Some("qemu+ssh://ops@b/system")
        );
    }

    #[test]
    fn bad_hosts_files_say_where() {
        let e = load("[host.a]\ndocker = \"http://x\"\n").unwrap_err();
        assert!(e.contains("hosts.toml:2:10"), "{e}");
        assert!(e.contains("not a Docker endpoint"), "{e}");
        let e = load("[host.a]\ndockr = \"unix:///x\"\n").unwrap_err();
        assert!(e.contains("did you mean `docker`"), "{e}");
        let e = load("swarm = \"join\"\n[host.a]\n").unwrap_err();
        assert!(e.contains("unknown swarm mode"), "{e}");
        let e = load("# nothing\n").unwrap_err();
        assert!(e.contains("names no host"), "{e}");
    }
}
