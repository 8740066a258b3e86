//! The dashboard's picture of the environment, kept fresh by a thread of its own: every
//! period (and at once after an action) it opens the project again (so that an edited
//! Envfile shows), reads [`crate::ops::dashboard::overview`] and keeps it as the JSON the
//! page polls. A read that fails keeps the topology, every state unknown, and says why.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::App;
use crate::graph::{svg, Picture};
use crate::ops::dashboard::{overview, picture_of, Overview};
use crate::ops::session::{open, Session};

/// The last read, as the page gets it (`/api/overview`, without the action).
#[derive(Debug, Default)]
pub(crate) struct Live {
    current: Mutex<Arc<Value>>,
}

impl Live {
    pub(crate) fn get(&self) -> Arc<Value> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, v: Value) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
    }
}

/// Seconds without a page asking after which the engines are no longer read (until one
/// asks again).
pub(crate) const IDLE_AFTER: u64 = 15;

/// How often the picture is read again: every 1.5 s, or `HDEV_UI_REFRESH_MS`.
pub(crate) fn period() -> Duration {
    Duration::from_millis(
        std::env::var("HDEV_UI_REFRESH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    )
}

/// Reads the environment now, then every `period` or when poked, until the app ends.
pub(crate) fn refresher(app: Arc<App>, pokes: Receiver<()>, period: Duration) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            app.live
                .set(json!({"error": "cannot start the refresher's runtime"}));
            return;
        };
        let mut seq = 0u64;
        loop {
            if seq > 0 && app.idle() {
                match pokes.recv() {
                    Ok(()) => {}
                    Err(_) => return,
                }
            }
            seq += 1;
            let mut v = rt.block_on(read(app.file.as_deref()));
            v["seq"] = json!(seq);
            v["at"] = json!(crate::state::drift::now());
            app.live.set(v);
            match pokes.recv_timeout(period) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    });
}

async fn read(file: Option<&std::path::Path>) -> Value {
    let o = match open(file) {
        Ok(o) => o,
        Err(e) => return json!({ "error": format!("{e:#}") }),
    };
    match overview(&o).await {
        Ok(ov) => view(&o, &ov),
        Err(e) => {
            let mut v = base(&o, &picture_of(&o, None));
            v["error"] = json!(format!("engines not read: {e:#}"));
            v
        }
    }
}

/// What every read has: the environment's names and hash, and the picture.
fn base(o: &Session, picture: &Picture) -> Value {
    let nodes: Vec<Value> = picture
        .nodes
        .iter()
        .map(|n| {
            json!({"name": n.name, "rect": n.rect, "status": n.status, "class": n.class,
                   "kind": n.kind.label()})
        })
        .collect();
    json!({
        "env": o.project.env.settings.name,
        "instance": o.ctx.instance,
        "env_hash": o.env_hash.0,
        "svg": svg::render(picture),
        "width": picture.width,
        "height": picture.height,
        "nodes": nodes,
        "notes": picture.notes,
        "error": null,
    })
}

fn view(o: &Session, ov: &Overview) -> Value {
    let mut v = base(o, &ov.picture);
    let machines: Vec<Value> = ov
        .status
        .machines
        .iter()
        .map(|row| {
            let mut m = json!(row);
            m["details"] = json!(ov.details.get(&row.name));
            m["status"] = json!(ov
                .picture
                .nodes
                .iter()
                .find(|n| n.name == row.name)
                .map(|n| n.status.clone()));
            m
        })
        .collect();
    v["machines"] = json!(machines);
    v["recorded_env_hash"] = json!(ov.status.recorded_env_hash);
    v["unreachable"] = json!(ov.status.unreachable);
    v["snapshots"] = json!(ov.snapshots);
    v["tests"] = json!(ov.tests);
    v["checks"] = json!(ov.checks);
    v
}
