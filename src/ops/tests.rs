//! The fast tier: the rules that decide what `up`, `provision`, `reset`, `status` and `gc`
//! do, run over the recording fake engine. No daemon; seconds. Run alone with
//! `cargo test --lib`.

use std::collections::BTreeMap;

use super::session::{load_state, open, Session};
use super::teardown::dead_instances;
use crate::apply::{self, ApplyReport, BaseKey, Images, Outcome, Recorder};
use crate::backend::fake::FakeBackend;
use crate::backend::{AnyBackend, Backends, Engine, Found, ObjectKind, Resolved};
use crate::envfile::Backend;
use crate::output::Printer;
use crate::plan::{self, Change, Plan, Step};
use crate::progress::Progress;

/// Three machines in a chain (`web` → `api` → `db`), `web` with a health check.
const CHAIN: &str = r#"
[env]
name = "chain"

[network.lan]
subnet = "10.200.0.0/24"

[machine.db]
backend = "docker"
image = "fake:db"
networks = ["lan"]

[[machine.db.provision]]
shell = "touch /db-ready"

[machine.api]
backend = "docker"
image = "fake:api"
networks = ["lan"]
depends_on = ["db"]

[machine.web]
backend = "docker"
image = "fake:web"
networks = ["lan"]
depends_on = ["api"]
healthcheck = { command = "true", retries = 2, interval = "10ms" }
"#;

struct World {
    _dir: tempfile::TempDir,
    o: Session,
    backends: Backends,
    cache: crate::cache::Policy,
}

impl World {
    fn new(envfile: &str) -> World {
        let dir = tempfile::tempdir().expect("temp folder");
        let path = dir.path().join("Envfile");
        std::fs::write(&path, envfile).expect("write Envfile");
        let o = open(Some(&path)).expect("open the environment");
        let mut backends = Backends::default();
        backends.insert(AnyBackend::Fake(FakeBackend::new(Backend::Docker)));
        World {
            _dir: dir,
            o,
            backends,
            cache: crate::cache::Policy::off(),
        }
    }

    fn fake(&self) -> &FakeBackend {
        match self.backends.get_kind(Backend::Docker) {
            Some(AnyBackend::Fake(f)) => f,
            _ => unreachable!("the world holds a fake"),
        }
    }

    fn images(&self) -> Images {
        let env = &self.o.project.env;
        env.machines
            .values()
            .map(|m| {
                let base = match &m.base {
                    crate::envfile::Base::Image(i) | crate::envfile::Base::Box(i) => i.clone(),
                };
                (BaseKey::of(env, m), Ok(Resolved::Image(base)))
            })
            .collect()
    }

    async fn plan(&self) -> Plan {
        let observed = self.backends.observe(&self.o.ctx).await.expect("observe");
        let state = load_state(&self.o.project).expect("state");
        plan::plan(
            &self.o.project.env,
            &self.o.hashes,
            &observed,
            &state,
            &self.backends.available(),
        )
    }

    /// Whether the plan of `web` says the cache will serve it (with this world's policy).
    async fn cache_marked(&self) -> bool {
        let mut plan = self.plan().await;
        apply::mark_in_plan(&self.o.project.env, &self.backends, &self.cache, &mut plan).await;
        let web = plan.machines.iter().find(|m| m.name == "web").expect("web");
        web.reason.ends_with(apply::FROM_CACHE)
    }

    async fn apply(&self, plan: &Plan, snapshot: Option<&str>) -> ApplyReport {
        let lock = self.o.project.state.lock().expect("lock");
        let state = load_state(&self.o.project).expect("state");
        let rec = Recorder::new(self.o.project.state.clone(), lock, state);
        let printer = Printer::new(true);
        let progress = Progress::new(&printer, &[]);
        let images = self.images();
        let (_tx, cancel) = tokio::sync::watch::channel(false);
        let a = apply::ApplyCtx {
            env: &self.o.project.env,
            ctx: &self.o.ctx,
            backends: &self.backends,
            rec: &rec,
            progress: &progress,
            parallel: 4,
            images: &images,
            late: None,
            snapshot,
            cache: &self.cache,
        };
        apply::apply(&a, plan, cancel).await.expect("apply")
    }

    async fn up(&self) -> ApplyReport {
        let plan = self.plan().await;
        self.apply(&plan, None).await
    }
}

fn position(calls: &[String], call: &str) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("`{call}` was not called; calls: {calls:?}"))
}

fn outcome(r: &ApplyReport, machine: &str) -> Outcome {
    r.machines
        .iter()
        .find(|m| m.name == machine)
        .map(|m| m.outcome)
        .unwrap_or_else(|| panic!("no result for `{machine}`"))
}

#[tokio::test]
async fn up_runs_the_dag_in_order_and_a_second_up_changes_nothing() {
    let w = World::new(CHAIN);
    let r = w.up().await;
    assert!(r.ok(), "{r:?}");
    let calls = w.fake().calls();
    // Each machine is created, started, provisioned and baselined before its dependant
    // is created.
    assert!(position(&calls, "network lan") < position(&calls, "create db"));
    assert!(position(&calls, "start db") < position(&calls, "exec db"));
    assert!(position(&calls, "exec db") < position(&calls, "capture:baseline db"));
    assert!(position(&calls, "capture:baseline db") < position(&calls, "create api"));
    assert!(position(&calls, "capture:baseline api") < position(&calls, "create web"));
    // The health check of `web` ran after its baseline.
    assert!(
        position(&calls, "capture:baseline web")
            < calls.iter().rposition(|c| c == "exec web").unwrap_or(0)
    );
    let again = w.plan().await;
    assert!(
        again.is_noop(),
        "a second up would do: {:?}",
        plan::render(&again)
    );
}

#[tokio::test]
async fn a_failed_machine_stops_its_dependants_and_the_next_up_finishes_the_job() {
    let w = World::new(CHAIN);
    w.fake().fail("create api");
    let r = w.up().await;
    assert!(!r.ok());
    assert_eq!(outcome(&r, "db"), Outcome::Done);
    assert_eq!(outcome(&r, "api"), Outcome::Failed);
    assert_eq!(outcome(&r, "web"), Outcome::Skipped);
    assert!(!w.fake().calls().iter().any(|c| c.ends_with(" web")));

    w.fake().heal();
    let resume = w.plan().await;
    let change = |n: &str| resume.machine(n).map(|m| m.change);
    assert_eq!(change("db"), Some(Change::Keep), "db is done and stays");
    assert_eq!(change("api"), Some(Change::Create));
    assert_eq!(change("web"), Some(Change::Create));
    w.fake().clear_calls();
    let r = w.apply(&resume, None).await;
    assert!(r.ok(), "{r:?}");
    assert!(
        !w.fake().calls().iter().any(|c| c.ends_with(" db")),
        "db untouched"
    );
    assert!(w.plan().await.is_noop());
}

#[tokio::test]
async fn an_interrupted_provisioning_is_finished_by_the_next_up() {
    let w = World::new(CHAIN);
    w.fake().fail("exec db");
    let r = w.up().await;
    assert_eq!(outcome(&r, "db"), Outcome::Failed);
    w.fake().heal();
    let resume = w.plan().await;
    let db = resume.machine("db").expect("db planned");
    assert_eq!(db.change, Change::Finish, "created but never provisioned");
    assert_eq!(db.steps, vec![Step::Provision, Step::Baseline]);
    assert!(w.apply(&resume, None).await.ok());
}

#[tokio::test]
async fn reset_restores_in_dependency_order_and_checks_dependants_again() {
    let w = World::new(CHAIN);
    assert!(w.up().await.ok());
    let observed = w.backends.observe(&w.o.ctx).await.expect("observe");
    let plan = plan::targeted_plan(
        &w.o.project.env,
        &observed,
        &["api".to_string()],
        &[Step::Reset],
        false,
    )
    .expect("reset plan");
    assert_eq!(
        plan.machine("api").map(|m| m.steps.clone()),
        Some(vec![Step::Reset])
    );
    // `web` depends on the reset machine and has a health check: checked again, not reset.
    assert_eq!(
        plan.machine("web").map(|m| m.steps.clone()),
        Some(vec![Step::Health])
    );
    assert!(plan.machine("db").is_some_and(|m| m.steps.is_empty()));
    // A machine that depends on none of the reset ones is left alone.
    let only_db = plan::targeted_plan(
        &w.o.project.env,
        &observed,
        &["db".to_string()],
        &[Step::Reset],
        false,
    )
    .expect("reset plan");
    assert_eq!(
        only_db.machine("web").map(|m| m.steps.clone()),
        Some(vec![])
    );
    w.fake().clear_calls();
    assert!(w.apply(&plan, None).await.ok());
    let calls = w.fake().calls();
    assert!(position(&calls, "restore:baseline api") < position(&calls, "exec web"));
    assert!(!calls
        .iter()
        .any(|c| c.contains("restore") && !c.ends_with(" api")));
}

#[tokio::test]
async fn reset_returns_files_to_the_baseline_and_drift_sees_them_first() {
    let w = World::new(CHAIN);
    assert!(w.up().await.ok());
    let observed = w.backends.observe(&w.o.ctx).await.expect("observe");
    let db = &observed.machines["db"];
    let fake = w.fake();
    fake.exec(
        &db.id,
        &["sh".into(), "-c".into(), "touch /tmp/scratch".into()],
        &|_| {},
    )
    .await
    .expect("exec");
    let drift = fake.drift("db", &db.id).await.expect("drift");
    assert_eq!(drift.added, vec!["/tmp/scratch".to_string()]);
    let plan = plan::targeted_plan(&w.o.project.env, &observed, &[], &[Step::Reset], false)
        .expect("reset plan");
    assert!(w.apply(&plan, None).await.ok());
    assert!(fake.drift("db", &db.id).await.expect("drift").is_empty());
}

/// What `status` says of each machine's drift, from the records alone.
async fn status_drift(w: &World) -> BTreeMap<String, Option<bool>> {
    let observed = w.backends.observe(&w.o.ctx).await.expect("observe");
    let state = load_state(&w.o.project).expect("state");
    let recorded = super::status::recorded_drift(&w.o, &observed);
    let report = super::status::report(&w.o, &state, &w.backends, observed, &recorded);
    report
        .machines
        .iter()
        .map(|r| (r.name.clone(), r.drifted))
        .collect()
}

/// `status` shows drift as last checked, with no guest asked: a check (`drift`, `status
/// --drift`) is recorded per machine id; a baseline or reset records "no drift"; hdev
/// changing a machine forgets what was recorded.
#[tokio::test]
async fn status_shows_the_last_drift_check_and_forgets_it_when_hdev_changes_a_machine() {
    let w = World::new(CHAIN);
    assert!(w.up().await.ok());
    // Each machine just took its baseline: no drift, recorded without any check.
    let calls_before = w.fake().calls().len();
    let s = status_drift(&w).await;
    assert!(s.values().all(|d| *d == Some(false)), "{s:?}");
    assert_eq!(
        w.fake().calls().len(),
        calls_before,
        "status asked no machine anything"
    );
    let observed = w.backends.observe(&w.o.ctx).await.expect("observe");
    let db = observed.machines["db"].id.clone();
    let fake = w.fake();
    fake.exec(&db, &["sh".into(), "-c".into(), "touch /x".into()], &|_| {})
        .await
        .expect("exec");
    // Not checked since: status still says what the last check found.
    assert_eq!(status_drift(&w).await["db"], Some(false));
    let checked = super::snapshot::check_drift(&w.o, &w.backends, &observed, None).await;
    assert_eq!(checked.len(), 3);
    assert_eq!(status_drift(&w).await["db"], Some(true));
    assert_eq!(status_drift(&w).await["api"], Some(false));
    // A reset of `db` alone: its record says no drift again; the others keep theirs.
    let plan = plan::targeted_plan(
        &w.o.project.env,
        &observed,
        &["db".to_string()],
        &[Step::Reset],
        false,
    )
    .expect("reset plan");
    w.o.project.state.record_drift(
        crate::state::drift::now(),
        vec![("api".into(), observed.machines["api"].id.clone(), 7)],
    );
    assert!(w.apply(&plan, None).await.ok());
    let s = status_drift(&w).await;
    assert_eq!(s["db"], Some(false), "{s:?}");
    assert_eq!(s["api"], Some(true), "{s:?}");
    // hdev changing a machine (here provisioning it again, without a new baseline)
    // forgets its record.
    let plan = plan::targeted_plan(
        &w.o.project.env,
        &w.backends.observe(&w.o.ctx).await.expect("observe"),
        &["api".to_string()],
        &[Step::Provision],
        true,
    )
    .expect("provision plan");
    assert!(w.apply(&plan, None).await.ok());
    let s = status_drift(&w).await;
    assert_eq!(s["api"], None, "{s:?}");
    assert!(
        matches!(
            w.o.project.state.drift_records().machines.get("api"),
            Some(crate::state::drift::DriftEntry::ChangedAt(_))
        ),
        "the run forgot api's check"
    );
    assert_eq!(s["db"], Some(false), "{s:?}");
}

#[tokio::test]
async fn targeted_plans_refuse_machines_that_are_not_there() {
    let w = World::new(CHAIN);
    let observed = w.backends.observe(&w.o.ctx).await.expect("observe");
    let env = &w.o.project.env;
    let e = plan::targeted_plan(env, &observed, &["dbb".into()], &[Step::Reset], false)
        .expect_err("unknown machine");
    assert!(e.to_string().contains("did you mean `db`?"), "{e}");
    let e = plan::targeted_plan(env, &observed, &["db".into()], &[Step::Reset], false)
        .expect_err("not created");
    assert!(e.to_string().contains("not created"), "{e}");
    let e = plan::provision_plan(
        env,
        &w.o.hashes,
        &observed,
        &w.backends.available(),
        Some("db"),
    )
    .expect_err("not running");
    assert!(e.to_string().contains("not running"), "{e}");
}

#[tokio::test]
async fn status_reports_what_the_engine_holds_beside_the_record() {
    let w = World::new(CHAIN);
    let fake = w.fake();
    // `db` is created but its provisioning fails: `api` and `web` are never created.
    fake.fail("exec db");
    let _ = w.up().await;
    let observed = w.backends.observe(&w.o.ctx).await.expect("observe");
    let state = load_state(&w.o.project).expect("state");
    let drifted = super::status::checked_drift(&w.o, &w.backends, &observed).await;
    let report = super::status::report(&w.o, &state, &w.backends, observed, &drifted);
    let mut v = serde_json::to_value(&report).expect("json");
    // What depends on the temporary folder.
    v["instance"] = "INSTANCE".into();
    v["env_hash"] = "HASH".into();
    v["networks"]["lan"]["engine_name"] = "NETWORK".into();
    for m in v["machines"].as_array_mut().expect("machines") {
        if !m["id"].is_null() {
            m["id"] = "ID".into();
        }
    }
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).expect("pretty"));
}

fn found(instance: &str, dir: &str, kind: ObjectKind) -> Found {
    Found {
        backend: Backend::Docker,
        kind,
        id: format!("{instance}-{kind:?}"),
        instance: instance.into(),
        dir: dir.into(),
        place: None,
    }
}

#[test]
fn gc_collects_environments_whose_folder_is_dead_and_asks_once_per_folder() {
    let all = vec![
        found("alive", "/here", ObjectKind::Container),
        found("alive", "/here", ObjectKind::Network),
        found("gone", "/gone", ObjectKind::Container),
        found("gone", "/gone", ObjectKind::Image),
        found("nodir", "", ObjectKind::Volume),
        found("vm-gone", "/vm", ObjectKind::Vm),
    ];
    let mut asked: BTreeMap<String, usize> = BTreeMap::new();
    let dead = dead_instances(all, |dir| {
        *asked.entry(dir.to_string()).or_default() += 1;
        dir == "/here"
    });
    assert_eq!(
        dead.keys().cloned().collect::<Vec<_>>(),
        vec!["gone", "nodir", "vm-gone"]
    );
    assert_eq!(dead["gone"].1.len(), 2);
    assert!(asked.values().all(|n| *n == 1), "{asked:?}");
    assert!(
        !asked.contains_key(""),
        "an empty folder is dead without asking"
    );
}

#[tokio::test]
async fn the_engine_contract_holds_for_the_fake() {
    use crate::backend::contract::{context, plain_spec, run, run_cache};
    let fake = FakeBackend::new(Backend::Docker);
    let dir = tempfile::tempdir().expect("temp folder");
    let ctx = context(Backend::Docker, dir.path());
    run(&fake, &ctx, plain_spec(Backend::Docker, "fake:image")).await;
    run_cache(&fake, &ctx, plain_spec(Backend::Docker, "fake:image")).await;
}

/// A machine with provisioning, for the provisioned-state cache.
const CACHED: &str = r#"
[env]
name = "cached"

[machine.web]
backend = "docker"
image = "fake:web"

[[machine.web.provision]]
shell = "touch /provisioned"
"#;

#[tokio::test]
async fn a_cached_hash_is_created_from_the_cache_and_not_provisioned() {
    let mut w = World::new(CACHED);
    w.cache = crate::cache::Policy {
        enabled: true,
        max_bytes: crate::cache::DEFAULT_MAX_BYTES,
        index: None,
    };
    // First up: provisioned, then kept in the cache before its baseline.
    let r = w.up().await;
    assert!(r.ok(), "{r:?}");
    assert!(r.machines[0].from_cache.is_none());
    let calls = w.fake().calls();
    assert!(position(&calls, "exec web") < position(&calls, "cache_keep web"));
    assert!(position(&calls, "cache_keep web") < position(&calls, "capture:baseline web"));
    // Destroyed (the engine's machine gone, the record with it): up again is served from
    // the cache, with no provisioning, and its files are the provisioned ones.
    let id = r.machines[0].name.clone();
    let obs = w.backends.observe(&w.o.ctx).await.expect("observe");
    let cid = obs.machines.get(&id).expect("web exists").id.clone();
    w.fake().remove(&cid).await.expect("remove");
    // The plan says so before anything runs; with the cache off it does not.
    assert!(w.cache_marked().await, "{:?}", w.plan().await);
    let on = w.cache.clone();
    w.cache.enabled = false;
    assert!(!w.cache_marked().await);
    w.cache = on;
    w.fake().clear_calls();
    let r = w.up().await;
    assert!(r.ok(), "{r:?}");
    assert!(r.machines[0].from_cache.is_some(), "{r:?}");
    let calls = w.fake().calls();
    assert!(!calls.iter().any(|c| c == "exec web"), "{calls:?}");
    assert!(!calls.iter().any(|c| c == "cache_keep web"), "{calls:?}");
    assert!(
        calls.iter().any(|c| c == "capture:baseline web"),
        "{calls:?}"
    );
    let obs = w.backends.observe(&w.o.ctx).await.expect("observe");
    let cid = obs.machines.get(&id).expect("web exists").id.clone();
    let drift = w.fake().drift("web", &cid).await.expect("drift");
    assert!(drift.is_empty(), "{drift:?}");
    // The record says provisioned and ready: a further up changes nothing.
    assert!(w.plan().await.is_noop());
}

#[tokio::test]
async fn a_different_hash_or_the_cache_off_provisions() {
    let mut w = World::new(CACHED);
    w.cache = crate::cache::Policy {
        enabled: true,
        max_bytes: crate::cache::DEFAULT_MAX_BYTES,
        index: None,
    };
    assert!(w.up().await.ok());
    // An entry of another hash only: provisioned again.
    let other = World::new(&CACHED.replace("/provisioned", "/other"));
    let mut other = other;
    other.cache = w.cache.clone();
    other.backends = std::mem::take(&mut w.backends);
    assert!(!other.cache_marked().await, "another hash is not served");
    let r = other.up().await;
    assert!(r.ok(), "{r:?}");
    assert!(r.machines[0].from_cache.is_none());
    assert!(other.fake().calls().iter().any(|c| c == "exec web"));
    // Same hash again in a third folder, with the cache off: provisioned.
    let mut third = World::new(CACHED);
    third.backends = std::mem::take(&mut other.backends);
    third.fake().clear_calls();
    let r = third.up().await;
    assert!(r.ok(), "{r:?}");
    assert!(r.machines[0].from_cache.is_none());
    assert!(third.fake().calls().iter().any(|c| c == "exec web"));
    assert!(!third.fake().calls().iter().any(|c| c == "cache_keep web"));
}
