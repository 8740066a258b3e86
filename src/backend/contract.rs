//! The engine contract as executable cases: the same sequence runs against the fake (fast
//! tier) and against the real Docker engine (`live::`), so the fake cannot drift from
//! what engines do.

use std::collections::BTreeMap;

use super::{Engine, EnvCtx, MachineSpec, ObjectKind, Resolved, RunState};
use crate::envfile::Backend;
use crate::snapshot::BASELINE;

fn spec(kind: Backend, image: &str) -> MachineSpec {
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
    }
}

async fn sh<E: Engine>(e: &E, id: &str, script: &str) -> i64 {
    e.exec(id, &["sh".into(), "-c".into(), script.into()], &|_| {})
        .await
        .expect("exec")
        .exit_code
}

/// Runs every case on `e`, with machines made from `image`; leaves nothing behind.
pub(crate) async fn run<E: Engine>(e: &E, image: &str) {
    let dir = tempfile::tempdir().expect("temp folder");
    let ctx = EnvCtx {
        instance: format!("contract-{}-{}", std::process::id(), e.kind()),
        dir: dir.path().to_path_buf(),
    };
    let spec = spec(e.kind(), image);
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

mod live {
    //! The contract against the real engines: a missing daemon fails these tests (the
    //! fast tier leaves them out by name: `cargo test --lib -- --skip live::`).

    use crate::backend::docker::DockerBackend;
    use crate::backend::{BaseRequest, BaseSource, Engine, Resolved};
    use crate::boxes::{ensure, Store};

    #[tokio::test]
    async fn docker_keeps_the_contract() {
        let d = DockerBackend::connect().await.expect(
            "the Docker engine is not reachable: start it (bash .ci/setup), or run only the fast tier: cargo test --lib -- --skip live::",
        );
        let dir = tempfile::tempdir().expect("temp folder");
        let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boxes/busybox");
        let envfile = dir.path().join("Envfile");
        std::fs::write(
            &envfile,
            format!(
                "[env]\nname = \"contract\"\n[box.busybox]\nrecipe = \"{}\"\n[machine.x]\nbackend = \"docker\"\nbox = \"busybox\"\n",
                recipe.display()
            ),
        )
        .expect("write Envfile");
        let env = crate::envfile::load(&envfile).expect("valid Envfile");
        let store = Store::open_default().expect("box store");
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
        super::run(&d, &image).await;
    }
}
