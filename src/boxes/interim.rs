//! Interim box import for Docker, until the box store lands (branch `boxes`): builds a
//! recipe box with its script and imports the root file system once, tagged by the
//! recipe's content digest. Replaced by `boxes::docker::docker_image` on merge.

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use crate::envfile::{BoxSource, Env};

/// Why a box could not be turned into a Docker image.
#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    /// The Envfile names no such box.
    #[error("no box `{0}` in the Envfile")]
    Unknown(String),
    /// Only recipe boxes are built here.
    #[error("box `{0}`: only recipe boxes can be used in this build")]
    Unsupported(String),
    /// The recipe could not be read or built.
    #[error("box `{name}`: {message}")]
    Build { name: String, message: String },
    /// The engine refused the import.
    #[error("box `{name}`: importing into Docker failed: {message}")]
    Import { name: String, message: String },
}

/// The Docker image of a box, built and imported on first use.
pub async fn docker_image(docker: &Docker, env: &Env, box_name: &str) -> Result<String, BoxError> {
    let def = env
        .boxes
        .get(box_name)
        .ok_or_else(|| BoxError::Unknown(box_name.to_string()))?;
    let BoxSource::Recipe(dir) = &def.source else {
        return Err(BoxError::Unsupported(box_name.to_string()));
    };
    let dir = env.resolve(dir);
    let build = |message: String| BoxError::Build {
        name: box_name.to_string(),
        message,
    };
    let digest = crate::envfile::hash::digest_path(&dir).map_err(|e| build(e.to_string()))?;
    let hex = digest.rsplit(':').next().unwrap_or_default();
    let tag = &hex[..hex.len().min(12)];
    let repo = format!("hdev-box/{box_name}");
    let image = format!("{repo}:{tag}");
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(image);
    }
    let out = tempfile::tempdir().map_err(|e| build(e.to_string()))?;
    let status = tokio::process::Command::new("sh")
        .arg(dir.join("build.sh"))
        .arg(out.path())
        .current_dir(&dir)
        .status()
        .await
        .map_err(|e| build(e.to_string()))?;
    if !status.success() {
        return Err(build(format!("build script failed ({status})")));
    }
    let bytes = std::fs::read(out.path().join("rootfs.tar")).map_err(|e| build(e.to_string()))?;
    let opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(&repo)
        .tag(tag)
        .build();
    let mut s = docker.create_image(Some(opts), Some(bollard::body_full(bytes.into())), None);
    while let Some(r) = s.next().await {
        r.map_err(|e| BoxError::Import {
            name: box_name.to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(image)
}
