//! Sources on the real engine: the `harness-sources` template brought up from two git
//! repositories made here (reached by path), a moved branch that `up --locked` refuses and
//! `lock --update` + `up` follows by re-provisioning only the machines using it, and a
//! developer's dirty working copy in a source's place.

use std::collections::HashMap;

use crate::support::git::{commit, git, harness_repos, write_files};
use crate::support::{machine, repo, require_docker, subnet, TestEnv};

/// The `harness-sources` template under a unique name and subnet, on the shared store's
/// busybox box, with its two repositories in `repos/`, locked and brought up.
fn harness_up(prefix: &str) -> TestEnv {
    let text = std::fs::read_to_string(repo().join("templates/harness-sources/Envfile"))
        .expect("template")
        .replace(
            "name = \"harness-sources\"",
            &format!("name = \"it-{prefix}-{}\"", std::process::id()),
        )
        .replace(
            "recipe = \"boxes/busybox\"",
            &format!("recipe = \"{}\"", repo().join("boxes/busybox").display()),
        )
        .replace("10.44.0.0/24", &subnet());
    let env = TestEnv::build().envfile(&text).create();
    harness_repos(env.path());
    env.ok(&["lock"]);
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let t = env.run(&["test"]);
    assert_eq!(t.code, 0, "{t}");
    env
}

fn exec(env: &TestEnv, m: &str, cmd: &str) -> String {
    env.ok(&["exec", m, "--", "sh", "-c", cmd])
}

fn unchanged(before: &HashMap<String, String>, after: &HashMap<String, String>, m: &str) -> bool {
    before.get(m).is_some() && before.get(m) == after.get(m)
}

#[test]
fn a_moved_branch_is_refused_by_up_locked_and_followed_by_lock_update_for_its_machines_only() {
    require_docker();
    let env = harness_up("srcmove");
    let before = env.ids();
    let rm = env.path().join("repos/resource-managers");
    let service = std::fs::read_to_string(rm.join("service.sh")).unwrap();
    let v2 = service.replace(
        "echo \"provisioned $role\"",
        "echo v2 > /var/www/api/version",
    );
    assert_ne!(v2, service);
    let moved = commit(&rm, &[("service.sh", &v2)], "rm v2");

    let refused = env.run(&["up", "--locked"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains("source `rm`: branch main moved to")
            && refused.stderr.contains(&moved[..12]),
        "{refused}"
    );
    // Without `--locked`, the lock's pin holds: nothing changes.
    assert_eq!(env.run(&["up"]).code, 0);
    assert_eq!(env.ids(), before);

    env.ok(&["lock", "--update", "rm"]);
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let after = env.ids();
    for m in ["rm-compute", "rm-storage"] {
        assert!(
            !unchanged(&before, &after, m),
            "{m} was not recreated: {up}"
        );
        assert_eq!(exec(&env, m, "cat /var/www/api/version").trim(), "v2");
    }
    for m in ["scheduler", "paas"] {
        assert!(unchanged(&before, &after, m), "{m} was recreated: {up}");
    }
    assert_eq!(env.run(&["up", "--locked"]).code, 0);
    assert_eq!(env.run(&["test"]).code, 0);
}

#[test]
fn a_dirty_working_copy_shows_in_status_and_hash_is_refused_by_release_and_goes_away() {
    require_docker();
    let env = harness_up("srclocal");
    let pinned = env.ok(&["hash"]).trim().to_string();
    let before = env.ids();
    git(
        env.path(),
        &["clone", "-q", "repos/scheduler", "my-scheduler"],
    );
    write_files(
        &env.path().join("my-scheduler"),
        &[("VERSION", "my branch, not committed\n")],
    );
    env.write("Envfile.local", "[use]\nscheduler = \"my-scheduler\"\n");

    let hash = env.run(&["hash"]);
    assert!(
        hash.stdout.trim().ends_with("+local") && hash.stdout.trim() != pinned,
        "{hash}"
    );
    let status = env.status();
    assert!(status["local"]["scheduler"]["dirty"] == true, "{status}");
    assert_eq!(
        machine(&status, "scheduler")["local"],
        serde_json::json!(["scheduler"])
    );
    assert_eq!(machine(&status, "scheduler")["definition"], "changed");
    assert!(machine(&status, "paas")["local"].is_null(), "{status}");
    let text = env.ok(&["status"]);
    assert!(
        text.contains("changed+local") && text.contains("+local: source `scheduler`"),
        "{text}"
    );

    git(env.path(), &["init", "-q"]);
    let release = env.run(&["release", "v1.0"]);
    assert_eq!(release.code, 1, "{release}");
    assert!(
        release
            .stderr
            .contains("refuses to run while a working copy stands for source `scheduler`"),
        "{release}"
    );

    // `up` with the override: only the scheduler, which now syncs the working copy.
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let local_ids = env.ids();
    assert!(!unchanged(&before, &local_ids, "scheduler"));
    assert!(unchanged(&before, &local_ids, "rm-compute") && unchanged(&before, &local_ids, "paas"));
    assert_eq!(
        exec(&env, "scheduler", "cat /srv/scheduler/VERSION").trim(),
        "my branch, not committed"
    );

    std::fs::remove_file(env.path().join("Envfile.local")).unwrap();
    assert_eq!(env.ok(&["hash"]).trim(), pinned);
    assert_eq!(env.run(&["up", "--locked"]).code, 0);
    let status = env.status();
    assert!(status["local"].is_null(), "{status}");
    assert_eq!(machine(&status, "scheduler")["definition"], "current");
    assert_eq!(
        exec(&env, "scheduler", "cat /srv/scheduler/VERSION").trim(),
        "scheduler 1.0"
    );
}
