//! Machine bases, prepared once per distinct base and engine connection before machines
//! are hashed and created: boxes are built or added into the store (engine-neutral), then
//! each engine imports what it needs through [`Engine::prepare`].

use std::collections::BTreeMap;

use crate::backend::{Backends, BaseRequest, BaseSource, Engine, Resolved};
use crate::boxes::{ensure, Store};
use crate::envfile::{Backend, Base, Env, Machine};

/// Which prepared base a machine uses: its engine, the engine connection (a libvirt URI),
/// and the box or image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BaseKey {
    backend: Backend,
    place: Option<String>,
    base: BaseName,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum BaseName {
    Box(String),
    Image(String),
}

impl BaseKey {
    /// The key of a machine's base.
    pub(crate) fn of(env: &Env, m: &Machine) -> BaseKey {
        BaseKey {
            backend: m.backend,
            // Base volumes live in the pool of the machine's own libvirt connection; images
            // in the Docker engine of the machine's host.
            place: match m.backend {
                Backend::Libvirt => Some(crate::envfile::topology::machine_uri(env, m)),
                Backend::Docker => m.place.docker.clone(),
            },
            base: match &m.base {
                Base::Box(n) => BaseName::Box(n.clone()),
                Base::Image(i) => BaseName::Image(i.clone()),
            },
        }
    }
}

/// What each machine base resolves to, or why it does not.
pub(crate) type Images = BTreeMap<BaseKey, Result<Resolved, String>>;

/// Prepares the base of every machine whose engine is connected, once per [`BaseKey`].
pub(crate) async fn resolve_images(env: &Env, backends: &Backends) -> Images {
    let (tx, _) = tokio::sync::watch::channel(Images::new());
    resolve_images_into(env, backends, &tx).await;
    let images = tx.borrow().clone();
    images
}

/// Whether box `name` of `env` is built from a recipe that the store has no box of yet:
/// preparing it takes a build (minutes for a VM box), not an import.
pub(crate) fn must_be_built(env: &Env, store: &Store, name: &str) -> bool {
    let Some(def) = env.boxes.get(name) else {
        return false;
    };
    let crate::envfile::BoxSource::Recipe(p) = &def.source else {
        return false;
    };
    let Ok(recipe) = crate::boxes::Recipe::load(&env.resolve(p), p) else {
        return false;
    };
    recipe
        .digest()
        .ok()
        .is_some_and(|d| store.by_recipe(&d).ok().flatten().is_none())
}

/// The key of each base to prepare for `env`'s machines (on connected engines), with
/// the box it needs, if any.
pub(crate) fn bases(env: &Env, backends: &Backends) -> BTreeMap<BaseKey, Option<String>> {
    env.machines
        .values()
        .filter(|m| backends.get(m).is_ok())
        .map(|m| {
            let boxed = match &m.base {
                Base::Box(b) => Some(b.clone()),
                Base::Image(_) => None,
            };
            (BaseKey::of(env, m), boxed)
        })
        .collect()
}

/// Prepares the base of every machine whose engine is connected, once per [`BaseKey`],
/// each result sent into `tx` as soon as it is known.
pub(crate) async fn resolve_images_into(
    env: &Env,
    backends: &Backends,
    tx: &tokio::sync::watch::Sender<Images>,
) {
    let store = match Store::open_default() {
        Ok(s) => s,
        Err(e) => {
            tx.send_modify(|out| {
                for m in env.machines.values() {
                    out.insert(BaseKey::of(env, m), Err(e.to_string()));
                }
            });
            return;
        }
    };
    // Each base once, all at once: boxes build in parallel with each other (a box shared
    // by several engines is built once; `ensure_box_in` serializes on it).
    let mut todo = BTreeMap::new();
    for m in env.machines.values() {
        if let Ok(engine) = backends.get(m) {
            todo.entry(BaseKey::of(env, m)).or_insert((m, engine));
        }
    }
    let store = &store;
    let jobs = todo.into_iter().map(|(key, (m, engine))| async move {
        let r = prepare_one(store, env, m, engine, key.place.clone()).await;
        tx.send_modify(|out| {
            out.insert(key, r);
        });
    });
    futures_util::future::join_all(jobs).await;
}

/// Bases still being prepared (boxes being built) when `up` made its plan: a machine on
/// one of them waits for it, then is planned (see `apply::run_machine`).
pub(crate) struct LateImages<'a> {
    /// Every base prepared so far, those of the plan included.
    pub(crate) rx: tokio::sync::watch::Receiver<Images>,
    /// The bases that were not ready when the plan was made, with their box.
    pub(crate) late: BTreeMap<BaseKey, String>,
    /// The per-machine hashes as the boxes built by now make them.
    pub(crate) rehash: &'a Rehash<'a>,
}

/// The per-machine hashes as the boxes built by now make them.
pub(crate) type Rehash<'a> =
    dyn Fn() -> Result<BTreeMap<String, crate::envfile::hash::EnvHash>, String> + Sync + 'a;

impl LateImages<'_> {
    /// The box machine `m` waits for, if its base was not ready when the plan was made.
    pub(crate) fn waits_for(&self, env: &Env, m: &Machine) -> Option<&str> {
        self.late.get(&BaseKey::of(env, m)).map(String::as_str)
    }

    /// The base of machine `m`, once prepared (at once, if it is).
    pub(crate) async fn wait(&self, env: &Env, m: &Machine) -> Result<Resolved, String> {
        let key = BaseKey::of(env, m);
        let mut rx = self.rx.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().get(&key) {
                return r.clone();
            }
            if rx.changed().await.is_err() {
                return rx
                    .borrow()
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| Err("its base was not prepared".into()));
            }
        }
    }

    /// The base of machine `m`, if prepared by now.
    pub(crate) fn now(&self, env: &Env, m: &Machine) -> Option<Result<Resolved, String>> {
        self.rx.borrow().get(&BaseKey::of(env, m)).cloned()
    }
}

/// The machines `plan` would create whose base could not be prepared, with why: `up`
/// stops on them before it creates anything (a VM on a box without a disk, a box that
/// does not build), rather than failing after networks and other machines exist.
pub(crate) fn unusable(
    env: &Env,
    plan: &crate::plan::Plan,
    images: &Images,
) -> Vec<(String, String)> {
    plan.machines
        .iter()
        .filter(|mp| mp.steps.contains(&crate::plan::Step::Create))
        .filter_map(|mp| {
            let m = env.machines.get(&mp.name)?;
            match images.get(&BaseKey::of(env, m)) {
                Some(Err(e)) => Some((mp.name.clone(), e.clone())),
                _ => None,
            }
        })
        .collect()
}

/// Prepares one machine's base now, on its engine (a container in a VM: its engine is
/// reached only once the VM runs, after the images of the others were prepared).
pub(crate) async fn prepare_now(
    env: &Env,
    m: &Machine,
    engine: &impl Engine,
) -> Result<Resolved, String> {
    let store = Store::open_default().map_err(|e| e.to_string())?;
    prepare_one(&store, env, m, engine, BaseKey::of(env, m).place).await
}

async fn prepare_one(
    store: &Store,
    env: &Env,
    m: &Machine,
    engine: &impl Engine,
    place: Option<String>,
) -> Result<Resolved, String> {
    let r = prepare_base(store, env, m, engine, place).await;
    // A box whose building, import or upload showed a line of its own ends it.
    if let Base::Box(name) = &m.base {
        let mut subjects = vec![name.clone()];
        if let Some(def) = env.boxes.get(name) {
            if let crate::envfile::BoxSource::Recipe(p) = &def.source {
                if let Ok(recipe) = crate::boxes::Recipe::load(&env.resolve(p), p) {
                    subjects.push(recipe.name);
                }
            }
        }
        let message = match &r {
            Ok(_) => "ready".to_string(),
            Err(e) => e.clone(),
        };
        for s in subjects {
            crate::progress::report(
                &format!("box {s}"),
                crate::progress::Update::Done {
                    ok: r.is_ok(),
                    message: &message,
                },
            );
        }
    }
    r
}

async fn prepare_base(
    store: &Store,
    env: &Env,
    m: &Machine,
    engine: &impl Engine,
    place: Option<String>,
) -> Result<Resolved, String> {
    let source = match (&m.base, m.backend) {
        (Base::Box(b), _) => ensure::ensure_box_in(store, env, b)
            .await
            .map(|b| BaseSource::Stored(Box::new(b)))
            .map_err(|e| e.to_string())?,
        // A VM's `image` is a disk image file, added to the store like a box.
        (Base::Image(i), Backend::Libvirt) => ensure::ensure_image_in(store, env, i)
            .await
            .map(|b| BaseSource::Stored(Box::new(b)))
            .map_err(|e| e.to_string())?,
        (Base::Image(i), _) => BaseSource::Reference(i.clone()),
    };
    let req = BaseRequest {
        machine: m.name.clone(),
        place,
        source,
    };
    engine.prepare(store, &req).await.map_err(|e| e.to_string())
}
