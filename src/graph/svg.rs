//! A [`Picture`] as plain SVG 1.1: light and dark colours in embedded CSS
//! (`prefers-color-scheme`), a `<title>` on every machine and host as its text
//! alternative, and the whole picture described in the root's `aria-label`. States are
//! always written out in the boxes as well as coloured.

use std::fmt::Write;

use super::{Picture, Rect};

const STYLE: &str = r#"
svg { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.bg { fill: #ffffff; }
text { fill: #1f2328; }
text.title, text.name, text.legend-title { font-weight: bold; }
text.note { fill: #9a6700; }
text.address, text.busname, text.host { fill: #59636e; }
.band { fill: #f6f8fa; stroke: #afb8c1; stroke-dasharray: 6 4; }
.bus { stroke: #0969da; stroke-width: 3; }
.trunk { stroke: #0969da; stroke-width: 3; }
.junction { fill: #0969da; }
.link { stroke: #0969da; stroke-width: 1.5; fill: none; }
.dep { stroke: #57606a; stroke-width: 1.5; fill: none; }
.arrowhead { fill: #57606a; }
.node { stroke-width: 2; }
.vm-inner { fill: none; stroke-width: 1; }
.shape { fill: #ffffff; stroke: #57606a; stroke-width: 2; }
.running { fill: #dafbe1; stroke: #1a7f37; }
.stopped { fill: #eaeef2; stroke: #6e7781; }
.busy { fill: #fff8c5; stroke: #9a6700; }
.not-created { fill: #ffffff; stroke: #8c959f; stroke-dasharray: 5 3; }
.unknown { fill: #f6f8fa; stroke: #8c959f; stroke-dasharray: 2 3; }
.changed { fill: #fbefff; stroke: #8250df; stroke-width: 3; }
.drifted { fill: #fff1e5; stroke: #bc4c00; stroke-width: 3; }
.unhealthy { fill: #ffebe9; stroke: #cf222e; stroke-width: 3; }
@media (prefers-color-scheme: dark) {
  .bg { fill: #0d1117; }
  text { fill: #e6edf3; }
  text.note { fill: #d29922; }
  text.address, text.busname, text.host { fill: #9198a1; }
  .band { fill: #161b22; stroke: #3d444d; }
  .bus, .trunk, .link { stroke: #4493f8; }
  .junction { fill: #4493f8; }
  .dep { stroke: #9198a1; }
  .arrowhead { fill: #9198a1; }
  .shape { fill: #0d1117; stroke: #9198a1; }
  .running { fill: #0f2d1a; stroke: #3fb950; }
  .stopped { fill: #21262d; stroke: #9198a1; }
  .busy { fill: #2e2a12; stroke: #d29922; }
  .not-created { fill: #0d1117; stroke: #9198a1; }
  .unknown { fill: #161b22; stroke: #656c76; }
  .changed { fill: #271a3d; stroke: #ab7df8; }
  .drifted { fill: #3a1f0b; stroke: #f0883e; }
  .unhealthy { fill: #3c1618; stroke: #f85149; }
}
"#;

/// The picture as an SVG document.
pub(crate) fn render(p: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(&summary(p)),
        w = p.width,
        h = p.height
    );
    let _ = writeln!(
        s,
        "<title>{}</title>",
        esc(&format!("{}: topology", p.title))
    );
    let _ = writeln!(s, "<style>{STYLE}</style>");
    s.push_str(concat!(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" "#,
        r#"markerHeight="8" orient="auto"><path class="arrowhead" d="M0,0 L10,5 L0,10 z"/>"#,
        "</marker></defs>\n"
    ));
    let _ = writeln!(
        s,
        r#"<rect class="bg" x="0" y="0" width="{}" height="{}"/>"#,
        p.width, p.height
    );
    draw_hosts(&mut s, p);
    draw_buses(&mut s, p);
    draw_lines(&mut s, p);
    draw_nodes(&mut s, p);
    draw_legend(&mut s, p);
    for t in &p.texts {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="{}" class="{}">{}</text>"#,
            t.x,
            t.y,
            t.size,
            t.class,
            esc(&t.text)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The picture in words, for the root's `aria-label`.
fn summary(p: &Picture) -> String {
    let machines: Vec<String> = p
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{} ({} on host {}, {})",
                n.name,
                n.kind.label(),
                n.host,
                n.status
            )
        })
        .collect();
    format!(
        "Topology of {}: {}",
        p.title,
        if machines.is_empty() {
            "no machines".to_string()
        } else {
            machines.join("; ")
        }
    )
}

fn rect(s: &mut String, class: &str, r: &Rect, rx: i32) {
    let _ = write!(
        s,
        r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}" rx="{rx}"/>"#,
        r.x, r.y, r.w, r.h
    );
}

fn draw_hosts(s: &mut String, p: &Picture) {
    for h in &p.hosts {
        let _ = write!(s, "<g><title>host {}</title>", esc(&h.name));
        rect(s, "band", &h.rect, 10);
        s.push_str("</g>\n");
    }
}

fn draw_buses(s: &mut String, p: &Picture) {
    for b in &p.buses {
        let _ = write!(
            s,
            "<g><title>network {} {}</title>",
            esc(&b.name),
            esc(&b.subnet)
        );
        for [x1, y1, x2, y2] in &b.rails {
            let _ = write!(
                s,
                r#"<line class="bus" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>"#
            );
        }
        if let Some([x1, y1, x2, y2]) = b.trunk {
            let _ = write!(
                s,
                r#"<line class="trunk" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>"#
            );
            for r in &b.rails {
                let _ = write!(
                    s,
                    r#"<circle class="junction" cx="{x1}" cy="{}" r="4"/>"#,
                    r[1]
                );
            }
        }
        s.push_str("</g>\n");
    }
}

fn points(ps: &[[i32; 2]]) -> String {
    ps.iter()
        .map(|[x, y]| format!("{x},{y}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn draw_lines(s: &mut String, p: &Picture) {
    for l in &p.links {
        let _ = writeln!(
            s,
            r#"<polyline class="link" points="{}"><title>{} on {}: {}</title></polyline>"#,
            points(&l.points),
            esc(&l.machine),
            esc(&l.network),
            esc(&l.address)
        );
    }
    for e in &p.edges {
        let _ = writeln!(
            s,
            r#"<polyline class="dep" marker-end="url(#arrow)" points="{}"><title>{} waits for {}</title></polyline>"#,
            points(&e.points),
            esc(&e.from),
            esc(&e.to)
        );
    }
}

fn draw_nodes(s: &mut String, p: &Picture) {
    for n in &p.nodes {
        let mut alt = format!(
            "{}: {} on host {}, {}",
            n.name,
            n.kind.label(),
            n.host,
            n.status
        );
        if !n.ports.is_empty() {
            let _ = write!(alt, ", ports {}", n.ports.join(" "));
        }
        let _ = write!(s, "<g><title>{}</title>", esc(&alt));
        node_shape(s, &format!("node {}", n.class), &n.rect, n.kind);
        s.push_str("</g>\n");
    }
}

/// A container is a rounded box, a VM a square one with a second border inside.
fn node_shape(s: &mut String, class: &str, r: &Rect, kind: super::Kind) {
    match kind {
        super::Kind::Container => rect(s, class, r, 10),
        super::Kind::Vm => {
            rect(s, class, r, 0);
            let inner = Rect {
                x: r.x + 4,
                y: r.y + 4,
                w: r.w - 8,
                h: r.h - 8,
            };
            let cls = class.replacen("node", "vm-inner", 1);
            rect(s, &cls, &inner, 0);
        }
    }
}

fn draw_legend(s: &mut String, p: &Picture) {
    for i in &p.legend {
        let r = &i.rect;
        let (mid, right) = (r.y + r.h / 2, r.x + r.w);
        match i.kind {
            "state" => rect(s, &format!("swatch {}", i.class), r, 4),
            "container" => node_shape(s, "shape", r, super::Kind::Container),
            "vm" => node_shape(s, "shape", r, super::Kind::Vm),
            "depends_on" => {
                let _ = write!(
                    s,
                    r#"<polyline class="dep" marker-end="url(#arrow)" points="{},{mid} {right},{mid}"/>"#,
                    r.x
                );
            }
            _ => {
                let _ = write!(
                    s,
                    r#"<line class="bus" x1="{}" y1="{mid}" x2="{right}" y2="{mid}"/>"#,
                    r.x
                );
            }
        }
        s.push('\n');
    }
}

/// Escapes text for XML content and attributes.
pub(crate) fn esc(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}
