//! Fuzzing the two readers of untrusted input, proptest-driven and bounded in cases (a
//! few seconds): the Envfile reader (mutations of the HARNESS example, and arbitrary
//! text) and the box archive reader (mutations of a small valid box). Neither may panic;
//! every diagnostic points inside the file; a damaged archive pinned by digest is
//! refused, an unpinned one is another box only where its manifest's words changed, and
//! nothing is left behind. A failing case is kept by proptest in `tests/proptest-regressions/`
//! and replayed first from then on.

use std::collections::BTreeMap;
use std::path::Path;

use hdev::boxes::manifest::{Artifact, Manifest, FORMAT_VERSION};
use hdev::boxes::Store;
use hdev::envfile::{load_source, SourceFile};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::repo;

/// One edit of a byte string: replace, insert or delete at a position.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to TOML and to tar headers as well as any byte.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"[]{}=\"'.,#\n\\0 ".to_vec())
    ];
    prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<Index>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<Index>().prop_map(Edit::Delete),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if bytes.is_empty() {
            break;
        }
        match e {
            Edit::Replace(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Edit::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.insert(at, *b);
            }
            Edit::Delete(i) => {
                let at = i.index(bytes.len());
                bytes.remove(at);
            }
        }
    }
    bytes
}

/// Loads `text` as an Envfile; a refusal must point inside the text and render.
fn read_envfile(text: &str) -> Result<(), TestCaseError> {
    let src = SourceFile::new(Path::new("Envfile"), "Envfile", text);
    if let Err(d) = load_source(&src, Path::new("/nonexistent"), false) {
        prop_assert!(!d.items.is_empty(), "refused without a reason");
        for item in &d.items {
            let span = item.span.clone();
            prop_assert!(span.end <= text.len(), "span {span:?} past the end");
            prop_assert!(
                text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                "span {span:?} splits a character"
            );
        }
        let _ = d.render(false);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_envfile_reader_survives_mutations_of_the_example(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        let example = std::fs::read(repo().join("Envfile.example")).unwrap();
        let bytes = mutate(example, &edits);
        read_envfile(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_envfile_reader_survives_arbitrary_text(text in "\\PC{0,300}") {
        read_envfile(&text)?;
    }
}

/// A small valid box archive: its manifest and one artifact.
fn small_box(dir: &Path) -> Vec<u8> {
    let payload = b"hello from a box\n".repeat(20);
    let art = dir.join("rootfs.tar");
    std::fs::write(&art, &payload).unwrap();
    let (sha256, size) = hdev::boxes::digest::hash_file(&art).unwrap();
    let m = Manifest {
        format: FORMAT_VERSION,
        name: "tiny".into(),
        version: "1".into(),
        created: "2026-01-01T00:00:00Z".into(),
        description: None,
        recipe: None,
        boot: None,
        packages: vec![],
        artifacts: BTreeMap::from([(
            "docker".to_string(),
            Artifact {
                path: "rootfs.tar".into(),
                sha256,
                size,
            },
        )]),
    };
    let out = dir.join("tiny.box");
    hdev::boxes::archive::write_archive(&m, dir, &out).unwrap();
    std::fs::read(out).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn the_box_reader_refuses_damaged_archives_and_leaves_nothing(
        edits in prop::collection::vec(edit(), 1..4)
    ) {
        let work = tempfile::tempdir().unwrap();
        let valid = small_box(work.path());
        let bytes = mutate(valid.clone(), &edits);
        let good = Store::at(work.path().join("good"))
            .add_reader(&valid[..], "tiny.box", None)
            .unwrap();
        // Pinned by digest (as an Envfile's `sha256` or a lock pins it): the damaged
        // archive is refused, unless the change left the very same box.
        let store = Store::at(work.path().join("store"));
        if let Ok(b) = store.add_reader(&bytes[..], "fuzzed.box", Some(&good.digest)) {
            prop_assert_eq!(&b.digest, &good.digest);
        }
        // Unpinned: a change to the manifest's own words makes another box (another
        // digest), but never one whose artifact differs from what its manifest says.
        let loose = Store::at(work.path().join("loose"));
        if let Ok(b) = loose.add_reader(&bytes[..], "fuzzed.box", None) {
            for a in b.manifest.artifacts.values() {
                let stored = std::fs::read(b.dir.join(&a.path)).unwrap();
                prop_assert_eq!(stored, b"hello from a box\n".repeat(20));
            }
        }
        // Nothing but the store was written, and no partial folder is left.
        let mut names: Vec<String> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        prop_assert!(
            names.iter().all(|n| ["good", "loose", "rootfs.tar", "store", "tiny.box"].contains(&n.as_str())),
            "{names:?}"
        );
        for s in ["store", "loose"] {
            let tmp = work.path().join(s).join("tmp");
            if tmp.exists() {
                let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
                prop_assert!(left.is_empty(), "partial folders left: {left:?}");
            }
        }
    }
}
