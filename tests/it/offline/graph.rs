//! `hdev graph`: the example and every `init` template drawn as SVG, DOT and JSON with no
//! engine; the SVG is well-formed, names every machine with its state in words, and no two
//! boxes or texts overlap; without a reachable engine the picture is still drawn and says
//! so; the README's picture is what `graph` draws of the example today.

use std::path::Path;

use crate::support::{repo, EnvBuilder, TestEnv};

const REFRESH: &str =
    "cargo run -q -- -f Envfile.example graph --offline -o docs/graph-example.svg";

fn env() -> EnvBuilder {
    TestEnv::build().own_home().var("NO_COLOR", "1")
}

/// hdev in `dir` with `args`; insists on success; stdout.
fn hdev(env: &TestEnv, dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = env
        .cmd()
        .current_dir(dir)
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hdev {args:?}: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// The machines of the Envfile in `dir`, from `hdev hash` (which knows nothing of graphs).
fn machines(env: &TestEnv, dir: &Path, file: &str) -> Vec<String> {
    let out = hdev(env, dir, &["-f", file, "--json", "hash"], &[]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<String> = v["machines"].as_object().unwrap().keys().cloned().collect();
    assert!(!names.is_empty(), "{out}");
    names
}

/// Well-formed XML as far as a picture needs: every tag closed in order, quoted
/// attributes, entities known. Returns the first problem.
fn well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml.trim_start();
    rest = rest.strip_prefix("<?xml").ok_or("no XML declaration")?;
    rest = &rest[rest.find("?>").ok_or("unclosed declaration")? + 2..];
    while let Some(i) = rest.find('<') {
        check_text(&rest[..i])?;
        let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
        let tag = &rest[i + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    check_text(rest)?;
    match stack.is_empty() {
        true => Ok(()),
        false => Err(format!("unclosed: {stack:?}")),
    }
}

fn check_text(t: &str) -> Result<(), String> {
    for (i, _) in t.match_indices('&') {
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
        if !known.iter().any(|k| t[i..].starts_with(k)) {
            return Err(format!("bad entity in {t:?}"));
        }
    }
    Ok(())
}

fn attr(tag: &str, name: &str) -> Option<f64> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[at..].split('"').next()?.parse().ok()
}

fn unescape(t: &str) -> String {
    t.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// (x, y, w, h) of every `<rect class="node …">` and (text, box) of every `<text>`,
/// a text's width estimated as chars × font size × 0.6.
type Area = (f64, f64, f64, f64);
fn boxes_and_texts(svg: &str) -> (Vec<Area>, Vec<(String, Area)>) {
    let mut rects = Vec::new();
    let mut texts = Vec::new();
    for line in svg.lines() {
        for part in line.split("<rect").skip(1) {
            let tag = &part[..part.find('>').unwrap()];
            if tag.contains("class=\"node ") {
                let v = ["x", "y", "width", "height"].map(|a| attr(tag, a).unwrap());
                rects.push((v[0], v[1], v[2], v[3]));
            }
        }
        if let Some(rest) = line.strip_prefix("<text") {
            let (tag, body) = rest.split_once('>').unwrap();
            let text = unescape(body.strip_suffix("</text>").unwrap());
            let [x, y, size] = ["x", "y", "font-size"].map(|a| attr(tag, a).unwrap());
            let w = text.chars().count() as f64 * size * 0.6;
            texts.push((text, (x, y - size, w, size * 1.2)));
        }
    }
    (rects, texts)
}

fn overlap(a: &Area, b: &Area) -> bool {
    a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
}

/// Every problem of one SVG drawing of `names`, each machine `state`.
fn svg_problems(svg: &str, names: &[String], state: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = well_formed(svg) {
        out.push(format!("not well-formed: {e}"));
    }
    if !svg.contains(r#"role="img""#) || !svg.contains("aria-label=\"") {
        out.push("no role=img and aria-label on the root".into());
    }
    let (rects, texts) = boxes_and_texts(svg);
    if rects.len() != names.len() {
        out.push(format!(
            "{} boxes for {} machines",
            rects.len(),
            names.len()
        ));
    }
    for name in names {
        let Some((_, at)) = texts.iter().find(|(t, _)| t == name) else {
            out.push(format!("no text names `{name}`"));
            continue;
        };
        let home = rects.iter().find(|r| overlap(r, at));
        let stated = texts
            .iter()
            .any(|(t, a)| t == state && home.is_some_and(|r| overlap(r, a)));
        if !stated {
            out.push(format!("`{name}` has no `{state}` in its box"));
        }
        if !svg.contains(&format!("<title>{name}: ")) {
            out.push(format!("`{name}` has no <title>"));
        }
    }
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            if overlap(a, b) {
                out.push(format!("boxes overlap: {a:?} {b:?}"));
            }
        }
    }
    for (i, (ta, a)) in texts.iter().enumerate() {
        for (tb, b) in &texts[i + 1..] {
            if overlap(a, b) {
                out.push(format!("texts overlap: {ta:?} {tb:?}"));
            }
        }
    }
    out
}

/// Draws the Envfile `file` in `dir` in every format and checks each.
fn check_drawings(env: &TestEnv, dir: &Path, file: &str) -> Vec<String> {
    let names = machines(env, dir, file);
    let mut out = Vec::new();
    let svg = hdev(env, dir, &["-f", file, "graph", "--offline"], &[]);
    out.extend(svg_problems(&svg, &names, "not created"));
    let dot = hdev(
        env,
        dir,
        &["-f", file, "graph", "--offline", "--format", "dot"],
        &[],
    );
    if !dot.starts_with("digraph ") || !dot.trim_end().ends_with('}') {
        out.push(format!("not a DOT graph: {dot}"));
    }
    let json = hdev(
        env,
        dir,
        &["-f", file, "graph", "--offline", "--format", "json"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for name in &names {
        if !dot.contains(&format!("\"m:{name}\" [")) {
            out.push(format!("DOT has no node `{name}`"));
        }
        let node = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == **name);
        let laid =
            node.is_some_and(|n| n["rect"]["w"].as_i64() > Some(0) && n["status"] == "not created");
        let layered = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l.as_array().unwrap())
            .any(|n| n == name.as_str());
        if !laid || !layered {
            out.push(format!("JSON lays out no `{name}` in a layer: {node:?}"));
        }
    }
    out.into_iter()
        .map(|p| format!("{file} in {}: {p}", dir.display()))
        .collect()
}

#[test]
fn the_example_and_every_template_draw_without_overlaps() {
    let e = env().create();
    let mut problems = check_drawings(&e, &repo(), "Envfile.example");
    let list = hdev(&e, e.path(), &["init", "--list"], &[]);
    let templates: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        templates.contains(&"harness") && templates.len() >= 2,
        "{list}"
    );
    for t in templates {
        let dir = env().create();
        hdev(&dir, dir.path(), &["init", "--template", t], &[]);
        if crate::support::git::has_sources(&dir.path().join("Envfile")) {
            crate::support::git::harness_repos(dir.path());
        }
        problems.extend(check_drawings(&dir, dir.path(), "Envfile"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_they_look_for() {
    let names = vec!["a".to_string()];
    let good = concat!(
        "<?xml version=\"1.0\"?>\n<svg role=\"img\" aria-label=\"x\">\n",
        "<g><title>a: container</title><rect class=\"node x\" x=\"0\" y=\"0\" width=\"50\" height=\"40\"/></g>\n",
        "<text x=\"2\" y=\"14\" font-size=\"12\" class=\"name\">a</text>\n",
        "<text x=\"2\" y=\"30\" font-size=\"11\" class=\"line\">not created</text>\n</svg>\n"
    );
    assert_eq!(
        svg_problems(good, &names, "not created"),
        Vec::<String>::new()
    );
    let crowded = good.replace("y=\"30\"", "y=\"20\"");
    assert!(svg_problems(&crowded, &names, "not created")[0].contains("texts overlap"));
    let broken = good.replace("</g>", "");
    assert!(svg_problems(&broken, &names, "not created")[0].contains("not well-formed"));
    assert!(svg_problems(good, &names, "running")[0].contains("no `running`"));
}

#[test]
fn without_an_engine_the_topology_is_drawn_with_unknown_states_and_a_note() {
    let e = env().create();
    hdev(&e, e.path(), &["init", "--template", "minimal"], &[]);
    let names = machines(&e, e.path(), "Envfile");
    let nowhere = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let svg = hdev(&e, e.path(), &["graph"], &nowhere);
    assert_eq!(svg_problems(&svg, &names, "unknown"), Vec::<String>::new());
    assert!(svg.contains("class=\"note\">engines not read ("), "{svg}");
}

#[test]
fn the_readme_picture_is_what_graph_draws_of_the_example() {
    let e = env().create();
    let now = hdev(
        &e,
        &repo(),
        &["-f", "Envfile.example", "graph", "--offline"],
        &[],
    );
    let path = repo().join("docs/graph-example.svg");
    let saved = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        saved == now,
        "{} is not what `hdev graph` draws of Envfile.example now; refresh it with\n  {REFRESH}",
        path.display()
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("](docs/graph-example.svg)"),
        "README.md does not show it"
    );
}
