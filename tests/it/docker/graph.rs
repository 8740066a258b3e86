//! `hdev graph` on real containers: the states are the engine's (running, then drifted as
//! `drift` recorded it, then stopped after `halt`), the addresses Docker gave them.

use crate::support::{require_docker, subnet, TestEnv};

/// The node named `name` in `hdev graph --format json`.
fn node(env: &TestEnv, name: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["graph", "--format", "json"])).unwrap();
    let n = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name);
    n.unwrap_or_else(|| panic!("no `{name}` in {v}")).clone()
}

#[test]
fn graph_draws_the_states_the_engines_report() {
    require_docker();
    let net = subnet();
    let env = TestEnv::new(
        "graph",
        &format!(
            r#"
[network.lan]
subnet = "{net}"

[machine.db]
backend = "docker"
box = "busybox"
networks = ["lan"]

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
depends_on = ["db"]
"#
        ),
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    for m in ["db", "web"] {
        assert_eq!(node(&env, m)["status"], "running");
    }
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["graph", "--format", "json"])).unwrap();
    let prefix = net.trim_end_matches("0/24");
    for l in v["links"].as_array().unwrap() {
        assert!(l["address"].as_str().unwrap().starts_with(prefix), "{l}");
    }
    assert_eq!(v["edges"][0]["from"], "web", "{v}");

    env.ok(&["exec", "web", "--", "sh", "-c", "echo x > /etc/drifted"]);
    assert_eq!(env.run(&["drift"]).code, 1);
    let web = node(&env, "web");
    assert_eq!(web["status"], "running, drifted", "{web}");
    assert_eq!(web["class"], "drifted", "{web}");
    assert_eq!(node(&env, "db")["status"], "running");
    let svg = env.ok(&["graph"]);
    assert!(svg.contains(">running, drifted</text>"), "{svg}");

    env.ok(&["halt"]);
    assert_eq!(node(&env, "web")["status"], "stopped, drifted");
    assert_eq!(node(&env, "db")["status"], "stopped");
}
