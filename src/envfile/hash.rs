//! The environment hash: one sha256 over what the environment means.
//!
//! Hashed: the validated model (so comments, whitespace and key order never count), the
//! bytes of every host file provisioning reads, the digest of every box, and the schema
//! version. Each machine gets its own hash from its own inputs, and the environment hash is
//! taken over those, so a change shows which machines it touches. Reading the files is
//! done up front by [`read_inputs`]; [`compute`] itself does no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::{source_ref, Base, Env, Machine};

/// A `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EnvHash(pub String);

impl EnvHash {
    pub fn of(bytes: &[u8]) -> Self {
        EnvHash(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        &hex[..hex.len().min(12)]
    }

    /// Whether `s` names this hash, in full or by a prefix of at least 7 hex digits.
    pub fn matches(&self, s: &str) -> bool {
        let want = s.strip_prefix("sha256:").unwrap_or(s);
        let have = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        want.len() >= 7 && have.starts_with(&want.to_ascii_lowercase())
    }
}

impl fmt::Display for EnvHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a box's digest was found, for `hash --explain`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BoxInput {
    pub digest: String,
    pub from: String,
}

/// Everything outside the Envfile that the hash covers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inputs {
    /// Host path as written in the Envfile -> digest of its content.
    pub files: BTreeMap<String, String>,
    /// Box name -> digest.
    pub boxes: BTreeMap<String, BoxInput>,
    /// Source name -> its tree.
    pub sources: BTreeMap<String, SourceInput>,
}

/// How a source counts: by the git tree id of its files.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceInput {
    /// The git tree id (of `subdir` when the source has one).
    pub tree: String,
    /// The commit it is at (`None` for a working copy's own files).
    pub commit: Option<String>,
    /// A developer's working copy in place of the pinned commit (`--use`, `Envfile.local`).
    pub local: bool,
}

/// Reads every host file the environment's provisioning reads.
pub fn read_inputs(env: &Env, boxes: BTreeMap<String, BoxInput>) -> std::io::Result<Inputs> {
    let mut files = BTreeMap::new();
    for m in env.machines.values() {
        for step in &m.provision {
            // A file of a source counts through the source's tree.
            for p in step
                .inputs()
                .into_iter()
                .filter(|p| source_ref(p).is_none())
            {
                if !files.contains_key(p) {
                    let path = env.resolve(p);
                    let d = digest_path(&path).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    files.insert(p.to_string(), d);
                }
            }
        }
    }
    Ok(Inputs {
        files,
        boxes,
        sources: BTreeMap::new(),
    })
}

/// Digest of a file's bytes, or of a folder's tree (names, kinds, executable bits, file
/// bytes and link targets, in sorted order).
pub fn digest_path(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut h = Sha256::new();
        tree_into(&mut h, path, Path::new(""))?;
        Ok(format!("tree-sha256:{}", hex::encode(h.finalize())))
    } else {
        Ok(format!("sha256:{}", file_digest(path)?))
    }
}

pub fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn tree_into(h: &mut Sha256, root: &Path, rel: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel_child = rel.join(e.file_name());
        let meta = std::fs::symlink_metadata(e.path())?;
        let name = rel_child.to_string_lossy();
        if meta.is_dir() {
            h.update(format!("dir {name}\n").as_bytes());
            tree_into(h, root, &rel_child)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(e.path())?;
            h.update(format!("link {name} {}\n", target.to_string_lossy()).as_bytes());
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let d = file_digest(&e.path())?;
            h.update(format!("file {name} {} {d}\n", if exec { "x" } else { "-" }).as_bytes());
        }
    }
    Ok(())
}

/// One line of `hash --explain`.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainItem {
    pub what: String,
    pub digest: String,
}

/// The result: the environment hash, each machine's hash, and what went into them.
#[derive(Debug, Clone, Serialize)]
pub struct HashReport {
    pub hash: EnvHash,
    pub schema_version: u32,
    pub machines: BTreeMap<String, EnvHash>,
    pub inputs: Vec<ExplainItem>,
    /// Sources counted by a working copy rather than their pinned commit: the hash is
    /// then not the environment's, and is shown with `+local`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<String>,
}

impl HashReport {
    /// The hash as it is shown: with `+local` when a working copy counted.
    pub fn shown(&self) -> String {
        if self.local.is_empty() {
            self.hash.to_string()
        } else {
            format!("{}+local", self.hash)
        }
    }

    /// The short form as it is shown.
    pub fn shown_short(&self) -> String {
        let plus = if self.local.is_empty() { "" } else { "+local" };
        format!("{}{plus}", self.hash.short())
    }
}

/// JSON with object keys sorted at every level, whatever serde_json's map type is.
pub fn canonical_json<T: Serialize>(v: &T) -> Vec<u8> {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&map[*k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let value = serde_json::to_value(v).unwrap_or(Value::Null);
    let mut out = String::new();
    write(&value, &mut out);
    out.into_bytes()
}

#[derive(Serialize)]
struct MachineInputs<'a> {
    schema: u32,
    machine: &'a Machine,
    files: BTreeMap<&'a str, &'a str>,
    base: Option<&'a str>,
    networks: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sources: Option<BTreeMap<&'a str, &'a str>>,
}

/// The tree each source counts by (`unresolved` when it was not resolved).
fn tree_of<'a>(inputs: &'a Inputs, name: &str) -> &'a str {
    inputs
        .sources
        .get(name)
        .map(|s| s.tree.as_str())
        .unwrap_or("unresolved")
}

/// Hashes one machine: its definition, the files it reads, its box and its networks.
pub fn machine_hash(env: &Env, m: &Machine, inputs: &Inputs) -> EnvHash {
    let files = m
        .provision
        .iter()
        .flat_map(|s| s.inputs())
        .filter(|p| source_ref(p).is_none())
        .map(|p| {
            (
                p,
                inputs.files.get(p).map(String::as_str).unwrap_or("missing"),
            )
        })
        .collect();
    let base = match &m.base {
        Base::Box(b) => Some(
            inputs
                .boxes
                .get(b)
                .map(|d| d.digest.as_str())
                .unwrap_or("unresolved"),
        ),
        Base::Image(_) => None,
    };
    let networks = m
        .networks
        .iter()
        .filter_map(|a| env.networks.get(&a.network))
        .map(|n| (n.name.as_str(), n.subnet.to_string()))
        .collect();
    let schema = env.schema();
    let sources = (schema > 1).then(|| {
        env.sources_of(m)
            .into_iter()
            .map(|n| (n, tree_of(inputs, n)))
            .collect()
    });
    EnvHash::of(&canonical_json(&MachineInputs {
        schema,
        machine: m,
        files,
        base,
        networks,
        sources,
    }))
}

#[derive(Serialize)]
struct EnvInputs<'a> {
    schema: u32,
    settings: &'a super::model::EnvSettings,
    boxes: BTreeMap<&'a str, (&'a super::model::BoxDef, Option<&'a str>)>,
    networks: &'a BTreeMap<String, super::model::Network>,
    machines: &'a BTreeMap<String, EnvHash>,
    tests: &'a [super::model::TestCheck],
    #[serde(skip_serializing_if = "Option::is_none")]
    sources: Option<BTreeMap<&'a str, &'a str>>,
}

/// Hashes the whole environment.
pub fn compute(env: &Env, inputs: &Inputs) -> HashReport {
    let machines: BTreeMap<String, EnvHash> = env
        .machines
        .values()
        .map(|m| (m.name.clone(), machine_hash(env, m, inputs)))
        .collect();
    let boxes = env
        .boxes
        .iter()
        .map(|(n, b)| {
            (
                n.as_str(),
                (b, inputs.boxes.get(n).map(|d| d.digest.as_str())),
            )
        })
        .collect();
    let schema = env.schema();
    let sources = (schema > 1).then(|| {
        env.sources
            .defs
            .keys()
            .map(|n| (n.as_str(), tree_of(inputs, n)))
            .collect()
    });
    let hash = EnvHash::of(&canonical_json(&EnvInputs {
        schema,
        settings: &env.settings,
        boxes,
        networks: &env.networks,
        machines: &machines,
        tests: &env.tests,
        sources,
    }));
    let mut items = vec![ExplainItem {
        what: "schema version".into(),
        digest: schema.to_string(),
    }];
    for name in env.sources.defs.keys() {
        let what = match inputs.sources.get(name) {
            Some(s) if s.local => format!("source `{name}` (working copy)"),
            Some(SourceInput {
                commit: Some(c), ..
            }) => format!("source `{name}` (commit {})", &c[..c.len().min(12)]),
            _ => format!("source `{name}`"),
        };
        items.push(ExplainItem {
            what,
            digest: format!("tree {}", tree_of(inputs, name)),
        });
    }
    for (name, b) in &inputs.boxes {
        items.push(ExplainItem {
            what: format!("box `{name}` ({})", b.from),
            digest: b.digest.clone(),
        });
    }
    for (path, d) in &inputs.files {
        items.push(ExplainItem {
            what: format!("file `{path}`"),
            digest: d.clone(),
        });
    }
    for (name, h) in &machines {
        items.push(ExplainItem {
            what: format!("machine `{name}`"),
            digest: h.0.clone(),
        });
    }
    HashReport {
        hash,
        schema_version: schema,
        machines,
        inputs: items,
        local: inputs
            .sources
            .iter()
            .filter(|(_, s)| s.local)
            .map(|(n, _)| n.clone())
            .collect(),
    }
}
