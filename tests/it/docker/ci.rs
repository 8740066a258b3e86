//! Throwaway copies: `hdev ci` in parallel and interrupted, `hdev test`, `up --locked`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::engines::labelled_counts;
use crate::support::{require_docker, subnet, Run, TestEnv};

/// An environment with a fixed subnet, a fixed address and a fixed host port: everything
/// that would collide between two copies on one engine.
fn web_env(prefix: &str, provision: &str) -> TestEnv {
    let net = subnet();
    let web_ip = net.replace(".0/24", ".10");
    // A fixed host port per environment, so parallel tests do not collide on it.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let port = 20000 + (std::process::id() * 7 + n * 131) % 20000;
    TestEnv::new(
        prefix,
        &format!(
            r#"
[network.lan]
subnet = "{net}"

[machine.web]
backend = "docker"
box = "busybox"
networks = [{{ name = "lan", address = "{web_ip}" }}]
ports = ["127.0.0.1:{port}:80"]
command = "sh -c 'mkdir -p /www; echo hello > /www/index.html; exec httpd -f -p 80 -h /www'"

[[machine.web.provision]]
shell = "{provision}"

[machine.client]
backend = "docker"
box = "busybox"
networks = ["lan"]
depends_on = ["web"]

[[test]]
name = "client reaches web by name"
machine = "client"
run = "wget -q -O- http://web/"
expect_output = "hello"

[[test]]
name = "web keeps its host offset"
machine = "web"
run = "ip -4 addr | grep -q '\\.10/24' && echo offset-kept"
expect_output = "offset-kept"
timeout = "20s"
"#
        ),
    )
}

fn copies(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".hdev/ci"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_parallel_ci_runs_on_one_engine_both_pass_and_leave_nothing() {
    require_docker();
    let env = web_env("ci-par", "true");
    // The developer's own environment is up on the Envfile's subnet and port meanwhile.
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let dev_ids = env.ids();

    let junit = |n: u32| env.path().join(format!("junit-{n}.xml"));
    let spawn = |n: u32| {
        env.std_cmd()
            .args(["ci", "--json", "--junit"])
            .arg(junit(n))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn hdev ci")
    };
    let (a, b) = (spawn(1), spawn(2));
    let runs: Vec<Run> = [a, b]
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().expect("wait")))
        .collect();
    let mut instances = Vec::new();
    for r in &runs {
        assert_eq!(r.code, 0, "{r}");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("ci json");
        assert_eq!(v["ok"], true, "{r}");
        assert_eq!(v["run"]["summary"]["passed"], 2, "{r}");
        let inst = v["run"]["instance"].as_str().expect("instance").to_string();
        assert_eq!(
            labelled_counts(&inst),
            (0, 0, 0),
            "copy `{inst}` left objects"
        );
        instances.push(inst);
    }
    assert_ne!(instances[0], instances[1]);
    for n in [1, 2] {
        let x = std::fs::read_to_string(junit(n)).expect("junit");
        assert!(x.contains("tests=\"2\" failures=\"0\""), "{x}");
    }
    assert!(copies(env.path()).is_empty(), "{:?}", copies(env.path()));
    // The developer's environment was not touched.
    assert_eq!(env.ids(), dev_ids);
    let test = env.run(&["test", "--json"]);
    assert_eq!(test.code, 0, "{test}");
}

#[test]
fn a_failing_check_fails_ci_and_keep_on_failure_keeps_the_copy() {
    require_docker();
    let env = web_env("ci-fail", "true");
    let text = env
        .envfile()
        .replace("expect_output = \"hello\"", "expect_output = \"goodbye\"");
    env.set_envfile(&text);
    let r = env.run(&["ci", "--keep-on-failure", "--json"]);
    assert_eq!(r.code, 1, "{r}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("ci json");
    assert_eq!(v["run"]["summary"]["failed"], 1, "{r}");
    assert_eq!(v["run"]["kept"], true, "{r}");
    let inst = v["run"]["instance"].as_str().expect("instance").to_string();
    assert_eq!(labelled_counts(&inst).0, 2, "kept copy has its machines");
    // The kept copy is reachable by its instance name, with its own state.
    let exec = env
        .cmd()
        .env("HDEV_INSTANCE", &inst)
        .args(["exec", "client", "--", "wget", "-q", "-O-", "http://web/"])
        .output()
        .expect("exec");
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "hello\n");
    // A failing `hdev test` against it says which check and why.
    let t = Run::from(
        env.cmd()
            .env("HDEV_INSTANCE", &inst)
            .args(["test"])
            .output()
            .expect("test"),
    );
    assert_eq!(t.code, 1, "{t}");
    assert!(
        t.stdout.contains("output does not contain `goodbye`"),
        "{t}"
    );
    let clean = env.run(&["ci", "--clean"]);
    assert_eq!(clean.code, 0, "{clean}");
    assert_eq!(labelled_counts(&inst), (0, 0, 0));
    assert!(copies(env.path()).is_empty());
}

/// Starts `hdev ci` and waits until its copy has a container in the engine (provisioning
/// under way); the process (the caller waits for it) and the copy's instance.
#[allow(clippy::zombie_processes)]
fn ci_until_its_copy_runs(
    env: &TestEnv,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let mut child = env
        .std_cmd()
        .arg("ci")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn hdev ci");
    let t0 = Instant::now();
    loop {
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("copy never came up");
        }
        if let Some(i) = copies(env.path()).into_iter().next() {
            if labelled_counts(&i).0 >= 1 {
                return (child, i);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_ci_run_killed_with_sigterm_tears_its_copy_down() {
    require_docker();
    let env = web_env("ci-kill", "echo long step; sleep 60");
    let (mut child, inst) = ci_until_its_copy_runs(&env, std::process::Stdio::piped());
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling a child process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "hdev ci did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(
        labelled_counts(&inst),
        (0, 0, 0),
        "copy `{inst}` left objects"
    );
    assert!(copies(env.path()).is_empty());
}

#[test]
fn up_locked_refuses_when_the_inputs_moved() {
    require_docker();
    let env = web_env("locked", "echo v1");
    let r = env.run(&["up", "--locked"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("needs `Envfile.lock`"), "{r}");
    assert_eq!(env.run(&["lock"]).code, 0);
    let r = env.run(&["up", "--locked"]);
    assert_eq!(r.code, 0, "{r}");
    env.set_envfile(&env.envfile().replace("echo v1", "echo v2"));
    let r = env.run(&["up", "--locked"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no longer matches"), "{r}");
    assert!(r.stderr.contains("machine `web`: locked as"), "{r}");
    assert!(!r.stderr.contains("machine `client`"), "{r}");
}

#[test]
fn a_check_that_times_out_is_killed_in_the_machine_with_what_it_started() {
    require_docker();
    let env = web_env("ci-timeout", "true");
    let text = format!(
        "{}\n[[test]]\nname = \"hangs\"\nmachine = \"client\"\nrun = \"echo started; sleep 311 & sleep 312\"\ntimeout = \"2s\"\n",
        env.envfile()
    );
    env.set_envfile(&text);
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let t = env.run(&["test", "--json"]);
    assert_eq!(t.code, 1, "{t}");
    let v: serde_json::Value = serde_json::from_str(&t.stdout).expect("test json");
    let hang = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "hangs")
        .unwrap_or_else(|| panic!("no result `hangs`: {v}"))
        .clone();
    assert_eq!(hang["passed"], false, "{hang}");
    assert_eq!(hang["failure"], "timed out after 2s", "{hang}");
    assert_eq!(hang["output"], "started\n", "{hang}");
    assert_eq!(v["summary"]["passed"], 2, "the other checks pass: {v}");
    // Neither the check's shell nor what it started in the background outlived it.
    let ps = env.run(&["exec", "client", "--", "ps"]);
    assert_eq!(ps.code, 0, "{ps}");
    assert!(
        !ps.stdout.contains("sleep 31"),
        "the timed-out check is still running:\n{}",
        ps.stdout
    );
}

#[test]
fn gc_collects_the_copy_of_a_ci_run_killed_outright() {
    require_docker();
    let env = web_env("ci-gc", "echo long step; sleep 60");
    let (mut child, inst) = ci_until_its_copy_runs(&env, std::process::Stdio::null());
    // SIGKILL: no teardown can run, the copy is left behind.
    child.kill().expect("kill hdev ci");
    child.wait().expect("wait");
    assert!(labelled_counts(&inst).0 >= 1);
    let gc = env.run(&["gc", "--json"]);
    assert_eq!(gc.code, 0, "{gc}");
    assert!(gc.stdout.contains(&inst), "gc names the copy: {gc}");
    assert_eq!(labelled_counts(&inst), (0, 0, 0), "{gc}");
    assert!(copies(env.path()).is_empty(), "the copy's folder is gone");
    // The developer's own environment folder and state are untouched.
    assert!(env.path().join("Envfile").exists());
}
