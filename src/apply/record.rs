//! The state file as `apply` keeps it: one in-memory copy behind a mutex, saved
//! atomically after every change, under the environment's lock.

use std::sync::Mutex;

use crate::state::{EnvLock, MachineRecord, State, StateDir, StateError};

/// The state file, written after every finished step.
pub(crate) struct Recorder {
    dir: StateDir,
    lock: EnvLock,
    state: Mutex<State>,
}

impl Recorder {
    pub(crate) fn new(dir: StateDir, lock: EnvLock, state: State) -> Self {
        Recorder {
            dir,
            lock,
            state: Mutex::new(state),
        }
    }

    /// Changes one machine's record (None removes it) and saves.
    pub(crate) fn update(
        &self,
        machine: &str,
        f: impl FnOnce(Option<MachineRecord>) -> Option<MachineRecord>,
    ) -> Result<(), StateError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let cur = st.machines.remove(machine);
        if let Some(r) = f(cur) {
            st.machines.insert(machine.to_string(), r);
        }
        self.dir.save(&self.lock, &st)
    }

    pub(crate) fn set_env_hash(&self, hash: Option<String>) -> Result<(), StateError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.env_hash = hash;
        self.dir.save(&self.lock, &st)
    }

    /// The environment's state folder.
    pub(crate) fn dir(&self) -> &StateDir {
        &self.dir
    }

    pub(crate) fn snapshot(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
