//! The engine contract as executable cases: the same sequence runs against the fake (fast
//! tier) and against the real Docker engine (`live::`), so the fake cannot drift from
//! what engines do.

use std::collections::BTreeMap;

use super::{Engine, EnvCtx, MachineSpec, ObjectKind, Resolved, RunState};
use crate::boxes::Store;
use crate::envfile::Backend;
use crate::snapshot::BASELINE;

/// A machine spec with nothing but a base: what the fake and Docker need.
pub(crate) fn plain_spec(kind: Backend, image: &str) -> MachineSpec {
    MachineSpec {
        name: "probe".into(),
        backend: kind,
        hash: "sha256:contract".into(),
        base: Resolved::Image(image.into()),
        cpus: 1,
        memory: None,
        disk: None,
        accel: crate::envfile::Accel::Auto,
        place: None,
        networks: Vec::new(),
        ports: Vec::new(),
        synced: Vec::new(),
        env: BTreeMap::new(),
        command: None,
        extra_hosts: Vec::new(),
        anchor: None,
        image_baseline: false,
    }
}

async fn sh<E: Engine>(e: &E, id: &str, script: &str) -> i64 {
    e.exec(id, &["sh".into(), "-c".into(), script.into()], &|_| {})
        .await
        .expect("exec")
        .exit_code
}

/// A context of its own for a contract run on engine `kind`.
pub(crate) fn context(kind: Backend, dir: &std::path::Path) -> EnvCtx {
    EnvCtx {
        instance: format!("contract-{}-{kind}", std::process::id()),
        dir: dir.to_path_buf(),
    }
}

/// The box store the live tests share with the integration tests (boxes built once).
pub(crate) fn test_store() -> Store {
    let home = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/hdev-home");
    std::fs::create_dir_all(&home).expect("test store");
    Store::at(home)
}

/// Runs every case on `e` with a machine made from `spec` (named `probe`), in `ctx`;
/// leaves nothing of the engine's behind.
pub(crate) async fn run<E: Engine>(e: &E, ctx: &EnvCtx, spec: MachineSpec) {
    let ctx = ctx.clone();
    assert_eq!(spec.name, "probe");
    e.ensure_network(&ctx, None).await.expect("default network");

    // Created: observed, stopped, carrying its hash.
    let id = e.create(&ctx, &spec).await.expect("create");
    let o = e.observe(&ctx).await.expect("observe");
    let m = o
        .machines
        .get("probe")
        .expect("the created machine is observed");
    assert_eq!(m.id, id);
    assert_eq!(m.state, RunState::Stopped);
    assert_eq!(m.hash.as_deref(), Some("sha256:contract"));
    assert!(o.baselines.is_empty());

    // Started: runs commands, with their exit codes.
    e.start(&id).await.expect("start");
    assert_eq!(
        e.observe(&ctx).await.expect("observe").machines["probe"].state,
        RunState::Running
    );
    assert_eq!(sh(e, &id, "true").await, 0);
    assert_ne!(sh(e, &id, "false").await, 0);

    // A baseline: drift is empty right after it, and sees a new file.
    let c = e
        .capture(&ctx, &spec, &id, BASELINE)
        .await
        .expect("baseline");
    let id = c.id;
    assert!(e
        .observe(&ctx)
        .await
        .expect("observe")
        .baselines
        .contains("probe"));
    assert!(e.drift("probe", &id).await.expect("drift").is_empty());
    assert_eq!(sh(e, &id, "touch /contract-file").await, 0);
    let d = e.drift("probe", &id).await.expect("drift");
    assert!(d.added.contains(&"/contract-file".to_string()), "{d:?}");

    // Restoring the baseline undoes it; a missing state is an error that says so.
    let id = e.restore(&ctx, &spec, &id, BASELINE).await.expect("reset");
    assert!(e.drift("probe", &id).await.expect("drift").is_empty());
    let err = e
        .restore(&ctx, &spec, &id, "never-saved")
        .await
        .expect_err("no such state");
    assert!(err.to_string().contains("never-saved"), "{err}");

    // Named states are listed and deleted.
    let c = e.capture(&ctx, &spec, &id, "snap-1").await.expect("save");
    let id = c.id;
    let observed = e.observe(&ctx).await.expect("observe");
    let names: Vec<String> = e
        .states(&ctx, &observed)
        .await
        .expect("states")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"snap-1".to_string()) && names.contains(&BASELINE.to_string()));
    assert!(e
        .delete_state(&ctx, "probe", Some(&id), "snap-1")
        .await
        .expect("delete"));
    assert!(!e
        .delete_state(&ctx, "probe", Some(&id), "snap-1")
        .await
        .expect("delete again"));

    // Stopped, then everything found for the instance is removed.
    e.stop(&id).await.expect("stop");
    assert_eq!(
        e.observe(&ctx).await.expect("observe").machines["probe"].state,
        RunState::Stopped
    );
    let found = e
        .discover(Some(&ctx.instance))
        .await
        .expect("discover")
        .found;
    assert!(
        found
            .iter()
            .any(|f| f.kind != ObjectKind::Network && f.id == id),
        "{found:?}"
    );
    assert!(found.iter().all(|f| f.instance == ctx.instance));
    e.remove_found(&found).await.expect("remove");
    assert!(e.observe(&ctx).await.expect("observe").machines.is_empty());
    assert!(e
        .discover(Some(&ctx.instance))
        .await
        .expect("discover")
        .found
        .is_empty());
}

/// The provisioned-state cache: a machine kept runs on, a new machine created from the
/// entry holds what the kept one had, neither `destroy` (discovery of the instance) nor
/// `gc` (discovery of every instance) finds the entry, and removing it leaves none. An
/// engine that keeps no cache answers `None` and finds nothing.
pub(crate) async fn run_cache<E: Engine>(e: &E, ctx: &EnvCtx, mut spec: MachineSpec) {
    spec.hash = format!("sha256:c0{:010x}", std::process::id());
    e.ensure_network(ctx, None).await.expect("default network");
    let id = e.create(ctx, &spec).await.expect("create");
    e.start(&id).await.expect("start");
    assert_eq!(sh(e, &id, "touch /cached-file").await, 0);
    let Some((id, kept)) = e
        .cache_keep(ctx, &spec, &id, "contract")
        .await
        .expect("keep")
    else {
        assert_eq!(e.cache_find(&spec.hash).await.expect("find"), None);
        e.remove(&id).await.expect("remove");
        return;
    };
    assert_eq!(kept.hash, spec.hash);
    assert_eq!(kept.machine, "probe");
    assert_eq!(sh(e, &id, "test -f /cached-file").await, 0);
    let found = e.cache_find(&spec.hash).await.expect("find");
    assert_eq!(found.as_deref(), Some(kept.location.as_str()));
    assert_eq!(
        e.cache_find("sha256:c1ffffffffff").await.expect("find"),
        None
    );
    assert!(e
        .cache_list()
        .await
        .expect("list")
        .iter()
        .any(|c| c.hash == spec.hash));
    // Created anew from the entry: what was kept is there.
    e.remove(&id).await.expect("remove");
    let from = MachineSpec {
        base: Resolved::Image(kept.location.clone()),
        ..spec.clone()
    };
    let id = e.create(ctx, &from).await.expect("create from the cache");
    e.start(&id).await.expect("start");
    assert_eq!(sh(e, &id, "test -f /cached-file").await, 0);
    // Owned by no environment.
    for instance in [Some(ctx.instance.as_str()), None] {
        let found = e.discover(instance).await.expect("discover").found;
        assert!(
            found.iter().all(|f| f.id != kept.location),
            "{instance:?}: {found:?}"
        );
    }
    let left = e
        .discover(Some(&ctx.instance))
        .await
        .expect("discover")
        .found;
    e.remove_found(&left).await.expect("remove");
    e.cache_remove(&kept.location).await.expect("remove entry");
    assert_eq!(e.cache_find(&spec.hash).await.expect("find"), None);
    assert!(e
        .cache_list()
        .await
        .expect("list")
        .iter()
        .all(|c| c.hash != spec.hash));
}

mod live {
    //! The contract against the real engines: a missing daemon fails these tests (the
    //! fast tier leaves them out by name: `cargo test --lib -- --skip live::`).

    use super::{context, plain_spec, test_store};
    use crate::backend::docker::DockerBackend;
    use crate::backend::libvirt::Vms;
    use crate::backend::{spec_for, BaseRequest, BaseSource, Engine, NetSpec, Resolved};
    use crate::boxes::ensure;
    use crate::envfile::Backend;

    /// An environment whose box `name` is the repository's recipe `recipe`, with `body`.
    fn env_with_box(
        dir: &std::path::Path,
        name: &str,
        recipe: &str,
        body: &str,
    ) -> crate::envfile::Env {
        let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(recipe);
        let envfile = dir.join("Envfile");
        let text = format!(
            "[env]\nname = \"contract\"\n[box.{name}]\nrecipe = \"{}\"\n{body}",
            recipe.display()
        );
        std::fs::write(&envfile, text).expect("write Envfile");
        crate::envfile::load(&envfile).expect("valid Envfile")
    }

    async fn docker() -> DockerBackend {
        DockerBackend::connect().await.expect(
            "the Docker engine is not reachable: start it (bash .ci/setup), or run only the fast tier: cargo test --lib -- --skip live::",
        )
    }

    #[tokio::test]
    async fn docker_keeps_the_contract() {
        let d = docker().await;
        let dir = tempfile::tempdir().expect("temp folder");
        let env = env_with_box(
            dir.path(),
            "busybox",
            "boxes/busybox",
            "[machine.x]\nbackend = \"docker\"\nbox = \"busybox\"\n",
        );
        let store = test_store();
        let b = ensure::ensure_box_in(&store, &env, "busybox")
            .await
            .expect("busybox box");
        let req = BaseRequest {
            machine: "x".into(),
            place: None,
            source: BaseSource::Stored(Box::new(b)),
        };
        let Resolved::Image(image) = d.prepare(&store, &req).await.expect("import") else {
            panic!("docker prepares images");
        };
        let ctx = context(Backend::Docker, dir.path());
        super::run(&d, &ctx, plain_spec(Backend::Docker, &image)).await;
        super::run_cache(&d, &ctx, plain_spec(Backend::Docker, &image)).await;
        let left = d
            .discover(Some(&ctx.instance))
            .await
            .expect("discover")
            .found;
        d.remove_found(&left)
            .await
            .expect("remove the default network");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn libvirt_keeps_the_contract() {
        let d = docker().await;
        let dir = tempfile::tempdir().expect("temp folder");
        let subnet = format!(
            "10.{}.{}.0/24",
            180 + std::process::id() % 40,
            std::process::id() % 250
        );
        let env = env_with_box(
            dir.path(),
            "debian",
            "boxes/debian-bookworm",
            &format!(
                "[network.lan]\nsubnet = \"{subnet}\"\n[machine.probe]\nbackend = \"libvirt\"\nbox = \"debian\"\nmemory = \"384M\"\nnetworks = [\"lan\"]\n"
            ),
        );
        let v = Vms::connect(&env).await.expect(
            "libvirtd is not reachable: start it (bash .ci/setup), or run only the fast tier: cargo test --lib -- --skip live::",
        );
        let store = test_store();
        let b = ensure::ensure_box_in(&store, &env, "debian")
            .await
            .expect("debian box");
        let req = BaseRequest {
            machine: "probe".into(),
            place: None,
            source: BaseSource::Stored(Box::new(b)),
        };
        let base = v
            .prepare(&store, &req)
            .await
            .expect("upload the base volumes");
        let m = &env.machines["probe"];
        let spec = spec_for(&env, m, "sha256:contract", base);
        // The VM plugs into the network host's bridge for its network.
        let ctx = context(Backend::Libvirt, dir.path());
        let lan = NetSpec {
            address: None,
            remote: None,
            ..spec.networks[0].clone()
        };
        d.ensure_network(&ctx, Some(&lan))
            .await
            .expect("the VM's network");
        super::run(&v, &ctx, spec).await;
        let left = d
            .discover(Some(&ctx.instance))
            .await
            .expect("discover")
            .found;
        d.remove_found(&left).await.expect("remove the network");
    }
}
