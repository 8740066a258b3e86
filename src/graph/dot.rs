//! A [`Picture`] as Graphviz DOT, for people who have Graphviz and want its own layout:
//! a cluster per host, a node per machine (its state in words in its label), a node per
//! network with lines to its machines labelled with their addresses, and the arrows of
//! `depends_on`. hdev itself never runs Graphviz.

use std::fmt::Write;

use super::{Kind, Picture};

/// Fill colours by class, the light ones of the SVG.
fn fill(class: &str) -> &'static str {
    match class {
        "running" => "#dafbe1",
        "stopped" => "#eaeef2",
        "busy" => "#fff8c5",
        "changed" => "#fbefff",
        "drifted" => "#fff1e5",
        "unhealthy" => "#ffebe9",
        "unknown" => "#f6f8fa",
        _ => "#ffffff",
    }
}

/// A quoted DOT string.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) fn render(p: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", q(&p.title));
    let mut label = format!("{}: topology", p.title);
    for n in &p.notes {
        label.push_str("\\n");
        label.push_str(&n.replace('"', "'"));
    }
    let _ = writeln!(
        s,
        "  graph [rankdir=TB, labelloc=t, fontname=\"monospace\", label=\"{label}\"];"
    );
    let _ = writeln!(s, "  node [fontname=\"monospace\", fontsize=11];");
    let _ = writeln!(s, "  edge [fontname=\"monospace\", fontsize=10];");
    for (i, h) in p.hosts.iter().enumerate() {
        let _ = writeln!(s, "  subgraph cluster_{i} {{");
        let _ = writeln!(
            s,
            "    label={}; style=dashed;",
            q(&format!("host {}", h.name))
        );
        for n in p.nodes.iter().filter(|n| n.host == h.name) {
            let mut label = format!("{}\\n{}\\n{}", n.name, n.kind.label(), n.status);
            for port in &n.ports {
                let _ = write!(label, "\\nport {port}");
            }
            let (shape, style) = match n.kind {
                Kind::Container => ("box", "rounded,filled"),
                Kind::Vm => ("box", "filled,bold"),
            };
            let _ = writeln!(
                s,
                "    {} [shape={shape}, style=\"{style}\", peripheries={}, fillcolor=\"{}\", label=\"{}\"];",
                q(&format!("m:{}", n.name)),
                if n.kind == Kind::Vm { 2 } else { 1 },
                fill(n.class),
                label.replace('"', "'")
            );
        }
        let _ = writeln!(s, "  }}");
    }
    for b in &p.buses {
        let _ = writeln!(
            s,
            "  {} [shape=box, style=filled, fillcolor=\"#ddf4ff\", label={}];",
            q(&format!("net:{}", b.name)),
            q(&format!("network {} {}", b.name, b.subnet))
        );
    }
    for l in &p.links {
        let _ = writeln!(
            s,
            "  {} -> {} [dir=none, color=\"#0969da\", label={}];",
            q(&format!("m:{}", l.machine)),
            q(&format!("net:{}", l.network)),
            q(&l.address)
        );
    }
    for e in &p.edges {
        let _ = writeln!(
            s,
            "  {} -> {} [color=\"#57606a\", tooltip={}];",
            q(&format!("m:{}", e.from)),
            q(&format!("m:{}", e.to)),
            q(&format!("{} waits for {}", e.from, e.to))
        );
    }
    s.push_str("}\n");
    s
}
