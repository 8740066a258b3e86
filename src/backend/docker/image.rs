//! Importing a box's root file system into Docker, once per box digest.
//!
//! No registry is reachable, so every Docker image of a box comes from its `docker`
//! artifact, imported under a tag that is the box digest. The image carries the labels
//! `hdev.box` and `hdev.box.digest`, so a later call finds and reuses it.

use std::path::PathBuf;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::boxes::ensure::{blocking, ensure_box_in, key_lock};
use crate::boxes::manifest::DOCKER;
use crate::boxes::{BoxError, Store, StoredBox};
use crate::envfile::Env;

/// Label naming the box an image was imported from.
pub const LABEL_BOX: &str = "hdev.box";
/// Label holding the full box digest (`sha256:...`).
pub const LABEL_DIGEST: &str = "hdev.box.digest";

/// The image reference of `[box.NAME]` of `env` in Docker: the box is built or added when
/// the store has none, verified, and its root file system imported once, as
/// `hdev-box/NAME:<first 12 hex digits of the box digest>`.
pub async fn docker_image(docker: &Docker, env: &Env, box_name: &str) -> Result<String, BoxError> {
    docker_image_in(&Store::open_default()?, docker, env, box_name).await
}

/// [`docker_image`] with an explicit store.
pub async fn docker_image_in(
    store: &Store,
    docker: &Docker,
    env: &Env,
    box_name: &str,
) -> Result<String, BoxError> {
    let b = ensure_box_in(store, env, box_name).await?;
    import_box(store, docker, &b).await
}

/// The image reference a stored box is imported as.
pub fn image_ref(b: &StoredBox) -> String {
    let repo: String = b
        .manifest
        .name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("hdev-box/{repo}:{}", b.digest.short())
}

/// Imports a stored box into Docker unless an image of the same digest exists already.
pub async fn import_box(store: &Store, docker: &Docker, b: &StoredBox) -> Result<String, BoxError> {
    let reference = image_ref(b);
    let rootfs = b.artifact(DOCKER).ok_or_else(|| BoxError::NoArtifact {
        name: b.manifest.name.clone(),
        provider: DOCKER.into(),
        have: b
            .manifest
            .providers()
            .iter()
            .map(|s| s.to_string())
            .collect(),
    })?;
    let lock = key_lock(&format!("docker\0{}", b.digest));
    let _held = lock.lock().await;
    if has_image(docker, b, &reference).await? {
        return Ok(reference);
    }
    // Across processes: one imports, the others wait and then find the image.
    let store = store.clone();
    let name = format!("docker-{}", b.digest.short());
    let _file_lock = blocking(move || store.lock(&name)).await?;
    if has_image(docker, b, &reference).await? {
        return Ok(reference);
    }
    import(docker, b, &reference, rootfs).await?;
    if !has_image(docker, b, &reference).await? {
        return Err(BoxError::Docker {
            name: b.label(),
            action: format!("image `{reference}` is missing after its import"),
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message: "not found".into(),
            },
        });
    }
    Ok(reference)
}

/// Whether `reference` exists and was imported from this box.
async fn has_image(docker: &Docker, b: &StoredBox, reference: &str) -> Result<bool, BoxError> {
    match docker.inspect_image(reference).await {
        Ok(img) => {
            let digest = b.digest.to_string();
            Ok(img
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(LABEL_DIGEST).cloned())
                .is_some_and(|d| d == digest))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(source) => Err(BoxError::Docker {
            name: b.label(),
            action: format!("inspecting image `{reference}`"),
            source,
        }),
    }
}

async fn import(
    docker: &Docker,
    b: &StoredBox,
    reference: &str,
    rootfs: PathBuf,
) -> Result<(), BoxError> {
    let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    let changes = vec![
        format!("LABEL {LABEL_BOX}={}", b.manifest.name),
        format!("LABEL {LABEL_DIGEST}={}", b.digest),
        "CMD [\"/bin/sh\"]".to_string(),
    ];
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .message(&format!("hdev box {}", b.label()))
        .changes(changes)
        .build();
    let file = tokio::fs::File::open(&rootfs)
        .await
        .map_err(BoxError::io(&rootfs))?;
    let total = file.metadata().await.ok().map(|m| m.len());
    // Its bytes as they go, on the box's line.
    let counter = crate::progress::Counting::new(
        (),
        &format!("box {}", b.manifest.name),
        "importing into Docker",
        total,
    );
    let body = futures_util::stream::unfold(Some((file, counter)), |state| async move {
        let (mut f, mut counter) = state?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                counter.add(n as u64);
                Some((Ok(bytes::Bytes::from(buf)), Some((f, counter))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut progress =
        docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    while let Some(item) = progress.next().await {
        item.map_err(|source| BoxError::Docker {
            name: b.label(),
            action: format!("importing `{}` as `{reference}`", rootfs.display()),
            source,
        })?;
    }
    Ok(())
}
