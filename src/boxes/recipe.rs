//! Box recipes: a folder with `box.toml` (data) and a build script.
//!
//! A recipe builds a box without any registry, from the distribution's mirror or from host
//! binaries. Its digest covers the whole folder and the bytes of every host file it names
//! as an input, and the folders of the recipes it builds on (`include`), so an unchanged
//! recipe finds its already-built box in the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::digest::hash_file;
use super::manifest::{Artifact, Boot, Manifest, RecipeRef, FORMAT_VERSION};

/// The build time of a recipe without `source_date_epoch`: the Unix epoch itself.
pub const DEFAULT_SOURCE_DATE_EPOCH: i64 = 0;

/// The latest `source_date_epoch` accepted: 9999-12-31T23:59:59Z.
const MAX_SOURCE_DATE_EPOCH: i64 = 253_402_300_799;
use super::BoxError;

/// File name of a recipe's data.
pub const RECIPE_FILE: &str = "box.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeWire {
    name: String,
    version: String,
    description: Option<String>,
    script: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
    boot: Option<Boot>,
    source_date_epoch: Option<i64>,
    artifacts: BTreeMap<String, String>,
}

/// A loaded recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe folder.
    pub dir: PathBuf,
    /// The folder as the user or Envfile wrote it, for messages and the manifest.
    pub display: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub script: String,
    /// Host files whose bytes are inputs of the box.
    pub inputs: Vec<PathBuf>,
    /// Other recipe folders this one builds on (their scripts and files), as written
    /// (relative to this folder) and where they are.
    pub include: Vec<(String, PathBuf)>,
    pub boot: Option<Boot>,
    /// The fixed time the build pretends to run at (Unix seconds), handed to the script
    /// as `SOURCE_DATE_EPOCH` and recorded as the box's `created`: `source_date_epoch`
    /// in `box.toml`, else [`DEFAULT_SOURCE_DATE_EPOCH`]. Part of the recipe (its file is).
    pub source_date_epoch: i64,
    /// Provider -> file the script writes.
    pub artifacts: BTreeMap<String, String>,
}

impl Recipe {
    /// Loads `dir/box.toml`; `display` is how to name the recipe in messages.
    pub fn load(dir: &Path, display: &str) -> Result<Recipe, BoxError> {
        let dir = &std::fs::canonicalize(dir).map_err(|e| BoxError::Recipe {
            recipe: display.to_string(),
            message: format!("no recipe folder `{}`: {e}", dir.display()),
        })?;
        let file = dir.join(RECIPE_FILE);
        let text = crate::envfile::read_text(&file, crate::envfile::TEXT_LIMIT).map_err(|e| {
            BoxError::Recipe {
                recipe: display.to_string(),
                message: format!("cannot read `{}`: {e}", file.display()),
            }
        })?;
        let w: RecipeWire = toml::from_str(&text).map_err(|e| BoxError::Recipe {
            recipe: display.to_string(),
            message: format!("`{}`: {}", file.display(), e.message()),
        })?;
        let bad = |message: String| BoxError::Recipe {
            recipe: display.to_string(),
            message,
        };
        if !super::manifest::is_box_name(&w.name) {
            return Err(bad(format!(
                "`name = \"{}\"` is not a usable box name (letters, digits, `-`, `_`, `.`)",
                w.name
            )));
        }
        if !super::manifest::is_plain_name(&w.script) {
            return Err(bad(format!(
                "`script = \"{}\"` must name a file in the recipe folder",
                w.script
            )));
        }
        if w.artifacts.is_empty() {
            return Err(bad(
                "`[artifacts]` is empty: a recipe must write at least one".into(),
            ));
        }
        for (p, f) in &w.artifacts {
            if !super::manifest::is_plain_name(f) || f == super::manifest::MANIFEST {
                return Err(bad(format!(
                    "artifact `{p} = \"{f}\"` must be one plain file name"
                )));
            }
        }
        let source_date_epoch = w.source_date_epoch.unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
        if !(0..=MAX_SOURCE_DATE_EPOCH).contains(&source_date_epoch) {
            return Err(bad(format!(
                "`source_date_epoch = {source_date_epoch}` must be Unix seconds between 0 and {MAX_SOURCE_DATE_EPOCH} (e.g. `date -u +%s` at the time the recipe was written)"
            )));
        }
        let mut include = Vec::new();
        for rel in &w.include {
            let p = std::fs::canonicalize(dir.join(rel))
                .ok()
                .filter(|p| p.is_dir())
                .ok_or_else(|| {
                    bad(format!(
                        "`include = [\"{rel}\"]`: no folder `{}`",
                        dir.join(rel).display()
                    ))
                })?;
            include.push((rel.clone(), p));
        }
        include.sort();
        Ok(Recipe {
            include,
            dir: dir.to_path_buf(),
            display: display.to_string(),
            name: w.name,
            version: w.version,
            description: w.description,
            script: w.script,
            inputs: w.inputs.into_iter().map(PathBuf::from).collect(),
            boot: w.boot,
            source_date_epoch,
            artifacts: w.artifacts,
        })
    }

    /// The recipe digest: the folder's tree digest and the sha256 of each host input.
    pub fn digest(&self) -> Result<String, BoxError> {
        let tree = crate::envfile::hash::digest_path(&self.dir).map_err(BoxError::io(&self.dir))?;
        let mut h = Sha256::new();
        h.update(format!("recipe {tree}\n").as_bytes());
        // Only when there are some, so that recipes without keep their digests.
        for (rel, p) in &self.include {
            let t = crate::envfile::hash::digest_path(p).map_err(BoxError::io(p))?;
            h.update(format!("include {rel} {t}\n").as_bytes());
        }
        let mut inputs: Vec<&PathBuf> = self.inputs.iter().collect();
        inputs.sort();
        for p in inputs {
            // A relative input is the recipe folder's, where the script runs; it is
            // named as written, so the digest does not depend on where hdev started.
            let (d, _) = hash_file(&self.dir.join(p)).map_err(|e| BoxError::Recipe {
                recipe: self.display.clone(),
                message: format!("cannot read input `{}`: {e}", p.display()),
            })?;
            h.update(format!("input {} {d}\n", p.display()).as_bytes());
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The recipe folder's name, as the manifest records it: the same recipe reached by
    /// another path (`./boxes/x`, `/abs/boxes/x`) gives the same box.
    pub fn folder_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone())
    }

    /// Runs the build script with `out` as its output folder and returns the manifest of
    /// what it wrote. The script's output goes to `log`.
    ///
    /// The script runs with `SOURCE_DATE_EPOCH` (the recipe's fixed build time), `TZ=UTC`,
    /// `LC_ALL=C`, and `HDEV_PACKAGES`: a file where it may list the packages the box is
    /// made of (`NAME VERSION` per line, as `dpkg-query -W` prints them), recorded in the
    /// manifest. Nothing in the manifest depends on when or where the build ran.
    pub fn build(&self, out: &Path, log: &Path) -> Result<Manifest, BoxError> {
        let digest = self.digest()?;
        let log_file = std::fs::File::create(log).map_err(BoxError::io(log))?;
        let log_err = log_file.try_clone().map_err(BoxError::io(log))?;
        let failed = |message: String| BoxError::Build {
            recipe: self.display.clone(),
            message,
            log: log.to_path_buf(),
        };
        // Outside `out`, which must hold only artifacts.
        let packages_file = tempfile::Builder::new()
            .prefix("hdev-packages-")
            .tempfile()
            .map_err(|e| failed(format!("cannot make the package list file: {e}")))?;
        let status = std::process::Command::new("sh")
            .arg(self.dir.join(&self.script))
            .arg(out)
            .current_dir(&self.dir)
            .env("SOURCE_DATE_EPOCH", self.source_date_epoch.to_string())
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("HDEV_PACKAGES", packages_file.path())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .status()
            .map_err(|e| failed(format!("cannot run `sh {}`: {e}", self.script)))?;
        if !status.success() {
            return Err(failed(format!("`{}` failed ({status})", self.script)));
        }
        let mut artifacts = BTreeMap::new();
        for (provider, file) in &self.artifacts {
            let p = out.join(file);
            let (sha256, size) = hash_file(&p).map_err(|e| {
                failed(format!(
                    "`{}` did not write artifact `{provider}` (`{file}`): {e}",
                    self.script
                ))
            })?;
            artifacts.insert(
                provider.clone(),
                Artifact {
                    path: file.clone(),
                    sha256,
                    size,
                },
            );
        }
        let listed = crate::envfile::read_text(packages_file.path(), crate::envfile::TEXT_LIMIT)
            .map_err(|e| {
                failed(format!(
                    "cannot read the package list `$HDEV_PACKAGES`: {e}"
                ))
            })?;
        let packages = super::manifest::parse_packages(&listed).map_err(|e| {
            failed(format!(
                "`{}` wrote a bad package list to `$HDEV_PACKAGES`: {e}",
                self.script
            ))
        })?;
        Ok(Manifest {
            format: FORMAT_VERSION,
            name: self.name.clone(),
            version: self.version.clone(),
            created: super::manifest::rfc3339(self.source_date_epoch),
            description: self.description.clone(),
            recipe: Some(RecipeRef {
                path: self.folder_name(),
                digest,
                source_date_epoch: Some(self.source_date_epoch),
            }),
            boot: self.boot,
            artifacts,
            packages,
        })
    }
}
