//! A VM's drift, read inside the guest: at baseline time the guest's file list (path,
//! type, mode, size, time; volatile folders left out) is written into the guest itself, so
//! it lives in the baseline layer; drift lists the files again and compares the two.

use std::collections::BTreeMap;

use crate::snapshot::changes::Kind;
use crate::snapshot::Drift;

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
/// therefore not drift. Container engines' stores are left out too: they change with
/// every container started, and the containers hdev places in a VM are checked for drift
/// each on its own.
pub(super) const VOLATILE: &[&str] = &[
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
    "/var/lib/docker",
    "/var/lib/containerd",
    "/lost+found",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/root/.ssh/authorized_keys",
];

/// Where a VM keeps the file list of its baseline, inside the guest (so it travels with
/// the disk layer: a reset or a restore brings the matching list back).
pub(super) const GUEST_BASELINE_LIST: &str = "/var/lib/hdev/baseline.list";

/// The shell command that prints a guest's file list, one entry per line.
pub(super) fn list_command() -> String {
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
pub(super) fn diff_lists(baseline: &str, now: &str) -> Drift {
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
        // The guest sends only the lines that differ (`comm -3`): the same drift.
        let only = |x: &str, y: &str| -> String {
            let other: std::collections::BTreeSet<&str> = y.lines().collect();
            x.lines()
                .filter(|l| !other.contains(l))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        assert_eq!(diff_lists(&only(a, b), &only(b, a)), diff_lists(a, b));
    }
}
