//! `hdev ui` in a real browser (headless chromium through chromedriver) against real
//! containers: the picture shows every machine; a file written in a container turns its
//! node to drifted within seconds, without a reload; a reset clicked on the page (with its
//! confirmation) clears it; a request without the token is refused; a second action while
//! one runs is refused with a message (from the page, and for a command in a terminal).
//! Screenshots go to `target/ui-screenshots/` (kept by CI as artifacts).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::webdriver::{http, Browser};
use crate::support::{require_docker, subnet, TestEnv};

/// The running dashboard; stopped on drop.
struct Dashboard {
    child: Child,
    url: String,
    port: u16,
    token: String,
}

impl Dashboard {
    fn start(env: &TestEnv) -> Dashboard {
        let mut child = env
            .std_cmd()
            .args(["ui", "--no-open"])
            .env("HDEV_UI_REFRESH_MS", "500")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hdev ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the address");
        let url = line.trim().to_string();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("not the dashboard's address: {url:?}"));
        let (port, token) = rest.split_once("/?token=").expect("port and token");
        assert!(token.len() >= 32, "a short token: {token}");
        Dashboard {
            port: port.parse().expect("port"),
            token: token.to_string(),
            url,
            child,
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `target/tmp`.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("ui-screenshots")
}

/// The status words of machine `name`'s node on the page.
fn node_status(b: &Browser, name: &str) -> String {
    b.script(
        "const n = document.querySelector(`button.node-btn[data-machine=\"${arguments[0]}\"]`); return n ? n.dataset.status : '';",
        json!([name]),
    )
    .as_str()
    .unwrap_or("")
    .to_string()
}

fn requests_without_the_token_are_refused(d: &Dashboard) {
    let t = d.token.as_str();
    assert_eq!(http(d.port, "GET", "/", &[], None).0, 403);
    assert_eq!(http(d.port, "GET", "/api/overview", &[], None).0, 403);
    assert_eq!(http(d.port, "GET", "/?token=00", &[], None).0, 403);
    let (code, body) = http(d.port, "GET", &format!("/?token={t}"), &[], None);
    assert_eq!(code, 200, "{body}");
    // A rebound DNS name is refused even with the token.
    let evil = [("Host", "evil.example:80")];
    assert_eq!(
        http(d.port, "GET", &format!("/?token={t}"), &evil, None).0,
        403
    );
    // An action needs the token in its own header: a cookie (sent by any page) is not enough.
    let cookie = format!("hdev_token={t}");
    let by_cookie = [("Cookie", cookie.as_str())];
    let (code, _) = http(
        d.port,
        "POST",
        "/api/action",
        &by_cookie,
        Some(r#"{"kind":"test"}"#),
    );
    assert_eq!(code, 403);
}

#[test]
fn the_dashboard_shows_drift_live_and_resets_it_from_a_click() {
    require_docker();
    let net = subnet();
    let env = TestEnv::new(
        "ui",
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

[[machine.web.provision]]
shell = "echo provisioned web"

[[test]]
name = "web answers"
machine = "web"
run = "echo hello"
expect_output = "hello"

[[test]]
name = "takes a while"
machine = "db"
run = "sleep 8"
"#
        ),
    );
    let up = env.run(&["up"]);
    assert_eq!(up.code, 0, "{up}");
    let d = Dashboard::start(&env);
    requests_without_the_token_are_refused(&d);
    let shots = screenshots();

    let b = Browser::start(1280, 800);
    b.goto(&d.url);
    b.viewport(1280, 800);
    b.wait(
        "every machine in the picture",
        Duration::from_secs(20),
        |b| ["db", "web"].iter().all(|m| node_status(b, m) == "running"),
    );
    let svg = b.script(
        "return document.querySelector('#picture svg').outerHTML",
        json!([]),
    );
    for m in ["db", "web"] {
        assert!(
            svg.as_str().unwrap().contains(&format!(">{m}</text>")),
            "{svg}"
        );
    }
    // The address bar no longer shows the token; the page still works from its cookie.
    let here = b.script("return location.href", json!([]));
    assert!(!here.as_str().unwrap().contains("token"), "{here}");
    // Keyboard: a node is a button; Enter on it opens its details.
    b.keys("button.node-btn[data-machine=\"db\"]", "\u{E007}");
    b.wait("db's details", Duration::from_secs(5), |b| {
        b.text("#details-title").contains("db")
    });
    b.screenshot(&shots, "01-running.png");

    env.ok(&["exec", "web", "--", "sh", "-c", "echo x > /etc/x"]);
    let took = b.wait("web drawn as drifted", Duration::from_secs(10), |b| {
        node_status(b, "web").contains("drifted")
    });
    eprintln!("web drawn as drifted {took:?} after the write");
    assert_eq!(node_status(&b, "db"), "running");
    b.click("button.node-btn[data-machine=\"web\"]");
    b.wait("web's drift list", Duration::from_secs(5), |b| {
        b.text("#drift").contains("/etc/x")
    });
    assert!(b.text("#provision").contains("provisioned web"));
    b.screenshot(&shots, "02-drifted.png");

    b.click("#reset-machine");
    b.wait("the confirmation", Duration::from_secs(5), |b| {
        b.script("return document.getElementById('confirm').open", json!([])) == json!(true)
    });
    assert!(b.text("#confirm-text").contains("Reset web"));
    b.screenshot(&shots, "03-confirm.png");
    b.click("#confirm-yes");
    b.wait("the reset to finish", Duration::from_secs(60), |b| {
        b.text("#action-line").contains("reset web: done")
    });
    b.wait("web drawn without drift", Duration::from_secs(10), |b| {
        node_status(b, "web") == "running"
    });
    b.screenshot(&shots, "04-reset.png");
    let drift = env.run(&["drift", "web"]);
    assert_eq!(drift.code, 0, "{drift}");

    // A second action while one runs: refused with a message, on the page and in a terminal.
    b.click("button[data-action=\"test\"]");
    b.wait("the checks to start", Duration::from_secs(10), |b| {
        b.text("#action-line").contains("Running: test")
    });
    b.click("button[data-action=\"reset-all\"]");
    b.click("#confirm-yes");
    b.wait("the refusal", Duration::from_secs(10), |b| {
        b.text("#message").contains("Refused")
    });
    let message = b.text("#message");
    assert!(message.contains("is running"), "{message}");
    b.screenshot(&shots, "05-refused.png");
    let cli = env.run(&["reset"]);
    assert_ne!(cli.code, 0, "{cli}");
    assert!(cli.stderr.contains("another hdev process"), "{cli}");
    b.wait("the checks to finish", Duration::from_secs(60), |b| {
        b.text("#action-line").contains("done")
    });
    b.wait("the checks' results", Duration::from_secs(10), |b| {
        b.text("#checks-summary").contains("2 passed")
    });

    b.color_scheme("dark");
    let bg = b.script(
        "return getComputedStyle(document.body).backgroundColor",
        json!([]),
    );
    assert_eq!(bg, json!("rgb(13, 17, 23)"), "dark background");
    b.screenshot(&shots, "06-dark.png");
    b.color_scheme("light");
    b.viewport(420, 800);
    b.wait("the narrow layout", Duration::from_secs(5), |b| {
        b.script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            json!([]),
        ) == json!(true)
    });
    b.screenshot(&shots, "07-narrow.png");
    eprintln!("screenshots in {}", shots.display());
}
