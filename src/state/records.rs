//! What the last runs left for a front end to show beside the engines' view: each
//! machine's last provisioning output (`.hdev/provision/NAME.json`) and the results of the
//! last `hdev test` (`.hdev/tests.json`). Both are records of what happened, never read by
//! the rules of `up`; writing them is best effort (a record that cannot be written only
//! makes the dashboard say less), and an unreadable one reads as none.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{read_json, write_informative, StateDir, STATE_VERSION};

/// The lines kept of one provisioning run (the last ones: the end says what failed).
pub(crate) const PROVISION_LINES: usize = 400;

/// A machine's last provisioning run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProvisionOutput {
    pub version: u32,
    /// When it ended (seconds since the epoch).
    pub at: u64,
    pub ok: bool,
    /// Its output, the last [`PROVISION_LINES`] lines.
    pub lines: Vec<String>,
    /// How many earlier lines were left out.
    pub dropped: usize,
}

impl ProvisionOutput {
    pub(crate) fn new(ok: bool, mut lines: Vec<String>) -> Self {
        let dropped = lines.len().saturating_sub(PROVISION_LINES);
        lines.drain(..dropped);
        ProvisionOutput {
            version: STATE_VERSION,
            at: super::drift::now(),
            ok,
            lines,
            dropped,
        }
    }
}

impl StateDir {
    fn provision_path(&self, machine: &str) -> std::path::PathBuf {
        self.root.join("provision").join(format!("{machine}.json"))
    }

    fn tests_path(&self) -> std::path::PathBuf {
        self.root.join("tests.json")
    }

    fn write_record<T: Serialize>(&self, path: &std::path::Path, value: &T) {
        if !self.root.is_dir() {
            return;
        }
        if let Ok(mut bytes) = serde_json::to_vec_pretty(value) {
            bytes.push(b'\n');
            let _ = write_informative(path, &bytes);
        }
    }

    fn read_record<T: DeserializeOwned>(&self, path: &std::path::Path) -> Option<T> {
        read_json(path).ok().flatten()
    }

    /// Records a machine's provisioning output.
    pub(crate) fn record_provision(&self, machine: &str, out: &ProvisionOutput) {
        self.write_record(&self.provision_path(machine), out);
    }

    /// A machine's last provisioning output, if recorded.
    pub(crate) fn provision_output(&self, machine: &str) -> Option<ProvisionOutput> {
        self.read_record(&self.provision_path(machine))
    }

    /// Records the results of a test run (any versioned document: `ops::test` owns it).
    pub(crate) fn record_tests<T: Serialize>(&self, record: &T) {
        self.write_record(&self.tests_path(), record);
    }

    /// The results of the last test run, if recorded.
    pub(crate) fn last_tests<T: DeserializeOwned>(&self) -> Option<T> {
        self.read_record(&self.tests_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioning_output_keeps_its_last_lines_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        assert_eq!(sd.provision_output("web"), None);
        let lines: Vec<String> = (0..PROVISION_LINES + 5).map(|i| i.to_string()).collect();
        sd.record_provision("web", &ProvisionOutput::new(true, lines.clone()));
        // No `.hdev/` yet: nothing is written (a record never makes the folder).
        assert_eq!(sd.provision_output("web"), None);
        std::fs::create_dir_all(&sd.root).unwrap();
        sd.record_provision("web", &ProvisionOutput::new(false, lines));
        let got = sd.provision_output("web").unwrap();
        assert!(!got.ok);
        assert_eq!(got.dropped, 5);
        assert_eq!(got.lines.first().map(String::as_str), Some("5"));
        assert_eq!(got.lines.len(), PROVISION_LINES);
    }
}
