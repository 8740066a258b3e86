//! The HTTP side of the dashboard (hyper, HTTP/1.1, on 127.0.0.1 only): every request is
//! checked ([`super::auth`]) before it is routed; the page and its assets are embedded in
//! the binary; the API is three JSON endpoints.
//!
//! - `GET /` the page (sets the token's cookie when the token came in the query),
//!   `GET /app.css`, `GET /app.js`;
//! - `GET /api/overview`: the environment as last read, with the action running or last run;
//! - `GET /api/logs?machine=NAME&after=N`: a machine's followed log lines;
//! - `POST /api/action` (JSON, the token in `X-Hdev-Token`): 202 started, 409 when
//!   something else runs, 400 when the request is wrong.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::actions::{self, Refused};
use super::auth::{self, Asked};
use super::App;

const INDEX: &str = include_str!("assets/index.html");
const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

type Reply = Response<Full<Bytes>>;

/// Serves connections from `listener` until the future is dropped.
pub(crate) async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

fn header(req: &Request<Incoming>, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn reply(status: StatusCode, kind: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(kind).unwrap_or(HeaderValue::from_static("text/plain")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Reply {
    reply(status, "application/json", v.to_string())
}

fn message(status: StatusCode, text: &str) -> Reply {
    json_reply(status, &json!({ "error": text }))
}

/// Checks the request, then routes it.
pub(crate) async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Reply {
    let asked = Asked {
        post: req.method() == Method::POST,
        host: header(&req, header::HOST),
        origin: header(&req, header::ORIGIN),
        query: req.uri().query(),
        cookie: header(&req, header::COOKIE),
        header: header(&req, auth::HEADER),
    };
    if let Err(refusal) = auth::check(&app.token, &asked) {
        return reply(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            refusal.message(),
        );
    }
    let from_query = asked
        .query
        .and_then(|q| auth::param(q, '&', "token"))
        .is_some();
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/") => page(app, from_query),
        (Method::GET, "/app.css") => reply(StatusCode::OK, "text/css; charset=utf-8", CSS),
        (Method::GET, "/app.js") => reply(StatusCode::OK, "text/javascript; charset=utf-8", JS),
        (Method::GET, "/api/overview") => overview(app),
        (Method::GET, "/api/logs") => logs(app, req.uri().query().unwrap_or("")),
        (Method::POST, "/api/action") => action(app, req).await,
        (_, "/" | "/app.css" | "/app.js" | "/api/overview" | "/api/logs" | "/api/action") => {
            message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => message(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The page; the token's cookie is set when the token came in the address, so that the
/// page's own requests (and a reload without it) carry it.
fn page(app: &App, from_query: bool) -> Reply {
    let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", INDEX);
    if from_query {
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            auth::COOKIE,
            app.token.as_str()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

fn overview(app: &App) -> Reply {
    app.seen();
    let live = app.live.get();
    let mut v = (*live).clone();
    v["action"] = json!(app.actions.view());
    json_reply(StatusCode::OK, &v)
}

fn logs(app: &Arc<App>, query: &str) -> Reply {
    let Some(machine) = auth::param(query, '&', "machine") else {
        return message(StatusCode::BAD_REQUEST, "which machine? (`machine=NAME`)");
    };
    if !machine
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return message(StatusCode::BAD_REQUEST, "not a machine name");
    }
    let after = auth::param(query, '&', "after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    json_reply(
        StatusCode::OK,
        &json!(super::logs::read(app, machine, after)),
    )
}

async fn action(app: &Arc<App>, req: Request<Incoming>) -> Reply {
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
        }
    };
    let request: actions::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return message(StatusCode::BAD_REQUEST, &format!("not an action: {e}")),
    };
    match actions::start(app, request) {
        Ok(id) => json_reply(StatusCode::ACCEPTED, &json!({ "id": id })),
        Err(Refused::Busy(m)) => message(StatusCode::CONFLICT, &m),
        Err(Refused::Bad(m)) => message(StatusCode::BAD_REQUEST, &m),
    }
}
