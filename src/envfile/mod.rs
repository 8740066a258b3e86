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
pub mod topology;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, SourceFile};
pub use hosts::load_hosts_file;
pub use model::*;
use read::Ctx;

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
}

/// Reads and validates the Envfile at `path`.
pub fn load(path: &Path) -> Result<Env, LoadError> {
    load_with(path, None)
}

/// Reads and validates the Envfile at `path`, placing machines on the hosts of a hosts
/// file (read with [`load_hosts_file`]) as well as the Envfile's own.
pub fn load_with(path: &Path, hosts: Option<&Layout>) -> Result<Env, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
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
    let draft = parse::read(&mut ctx, root.get_ref());
    if check_files {
        check_host_files(&mut ctx, &draft, dir);
    }
    match validate::build(&mut ctx, draft, dir, &source.path, hosts) {
        Some(env) if ctx.diags.is_empty() => Ok(env),
        _ => Err(Diagnostics::new(source.clone(), ctx.diags)),
    }
}

fn check_host_files(ctx: &mut Ctx, draft: &parse::Draft, dir: &Path) {
    for m in &draft.machines {
        let inputs = m
            .provision
            .iter()
            .flat_map(|s| s.input_spans.iter().map(|p| (p, "provisioning reads")))
            .chain(m.synced_folders.iter().map(|(_, p)| (p, "synced folder")));
        for (p, what) in inputs {
            let path = if Path::new(&p.value).is_absolute() {
                PathBuf::from(&p.value)
            } else {
                dir.join(&p.value)
            };
            if !path.exists() {
                ctx.push(
                    Diagnostic::new(p.span.clone(), format!("`{}` does not exist", p.value))
                        .label(format!("{what} this path"))
                        .help(format!(
                            "paths are relative to the Envfile's folder `{}`",
                            dir.display()
                        )),
                );
            }
        }
    }
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
