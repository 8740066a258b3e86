//! Sources (`[source.NAME]`) without a daemon: diagnostics at their place, the lock's
//! pins, a moved branch, `lock --update`, working copies in a source's place (`--use`,
//! `Envfile.local`) and what refuses them. The repositories are made here, in the test's
//! folder, and reached by path.

use std::path::Path;

use crate::support::git::{commit, git, repo_with, write_files};
use crate::support::TestEnv;

/// Two machines, one using source `scheduler` (a script and a synced folder), one using
/// nothing of it; `rm` is used by `rm`.
const ENVFILE: &str = r#"
[env]
name = "srcs"

[source.scheduler]
git = "repos/scheduler"
branch = "main"

[source.rm]
git = "repos/rm"
tag = "v1"
subdir = "compute"

[machine.sched]
backend = "docker"
image = "busybox"
synced_folders = [{ source = "scheduler", guest = "/srv/scheduler" }]

[[machine.sched.provision]]
script = "source:scheduler/deploy.sh"

[machine.rm]
backend = "docker"
image = "busybox"

[[machine.rm.provision]]
file = "source:rm/etc"
destination = "/etc/rm"

[machine.other]
backend = "docker"
image = "busybox"
"#;

/// The environment with its two repositories under `repos/`.
fn env_with_repos() -> TestEnv {
    let env = TestEnv::build().own_home().envfile(ENVFILE).create();
    repo_with(
        &env.path().join("repos/scheduler"),
        &[
            ("deploy.sh", "#!/bin/sh\necho scheduler v1\n"),
            ("web/index.html", "v1\n"),
        ],
    );
    let rm = env.path().join("repos/rm");
    repo_with(
        &rm,
        &[
            ("compute/etc/rm.conf", "role=compute\n"),
            ("README", "rm\n"),
        ],
    );
    git(&rm, &["tag", "v1"]);
    env
}

fn machines(env: &TestEnv, extra: &[&str]) -> serde_json::Value {
    let mut args = extra.to_vec();
    args.push("hash");
    env.json(&args)
}

#[test]
fn lock_pins_each_source_and_a_moved_branch_changes_only_its_machines_after_update() {
    let env = env_with_repos();
    let r = env.run(&["lock"]);
    assert_eq!(r.code, 0, "{r}");
    let lock = std::fs::read_to_string(env.path().join("Envfile.lock")).unwrap();
    let sched = env.path().join("repos/scheduler");
    let head = git(&sched, &["rev-parse", "HEAD"]);
    assert!(lock.contains(&format!("commit = \"{head}\"")), "{lock}");
    assert!(lock.contains("ref = \"branch main\""), "{lock}");
    assert!(lock.contains("subdir = \"compute\""), "{lock}");
    let rm_tree = git(&env.path().join("repos/rm"), &["rev-parse", "v1:compute"]);
    assert!(lock.contains(&format!("tree = \"{rm_tree}\"")), "{lock}");
    let before = machines(&env, &[]);
    assert_eq!(before["schema_version"], 2);

    // The branch moves: the lock still pins the old commit.
    let moved = commit(
        &sched,
        &[("deploy.sh", "#!/bin/sh\necho scheduler v2\n")],
        "v2",
    );
    assert_eq!(
        machines(&env, &[])["hash"],
        before["hash"],
        "a lock pin wins"
    );
    let listed = env.ok(&["sources", "--fetch"]);
    assert!(
        listed.contains(&format!("branch main moved to {moved}")),
        "{listed}"
    );
    let refused = env.run(&["up", "--locked"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused
            .stderr
            .contains("source `scheduler`: branch main moved to"),
        "{refused}"
    );

    let r = env.run(&["lock", "--update", "scheduler"]);
    assert_eq!(r.code, 0, "{r}");
    let after = machines(&env, &[]);
    assert_ne!(after["hash"], before["hash"]);
    assert_ne!(after["machines"]["sched"], before["machines"]["sched"]);
    assert_eq!(after["machines"]["rm"], before["machines"]["rm"]);
    assert_eq!(after["machines"]["other"], before["machines"]["other"]);
    let lock = std::fs::read_to_string(env.path().join("Envfile.lock")).unwrap();
    assert!(lock.contains(&format!("commit = \"{moved}\"")), "{lock}");
    assert_eq!(env.run(&["lock", "--check"]).code, 0);
}

#[test]
fn a_dirty_working_copy_counts_as_local_and_removing_it_returns_to_the_pinned_hash() {
    let env = env_with_repos();
    env.ok(&["lock"]);
    let pinned = env.ok(&["hash"]).trim().to_string();
    let wc = env.path().join("wc");
    git(env.path(), &["clone", "-q", "repos/scheduler", "wc"]);

    // A clean working copy at the pinned commit: the same files, marked local all the same.
    let clean = env.run(&["--use", "scheduler=wc", "hash"]);
    assert_eq!(clean.stdout.trim(), format!("{pinned}+local"), "{clean}");

    write_files(
        &wc,
        &[
            ("deploy.sh", "#!/bin/sh\necho my branch\n"),
            ("new.txt", "x\n"),
        ],
    );
    let before = machines(&env, &[]);
    let local = machines(&env, &["--use", "scheduler=wc"]);
    assert!(
        local["hash"].as_str().unwrap().ends_with("+local"),
        "{local}"
    );
    assert_eq!(local["local"], serde_json::json!(["scheduler"]));
    assert_ne!(local["machines"]["sched"], before["machines"]["sched"]);
    assert_eq!(local["machines"]["other"], before["machines"]["other"]);

    // The same through Envfile.local; lock and release refuse it.
    env.write("Envfile.local", "[use]\nscheduler = \"wc\"\n");
    let shown = env.run(&["hash"]);
    assert!(shown.stdout.trim().ends_with("+local"), "{shown}");
    assert!(shown.stderr.contains("uncommitted changes"), "{shown}");
    for args in [&["lock"][..], &["release", "v1"], &["up", "--locked"]] {
        let r = env.run(args);
        assert_eq!(r.code, 1, "{args:?}: {r}");
        assert!(
            r.stderr
                .contains("refuses to run while a working copy stands for source `scheduler`"),
            "{args:?}: {r}"
        );
    }
    std::fs::remove_file(env.path().join("Envfile.local")).unwrap();
    assert_eq!(env.ok(&["hash"]).trim(), pinned);
}

#[test]
fn overrides_that_are_not_working_copies_of_the_repository_are_refused_at_their_place() {
    let env = env_with_repos();
    let other = env.path().join("other");
    repo_with(&other, &[("x", "unrelated\n")]);
    env.write("Envfile.local", "# mine\n[use]\nscheduler = \"other\"\n");
    let r = env.run(&["hash"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("Envfile.local:3:13"), "{r}");
    assert!(
        r.stderr
            .contains("not a working copy of the source's repository"),
        "{r}"
    );
    env.write("Envfile.local", "[use]\nschedulr = \"other\"\n");
    let r = env.run(&["hash"]);
    assert!(
        r.stderr.contains("no source `schedulr`") && r.stderr.contains("did you mean `scheduler`"),
        "{r}"
    );
    std::fs::remove_file(env.path().join("Envfile.local")).unwrap();
    std::fs::create_dir_all(env.path().join("plain")).unwrap();
    let r = env.run(&["--use", "scheduler=plain", "hash"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("`--use scheduler="), "{r}");
}

/// `hdev validate` on the environment with `from` replaced by `to` in the Envfile.
fn invalid(env: &TestEnv, from: &str, to: &str) -> String {
    let text = ENVFILE.replace(from, to);
    assert_ne!(text, ENVFILE, "`{from}` is in the Envfile");
    env.set_envfile(&text);
    let r = env.run(&["validate"]);
    assert_eq!(r.code, 1, "{r}");
    r.stderr
}

#[test]
fn wrong_sources_and_paths_in_them_are_reported_at_file_line_column() {
    let env = env_with_repos();
    let e = invalid(
        &env,
        "source:scheduler/deploy.sh",
        "source:schedular/deploy.sh",
    );
    assert!(
        e.contains("unknown source `schedular`") && e.contains("Envfile:20:10"),
        "{e}"
    );
    assert!(e.contains("did you mean `scheduler`?"), "{e}");
    let e = invalid(
        &env,
        "source:scheduler/deploy.sh",
        "source:scheduler/deplo.sh",
    );
    assert!(
        e.contains("`deplo.sh` is not in source `scheduler` at commit"),
        "{e}"
    );
    assert!(
        e.contains("Envfile:20:10") && e.contains("did you mean `source:scheduler/deploy.sh`?"),
        "{e}"
    );
    let e = invalid(&env, "source:scheduler/deploy.sh", "source:scheduler/web");
    assert!(
        e.contains("`web` is a folder in source `scheduler`, not a file"),
        "{e}"
    );
    let e = invalid(&env, "branch = \"main\"", "branch = \"mian\"");
    assert!(
        e.contains("has no branch `mian`") && e.contains("Envfile:7:10"),
        "{e}"
    );
    let e = invalid(&env, "tag = \"v1\"", "rev = \"zz\"");
    assert!(
        e.contains("`zz` is not a usable `rev`") && e.contains("Envfile:11:7"),
        "{e}"
    );
    let e = invalid(&env, "subdir = \"compute\"", "subdir = \"../x\"");
    assert!(e.contains("`../x` leaves the source"), "{e}");
    let e = invalid(&env, "tag = \"v1\"\n", "");
    assert!(
        e.contains("needs exactly one of `rev`, `tag` or `branch`"),
        "{e}"
    );
    let e = invalid(
        &env,
        "file = \"source:rm/etc\"",
        "file = \"source:rm/../../etc\"",
    );
    assert!(e.contains("leaves the source"), "{e}");
    let e = invalid(
        &env,
        "{ source = \"scheduler\", guest = \"/srv/scheduler\" }",
        "{ source = \"scheduler\", guest = \"/srv/scheduler\", readonly = false }",
    );
    assert!(e.contains("a source's folder is synced read-only"), "{e}");
}

#[test]
fn a_rev_pins_a_commit_and_the_sources_listing_says_what_the_cache_holds() {
    let env = env_with_repos();
    let sched = env.path().join("repos/scheduler");
    let first = git(&sched, &["rev-parse", "HEAD"]);
    commit(&sched, &[("deploy.sh", "#!/bin/sh\necho later\n")], "later");
    env.set_envfile(&ENVFILE.replace("branch = \"main\"", &format!("rev = \"{}\"", &first[..10])));
    let listed = env.ok(&["sources"]);
    assert!(
        listed.contains(&format!("commit   {first} (not locked")),
        "{listed}"
    );
    assert!(listed.contains("files exported"), "{listed}");
    assert!(listed.contains("used by  sched"), "{listed}");
    let v = env.json(&["sources"]);
    let tree = git(&sched, &["rev-parse", &format!("{first}^{{tree}}")]);
    assert_eq!(v["sources"][1]["tree"], tree.as_str(), "{v}");
    // One bare mirror per repository in the store, and the tree's files beside it.
    let store = env.home().join("sources");
    let mirrors = std::fs::read_dir(&store)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "git")
        })
        .count();
    assert_eq!(mirrors, 2);
    let exported = store.join("trees").join(&tree).join("deploy.sh");
    assert_eq!(
        std::fs::read_to_string(exported).unwrap(),
        "#!/bin/sh\necho scheduler v1\n"
    );
    assert!(!Path::new(&env.path().join(".hdev/sources")).exists());
}

#[test]
fn the_harness_sources_template_validates_with_its_two_repositories() {
    let env = TestEnv::build().own_home().create();
    env.ok(&["init", "--template", "harness-sources"]);
    let r = env.run(&["validate"]);
    assert_eq!(r.code, 1, "no repositories yet: {r}");
    assert!(
        r.stderr.contains("cannot fetch") && r.stderr.contains("repos/resource-managers"),
        "{r}"
    );
    crate::support::git::harness_repos(env.path());
    let r = env.run(&["validate"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("4 machines"), "{r}");
}
