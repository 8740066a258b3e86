//! A small WebDriver client for the dashboard's browser tests: Debian's `chromedriver`
//! driving headless `chromium`, spoken to in plain HTTP/1.1 over a `TcpStream` (no HTTP
//! client crate, nothing fetched at test time). Only what the tests use: a session,
//! navigation, finding and clicking elements, keys, scripts, window size, screenshots.
//!
//! Both programs are required: a missing one fails the test (under CI and elsewhere,
//! as a missing daemon does), saying what to install.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key WebDriver element references are returned under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where a program is on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `chromium` and `chromedriver`, or a failure that says how to get them.
fn require_browser() -> (PathBuf, PathBuf) {
    match (which("chromium"), which("chromedriver")) {
        (Some(b), Some(d)) => (b, d),
        _ => panic!(
            "the browser tests need Debian's `chromium` and `chromedriver`: install them \
             (`apt-get install -y chromium chromium-driver`, or bash .ci/setup){}",
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                " (CI=true: a missing browser is a failure, never a skip)"
            } else {
                ""
            }
        ),
    }
}

/// An HTTP/1.1 exchange on a new connection: (status, body).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let (status, _, body) = http_with_head(port, method, path, headers, body);
    (status, body)
}

/// [`http`], with the response's head (status line and headers, lower-cased) too.
pub(crate) fn http_with_head(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    exchange(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(90))).ok();
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes())?;
    // Read the head, then exactly the body it announces: a server may keep the connection
    // open whatever `Connection: close` asked.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    let done = |raw: &[u8]| match length {
        Some(n) => raw.len() >= head_end + n,
        None if chunked => raw[head_end..].ends_with(b"0\r\n\r\n"),
        None => false,
    };
    while !done(&raw) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).to_string();
    let body = if chunked { dechunk(&rest) } else { rest };
    Ok((status, head, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A chromedriver with one headless chromium session; both end on drop.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless chromium at `width`×`height`.
    pub(crate) fn start(width: u32, height: u32) -> Browser {
        let (chromium, chromedriver) = require_browser();
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        let t0 = Instant::now();
        while http_ok(port, "GET", "/status", None).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            },
        }}});
        let v = http_ok(port, "POST", "/session", Some(&caps)).expect("a browser session");
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http_ok(self.port, method, &path, body.as_ref())
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    pub(crate) fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub(crate) fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The element `css` selects (the first).
    pub(crate) fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {v}"))
            .to_string()
    }

    /// Clicks what `css` selects, as a user does (the element must be visible).
    pub(crate) fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Types `text` into what `css` selects (`\u{E007}` is Enter).
    pub(crate) fn keys(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The visible text of what `css` selects.
    pub(crate) fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Sizes the window so that the page itself gets `width`×`height` (the window's own
    /// frame, if it draws one, comes on top).
    pub(crate) fn viewport(&self, width: u32, height: u32) {
        let frame = self.script(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
            json!([]),
        );
        let extra = |i: usize| frame[i].as_u64().unwrap_or(0) as u32;
        self.resize(width + extra(0), height + extra(1));
    }

    pub(crate) fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Emulates the system's light or dark preference (`prefers-color-scheme`).
    pub(crate) fn color_scheme(&self, scheme: &str) {
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia",
                "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}})),
        );
    }

    /// Saves a screenshot of the window as `dir/name`.
    pub(crate) fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let v = self.call("GET", "/screenshot", None);
        let png = base64(v.as_str().expect("base64 screenshot"));
        std::fs::create_dir_all(dir).expect("screenshot folder");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Waits up to `limit` for `cond`; how long it took, or a failure naming `what`.
    pub(crate) fn wait(
        &self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&Browser) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            if cond(self) {
                return t0.elapsed();
            }
            if t0.elapsed() > limit {
                let page = self.script("return document.body.innerText", json!([]));
                panic!(
                    "waited {limit:?} for {what}; the page says:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http_ok(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A WebDriver command; its `value`, or the error it answered with.
fn http_ok(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(Value::to_string);
    let r = exchange(port, method, path, &[], body.as_deref()).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&r.2).map_err(|e| format!("{e}: {}", r.2))?;
    if r.0 != 200 {
        return Err(format!("{}: {}", r.0, v["value"]));
    }
    Ok(v["value"].clone())
}

/// Decodes standard base64 (the screenshot's PNG).
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (u32::from(val(*c)) << (18 - 6 * i)));
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

#[test]
fn base64_decodes_what_browsers_send() {
    assert_eq!(base64("aGRldg=="), b"hdev");
    assert_eq!(base64("aGRldiB1aQ=="), b"hdev ui");
    assert_eq!(base64("YWJj"), b"abc");
}
