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

/// The serial of the baseline layer attached to a guest for a content comparison.
pub(super) const BASELINE_SERIAL: &str = "hdev-baseline";

/// A guest script that finds the disk with serial [`BASELINE_SERIAL`], mounts it read-only
/// (its journal not replayed: the layer was captured from a running system), hashes every
/// regular file under both it and `/` (volatile folders left out, as in the list) and
/// prints only the lines that differ: the baseline's, then the current ones after a tab.
pub(super) fn content_diff_command() -> String {
    let prune: Vec<String> = VOLATILE.iter().map(|p| format!("-path .{p}")).collect();
    let hash = format!(
        "find . -xdev \\( {} \\) -prune -o -type f -print0 | xargs -0 -r sha256sum",
        prune.join(" -o ")
    );
    format!(
        "m=/run/hdev-baseline; umount $m 2>/dev/null; dev=; i=0; \
         while [ -z \"$dev\" ] && [ $i -lt 100 ]; do \
           for s in /sys/block/*/serial; do [ \"$(cat $s 2>/dev/null)\" = {BASELINE_SERIAL} ] && dev=/dev/$(basename $(dirname $s)); done; \
           [ -n \"$dev\" ] || sleep 0.1; i=$((i+1)); done; \
         [ -n \"$dev\" ] || exit 4; mkdir -p $m && mount -o ro,noload $dev $m || exit 5; \
         a=$(mktemp); b=$(mktemp); \
         (cd $m && {hash}) 2>/dev/null | LC_ALL=C sort > $a; \
         (cd / && {hash}) 2>/dev/null | LC_ALL=C sort > $b; \
         LC_ALL=C comm -3 $a $b; rc=$?; rm -f $a $b; umount $m; exit $rc"
    )
}

/// The files whose contents differ in the output of [`content_diff_command`]: those hashed
/// on both sides with different digests (a file on one side only is metadata drift).
pub(super) fn content_changes(lines: &[String]) -> Vec<String> {
    let parse = |l: &str| -> Option<(String, String)> {
        // `sha256sum` marks a name it had to escape with a leading backslash.
        let l = l.strip_prefix('\\').unwrap_or(l);
        let (hash, path) = l.split_once("  ")?;
        let path = path.strip_prefix('.').unwrap_or(path);
        Some((path.to_string(), hash.to_string()))
    };
    let mut base = BTreeMap::new();
    let mut now = BTreeMap::new();
    for l in lines {
        match l.strip_prefix('\t') {
            Some(current) => now.extend(parse(current)),
            None => base.extend(parse(l)),
        }
    }
    base.into_iter()
        .filter(|(p, h)| now.get(p).is_some_and(|n| n != h))
        .map(|(p, _)| p)
        .collect()
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
