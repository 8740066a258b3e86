use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::backend::{Observation, ObservedMachine, ObservedNetwork, RunState};
use crate::envfile::{load_source, SourceFile};
use crate::state::{MachineRecord, State};

const ENVFILE: &str = r#"
[env]
name = "t"

[network.lan]
subnet = "10.9.0.0/24"

[machine.db]
backend = "docker"
image = "busybox"
networks = ["lan"]
[machine.db.healthcheck]
command = "true"

[machine.app]
backend = "docker"
image = "busybox"
networks = ["lan"]
depends_on = ["db"]

[machine.vm]
backend = "libvirt"
image = "disk.qcow2"
"#;

fn env() -> Env {
    let src = SourceFile::new(Path::new("/x/Envfile"), "Envfile", ENVFILE);
    load_source(&src, Path::new("/x"), false).expect("valid envfile")
}

fn hashes(env: &Env) -> BTreeMap<String, EnvHash> {
    env.machines
        .keys()
        .map(|k| (k.clone(), EnvHash(format!("sha256:{k}"))))
        .collect()
}

fn docker_only() -> BTreeSet<Backend> {
    BTreeSet::from([Backend::Docker])
}

fn observed(name: &str, hash: &str, state: RunState) -> ObservedMachine {
    ObservedMachine {
        name: name.into(),
        backend: Backend::Docker,
        id: format!("id-{name}"),
        state,
        hash: Some(hash.into()),
        addresses: BTreeMap::new(),
        ports: vec![],
        engine: None,
    }
}

fn record(name: &str, hash: &str, phase: Phase) -> MachineRecord {
    MachineRecord {
        backend: Backend::Docker,
        id: Some(format!("id-{name}")),
        hash: hash.into(),
        phase,
        baseline: None,
        provision_runs: 1,
        health: None,
    }
}

fn lan() -> ObservedNetwork {
    ObservedNetwork {
        name: "lan".into(),
        engine_name: "t-lan".into(),
        subnet: Some("10.9.0.0/24".into()),
        bridge: None,
    }
}

#[test]
fn an_empty_engine_creates_everything_in_dependency_order() {
    let env = env();
    let p = plan(
        &env,
        &hashes(&env),
        &Observation::default(),
        &State::new("t"),
        &docker_only(),
    );
    let names: Vec<_> = p.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["db", "vm", "app"]);
    let db = p.machine("db").unwrap();
    assert_eq!(db.change, Change::Create);
    assert_eq!(
        db.steps,
        [
            Step::Create,
            Step::Start,
            Step::Provision,
            Step::Baseline,
            Step::Health
        ]
    );
    assert_eq!(
        p.machine("app").unwrap().steps.last(),
        Some(&Step::Baseline)
    );
    assert_eq!(p.machine("vm").unwrap().change, Change::Unavailable);
    assert_eq!(p.networks[0].change, NetChange::Create);
    assert!(!p.is_noop());
}

#[test]
fn a_provisioned_running_machine_is_kept_and_a_changed_one_recreated() {
    let mut env = env();
    env.machines.remove("vm");
    let mut obs = Observation::default();
    obs.networks.insert("lan".into(), lan());
    obs.machines
        .insert("db".into(), observed("db", "sha256:db", RunState::Running));
    obs.machines.insert(
        "app".into(),
        observed("app", "sha256:old", RunState::Running),
    );
    let mut st = State::new("t");
    st.machines
        .insert("db".into(), record("db", "sha256:db", Phase::Ready));
    st.machines
        .insert("app".into(), record("app", "sha256:old", Phase::Ready));
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    assert_eq!(p.machine("db").unwrap().change, Change::Keep);
    let app = p.machine("app").unwrap();
    assert_eq!(app.change, Change::Recreate);
    assert_eq!(app.steps[0], Step::Remove);
    assert_eq!(p.networks[0].change, NetChange::Keep);
}

/// `db` and `app` running, provisioned and with their baselines; `lan` there.
fn all_ready() -> (Observation, State) {
    let mut obs = Observation::default();
    obs.networks.insert("lan".into(), lan());
    let mut st = State::new("t");
    for m in ["db", "app"] {
        let h = format!("sha256:{m}");
        obs.machines
            .insert(m.into(), observed(m, &h, RunState::Running));
        st.machines.insert(m.into(), record(m, &h, Phase::Ready));
    }
    (obs, st)
}

#[test]
fn everything_up_to_date_is_a_noop() {
    let mut env = env();
    env.machines.remove("vm");
    let (obs, st) = all_ready();
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    assert!(p.is_noop(), "{p:?}");
    assert!(render(&p).last().unwrap().starts_with("nothing to do"));
}

#[test]
fn interrupted_provisioning_and_stopped_machines_are_finished() {
    let mut env = env();
    env.machines.remove("vm");
    let mut obs = Observation::default();
    obs.machines
        .insert("db".into(), observed("db", "sha256:db", RunState::Stopped));
    obs.machines.insert(
        "app".into(),
        observed("app", "sha256:app", RunState::Running),
    );
    let mut st = State::new("t");
    st.machines
        .insert("db".into(), record("db", "sha256:db", Phase::Ready));
    st.machines
        .insert("app".into(), record("app", "sha256:app", Phase::Created));
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    let db = p.machine("db").unwrap();
    assert_eq!(
        (db.change, db.steps.clone()),
        (Change::Start, vec![Step::Start, Step::Health])
    );
    let app = p.machine("app").unwrap();
    assert_eq!(
        (app.change, app.steps.clone()),
        (Change::Finish, vec![Step::Provision, Step::Baseline])
    );
}

#[test]
fn a_record_without_its_container_is_created_again_and_orphans_are_removed() {
    let mut env = env();
    env.machines.remove("vm");
    let mut obs = Observation::default();
    obs.machines.insert(
        "old".into(),
        observed("old", "sha256:old", RunState::Running),
    );
    let mut st = State::new("t");
    st.machines
        .insert("db".into(), record("db", "sha256:db", Phase::Ready));
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    let db = p.machine("db").unwrap();
    assert_eq!(db.change, Change::Create);
    assert!(db.reason.contains("missing from the engine"));
    assert_eq!(p.machine("old").unwrap().change, Change::Remove);
}

#[test]
fn a_network_with_another_subnet_is_a_conflict() {
    let env = env();
    let mut obs = Observation::default();
    let mut n = lan();
    n.subnet = Some("10.8.0.0/24".into());
    obs.networks.insert("lan".into(), n);
    let p = plan(&env, &hashes(&env), &obs, &State::new("t"), &docker_only());
    assert_eq!(p.networks[0].change, NetChange::Conflict);
    assert!(render(&p)[0].contains("10.8.0.0/24"));
}

#[test]
fn a_kept_machine_with_a_health_check_is_checked_again_for_a_dependant_that_acts() {
    let mut env = env();
    env.machines.remove("vm");
    let mut obs = Observation::default();
    obs.networks.insert("lan".into(), lan());
    obs.machines
        .insert("db".into(), observed("db", "sha256:db", RunState::Running));
    let mut st = State::new("t");
    st.machines
        .insert("db".into(), record("db", "sha256:db", Phase::Ready));
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    let db = p.machine("db").unwrap();
    assert_eq!(
        (db.change, db.steps.clone()),
        (Change::Keep, vec![Step::Health])
    );
    assert_eq!(p.machine("app").unwrap().change, Change::Create);

    // With nothing depending on it acting, a kept machine has nothing to do.
    obs.machines.insert(
        "app".into(),
        observed("app", "sha256:app", RunState::Running),
    );
    st.machines
        .insert("app".into(), record("app", "sha256:app", Phase::Ready));
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    assert!(p.machine("db").unwrap().steps.is_empty());
}

#[test]
fn the_rendered_plan_reads_well() {
    let env = env();
    let mut obs = Observation::default();
    obs.machines
        .insert("db".into(), observed("db", "sha256:old", RunState::Running));
    obs.machines.insert(
        "gone".into(),
        observed("gone", "sha256:gone", RunState::Stopped),
    );
    let p = plan(&env, &hashes(&env), &obs, &State::new("t"), &docker_only());
    insta::assert_snapshot!(render(&p).join("\n"));
}

#[test]
fn a_container_placed_on_another_host_is_recreated_there_and_removed_where_it_was() {
    let mut env = env();
    env.machines.remove("vm");
    let moved = env.machines.get_mut("app").unwrap();
    moved.place.host = Some("n2".into());
    moved.place.docker = Some("unix:///run/n2.sock".into());
    let (obs, st) = all_ready();
    let p = plan(&env, &hashes(&env), &obs, &st, &docker_only());
    let app = p.machines.iter().find(|m| m.name == "app").unwrap();
    assert_eq!(app.change, Change::Recreate, "{p:?}");
    assert_eq!(app.reason, "moved to host `n2`");
    assert_eq!(app.steps.first(), Some(&Step::Remove));
    // The old container is removed where it is (this machine's engine), not on n2.
    assert_eq!(app.engine, None);
    let db = p.machines.iter().find(|m| m.name == "db").unwrap();
    assert_eq!(db.change, Change::Keep, "{p:?}");
}

/// `app` placed in the Docker engine of VM `vm` (as `host = "vm"` does).
fn app_in_vm() -> Env {
    let mut env = env();
    let app = env.machines.get_mut("app").unwrap();
    app.place = crate::envfile::Place::in_vm("vm");
    app.networks.clear();
    env
}

fn vm_observed(state: RunState) -> ObservedMachine {
    ObservedMachine {
        backend: Backend::Libvirt,
        ..observed("vm", "sha256:vm", state)
    }
}

#[test]
fn a_container_in_a_vm_that_does_not_run_is_decided_once_the_vm_runs() {
    let env = app_in_vm();
    let both = BTreeSet::from([Backend::Docker, Backend::Libvirt]);
    let (mut obs, mut st) = all_ready();
    obs.machines.remove("app");
    obs.machines
        .insert("vm".into(), vm_observed(RunState::Stopped));
    st.machines
        .insert("vm".into(), record("vm", "sha256:vm", Phase::Ready));
    let p = plan(&env, &hashes(&env), &obs, &st, &both);
    let app = p.machines.iter().find(|m| m.name == "app").unwrap();
    assert_eq!(app.change, Change::Later, "{p:?}");
    assert!(app.reason.contains("VM `vm`"), "{}", app.reason);
    let vm = p.machines.iter().find(|m| m.name == "vm").unwrap();
    assert_eq!(vm.change, Change::Start, "{p:?}");
    // No network is made for it where the environment's networks are: only the VM's
    // engine holds the container's.
    assert!(
        p.networks.iter().all(|n| n.name != "_default"),
        "{:?}",
        p.networks
    );

    // Once the VM runs and its engine shows the container, it is planned like any other.
    obs.machines
        .insert("vm".into(), vm_observed(RunState::Running));
    obs.machines.insert(
        "app".into(),
        ObservedMachine {
            engine: Some("vm://vm".into()),
            ..observed("app", "sha256:app", RunState::Running)
        },
    );
    let p = plan(&env, &hashes(&env), &obs, &st, &both);
    let app = p.machines.iter().find(|m| m.name == "app").unwrap();
    assert_eq!(app.change, Change::Keep, "{p:?}");
}

#[test]
fn a_vm_takes_its_baseline_again_when_a_container_in_it_takes_a_new_one() {
    let env = app_in_vm();
    let both = BTreeSet::from([Backend::Docker, Backend::Libvirt]);
    let (mut obs, mut st) = all_ready();
    obs.machines
        .insert("vm".into(), vm_observed(RunState::Running));
    st.machines
        .insert("vm".into(), record("vm", "sha256:vm", Phase::Ready));
    // The container's definition changed: recreated, provisioned, a new baseline.
    obs.machines.insert(
        "app".into(),
        ObservedMachine {
            engine: Some("vm://vm".into()),
            ..observed("app", "sha256:old", RunState::Running)
        },
    );
    let p = plan(&env, &hashes(&env), &obs, &st, &both);
    let app = p.machines.iter().find(|m| m.name == "app").unwrap();
    assert_eq!(app.change, Change::Recreate, "{p:?}");
    let vm = p.machines.iter().find(|m| m.name == "vm").unwrap();
    assert_eq!(vm.change, Change::Finish, "{p:?}");
    assert_eq!(vm.steps, vec![Step::Baseline], "{p:?}");
}

#[test]
fn a_running_vm_whose_provisioning_did_not_finish_is_waited_for_before_provisioning() {
    // hdev killed while the VM booted: it runs, provisioning never started. Provisioning
    // straight away met "No route to host" (issue 16, case 1); a start waits for it.
    let env = env();
    let both = BTreeSet::from([Backend::Docker, Backend::Libvirt]);
    let (mut obs, mut st) = all_ready();
    obs.machines.insert(
        "vm".into(),
        ObservedMachine {
            backend: Backend::Libvirt,
            ..observed("vm", "sha256:vm", RunState::Running)
        },
    );
    st.machines.insert(
        "vm".into(),
        MachineRecord {
            backend: Backend::Libvirt,
            ..record("vm", "sha256:vm", Phase::Created)
        },
    );
    let p = plan(&env, &hashes(&env), &obs, &st, &both);
    let vm = p.machines.iter().find(|m| m.name == "vm").unwrap();
    assert_eq!(vm.change, Change::Finish, "{p:?}");
    assert_eq!(
        vm.steps,
        vec![Step::Start, Step::Provision, Step::Baseline],
        "{p:?}"
    );
    // A container that runs needs no such wait.
    let db = p.machines.iter().find(|m| m.name == "db").unwrap();
    assert_eq!(db.change, Change::Keep, "{p:?}");
}
