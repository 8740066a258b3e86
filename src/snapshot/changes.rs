//! Drift as data: the files added, changed and deleted since a baseline, from whichever
//! source a backend has (Docker's change list, a file list taken inside a VM), reduced to
//! what a user reads: files, not the folders that merely hold them.
//!
//! Pure, so the rules are tested without daemons.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How one path differs from the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

/// What changed in one machine since its baseline, paths sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub deleted: Vec<String>,
}

impl Drift {
    /// Builds a drift from raw (path, kind) pairs. A folder reported as changed only
    /// because something inside it changed is left out: the entry inside says it.
    pub fn from_changes(changes: impl IntoIterator<Item = (String, Kind)>) -> Drift {
        let map: BTreeMap<String, Kind> = changes.into_iter().collect();
        let mut d = Drift::default();
        for (path, kind) in &map {
            let prefix = if path.ends_with('/') {
                path.clone()
            } else {
                format!("{path}/")
            };
            let holds_others = map
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(p, _)| p.starts_with(&prefix));
            match kind {
                Kind::Changed if holds_others => {}
                Kind::Added => d.added.push(path.clone()),
                Kind::Changed => d.changed.push(path.clone()),
                Kind::Deleted => d.deleted.push(path.clone()),
            }
        }
        d
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.deleted.is_empty()
    }

    pub fn total(&self) -> usize {
        self.added.len() + self.changed.len() + self.deleted.len()
    }

    /// Every path with its kind.
    pub fn entries(&self) -> BTreeMap<String, Kind> {
        let mut m = BTreeMap::new();
        for (v, k) in [
            (&self.added, Kind::Added),
            (&self.changed, Kind::Changed),
            (&self.deleted, Kind::Deleted),
        ] {
            for p in v {
                m.insert(p.clone(), k);
            }
        }
        m
    }

    /// The drift since the baseline of a machine restored from a snapshot: `base` is the
    /// drift the snapshot held when it was saved, `since` what changed after the restore.
    pub fn compose(base: &Drift, since: &Drift) -> Drift {
        let mut all = base.entries();
        for (path, now) in since.entries() {
            let before = all.get(&path).copied();
            let k = match (before, now) {
                // Added after the snapshot where the snapshot had deleted it: it is back,
                // perhaps with other content.
                (Some(Kind::Deleted), Kind::Added) => Some(Kind::Changed),
                (None, k) => Some(k),
                (Some(Kind::Added), Kind::Deleted) => None,
                (Some(Kind::Added), _) => Some(Kind::Added),
                (Some(_), k) => Some(k),
            };
            match k {
                Some(k) => all.insert(path, k),
                None => all.remove(&path),
            };
        }
        Drift::from_changes(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(a: &[&str], c: &[&str], x: &[&str]) -> Drift {
        let v = |s: &[&str]| s.iter().map(|p| p.to_string()).collect();
        Drift {
            added: v(a),
            changed: v(c),
            deleted: v(x),
        }
    }

    #[test]
    fn folders_that_only_hold_changes_are_left_out() {
        let got = Drift::from_changes([
            ("/etc".to_string(), Kind::Changed),
            ("/etc/motd".to_string(), Kind::Changed),
            ("/etc/new".to_string(), Kind::Added),
            ("/etcetera".to_string(), Kind::Changed),
            ("/srv".to_string(), Kind::Deleted),
            ("/srv/x".to_string(), Kind::Deleted),
        ]);
        assert_eq!(
            got,
            d(
                &["/etc/new"],
                &["/etc/motd", "/etcetera"],
                &["/srv", "/srv/x"]
            )
        );
        assert_eq!(got.total(), 5);
    }

    #[test]
    fn composing_a_snapshot_with_later_changes() {
        let base = d(&["/a", "/b"], &["/c"], &["/d"]);
        let since = d(&["/d", "/e"], &["/b"], &["/a", "/c"]);
        assert_eq!(
            Drift::compose(&base, &since),
            d(&["/b", "/e"], &["/d"], &["/c"])
        );
        assert_eq!(Drift::compose(&base, &Drift::default()), base);
    }
}
