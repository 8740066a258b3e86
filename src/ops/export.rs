//! `hdev export` and `hdev up --from`: an environment packed into one archive named by its
//! hash (the Envfile, a lock pinning every box, every file provisioning reads, the synced
//! folders, the boxes by digest), and brought back from it on a machine with no network
//! and no recipes: the boxes come from the archive, verified, and the unpacked environment
//! must hash to what the archive says before any machine is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::boxes::{BoxDigest, Store};
use crate::envfile::hash::EnvHash;
use crate::envfile::{Base, Env, ProvisionStep};
use crate::export::{self, BoxEntry, Content, ExportError, Packing};
use crate::project::Project;

/// What `hdev export` is asked for.
#[derive(Debug, Default)]
pub(crate) struct ExportOptions {
    /// The archive to write (default: `NAME-HASH12.hdev.tar` in the current folder).
    pub out: Option<PathBuf>,
    /// Name the boxes by digest without carrying them.
    pub without_boxes: bool,
}

/// What `hdev export` wrote.
#[derive(Debug, Serialize)]
pub(crate) struct ExportReport {
    pub file: PathBuf,
    pub hash: String,
    pub machines: BTreeMap<String, String>,
    /// Files and links of the environment in the archive.
    pub files: usize,
    pub bytes: u64,
    pub boxes: Vec<BoxEntry>,
}

/// Writes the archive of the environment at `file` (the Envfile found as usual).
pub(crate) fn export(file: Option<&Path>, o: &ExportOptions) -> anyhow::Result<ExportReport> {
    let project = crate::throwaway::open_project(file)?;
    let report = project.hash()?;
    let hash = report.hash.0.clone();
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(export::file_name(&project.env.settings.name, &hash)));
    let out_abs = std::path::absolute(&out).unwrap_or_else(|_| out.clone());
    let store = Store::open_default()?;
    let packing = Packing {
        name: project.env.settings.name.clone(),
        hash: hash.clone(),
        machines: report
            .machines
            .iter()
            .map(|(m, h)| (m.clone(), h.0.clone()))
            .collect(),
        envfile: relative(&project.env, &project.env.file)?,
        files: files_of(&project, &out_abs)?,
        boxes: boxes_of(&project, &store, o.without_boxes)?,
    };
    let index = export::write(packing, &out, &store.tmp_dir()?)?;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        file: out,
        hash,
        machines: index.machines,
        files: index.files.len(),
        bytes,
        boxes: index.boxes,
    })
}

/// The path of `p` relative to the environment's folder, refused when it lies outside.
fn relative(env: &Env, p: &Path) -> Result<String, ExportError> {
    let dir = std::fs::canonicalize(&env.dir).map_err(ExportError::io(&env.dir))?;
    let abs = std::fs::canonicalize(p).map_err(ExportError::io(p))?;
    match abs.strip_prefix(&dir) {
        Ok(r) if r.as_os_str().is_empty() => Ok(".".into()),
        Ok(r) => Ok(r.to_string_lossy().into_owned()),
        Err(_) => Err(ExportError::Refused(format!(
            "`{}` is outside the environment's folder `{}`; an archive carries only the environment's own files: move it in",
            p.display(),
            env.dir.display()
        ))),
    }
}

/// The Envfile, its lock (written for the archive when there is none, so that every box is
/// pinned), every path provisioning reads (for an ansible playbook, its whole folder, where
/// its roles are) and every synced folder; never `.hdev/` (keys, state) or the archive.
fn files_of(project: &Project, out: &Path) -> anyhow::Result<BTreeMap<String, Content>> {
    let env = &project.env;
    if let Some(name) = env.sources.defs.keys().next() {
        anyhow::bail!(ExportError::Refused(format!(
            "the environment takes files from source `{name}` (a git repository), and archives do not carry sources yet"
        )));
    }
    let skip = [env.dir.join(".hdev"), out.to_path_buf()];
    let mut paths = vec![env.file.clone()];
    for m in env.machines.values() {
        if let Base::Image(i) = &m.base {
            anyhow::bail!(ExportError::Refused(format!(
                "machine `{}` starts from image `{i}`, which an archive cannot carry; give it a box",
                m.name
            )));
        }
        for step in &m.provision {
            for p in step.inputs() {
                let path = env.resolve(p);
                match step {
                    ProvisionStep::Ansible { .. } if path.is_file() => {
                        paths.push(path.parent().map(Path::to_path_buf).unwrap_or(path));
                    }
                    _ => paths.push(path),
                }
            }
        }
        paths.extend(m.synced_folders.iter().map(|s| env.resolve(&s.host)));
    }
    // The lock lies beside the Envfile, at the top of the folder.
    let mut files = BTreeMap::new();
    let lock = project.lock_path();
    if lock.exists() {
        paths.push(lock);
    } else {
        let text = crate::lockfile::text(&lock, &project.current_lock()?)?;
        files.insert(lock_name(&lock), Content::Bytes(text.into_bytes()));
    }
    let root = std::fs::canonicalize(&env.dir).map_err(ExportError::io(&env.dir))?;
    let skip: Vec<PathBuf> = skip
        .iter()
        .map(|s| std::fs::canonicalize(s).unwrap_or_else(|_| s.clone()))
        .collect();
    for p in paths {
        let rel = relative(env, &p)?;
        let rel = if rel == "." { String::new() } else { rel };
        export::tree_files(&root, &rel, &skip, &mut files)?;
    }
    Ok(files)
}

fn lock_name(lock: &Path) -> String {
    lock.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Each box digest the hash counts, with its names, and the stored box unless only named.
/// A box the store does not hold (a recipe never built, a URL never downloaded) is
/// refused: the archive would name a box nobody has.
fn boxes_of(
    project: &Project,
    store: &Store,
    without: bool,
) -> anyhow::Result<export::PackedBoxes> {
    let pins = project.lockfile()?.map(|l| l.pins()).unwrap_or_default();
    let digests = crate::boxes::resolve_digests(&project.env, &pins)?;
    let mut out = export::PackedBoxes::new();
    for (name, input) in digests {
        let stored = BoxDigest::parse(&input.digest).and_then(|d| store.load(&d).ok());
        let Some(b) = stored else {
            anyhow::bail!(ExportError::Refused(format!(
                "box `{name}` ({}, from {}) is not in the box store; bring the environment up (`hdev up`) or build the box (`hdev box build`) first",
                input.digest, input.from
            )));
        };
        let e = out.entry(b.digest.to_string()).or_default();
        e.0.push(name);
        if !without {
            e.1 = Some(b);
        }
    }
    Ok(out)
}

/// What `hdev up --from` is asked for.
#[derive(Debug)]
pub(crate) struct FromArchive<'a> {
    pub file: &'a Path,
    /// Where the environment goes (default: a folder named after it, here).
    pub dir: Option<&'a Path>,
    /// Refuse, before anything is written, unless the archive has this hash.
    pub expect_hash: Option<&'a str>,
}

/// What `hdev up --from` unpacked, before it brings the machines up.
#[derive(Debug, Serialize)]
pub(crate) struct Unpacked {
    pub envfile: PathBuf,
    pub hash: String,
    /// Box digests added to the store from the archive.
    pub added: Vec<String>,
    /// Box digests the store already held.
    pub present: Vec<String>,
    /// The folder was unpacked by an earlier, interrupted `up --from`.
    pub resumed: bool,
}

/// The marker an unpacked folder keeps: the hash of the archive it came from.
fn marker(dir: &Path) -> PathBuf {
    dir.join(".hdev").join("from-archive")
}

/// Unpacks the archive (or finds it unpacked by an earlier run), adds its boxes to the
/// store, and checks that every box is there and that the environment hashes to what the
/// archive says.
pub(crate) fn unpack(f: &FromArchive<'_>) -> anyhow::Result<Unpacked> {
    let index = export::read_index(f.file)?;
    if let Some(want) = f.expect_hash {
        anyhow::ensure!(
            EnvHash(index.hash.clone()).matches(want),
            "`{}` holds environment {}, not `{want}`; nothing was unpacked",
            f.file.display(),
            index.hash
        );
    }
    let dir = match f.dir {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(&index.name),
    };
    let resumed = std::fs::read_to_string(marker(&dir))
        .ok()
        .as_deref()
        .map(str::trim)
        == Some(index.hash.as_str());
    let store = Store::open_default()?;
    let u = if resumed {
        export::unpack(f.file, None, &store)?
    } else {
        unpack_into(f.file, &dir, &store, &index.hash)?
    };
    let envfile = dir.join(&index.envfile);
    missing_boxes(&store, &u.index.boxes)?;
    let project = crate::throwaway::open_project(Some(&envfile))?;
    let got = project.hash()?.hash;
    anyhow::ensure!(
        got.0 == index.hash,
        "the environment unpacked in `{}` hashes to {got}, but the archive stands for {}; was it written by another version of hdev?",
        dir.display(),
        index.hash
    );
    Ok(Unpacked {
        envfile,
        hash: index.hash,
        added: u.added,
        present: u.present,
        resumed,
    })
}

/// Unpacks into a partial folder beside `dir`, renamed to `dir` once every file checked.
fn unpack_into(
    file: &Path,
    dir: &Path,
    store: &Store,
    hash: &str,
) -> anyhow::Result<export::Unpacked> {
    anyhow::ensure!(
        !dir.exists(),
        "`{}` already exists; name another folder with `--dir`",
        dir.display()
    );
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let partial = tempfile::Builder::new()
        .prefix(".hdev-unpack-")
        .tempdir_in(parent)
        .map_err(ExportError::io(parent))?;
    let u = export::unpack(file, Some(partial.path()), store)?;
    let m = marker(partial.path());
    std::fs::create_dir_all(m.parent().expect("in .hdev")).map_err(ExportError::io(&m))?;
    crate::state::write_atomic(&m, format!("{hash}\n").as_bytes())?;
    let kept = partial.keep();
    std::fs::rename(&kept, dir).map_err(ExportError::io(dir))?;
    Ok(u)
}

/// Every box the archive names must be in the store by now.
fn missing_boxes(store: &Store, boxes: &[BoxEntry]) -> anyhow::Result<()> {
    let missing: Vec<String> = boxes
        .iter()
        .filter(|b| BoxDigest::parse(&b.digest).is_none_or(|d| store.load(&d).is_err()))
        .map(|b| format!("box `{}` ({})", b.names.join("`, `"), b.digest))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the archive names boxes it does not carry and the box store does not hold: {}; add each with `hdev box add FILE --sha256 DIGEST`",
        missing.join(", ")
    );
    Ok(())
}
