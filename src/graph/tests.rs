//! The layout on small graphs: layers follow `depends_on`, arrows go down, nothing
//! overlaps, the same input gives the same bytes.

use super::*;

fn machine(name: &str, deps: &[&str]) -> Machine {
    Machine {
        name: name.to_string(),
        host: "local".to_string(),
        kind: Kind::Container,
        state: State::NotCreated,
        flags: Vec::new(),
        ports: Vec::new(),
        links: vec![Link {
            network: "net".to_string(),
            address: "auto".to_string(),
        }],
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

fn describe(machines: Vec<Machine>) -> Description {
    Description {
        title: "t".to_string(),
        notes: Vec::new(),
        networks: vec![Network {
            name: "net".to_string(),
            subnet: "10.0.0.0/24".to_string(),
        }],
        machines,
    }
}

fn layer_of(p: &Picture, name: &str) -> usize {
    p.nodes.iter().find(|n| n.name == name).unwrap().layer
}

/// Every pair of boxes and of texts that overlap, and every arrow that does not run
/// down from the bottom of its machine to the top of the one it waits for.
fn problems(p: &Picture) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in p.nodes.iter().enumerate() {
        for b in &p.nodes[i + 1..] {
            if a.rect.overlaps(&b.rect) {
                out.push(format!("boxes {} and {} overlap", a.name, b.name));
            }
        }
    }
    for (i, a) in p.texts.iter().enumerate() {
        for b in &p.texts[i + 1..] {
            if a.bbox().overlaps(&b.bbox()) {
                out.push(format!("texts {:?} and {:?} overlap", a.text, b.text));
            }
        }
    }
    for e in &p.edges {
        let from = p.nodes.iter().find(|n| n.name == e.from).unwrap();
        let to = p.nodes.iter().find(|n| n.name == e.to).unwrap();
        let ys: Vec<i32> = e.points.iter().map(|q| q[1]).collect();
        let down = ys.windows(2).all(|w| w[0] <= w[1]);
        let ends = ys[0] == from.rect.y + from.rect.h && *ys.last().unwrap() == to.rect.y;
        if !down || !ends || from.layer >= to.layer {
            out.push(format!(
                "arrow {} -> {} does not run down: {ys:?}",
                e.from, e.to
            ));
        }
    }
    out
}

#[test]
fn a_chain_is_one_machine_per_layer() {
    let p = layout(&describe(vec![
        machine("c", &[]),
        machine("a", &["b"]),
        machine("b", &["c"]),
    ]));
    assert_eq!(p.layers, [["a"], ["b"], ["c"]]);
    assert_eq!(p.edges.len(), 2);
    assert_eq!(problems(&p), Vec::<String>::new());
}

#[test]
fn a_diamond_has_its_sides_in_one_layer() {
    let p = layout(&describe(vec![
        machine("top", &["left", "right"]),
        machine("left", &["bottom"]),
        machine("right", &["bottom"]),
        machine("bottom", &[]),
    ]));
    assert_eq!(
        [("top", 0), ("left", 1), ("right", 1), ("bottom", 2)].map(|(n, _)| layer_of(&p, n)),
        [0, 1, 1, 2]
    );
    assert_eq!(problems(&p), Vec::<String>::new());
}

#[test]
fn layering_takes_the_longest_path_and_long_arrows_pass_between_boxes() {
    // a waits for b directly and through c: b goes below c, a's arrow to b spans two layers.
    let p = layout(&describe(vec![
        machine("a", &["b", "c"]),
        machine("b", &[]),
        machine("c", &["b"]),
        machine("d", &["b"]),
    ]));
    assert_eq!(layer_of(&p, "b"), 2);
    let long = p
        .edges
        .iter()
        .find(|e| e.from == "a" && e.to == "b")
        .unwrap();
    let c = p.nodes.iter().find(|n| n.name == "c").unwrap().rect;
    let d = p.nodes.iter().find(|n| n.name == "d").unwrap().rect;
    for w in long.points.windows(2) {
        let seg = Rect {
            x: w[0][0].min(w[1][0]),
            y: w[0][1].min(w[1][1]),
            w: (w[0][0] - w[1][0]).abs().max(1),
            h: (w[0][1] - w[1][1]).abs().max(1),
        };
        assert!(
            !seg.overlaps(&c) && !seg.overlaps(&d),
            "{long:?} crosses a box"
        );
    }
    assert_eq!(problems(&p), Vec::<String>::new());
}

#[test]
fn a_wide_layer_and_two_hosts_keep_boxes_and_texts_apart() {
    let mut ms: Vec<Machine> = (0..9)
        .map(|i| machine(&format!("worker-{i}"), &[]))
        .collect();
    for m in ms.iter_mut().skip(5) {
        m.host = "far".to_string();
        m.kind = Kind::Vm;
        m.ports = vec!["127.0.0.1:8080:80".to_string()];
    }
    let deps: Vec<String> = ms.iter().map(|m| m.name.clone()).collect();
    let mut top = machine("top", &[]);
    top.depends_on = deps;
    ms.push(top);
    let p = layout(&describe(ms));
    assert_eq!(p.layers.len(), 2);
    assert_eq!(p.layers[1].len(), 9);
    assert_eq!(
        p.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["local", "far"]
    );
    let far = p.hosts[1].rect;
    for n in p.nodes.iter().filter(|n| n.host == "far") {
        let r = n.rect;
        assert!(
            r.x >= far.x && r.x + r.w <= far.x + far.w,
            "{} outside its host",
            n.name
        );
    }
    assert_eq!(problems(&p), Vec::<String>::new());
}

#[test]
fn sweeps_undo_a_crossing_that_name_order_makes() {
    // By name, x1 is left of x2 and b1 left of b2, but x1 waits for b2 and x2 for b1.
    let p = layout(&describe(vec![
        machine("x1", &["b2"]),
        machine("x2", &["b1"]),
        machine("b1", &[]),
        machine("b2", &[]),
    ]));
    let top = &p.layers[0];
    let bottom = &p.layers[1];
    let left_waits_for = if top[0] == "x1" { "b2" } else { "b1" };
    assert_eq!(bottom[0], left_waits_for, "{:?}", p.layers);
}

#[test]
fn a_state_is_in_words_and_the_worst_flag_colours_it() {
    let mut m = machine("m", &[]);
    m.state = State::Running;
    m.flags = vec![Flag::Changed, Flag::Drifted];
    assert_eq!(m.status(), "running, drifted, changed definition");
    assert_eq!(m.class(), "drifted");
    m.flags.push(Flag::Unhealthy);
    assert_eq!(m.class(), "unhealthy");
    let p = layout(&describe(vec![m]));
    assert!(p
        .texts
        .iter()
        .any(|t| t.text == "running, failed health, drifted, changed definition"));
}

#[test]
fn the_same_description_gives_the_same_bytes() {
    let d = describe(vec![
        machine("a", &["b", "c"]),
        machine("b", &[]),
        machine("c", &[]),
    ]);
    let (one, two) = (svg::render(&layout(&d)), svg::render(&layout(&d)));
    assert_eq!(one, two);
    assert!(one.contains(r#"role="img""#) && one.contains("aria-label=\"Topology of t: a ("));
    assert!(dot::render(&layout(&d)).contains("\"m:a\" -> \"m:b\""));
}
