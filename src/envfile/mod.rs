//! The Envfile: reading, validating and hashing the description of an environment.
//!
//! `load` is the boundary: past it, an [`Env`] is valid by construction. Reading and
//! validation do no I/O beyond reading the Envfile and checking that the host files it
//! names exist, so they are tested without daemons.

pub mod addresses;
pub mod diag;
pub mod hash;
mod hosts;
pub mod model;
mod parse;
mod read;
pub mod sources;
pub mod topology;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, SourceFile};
pub use hosts::load_hosts_file;
pub use model::*;
use read::Ctx;
pub use sources::{load_local, local_path, parse_use, Override, OverrideFrom};

/// The name hdev looks for.
pub const ENVFILE: &str = "Envfile";

/// Why an Envfile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read and has problems, each with its place in the file.
    #[error("{0}")]
    Invalid(Box<Diagnostics>),
    /// A problem outside any file: a `--use` override, a source that cannot be reached.
    #[error("{0}")]
    Other(String),
}

/// The most hdev reads of a text file it is given (Envfile, hosts file, lock, recipe):
/// far beyond any real one, and a clear error instead of memory for `/dev/zero`.
pub const TEXT_LIMIT: u64 = 4 << 20;

/// Reads a text file of at most `limit` bytes: a folder, a larger file (or an endless
/// device) and bytes that are not UTF-8 are errors that say so.
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let f = std::fs::File::open(path)?;
    if f.metadata()?.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "it is a folder, not a file",
        ));
    }
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!(
                "it is larger than {} KiB, the most hdev reads of such a file",
                limit >> 10
            ),
        ));
    }
    String::from_utf8(buf).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Reads and validates the Envfile at `path`.
pub fn load(path: &Path) -> Result<Env, LoadError> {
    load_with(path, None)
}

/// Reads and validates the Envfile at `path`, placing machines on the hosts of a hosts
/// file (read with [`load_hosts_file`]) as well as the Envfile's own.
pub fn load_with(path: &Path, hosts: Option<&Layout>) -> Result<Env, LoadError> {
    let text = read_text(path, TEXT_LIMIT).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let display = display_name(path);
    let source = SourceFile::new(path, display, text);
    let dir = folder_of(path);
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    load_source_with(&source, &dir, true, hosts).map_err(|d| LoadError::Invalid(Box::new(d)))
}

/// Validates Envfile text; `check_files` also checks that the host files it names exist.
pub fn load_source(source: &SourceFile, dir: &Path, check_files: bool) -> Result<Env, Diagnostics> {
    load_source_with(source, dir, check_files, None)
}

/// [`load_source`] with the hosts of a hosts file.
pub fn load_source_with(
    source: &SourceFile,
    dir: &Path,
    check_files: bool,
    hosts: Option<&Layout>,
) -> Result<Env, Diagnostics> {
    let mut ctx = Ctx::default();
    let (root, errors) = toml::de::DeTable::parse_recoverable(&source.text);
    // Recovery after a syntax error mostly finds echoes of the first one: report that one.
    if let Some(e) = errors.into_iter().next() {
        let span = e.span().unwrap_or(0..0);
        ctx.push(
            Diagnostic::new(span, format!("invalid TOML: {}", e.message().trim()))
                .label("here")
                .help("see https://toml.io for the syntax"),
        );
    }
    if !ctx.diags.is_empty() {
        // A syntax error makes everything after it unreliable; report only those.
        return Err(Diagnostics::new(source.clone(), ctx.diags));
    }
    let mut draft = parse::read(&mut ctx, root.get_ref());
    if check_files {
        check_host_files(&mut ctx, &draft, dir);
    }
    let defs = std::mem::take(&mut draft.sources);
    let uses = sources::check_uses(&mut ctx, &draft, &defs);
    match validate::build(&mut ctx, draft, dir, &source.path, hosts) {
        Some(mut env) if ctx.diags.is_empty() => {
            env.sources = Sources {
                defs: defs.into_iter().map(|d| (d.name.clone(), d)).collect(),
                uses,
                roots: Default::default(),
            };
            Ok(env)
        }
        _ => Err(Diagnostics::new(source.clone(), ctx.diags)),
    }
}

fn check_host_files(ctx: &mut Ctx, draft: &parse::Draft, dir: &Path) {
    let host_paths = draft.env.as_ref().is_some_and(|e| e.host_paths);
    for m in &draft.machines {
        let inputs = m
            .provision
            .iter()
            .flat_map(|s| {
                // A script or a playbook is one file; a `file` step may copy a folder.
                let file_only = !matches!(s.step, ProvisionStep::File { .. });
                s.input_spans
                    .iter()
                    .map(move |p| (p, "provisioning reads", file_only))
            })
            .chain(
                m.synced_folders
                    .iter()
                    .map(|(_, p)| (p, "synced folder", false)),
            );
        for (p, what, file_only) in inputs {
            if source_ref(&p.value).is_some() {
                continue; // checked against the source's tree once it is resolved
            }
            let path = if Path::new(&p.value).is_absolute() {
                PathBuf::from(&p.value)
            } else {
                dir.join(&p.value)
            };
            let problem = if !host_paths && !stays_in(dir, &p.value) {
                ctx.push(
                    Diagnostic::new(p.span.clone(), format!("`{}` is outside the Envfile's folder", p.value))
                        .label(format!("{what} a host path"))
                        .help("copy what the machines need beside the Envfile, or allow host paths with `host_paths = true` in `[env]`"),
                );
                continue;
            } else if !path.exists() {
                format!("`{}` does not exist", p.value)
            } else if file_only && !path.is_file() {
                format!("`{}` is not a file", p.value)
            } else {
                continue;
            };
            ctx.push(
                Diagnostic::new(p.span.clone(), problem)
                    .label(format!("{what} this path"))
                    .help(format!(
                        "paths are relative to the Envfile's folder `{}`",
                        dir.display()
                    )),
            );
        }
    }
}

/// Whether `written` (relative to `dir`, or absolute) names something inside `dir`, by
/// its words and, where it exists, by where its links lead.
fn stays_in(dir: &Path, written: &str) -> bool {
    use std::path::Component;
    let p = Path::new(written);
    if p.is_absolute() && (!p.starts_with(dir) || p.components().any(|c| c == Component::ParentDir))
    {
        return false;
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    match (
        std::fs::canonicalize(dir.join(p)),
        std::fs::canonicalize(dir),
    ) {
        (Ok(real), Ok(root)) => real.starts_with(root),
        _ => true,
    }
}

/// How many virtual CPUs a VM may have per CPU of this machine (VMs share CPUs well; a
/// container's limit cannot exceed what the machine has).
const VCPUS_PER_CPU: u32 = 4;

/// What `up` must refuse before it creates machines `names` of `env`, each problem at
/// its place in the Envfile: more CPUs than this machine has (for those that run on it),
/// a VM on no network (hdev could not reach it). Not part of loading: the same Envfile
/// validates and hashes on any machine, and plans need no network to be shown.
pub fn check_this_host(env: &Env, names: &[&str]) -> Result<(), LoadError> {
    let here = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let text = read_text(&env.file, TEXT_LIMIT).map_err(|source| LoadError::Io {
        path: env.file.clone(),
        source,
    })?;
    let mut items = Vec::new();
    for m in names.iter().filter_map(|n| env.machines.get(*n)) {
        if m.backend == Backend::Libvirt && m.networks.is_empty() {
            let span = read::span_of(&text, &["machine", &m.group, "backend"]).unwrap_or(0..0);
            items.push(
                Diagnostic::new(
                    span,
                    format!(
                        "VM `{}` is on no network, so hdev cannot reach it over SSH",
                        m.name
                    ),
                )
                .label("a VM without `networks`")
                .help("give it `networks = [\"...\"]`"),
            );
        }
        if m.place.host.is_some() || m.libvirt_uri.is_some() {
            continue; // another host's CPUs are not known here
        }
        let (most, why) = match m.backend {
            Backend::Libvirt => (
                here * VCPUS_PER_CPU,
                format!("{VCPUS_PER_CPU} virtual CPUs per CPU"),
            ),
            Backend::Docker => (
                here,
                "a container cannot use more CPUs than the machine has".into(),
            ),
        };
        if m.cpus <= most {
            continue;
        }
        // Replicas share their definition's line.
        let span = read::span_of(&text, &["machine", &m.group, "cpus"]).unwrap_or(0..0);
        items.push(
            Diagnostic::new(
                span,
                format!(
                    "machine `{}` asks for {} CPUs; this machine has {here}, so at most {most} ({why})",
                    m.name, m.cpus
                ),
            )
            .label("too many CPUs")
            .help(format!("use `cpus = {most}` or fewer on this machine")),
        );
    }
    if items.is_empty() {
        return Ok(());
    }
    let source = SourceFile::new(&env.file, display_name(&env.file), text);
    Err(LoadError::Invalid(Box::new(Diagnostics::new(
        source, items,
    ))))
}

/// The folder an Envfile is in (`.` for a bare file name).
pub fn folder_of(envfile: &Path) -> &Path {
    match envfile.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The path as the user should see it: relative to the current folder when inside it.
pub fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = cwd
        .as_deref()
        .and_then(|c| path.strip_prefix(c).ok())
        .unwrap_or(path);
    shown.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::stays_in;

    #[test]
    fn host_paths_stay_in_the_envfile_folder_by_their_words_and_their_links() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        std::fs::write(dir.join("conf/app.conf"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("conf/out")).unwrap();
        assert!(stays_in(&dir, "conf/app.conf"));
        assert!(stays_in(&dir, "conf/../conf/app.conf"));
        assert!(stays_in(
            &dir,
            &dir.join("conf/app.conf").display().to_string()
        ));
        assert!(!stays_in(&dir, "../../../../etc/shadow"));
        assert!(!stays_in(&dir, "conf/../../x"));
        assert!(!stays_in(&dir, "/etc/shadow"));
        let sneaky = format!("{}/../etc/shadow", dir.display());
        assert!(!stays_in(&dir, &sneaky));
        // A link inside the folder that leads out of it.
        assert!(!stays_in(&dir, "conf/out"));
    }

    #[test]
    fn integers_in_env_are_their_value_in_decimal_however_written() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("Envfile");
        std::fs::write(
            &path,
            "[env]\nname = \"e\"\n[machine.m]\nbackend = \"docker\"\nimage = \"x\"\nenv = { A = 0xff, B = 0o17, C = 0b101, D = +3, E = -0, F = 1_000, G = -7, H = true }\n",
        )
        .unwrap();
        let env = super::load(&path).unwrap();
        let got: Vec<(&str, &str)> = env.machines["m"]
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "255"),
                ("B", "15"),
                ("C", "5"),
                ("D", "3"),
                ("E", "0"),
                ("F", "1000"),
                ("G", "-7"),
                ("H", "true")
            ]
        );
    }
}
