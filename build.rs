//! Embeds `boxes/` and `templates/` into the binary, so that `hdev init` can write a
//! template with the box recipes it uses, whatever folder hdev runs in.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, bool)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).expect("inside root");
            let exec = std::fs::metadata(&p)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o111
                != 0;
            out.push((
                rel.to_string_lossy().into_owned(),
                p.canonicalize()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned(),
                exec,
            ));
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir");
    let root = Path::new(&manifest);
    let mut files = Vec::new();
    for top in ["boxes", "templates"] {
        walk(root, &root.join(top), &mut files);
        println!("cargo:rerun-if-changed={top}");
    }
    let mut code = String::from("/// (path from the repository root, content, executable)\npub(crate) static EMBEDDED: &[(&str, &str, bool)] = &[\n");
    for (rel, abs, exec) in &files {
        let _ = writeln!(code, "    ({rel:?}, include_str!({abs:?}), {exec}),");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("out dir")).join("embedded.rs");
    std::fs::write(out, code).expect("write embedded.rs");
}
