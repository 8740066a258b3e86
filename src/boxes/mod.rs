//! Boxes: hdev's versioned, content-addressed base images.

use std::collections::BTreeMap;

use crate::envfile::hash::{digest_path, BoxInput};
use crate::envfile::{BoxSource, Env};
use crate::lockfile::Lockfile;

/// The digest each box of the environment counts with in the hash, and where it came
/// from: the Envfile's own `sha256`, then `Envfile.lock`, then the recipe's inputs.
pub fn resolve_digests(
    env: &Env,
    lock: Option<&Lockfile>,
) -> std::io::Result<BTreeMap<String, BoxInput>> {
    let mut out = BTreeMap::new();
    for (name, b) in &env.boxes {
        let input = if let Some(d) = &b.sha256 {
            BoxInput {
                digest: format!("sha256:{d}"),
                from: "Envfile".into(),
            }
        } else if let Some(l) = lock.and_then(|l| l.boxes.get(name)) {
            BoxInput {
                digest: l.digest.clone(),
                from: "Envfile.lock".into(),
            }
        } else {
            match &b.source {
                BoxSource::Recipe(p) | BoxSource::File(p) => BoxInput {
                    digest: digest_path(&env.resolve(p))?,
                    from: format!("content of `{p}`"),
                },
                BoxSource::Url(u) => BoxInput {
                    digest: "unresolved".into(),
                    from: format!("`{u}` (not downloaded)"),
                },
            }
        };
        out.insert(name.clone(), input);
    }
    Ok(out)
}

mod interim;
pub use interim::{docker_image, BoxError};
