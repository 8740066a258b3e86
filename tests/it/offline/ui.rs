//! `hdev ui` without a browser or an engine: who is let in. Only a request with the
//! token, by the name 127.0.0.1 or localhost, gets anything; the first page load sets
//! the token's cookie; an action needs the token in its own header and valid JSON; and
//! with no engine to read, the picture is still served, every state unknown, saying why.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::webdriver::{http, http_with_head};
use crate::support::TestEnv;

#[test]
fn the_dashboard_refuses_requests_without_the_token_or_from_another_host() {
    let env = TestEnv::build().own_home().create();
    assert_eq!(
        env.run(&["init", "--template", "minimal"]).code,
        0,
        "init failed"
    );
    let mut child = env
        .std_cmd()
        .args(["ui", "--no-open", "--port", "0"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hdev ui");
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("the address");
    let killer = scopeguard(child);
    let rest = url.trim().strip_prefix("http://127.0.0.1:").expect(&url);
    let (port, token) = rest.split_once("/?token=").expect("port and token");
    let port: u16 = port.parse().expect("port");
    assert_eq!(token.len(), 64, "256 bits as hex: {token}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));

    // No token, a wrong one, one a character short: 403, and nothing of the page.
    for path in ["/", "/api/overview", "/app.js", "/?token=", "/?token=0"] {
        let (code, body) = http(port, "GET", path, &[], None);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("forbidden"), "{body}");
    }
    let short = format!("/?token={}", &token[..63]);
    assert_eq!(http(port, "GET", &short, &[], None).0, 403);

    // The token: the page, and its cookie for what the page asks next.
    let (code, head, body) = http_with_head(port, "GET", &format!("/?token={token}"), &[], None);
    assert_eq!(code, 200);
    assert!(body.contains("<title>hdev dashboard</title>"), "{body}");
    assert!(
        head.contains(&format!(
            "set-cookie: hdev_token={token}; path=/; httponly; samesite=strict"
        )),
        "{head}"
    );
    let cookie = format!("hdev_token={token}");
    let (code, js) = http(port, "GET", "/app.js", &[("Cookie", &cookie)], None);
    assert_eq!(code, 200);
    assert!(js.contains("X-Hdev-Token"));

    // Another name for this machine (a rebound DNS name) is refused, token or not.
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.evil.example",
        "[::1]:1",
    ] {
        let (code, _) = http(
            port,
            "GET",
            &format!("/?token={token}"),
            &[("Host", host)],
            None,
        );
        assert_eq!(code, 403, "Host: {host}");
    }
    assert_eq!(
        http(
            port,
            "GET",
            &format!("/?token={token}"),
            &[("Host", "localhost")],
            None
        )
        .0,
        200
    );

    // Actions: the token in the header, never a cookie alone, from no other origin.
    let test = Some(r#"{"kind":"test"}"#);
    assert_eq!(
        http(port, "POST", "/api/action", &[("Cookie", &cookie)], test).0,
        403
    );
    let with = [("X-Hdev-Token", token), ("Origin", "http://evil.example")];
    assert_eq!(http(port, "POST", "/api/action", &with, test).0, 403);
    let (code, body) = http(
        port,
        "POST",
        "/api/action",
        &with[..1],
        Some(r#"{"kind":"rm -rf"}"#),
    );
    assert_eq!(code, 400, "{body}");
    let bad_name = Some(r#"{"kind":"save","name":"../x"}"#);
    assert_eq!(
        http(port, "POST", "/api/action", &with[..1], bad_name).0,
        400
    );
    assert_eq!(http(port, "GET", "/api/action", &with[..1], None).0, 405);
    assert_eq!(http(port, "GET", "/nothing", &with[..1], None).0, 404);

    // No engine: the picture all the same, every machine unknown, and why.
    let t0 = Instant::now();
    let v = loop {
        let (code, body) = http(port, "GET", "/api/overview", &with[..1], None);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        if v["seq"].is_number() {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no read in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let nodes = v["nodes"].as_array().expect("nodes");
    assert!(!nodes.is_empty(), "{v}");
    assert!(nodes.iter().all(|n| n["status"] == "unknown"), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("engines not read"),
        "{v}"
    );
    assert!(v["svg"].as_str().unwrap_or("").contains("<svg"), "{v}");
    drop(killer);
}

/// Kills the dashboard when the test ends, passing or not.
fn scopeguard(child: std::process::Child) -> impl Drop {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}
