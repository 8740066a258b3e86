//! The state file as `apply` keeps it: one in-memory copy behind a mutex, saved
//! atomically after every change, under the environment's lock.
//!
//! Saves are grouped: a change returns once a save that holds it is on disk, and the
//! machines that change while one save is written share the next one (one write and
//! fsync for many finished steps, not one each). Writing blocks its thread, so that on
//! the multi-threaded runtime it is done outside the async workers.

use std::sync::Mutex;

use crate::state::{EnvLock, MachineRecord, State, StateDir, StateError};

/// The state file, written after every finished step.
pub(crate) struct Recorder {
    dir: StateDir,
    lock: EnvLock,
    /// The state and how many changes it has had.
    state: Mutex<(State, u64)>,
    /// How many changes the file on disk holds; held while a save is written.
    saved: Mutex<u64>,
}

impl Recorder {
    pub(crate) fn new(dir: StateDir, lock: EnvLock, state: State) -> Self {
        Recorder {
            dir,
            lock,
            state: Mutex::new((state, 0)),
            saved: Mutex::new(0),
        }
    }

    /// Changes one machine's record (None removes it) and saves.
    pub(crate) fn update(
        &self,
        machine: &str,
        f: impl FnOnce(Option<MachineRecord>) -> Option<MachineRecord>,
    ) -> Result<(), StateError> {
        let change = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let cur = st.0.machines.remove(machine);
            if let Some(r) = f(cur) {
                st.0.machines.insert(machine.to_string(), r);
            }
            st.1 += 1;
            st.1
        };
        self.save_through(change)
    }

    pub(crate) fn set_env_hash(&self, hash: Option<String>) -> Result<(), StateError> {
        let change = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.0.env_hash = hash;
            st.1 += 1;
            st.1
        };
        self.save_through(change)
    }

    /// Returns once the file holds change `change` (and every one before it): saved by
    /// this call, or by one that ran meanwhile.
    fn save_through(&self, change: u64) -> Result<(), StateError> {
        blocking(|| {
            let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
            if *saved >= change {
                return Ok(());
            }
            let (state, at) = {
                let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                (st.0.clone(), st.1)
            };
            self.dir.save(&self.lock, &state)?;
            *saved = at;
            Ok(())
        })
    }

    /// The environment's state folder.
    pub(crate) fn dir(&self) -> &StateDir {
        &self.dir
    }

    pub(crate) fn snapshot(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }
}

/// Runs `f`, which blocks, off the async workers when on the multi-threaded runtime (the
/// other machines' tasks go on meanwhile); as is elsewhere.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
