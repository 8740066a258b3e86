//! The provisioned-state cache on Docker: a container as its provisioning left it,
//! committed into an image `hdev-cache/<hash12>` labelled with the full per-machine hash.
//! A container of any environment whose machine has that hash is created from it and not
//! provisioned again.
//!
//! The image belongs to no environment: its `hdev.env` and `hdev.dir` labels are blank, so
//! that `destroy` (which removes an instance's objects) and `gc` (which removes what dead
//! folders left) pass it by; only `hdev cache prune` removes it. The provisioned container
//! is moved onto the image before its baseline is taken, so that the baseline is a thin
//! commit on it (a child, removed by `destroy` without touching its parent) rather than a
//! second copy of what provisioning wrote. What Docker sets per container at create
//! (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, addresses) is bind-mounted, not
//! part of a commit, so nothing of one instance leaks into another.

use std::collections::HashMap;

use bollard::query_parameters::RemoveImageOptionsBuilder;

use super::{map_err, snapshot, DockerBackend};
use crate::backend::{
    BackendError, CachedState, EnvCtx, MachineSpec, LABEL_CACHE, LABEL_CACHE_ENV,
    LABEL_CACHE_MACHINE, LABEL_DIR, LABEL_ENV, LABEL_HASH, LABEL_MACHINE,
};

/// Repository of cache images.
const REPO: &str = "hdev-cache";

/// The image reference of the cache entry of `hash`.
pub fn cache_ref(hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    format!("{REPO}/{}:latest", &hex[..hex.len().min(12)])
}

/// The image id of the entry of `hash`, when the engine holds one made for exactly it.
pub async fn find(d: &DockerBackend, hash: &str) -> Option<String> {
    let i = d.client().inspect_image(&cache_ref(hash)).await.ok()?;
    let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
    (labels.get(LABEL_CACHE).map(String::as_str) == Some(hash))
        .then_some(i.id)
        .flatten()
}

/// Commits provisioned container `id` into the entry of its hash and recreates the
/// container on it; (its new id, the entry).
pub async fn keep(
    d: &DockerBackend,
    ctx: &EnvCtx,
    m: &MachineSpec,
    id: &str,
    env: &str,
) -> Result<(String, CachedState), BackendError> {
    let reference = cache_ref(&m.hash);
    let (repo, tag) = reference.rsplit_once(':').unwrap_or((&reference, "latest"));
    let labels = HashMap::from([
        (LABEL_CACHE.to_string(), m.hash.clone()),
        (LABEL_CACHE_MACHINE.to_string(), m.name.clone()),
        (LABEL_CACHE_ENV.to_string(), env.to_string()),
        // Inherited from the container: blanked, so that no environment claims it.
        (LABEL_ENV.to_string(), String::new()),
        (LABEL_DIR.to_string(), String::new()),
        (LABEL_MACHINE.to_string(), String::new()),
        (LABEL_HASH.to_string(), String::new()),
        ("hdev.box".to_string(), String::new()),
        ("hdev.box.digest".to_string(), String::new()),
    ]);
    let base = d
        .client()
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|c| c.image);
    let comment = format!("hdev provisioned state of machine `{}`", m.name);
    let image = snapshot::commit(d, id, &m.name, (repo, tag), comment, labels).await?;
    let size = size_of(d, &image).await - size_of_opt(d, base.as_deref()).await;
    let new_id = snapshot::recreate(d, ctx, m, id, &image).await?;
    Ok((
        new_id,
        CachedState {
            hash: m.hash.clone(),
            location: image,
            machine: m.name.clone(),
            env: env.to_string(),
            size: u64::try_from(size).unwrap_or(0),
            created: crate::cache::now(),
        },
    ))
}

async fn size_of(d: &DockerBackend, image: &str) -> i64 {
    d.client()
        .inspect_image(image)
        .await
        .ok()
        .and_then(|i| i.size)
        .unwrap_or(0)
}

async fn size_of_opt(d: &DockerBackend, image: Option<&str>) -> i64 {
    match image {
        Some(i) => size_of(d, i).await,
        None => 0,
    }
}

/// Every cache entry of the engine (tagged `hdev-cache/…` and labelled with a hash).
pub async fn list(d: &DockerBackend) -> Result<Vec<CachedState>, BackendError> {
    let filters = HashMap::from([("label".to_string(), vec![LABEL_CACHE.to_string()])]);
    let (images, sizes) = snapshot::images_and_sizes(d, &filters).await?;
    let mut out: Vec<CachedState> = images
        .into_iter()
        .filter_map(|i| {
            let hash = i.labels.get(LABEL_CACHE).filter(|h| !h.is_empty())?;
            i.repo_tags.contains(&cache_ref(hash)).then(|| CachedState {
                hash: hash.clone(),
                location: i.id.clone(),
                machine: i
                    .labels
                    .get(LABEL_CACHE_MACHINE)
                    .cloned()
                    .unwrap_or_default(),
                env: i.labels.get(LABEL_CACHE_ENV).cloned().unwrap_or_default(),
                size: u64::try_from(i.size - sizes.get(&i.parent_id).copied().unwrap_or(0))
                    .unwrap_or(0),
                created: i.created,
            })
        })
        .collect();
    out.sort_by(|a, b| a.hash.cmp(&b.hash));
    Ok(out)
}

/// Removes the cache entry at image `location`: its tag goes at once; its layers when no
/// container or baseline built on it is left.
pub async fn remove(d: &DockerBackend, location: &str) -> Result<(), BackendError> {
    let tags = d
        .client()
        .inspect_image(location)
        .await
        .ok()
        .and_then(|i| i.repo_tags)
        .unwrap_or_default();
    let opts = RemoveImageOptionsBuilder::default().force(true).build();
    for t in tags.iter().filter(|t| t.starts_with(&format!("{REPO}/"))) {
        match d.client().remove_image(t, Some(opts.clone()), None).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            r => {
                r.map_err(map_err(format!("remove image `{t}`"), "image", t))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_names_the_hash_by_its_first_twelve_digits() {
        assert_eq!(
            super::cache_ref("sha256:0123456789abcdef"),
            "hdev-cache/0123456789ab:latest"
        );
    }
}
