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

/// One line of a guest file list: `TYPE MODE SIZE MTIME PATH`, as written by
/// [`LIST_COMMAND`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    mode: String,
    size: String,
    mtime: String,
}

/// Paths that change by themselves on every boot of a guest (logs, caches, runtime
/// state, the files hdev's guest init writes from the kernel command line) and that are
/// therefore not drift.
pub(crate) const VOLATILE: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/systemd",
    "/var/lib/hdev",
    "/lost+found",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/root/.ssh/authorized_keys",
];

/// Where a VM keeps the file list of its baseline, inside the guest (so it travels with
/// the disk layer: a reset or a restore brings the matching list back).
pub(crate) const GUEST_BASELINE_LIST: &str = "/var/lib/hdev/baseline.list";

/// The shell command that prints a guest's file list, one entry per line.
pub(crate) fn list_command() -> String {
    let prune: Vec<String> = VOLATILE.iter().map(|p| format!("-path {p}")).collect();
    format!(
        "find / -xdev \\( {} \\) -prune -o -printf '%y %m %s %T@ %p\\n'",
        prune.join(" -o ")
    )
}

fn parse_list(text: &str) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.splitn(5, ' ');
        let (Some(kind), Some(mode), Some(size), Some(mtime), Some(path)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        out.insert(
            path.to_string(),
            Entry {
                kind: kind.into(),
                mode: mode.into(),
                size: size.into(),
                mtime: mtime.into(),
            },
        );
    }
    out
}

/// Drift between two guest file lists. A folder counts as changed only when its type or
/// mode changed (its time moves whenever anything inside it does).
pub(crate) fn diff_lists(baseline: &str, now: &str) -> Drift {
    let (a, b) = (parse_list(baseline), parse_list(now));
    let mut changes = Vec::new();
    for (path, old) in &a {
        match b.get(path) {
            None => changes.push((path.clone(), Kind::Deleted)),
            Some(new) if new == old => {}
            Some(new) if old.kind == "d" && new.kind == "d" && new.mode == old.mode => {}
            Some(_) => changes.push((path.clone(), Kind::Changed)),
        }
    }
    for path in b.keys() {
        if !a.contains_key(path) {
            changes.push((path.clone(), Kind::Added));
        }
    }
    Drift::from_changes(changes)
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

    #[test]
    fn file_lists_diff_by_size_time_and_mode_but_not_folder_times() {
        let a = "d 755 4096 1.0 /etc\nf 644 5 1.0 /etc/motd\nf 644 1 1.0 /etc/gone\nf 644 1 1.0 /etc/same name\n";
        let b = "d 755 4096 2.0 /etc\nf 644 6 3.0 /etc/motd\nf 600 1 1.0 /etc/same name\nf 644 0 3.0 /etc/new\n";
        assert_eq!(
            diff_lists(a, b),
            d(
                &["/etc/new"],
                &["/etc/motd", "/etc/same name"],
                &["/etc/gone"]
            )
        );
        assert!(diff_lists(a, a).is_empty());
        assert!(list_command().contains("-path /proc -o -path /sys"));
    }
}
