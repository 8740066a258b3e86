//! The human form of a plan: one line per network and machine that changes, then a
//! one-line summary.

use super::{Change, NetChange, Plan};

/// A change's mark and word, as the plan shows them.
pub(crate) fn mark_of(change: Change) -> (&'static str, &'static str) {
    match change {
        Change::Create => ("+", "create"),
        Change::Recreate => ("~", "recreate"),
        Change::Start => (">", "start"),
        Change::Finish => ("~", "finish"),
        Change::Keep => ("=", "keep"),
        Change::Later => ("?", "later"),
        Change::Remove => ("-", "remove"),
        Change::Unavailable => ("!", "unavailable"),
    }
}

/// Lines describing the plan, in plan order.
pub(crate) fn render(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let width = plan
        .machines
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0);
    for n in &plan.networks {
        let (mark, what) = match n.change {
            NetChange::Create => ("+", "create network"),
            NetChange::Keep => continue,
            NetChange::Conflict => ("!", "conflict network"),
        };
        let detail = match n.change {
            NetChange::Conflict => format!(
                "exists with subnet {}, the Envfile says {}; run `hdev destroy` first",
                n.observed_subnet.as_deref().unwrap_or("?"),
                n.subnet.as_deref().unwrap_or("?")
            ),
            _ => n.subnet.clone().unwrap_or_else(|| "engine-assigned".into()),
        };
        out.push(format!("{mark} {what:<16} {} ({detail})", n.name));
    }
    for m in &plan.machines {
        let (mark, what) = mark_of(m.change);
        out.push(format!(
            "{mark} {what:<16} {:<width$} ({}; {})",
            m.name,
            m.backend,
            m.reason,
            width = width
        ));
    }
    let counts = plan.counts();
    let summary: Vec<String> = counts
        .iter()
        .map(|(c, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        })
        .collect();
    if plan.is_noop() {
        out.push(format!(
            "nothing to do: {} machine{} up to date",
            plan.machines.len(),
            if plan.machines.len() == 1 { "" } else { "s" }
        ));
    } else {
        out.push(format!("plan: {}", summary.join(", ")));
    }
    out
}
