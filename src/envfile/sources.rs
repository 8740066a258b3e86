//! `[source.NAME]` tables, the places an Envfile names a path in a source
//! (`source:NAME/PATH`), and `Envfile.local`, where a developer puts working copies in
//! place of sources.
//!
//! Only what the text says is checked here: a source has a repository and exactly one of
//! `rev`, `tag` or `branch`, and every `source:` path names a declared source and stays
//! inside it. Whether the path is in the source's tree at its commit, or the commit exists
//! at all, needs git: the `sources` module checks that against [`SourceUse`]s and spans
//! kept in the model.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::diag::{did_you_mean, Diagnostic, Diagnostics, SourceFile};
use super::model::{source_ref, GitRef, SourceDef, SourceUse};
use super::parse::{check_name, named_tables, opt_string, Draft};
use super::read::{Ctx, Sp};
use super::LoadError;

const SOURCE_KEYS: &[&str] = &["git", "rev", "tag", "branch", "subdir"];

/// The name of the file of overrides beside an Envfile: `Envfile.local` for `Envfile`.
pub fn local_path(envfile: &Path) -> PathBuf {
    let mut name = envfile
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "Envfile".into());
    name.push(".local");
    envfile.with_file_name(name)
}

/// The `[source.NAME]` tables of an Envfile.
pub(super) fn read_sources(ctx: &mut Ctx, root: &DeTable<'_>) -> Vec<SourceDef> {
    named_tables(ctx, root, "source")
        .into_iter()
        .filter_map(|(name, t)| read_source(ctx, name, t))
        .collect()
}

fn read_source(ctx: &mut Ctx, name: Sp<String>, t: &DeTable<'_>) -> Option<SourceDef> {
    let what = format!("source.{}", name.value);
    ctx.check_keys(t, SOURCE_KEYS, &format!("[{what}]"));
    check_name(ctx, &name, "source");
    let git = opt_string(ctx, t, "git", &what);
    let refs: Vec<(Sp<String>, GitRef)> = [
        opt_string(ctx, t, "rev", &what).map(|s| (s.clone(), GitRef::Rev(s.value))),
        opt_string(ctx, t, "tag", &what).map(|s| (s.clone(), GitRef::Tag(s.value))),
        opt_string(ctx, t, "branch", &what).map(|s| (s.clone(), GitRef::Branch(s.value))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let subdir = opt_string(ctx, t, "subdir", &what).filter(|s| check_inside(ctx, s, "subdir"));
    let Some(git) = git.filter(|g| !g.value.is_empty()) else {
        ctx.push(
            Diagnostic::new(name.span.clone(), format!("source `{}` has no `git`", name.value))
                .label("missing `git`")
                .help("add the repository's URL or path, e.g. `git = \"https://example.org/scheduler.git\"` or `git = \"../scheduler\"`"),
        );
        return None;
    };
    if refs.len() != 1 {
        ctx.push(
            Diagnostic::new(
                name.span.clone(),
                format!(
                    "source `{}` needs exactly one of `rev`, `tag` or `branch`",
                    name.value
                ),
            )
            .label(if refs.is_empty() {
                "no commit named"
            } else {
                "more than one"
            })
            .help("e.g. `branch = \"main\"`; `hdev lock` pins the commit it is at"),
        );
        return None;
    }
    let (written, pin) = refs.into_iter().next()?;
    if !check_ref(ctx, &written, &pin) {
        return None;
    }
    Some(SourceDef {
        name: name.value,
        git: git.value,
        pin,
        subdir: subdir.map(|s| s.value.trim_matches('/').to_string()),
        span: written.span,
    })
}

/// A `rev` is a commit id (or a prefix of one); names go in `tag` or `branch`.
fn check_ref(ctx: &mut Ctx, written: &Sp<String>, pin: &GitRef) -> bool {
    let v = &written.value;
    let bad = match pin {
        GitRef::Rev(_) => {
            (v.len() < 7 || v.len() > 40 || !v.chars().all(|c| c.is_ascii_hexdigit()))
                .then_some("`rev` is a commit id: 7 to 40 hex digits")
        }
        _ if v.is_empty() || v.starts_with('-') || v.contains("..") || v.contains(' ') => {
            Some("not a git reference name")
        }
        _ => None,
    };
    if let Some(label) = bad {
        ctx.push(
            Diagnostic::new(
                written.span.clone(),
                format!("`{v}` is not a usable `{}`", pin.key()),
            )
            .label(label)
            .help("a commit id goes in `rev`, a tag name in `tag`, a branch name in `branch`"),
        );
    }
    bad.is_none()
}

/// A path inside a source: relative, and not leaving it through `..`.
fn check_inside(ctx: &mut Ctx, s: &Sp<String>, what: &str) -> bool {
    let p = Path::new(&s.value);
    let leaves = p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if leaves {
        ctx.push(
            Diagnostic::new(s.span.clone(), format!("`{}` leaves the source", s.value))
                .label(format!("{what} must be a path inside the repository"))
                .help("write it relative to the source's folder, without `..`"),
        );
    }
    !leaves
}

/// Every `source:` path of the drafts, checked against the declared sources: the
/// places later checked against each source's tree.
pub(super) fn check_uses(ctx: &mut Ctx, draft: &Draft, sources: &[SourceDef]) -> Vec<SourceUse> {
    let known: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let mut uses = Vec::new();
    let machine_paths = draft.machines.iter().flat_map(|m| {
        let steps = m.provision.iter().flat_map(|s| {
            let file_only = !matches!(s.step, super::model::ProvisionStep::File { .. });
            s.input_spans.iter().map(move |p| (p, file_only))
        });
        steps.chain(m.synced_folders.iter().map(|(_, p)| (p, false)))
    });
    let box_paths = draft
        .boxes
        .iter()
        .filter_map(|b| b.path.as_ref().map(|p| (p, false)));
    for (p, file_only) in machine_paths.chain(box_paths) {
        let Some((name, path)) = source_ref(&p.value) else {
            continue;
        };
        if !known.contains(&name) {
            unknown_source(ctx, name, &p.span, &known);
            continue;
        }
        let inside = Sp::new(path.to_string(), p.span.clone());
        if !check_inside(ctx, &inside, "a path in a source") {
            continue;
        }
        uses.push(SourceUse {
            source: name.to_string(),
            path: path.trim_matches('/').to_string(),
            file_only,
            span: p.span.clone(),
        });
    }
    uses
}

fn unknown_source(ctx: &mut Ctx, name: &str, span: &Range<usize>, known: &[&str]) {
    let help = match did_you_mean(name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("declare it with `[source.{name}]` and its `git`"),
        None => format!("known sources: {}", known.join(", ")),
    };
    ctx.push(
        Diagnostic::new(span.clone(), format!("unknown source `{name}`"))
            .label("no such source")
            .help(help),
    );
}

/// A working copy put in place of a source, and where it was asked for.
#[derive(Debug, Clone)]
pub struct Override {
    pub source: String,
    /// The working copy, absolute.
    pub path: PathBuf,
    /// Where it was asked for: `--use` or the place in `Envfile.local`.
    pub from: OverrideFrom,
}

/// Where an override was asked for, for errors about it.
#[derive(Debug, Clone)]
pub enum OverrideFrom {
    /// The global option `--use NAME=PATH`.
    Option,
    /// An entry of `Envfile.local`: its file and the span of its path.
    Local {
        file: SourceFile,
        span: Range<usize>,
    },
}

/// Reads `Envfile.local`: `[use]` with `NAME = "PATH"` entries, paths relative to its
/// folder. A missing file is no override.
pub fn load_local(path: &Path) -> Result<Vec<Override>, LoadError> {
    let text = match super::read_text(path, super::TEXT_LIMIT) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file = SourceFile::new(path, super::display_name(path), text);
    let mut ctx = Ctx::default();
    let (root, errors) = DeTable::parse_recoverable(&file.text);
    if let Some(e) = errors.into_iter().next() {
        ctx.push(
            Diagnostic::new(
                e.span().unwrap_or(0..0),
                format!("invalid TOML: {}", e.message().trim()),
            )
            .label("here"),
        );
    }
    let mut out = Vec::new();
    if ctx.diags.is_empty() {
        let root = root.get_ref();
        ctx.check_keys(root, &["use"], "Envfile.local");
        let dir = super::folder_of(path);
        if let Some((_, v)) = super::read::get(root, "use") {
            if let Some(t) = ctx.table(v, "use") {
                for (name, value) in super::read::entries_in_order(t) {
                    let Some(p) = ctx.string(value, &format!("use.{}", name.value)) else {
                        continue;
                    };
                    out.push(Override {
                        source: name.value,
                        path: absolute(dir, &p.value),
                        from: OverrideFrom::Local {
                            file: file.clone(),
                            span: p.span,
                        },
                    });
                }
            }
        }
    }
    if !ctx.diags.is_empty() {
        return Err(LoadError::Invalid(Box::new(Diagnostics::new(
            file, ctx.diags,
        ))));
    }
    Ok(out)
}

/// `--use NAME=PATH`, the path relative to the current folder.
pub fn parse_use(arg: &str) -> Result<Override, String> {
    let Some((name, path)) = arg.split_once('=') else {
        return Err(format!(
            "`--use {arg}` is not NAME=PATH, e.g. `--use scheduler=../scheduler`"
        ));
    };
    if name.is_empty() || path.is_empty() {
        return Err(format!(
            "`--use {arg}` needs a source name and a path, e.g. `--use scheduler=../scheduler`"
        ));
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Ok(Override {
        source: name.to_string(),
        path: absolute(&cwd, path),
        from: OverrideFrom::Option,
    })
}

fn absolute(dir: &Path, p: &str) -> PathBuf {
    let joined = dir.join(p);
    std::fs::canonicalize(&joined).unwrap_or(joined)
}

/// The overrides of a project: `Envfile.local`'s, then `--use` (which wins for a source
/// both name), one per source.
pub fn merge_overrides(local: Vec<Override>, given: &[Override]) -> BTreeMap<String, Override> {
    local
        .into_iter()
        .chain(given.iter().cloned())
        .map(|o| (o.source.clone(), o))
        .collect()
}

/// A problem with an override, at its place in `Envfile.local`, or as an error about
/// `--use`.
pub fn override_error(o: &Override, message: String, help: &str) -> LoadError {
    match &o.from {
        OverrideFrom::Local { file, span } => LoadError::Invalid(Box::new(Diagnostics::new(
            file.clone(),
            vec![Diagnostic::new(span.clone(), message)
                .label("this override")
                .help(help)],
        ))),
        OverrideFrom::Option => LoadError::Other(format!(
            "`--use {}={}`: {message}\nhelp: {help}",
            o.source,
            o.path.display()
        )),
    }
}

/// Problems found in an Envfile after it was loaded (by checks that need git), as one
/// error that points into it.
pub fn envfile_error(file: &Path, items: Vec<Diagnostic>) -> LoadError {
    let text = match super::read_text(file, super::TEXT_LIMIT) {
        Ok(t) => t,
        Err(source) => {
            return LoadError::Io {
                path: file.to_path_buf(),
                source,
            }
        }
    };
    let source = SourceFile::new(file, super::display_name(file), text);
    LoadError::Invalid(Box::new(Diagnostics::new(source, items)))
}
