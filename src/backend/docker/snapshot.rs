//! Snapshots of containers as images. A baseline is the container committed into an
//! image, and the container recreated from it (same name, networks, addresses, ports,
//! binds and labels), so that the engine's change list of the container is exactly the
//! drift since the baseline. A reset recreates the container from that image: no
//! provisioning, and no copy of anything but the container's thin writable layer.
//!
//! A container without provisioning has the image it was created from as its baseline
//! (named in the label [`LABEL_BASELINE_IMAGE`]): the baseline `up` takes commits nothing,
//! drift is the change list as it is, and a reset recreates it from that image.
//!
//! Named snapshots are images too. Saving one only commits (the container keeps running
//! on its baseline, so drift stays relative to it); the image carries the drift it held
//! in a label, so that after a restore the drift since the baseline is still known.

use std::collections::HashMap;

use bollard::models::{ChangeType, ContainerConfig};
use bollard::query_parameters::{
    CommitContainerOptions, ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
};

use super::{baseline_image, map_err, DockerBackend};
use crate::backend::{
    BackendError, Captured, EnvCtx, MachineSpec, Resolved, LABEL_BASELINE_IMAGE, LABEL_DIR,
    LABEL_ENV, LABEL_HASH, LABEL_MACHINE, LABEL_SNAPSHOT,
};
use crate::snapshot::changes::Kind;
use crate::snapshot::{missing, Drift, BASELINE};

/// Label on a named snapshot image: the drift since the baseline it holds (JSON).
pub const LABEL_DRIFT: &str = "hdev.drift";

/// Repository and tag of the image that holds snapshot `name` of a machine.
pub fn image_ref(instance: &str, machine: &str, name: &str) -> (String, String) {
    if name == BASELINE {
        let full = baseline_image(instance, machine);
        let (repo, tag) = full.rsplit_once(':').unwrap_or((&full, "latest"));
        return (repo.to_string(), tag.to_string());
    }
    (
        format!("hdev-snapshot/{instance}-{machine}").to_lowercase(),
        name.to_string(),
    )
}

/// One snapshot image of a machine.
#[derive(Debug, Clone)]
pub struct ImageSnap {
    pub machine: String,
    pub name: String,
    pub id: String,
    pub created: i64,
    /// Bytes this image adds to the one it was committed on.
    pub own_size: u64,
}

/// Commits the container into snapshot `name`; for the baseline, the container is then
/// recreated from it. Returns (container id afterwards, image id).
pub async fn capture(
    d: &DockerBackend,
    ctx: &EnvCtx,
    m: &MachineSpec,
    id: &str,
    name: &str,
) -> Result<Captured, BackendError> {
    let hash = m.hash.as_str();
    let (repo, tag) = image_ref(&ctx.instance, &m.name, name);
    if name == BASELINE && m.image_baseline {
        // Its image is its baseline (it carries it in a label): nothing to commit, and the
        // engine's change list is already relative to it. A baseline image left from an
        // earlier container of the machine would only take room.
        let opts = RemoveImageOptionsBuilder::default().force(true).build();
        let _ = d
            .client()
            .remove_image(&format!("{repo}:{tag}"), Some(opts), None)
            .await;
        return Ok(Captured {
            id: id.to_string(),
            location: m.image().to_string(),
        });
    }
    let mut labels = HashMap::from([
        (LABEL_ENV.to_string(), ctx.instance.clone()),
        (
            LABEL_DIR.to_string(),
            ctx.dir.to_string_lossy().into_owned(),
        ),
        (LABEL_MACHINE.to_string(), m.name.clone()),
        (LABEL_HASH.to_string(), hash.to_string()),
        (LABEL_SNAPSHOT.to_string(), name.to_string()),
        (LABEL_DRIFT.to_string(), String::new()),
        // A commit inherits the box image's labels; blanked, so that nothing looking for
        // box images by label takes a snapshot for one.
        ("hdev.box".to_string(), String::new()),
        ("hdev.box.digest".to_string(), String::new()),
        // Inherited from a container made from a cache entry: a snapshot is not one.
        (crate::backend::LABEL_CACHE.to_string(), String::new()),
        // Inherited from a container whose baseline is its image: a container made from
        // this image has what the snapshot holds, not that image, as its baseline.
        (LABEL_BASELINE_IMAGE.to_string(), String::new()),
    ]);
    if name != BASELINE {
        let drift = drift(d, &m.name, id).await?;
        labels.insert(
            LABEL_DRIFT.to_string(),
            serde_json::to_string(&drift).unwrap_or_default(),
        );
    }
    let old = image_id(d, &format!("{repo}:{tag}")).await;
    let comment = format!("hdev snapshot `{name}` of machine `{}`", m.name);
    let image = commit(d, id, &m.name, (&repo, &tag), comment, labels).await?;
    // A container that changed nothing on its image (no provisioning, say) already has
    // the change list of its baseline: it need not be recreated, which halves what `up`
    // costs for such machines. `drift` accepts that container on its box image.
    let unchanged =
        name == BASELINE && !on_snapshot_image(d, id).await && changes(d, id).await?.is_empty();
    let new_id = if name == BASELINE && !unchanged {
        recreate(d, ctx, m, id, &image).await?
    } else {
        id.to_string()
    };
    if let Some(old) = old.filter(|o| *o != image) {
        // The old image may be the parent of the new one: then it goes with its child.
        let opts = RemoveImageOptionsBuilder::default().build();
        let _ = d.client().remove_image(&old, Some(opts), None).await;
    }
    Ok(Captured {
        id: new_id,
        location: image,
    })
}

/// Recreates the container from snapshot `name` and starts it; returns its new id.
pub async fn restore(
    d: &DockerBackend,
    ctx: &EnvCtx,
    m: &MachineSpec,
    id: &str,
    name: &str,
) -> Result<String, BackendError> {
    let old = d.client().inspect_container(id, None).await.ok();
    if name == BASELINE {
        if let Some(image) = old.as_ref().and_then(image_baseline) {
            // Its image is its baseline; the new container names it by id.
            let label = Some(image.clone());
            return recreate_from(d, ctx, m, (id, old.as_ref()), &image, label).await;
        }
    }
    let (repo, tag) = image_ref(&ctx.instance, &m.name, name);
    let Some(image) = image_id(d, &format!("{repo}:{tag}")).await else {
        return Err(missing(&m.name, name).into());
    };
    // Back on its baseline image, a container has no image baseline any more; on a named
    // snapshot it keeps the one it had.
    let label = match name == BASELINE {
        true => None,
        false => old.as_ref().and_then(baseline_label),
    };
    recreate_from(d, ctx, m, (id, old.as_ref()), &image, label).await
}

/// The label that names the image a container's baseline is, if it has one.
fn baseline_label(c: &bollard::models::ContainerInspectResponse) -> Option<String> {
    c.config
        .as_ref()?
        .labels
        .as_ref()?
        .get(LABEL_BASELINE_IMAGE)
        .filter(|s| !s.is_empty())
        .cloned()
}

/// The image a container's baseline is, when that is the image it was created from: by
/// id when the container still runs on it, else as its label names it.
fn image_baseline(c: &bollard::models::ContainerInspectResponse) -> Option<String> {
    let named = baseline_label(c)?;
    let created_from = c.config.as_ref().and_then(|c| c.image.as_deref());
    Some(match (created_from == Some(named.as_str()), &c.image) {
        (true, Some(id)) => id.clone(),
        _ => named,
    })
}

/// Commits container `id` (of machine `machine`) into `repo:tag` with `labels`, paused
/// while it is written; the image's id.
pub(super) async fn commit(
    d: &DockerBackend,
    id: &str,
    machine: &str,
    (repo, tag): (&str, &str),
    comment: String,
    labels: HashMap<String, String>,
) -> Result<String, BackendError> {
    let opts = CommitContainerOptions {
        container: Some(id.to_string()),
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        comment: Some(comment),
        pause: true,
        ..Default::default()
    };
    let config = ContainerConfig {
        labels: Some(labels),
        ..Default::default()
    };
    Ok(d.client()
        .commit_container(opts, config)
        .await
        .map_err(map_err(
            format!("commit machine `{machine}` into `{repo}:{tag}`"),
            "container",
            id,
        ))?
        .id)
}

/// The images `filters` choose, and the size of every image by id (a layer shared
/// between images counts in each).
pub(super) async fn images_and_sizes(
    d: &DockerBackend,
    filters: &HashMap<String, Vec<String>>,
) -> Result<(Vec<bollard::models::ImageSummary>, HashMap<String, i64>), BackendError> {
    let images = d
        .client()
        .list_images(Some(
            ListImagesOptionsBuilder::default().filters(filters).build(),
        ))
        .await
        .map_err(map_err("list images", "images", ""))?;
    let sizes = d
        .client()
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(map_err("list images", "images", ""))?
        .into_iter()
        .map(|i| (i.id, i.size))
        .collect();
    Ok((images, sizes))
}

/// Recreates container `id` of machine `m` on `image` (a commit of it) and starts it; its
/// new id. The new container has no image baseline: its baseline is a commit.
pub(super) async fn recreate(
    d: &DockerBackend,
    ctx: &EnvCtx,
    m: &MachineSpec,
    id: &str,
    image: &str,
) -> Result<String, BackendError> {
    let old = d.client().inspect_container(id, None).await.ok();
    recreate_from(d, ctx, m, (id, old.as_ref()), image, None).await
}

/// [`recreate`] of a container read already (`old`), the new one carrying
/// `baseline_image` as the image its baseline is.
async fn recreate_from(
    d: &DockerBackend,
    ctx: &EnvCtx,
    m: &MachineSpec,
    (id, old): (&str, Option<&bollard::models::ContainerInspectResponse>),
    image: &str,
    baseline_image: Option<String>,
) -> Result<String, BackendError> {
    // The new container keeps the old one's addresses on bridges: a machine returned to
    // its baseline is the same machine to the others (VMs hold names in /etc/hosts, peers
    // in caches).
    let held = old.map(|c| addresses_of(ctx, c)).unwrap_or_default();
    d.remove(id).await?;
    let mut spec = m.on(Resolved::Image(image.to_string()));
    // Not on an overlay: there a name and an address taken again at once race with the
    // swarm's news of the old container leaving (the name would vanish); the new address
    // reaches VMs' /etc/hosts when the run ends.
    for n in spec
        .networks
        .iter_mut()
        .filter(|n| n.address.is_none() && !n.overlay)
    {
        n.address = held.get(&n.name).copied();
    }
    let new_id = d
        .create_container_of(ctx, &spec, baseline_image.as_deref())
        .await?;
    d.start(&new_id).await?;
    Ok(new_id)
}

/// A container's address on each environment network (Envfile name -> address).
fn addresses_of(
    ctx: &EnvCtx,
    c: &bollard::models::ContainerInspectResponse,
) -> std::collections::BTreeMap<String, std::net::Ipv4Addr> {
    let prefix = format!("{}-", ctx.instance);
    c.network_settings
        .as_ref()
        .and_then(|s| s.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, ep)| {
            let name = net.strip_prefix(&prefix)?.to_string();
            let ip = ep.ip_address?.parse().ok()?;
            Some((name, ip))
        })
        .collect()
}

async fn image_id(d: &DockerBackend, reference: &str) -> Option<String> {
    d.client()
        .inspect_image(reference)
        .await
        .ok()
        .and_then(|i| i.id)
}

/// The drift of a container since its baseline: the engine's change list, composed with
/// the drift its snapshot image held when the container was restored from one.
pub async fn drift(d: &DockerBackend, machine: &str, id: &str) -> Result<Drift, BackendError> {
    let c = d
        .client()
        .inspect_container(id, None)
        .await
        .map_err(map_err("inspect container", "container", id))?;
    // A container whose baseline is the image it was created from has one from the start:
    // the change list is relative to that image (or, restored from a named snapshot, the
    // snapshot's drift composes with it, as for any container).
    let image_based = image_baseline(&c).is_some();
    let image = c.image.unwrap_or_default();
    let labels = d
        .client()
        .inspect_image(&image)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.labels)
        .unwrap_or_default();
    if !image_based && !labels.contains_key(LABEL_SNAPSHOT) {
        // Still on the image it was created from: that is its baseline when the baseline
        // was committed without a change (see `capture`).
        let instance = c
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(LABEL_ENV).cloned())
            .unwrap_or_default();
        let (repo, tag) = image_ref(&instance, machine, BASELINE);
        if instance.is_empty() || image_id(d, &format!("{repo}:{tag}")).await.is_none() {
            return Err(missing(machine, BASELINE).into());
        }
    }
    let since = Drift::from_changes(changes(d, id).await?);
    let base: Drift = labels
        .get(LABEL_DRIFT)
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    Ok(Drift::compose(&base, &since))
}

/// Whether the container runs on a snapshot image (after a reset or restore) rather than
/// on the image it was first created from.
async fn on_snapshot_image(d: &DockerBackend, id: &str) -> bool {
    let Some(image) = d
        .client()
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|c| c.image)
    else {
        return true;
    };
    d.client()
        .inspect_image(&image)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.labels)
        .is_none_or(|l| l.contains_key(LABEL_SNAPSHOT))
}

/// The engine's change list of a container, as (path, kind).
async fn changes(d: &DockerBackend, id: &str) -> Result<Vec<(String, Kind)>, BackendError> {
    let changes = d
        .client()
        .container_changes(id)
        .await
        .map_err(map_err("list changes", "container", id))?
        .unwrap_or_default();
    let list: Vec<(String, Kind)> = changes
        .into_iter()
        .map(|c| {
            let k = match c.kind {
                ChangeType::_0 => Kind::Changed,
                ChangeType::_1 => Kind::Added,
                ChangeType::_2 => Kind::Deleted,
            };
            (c.path, k)
        })
        .collect();
    Ok(without_engine_files(list))
}

/// The engine's own init binary, which it places in every container run with `init`.
const DOCKER_INIT: &str = "/sbin/docker-init";

/// Leaves out what the engine itself puts into a container (its init binary, and its
/// folder when nothing else in it changed): neither the user nor provisioning did that.
fn without_engine_files(list: Vec<(String, Kind)>) -> Vec<(String, Kind)> {
    let others_in_sbin = list
        .iter()
        .any(|(p, _)| p.starts_with("/sbin/") && p != DOCKER_INIT);
    list.into_iter()
        .filter(|(p, k)| {
            p != DOCKER_INIT && !(p == "/sbin" && *k == Kind::Changed && !others_in_sbin)
        })
        .collect()
}

/// The tagged snapshot images of an environment (superseded ones are untagged).
pub async fn list(d: &DockerBackend, instance: &str) -> Result<Vec<ImageSnap>, BackendError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_ENV}={instance}"),
            LABEL_SNAPSHOT.to_string(),
        ],
    )]);
    let (images, sizes) = images_and_sizes(d, &filters).await?;
    let mut out = Vec::new();
    for i in images {
        let (Some(machine), Some(name)) =
            (i.labels.get(LABEL_MACHINE), i.labels.get(LABEL_SNAPSHOT))
        else {
            continue;
        };
        let (repo, tag) = image_ref(instance, machine, name);
        if !i.repo_tags.contains(&format!("{repo}:{tag}")) {
            continue;
        }
        let parent = sizes.get(&i.parent_id).copied().unwrap_or(0);
        out.push(ImageSnap {
            machine: machine.clone(),
            name: name.clone(),
            id: i.id.clone(),
            created: i.created,
            own_size: u64::try_from(i.size - parent).unwrap_or(0),
        });
    }
    // The baselines that are the images containers were created from: taken with them,
    // adding nothing.
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_ENV}={instance}"),
            LABEL_BASELINE_IMAGE.to_string(),
        ],
    )]);
    let containers = d
        .client()
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(map_err("list containers", "containers", ""))?;
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        let based = labels
            .get(LABEL_BASELINE_IMAGE)
            .is_some_and(|i| !i.is_empty());
        let Some(machine) = labels.get(LABEL_MACHINE).filter(|_| based) else {
            continue;
        };
        if out
            .iter()
            .any(|s| s.name == BASELINE && s.machine == *machine)
        {
            continue;
        }
        out.push(ImageSnap {
            machine: machine.clone(),
            name: BASELINE.to_string(),
            id: c.image_id.unwrap_or_default(),
            created: c.created.unwrap_or_default(),
            own_size: 0,
        });
    }
    out.sort_by(|a, b| (&a.name, &a.machine).cmp(&(&b.name, &b.machine)));
    Ok(out)
}

/// Removes snapshot `name` of a machine; an image still needed as a parent stays
/// (untagged) until its children go.
pub async fn delete(d: &DockerBackend, instance: &str, machine: &str, name: &str) -> bool {
    let (repo, tag) = image_ref(instance, machine, name);
    // Forced, so that an image a container was restored from loses its tag (the
    // container keeps the image itself).
    let opts = RemoveImageOptionsBuilder::default().force(true).build();
    d.client()
        .remove_image(&format!("{repo}:{tag}"), Some(opts), None)
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_init_is_not_drift() {
        let only_init = vec![
            ("/sbin".to_string(), Kind::Changed),
            (DOCKER_INIT.to_string(), Kind::Added),
        ];
        assert!(without_engine_files(only_init).is_empty());
        let more = vec![
            ("/sbin".to_string(), Kind::Changed),
            (DOCKER_INIT.to_string(), Kind::Added),
            ("/sbin/tool".to_string(), Kind::Added),
        ];
        assert_eq!(
            without_engine_files(more),
            vec![
                ("/sbin".to_string(), Kind::Changed),
                ("/sbin/tool".to_string(), Kind::Added)
            ]
        );
    }
}
