//! The floor for the `hdev up` benchmark: what plain Docker needs to create and start N
//! containers of one image, all at once, on one fresh bridge network, through bollard.
//!
//! `docker_floor up N PREFIX` creates network PREFIX and containers PREFIX-1..N (with the
//! same keep-alive command, hostname, alias and labels hdev uses) and starts them;
//! `docker_floor down PREFIX` removes them; `docker_floor version` prints the engine's. The image is the busybox box hdev imported.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;

const KEEP_ALIVE: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done";

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let docker = Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    match args.get(1).map(String::as_str) {
        Some("up") => {
            let n: usize = args.get(2).ok_or("missing N")?.parse()?;
            let prefix = args.get(3).ok_or("missing PREFIX")?;
            up(&docker, n, prefix).await
        }
        Some("down") => down(&docker, args.get(2).ok_or("missing PREFIX")?).await,
        Some("version") => {
            let v = docker.version().await?;
            println!("{}", v.version.unwrap_or_default());
            Ok(())
        }
        _ => Err("usage: docker_floor up N PREFIX | down PREFIX | version".into()),
    }
}

async fn box_image(docker: &Docker) -> Result<String, Box<dyn std::error::Error>> {
    let filters = HashMap::from([("label", vec!["hdev.box=busybox"])]);
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await?;
    images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .next()
        .ok_or_else(|| "no busybox box image; run `hdev up` once first".into())
}

async fn up(docker: &Docker, n: usize, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let image = box_image(docker).await?;
    let labels = HashMap::from([("hdev-bench".to_string(), prefix.to_string())]);
    docker
        .create_network(NetworkCreateRequest {
            name: prefix.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await?;
    let jobs = (1..=n).map(|i| {
        let name = format!("{prefix}-{i}");
        let body = ContainerCreateBody {
            hostname: Some(format!("node-{i}")),
            image: Some(image.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), KEEP_ALIVE.into()]),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                network_mode: Some(prefix.to_string()),
                nano_cpus: Some(1_000_000_000),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    prefix.to_string(),
                    EndpointSettings {
                        aliases: Some(vec![format!("node-{i}")]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        async move {
            let opts = CreateContainerOptionsBuilder::default().name(&name).build();
            let c = docker.create_container(Some(opts), body).await?;
            docker.start_container(&c.id, None).await?;
            Ok::<(), bollard::errors::Error>(())
        }
    });
    for r in futures_util::future::join_all(jobs).await {
        r?;
    }
    Ok(())
}

async fn down(docker: &Docker, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let filters = HashMap::from([("label", vec![format!("hdev-bench={prefix}")])]);
    let cs = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?;
    let rm = cs.iter().filter_map(|c| c.id.as_deref()).map(|id| {
        docker.remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
    });
    for r in futures_util::future::join_all(rm).await {
        r?;
    }
    match docker.remove_network(prefix).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
