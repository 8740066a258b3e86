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
            let (d, _) = hash_file(p).map_err(|e| BoxError::Recipe {
                recipe: self.display.clone(),
                message: format!("cannot read input `{}`: {e}", p.display()),
            })?;
            h.update(format!("input {} {d}\n", p.display()).as_bytes());
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// Runs the build script with `out` as its output folder and returns the manifest of
    /// what it wrote. The script's output goes to `log`.
    pub fn build(&self, out: &Path, log: &Path) -> Result<Manifest, BoxError> {
        let digest = self.digest()?;
        let log_file = std::fs::File::create(log).map_err(BoxError::io(log))?;
        let log_err = log_file.try_clone().map_err(BoxError::io(log))?;
        let status = std::process::Command::new("sh")
            .arg(self.dir.join(&self.script))
            .arg(out)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .status()
            .map_err(|e| BoxError::Build {
                recipe: self.display.clone(),
                message: format!("cannot run `sh {}`: {e}", self.script),
                log: log.to_path_buf(),
            })?;
        if !status.success() {
            return Err(BoxError::Build {
                recipe: self.display.clone(),
                message: format!("`{}` failed ({status})", self.script),
                log: log.to_path_buf(),
            });
        }
        let mut artifacts = BTreeMap::new();
        for (provider, file) in &self.artifacts {
            let p = out.join(file);
            let (sha256, size) = hash_file(&p).map_err(|e| BoxError::Build {
                recipe: self.display.clone(),
                message: format!(
                    "`{}` did not write artifact `{provider}` (`{file}`): {e}",
                    self.script
                ),
                log: log.to_path_buf(),
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
        Ok(Manifest {
            format: FORMAT_VERSION,
            name: self.name.clone(),
            version: self.version.clone(),
            created: super::manifest::now_rfc3339(),
            description: self.description.clone(),
            recipe: Some(RecipeRef {
                path: self.display.clone(),
                digest,
            }),
            boot: self.boot,
            artifacts,
        })
    }
}
