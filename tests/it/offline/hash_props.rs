//! Property tests of the environment hash: it ignores comments, whitespace and key order,
//! and moves when any input that matters moves (a machine field, a script's bytes, a
//! copied file's bytes, a box digest), touching only the machines that use that input.

use std::collections::BTreeMap;
use std::path::Path;

use hdev::envfile::hash::{self, BoxInput, HashReport};
use hdev::envfile::{load_source, SourceFile};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct MachineSpec {
    cpus: u32,
    memory_mb: u32,
    env: Vec<(String, String)>,
    ports: Vec<u16>,
    shell: String,
    uses_script: bool,
    uses_file: bool,
    uses_box: bool,
}

fn machine_spec() -> impl Strategy<Value = MachineSpec> {
    (
        1u32..8,
        16u32..4096,
        prop::collection::vec(("[A-Z]{1,6}", "[a-z0-9 ]{0,8}"), 0..3),
        prop::collection::btree_set(1024u16..60000, 0..3),
        "[a-z ]{1,12}",
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cpus, memory_mb, env, ports, shell, uses_script, uses_file, uses_box)| {
                let env: BTreeMap<_, _> = env.into_iter().collect();
                MachineSpec {
                    cpus,
                    memory_mb,
                    env: env.into_iter().collect(),
                    ports: ports.into_iter().collect(),
                    shell,
                    uses_script,
                    uses_file,
                    uses_box,
                }
            },
        )
}

/// One `key = value` line or table of the Envfile, kept apart so it can be reordered.
fn machine_lines(name: &str, m: &MachineSpec, host_ports: &mut u16) -> (Vec<String>, Vec<String>) {
    let mut keys = vec![
        "backend = \"docker\"".to_string(),
        if m.uses_box {
            "box = \"bb\"".to_string()
        } else {
            "image = \"local/app:1\"".to_string()
        },
        format!("cpus = {}", m.cpus),
        format!("memory = \"{}M\"", m.memory_mb),
    ];
    if !m.env.is_empty() {
        let pairs: Vec<String> = m
            .env
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        keys.push(format!("env = {{ {} }}", pairs.join(", ")));
    }
    if !m.ports.is_empty() {
        let ports: Vec<String> = m
            .ports
            .iter()
            .map(|p| {
                *host_ports += 1;
                format!("\"{}:{p}\"", *host_ports)
            })
            .collect();
        keys.push(format!("ports = [{}]", ports.join(", ")));
    }
    let mut steps = vec![format!(
        "[[machine.{name}.provision]]\nshell = \"{}\"",
        m.shell
    )];
    if m.uses_script {
        steps.push(format!(
            "[[machine.{name}.provision]]\nscript = \"setup.sh\"\nargs = [\"{name}\"]"
        ));
    }
    if m.uses_file {
        steps.push(format!(
            "[[machine.{name}.provision]]\nfile = \"conf\"\ndestination = \"/etc/conf\""
        ));
    }
    (keys, steps)
}

/// Renders the environment; `variant` picks key order, comments and spacing.
fn render(machines: &[MachineSpec], variant: u64) -> String {
    let mut out = String::new();
    let noisy = variant % 2 == 1;
    let reversed = (variant / 2) % 2 == 1;
    if noisy {
        out.push_str("# an environment for the property tests\n\n\n");
    }
    out.push_str("[env]\nname = \"props\"\n\n[box.bb]\nrecipe = \"recipe\"\n\n");
    let mut host_ports = 20000u16;
    let mut order: Vec<usize> = (0..machines.len()).collect();
    if reversed {
        order.reverse();
    }
    // Host ports are given in definition order whatever the rendering order, so both
    // renderings mean the same thing.
    let rendered: Vec<(Vec<String>, Vec<String>)> = machines
        .iter()
        .enumerate()
        .map(|(i, m)| machine_lines(&format!("m{i}"), m, &mut host_ports))
        .collect();
    for i in order {
        let (mut keys, steps) = rendered[i].clone();
        if reversed {
            keys.reverse();
        }
        out.push_str(&format!("[machine.m{i}]\n"));
        for k in keys {
            if noisy {
                out.push_str(&format!(
                    "  {}   # a comment\n",
                    k.replacen(" = ", "   =   ", 1)
                ));
            } else {
                out.push_str(&k);
                out.push('\n');
            }
        }
        out.push('\n');
        for s in steps {
            out.push_str(&s);
            out.push_str("\n\n");
        }
    }
    out
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(script: &str, conf: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("setup.sh"), script).unwrap();
        std::fs::create_dir_all(dir.path().join("conf/sub")).unwrap();
        std::fs::write(dir.path().join("conf/sub/app.conf"), conf).unwrap();
        std::fs::create_dir_all(dir.path().join("recipe")).unwrap();
        Fixture { dir }
    }

    fn hash(&self, text: &str, box_digest: &str) -> HashReport {
        let src = SourceFile::new(Path::new("Envfile"), "Envfile", text);
        let env = load_source(&src, self.dir.path(), true)
            .unwrap_or_else(|d| panic!("{}\n{text}", d.render(false)));
        let boxes = BTreeMap::from([(
            "bb".to_string(),
            BoxInput {
                digest: box_digest.to_string(),
                from: "test".into(),
            },
        )]);
        let inputs = hash::read_inputs(&env, boxes).unwrap();
        hash::compute(&env, &inputs)
    }
}

/// Which machines read the input a case changes.
type Reads = Box<dyn Fn(&MachineSpec) -> bool>;

const BOX_A: &str = "sha256:aaaa";
const BOX_B: &str = "sha256:bbbb";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn form_does_not_count(machines in prop::collection::vec(machine_spec(), 1..5)) {
        let f = Fixture::new("echo setup\n", "a = 1\n");
        let base = f.hash(&render(&machines, 0), BOX_A);
        for variant in 1..4 {
            let other = f.hash(&render(&machines, variant), BOX_A);
            prop_assert_eq!(&base.hash, &other.hash, "variant {}", variant);
            prop_assert_eq!(&base.machines, &other.machines);
        }
    }

    #[test]
    fn any_machine_field_counts_for_that_machine_only(
        machines in prop::collection::vec(machine_spec(), 2..5),
        which in any::<prop::sample::Index>(),
        field in 0usize..5,
    ) {
        let f = Fixture::new("echo setup\n", "a = 1\n");
        let before = f.hash(&render(&machines, 0), BOX_A);
        let i = which.index(machines.len());
        let mut changed = machines.clone();
        let m = &mut changed[i];
        match field {
            0 => m.cpus += 1,
            1 => m.memory_mb += 1,
            2 => m.env.push(("ZZEXTRA".into(), "1".into())),
            3 => m.shell.push('x'),
            _ => m.uses_box = !m.uses_box,
        }
        let after = f.hash(&render(&changed, 0), BOX_A);
        prop_assert_ne!(&before.hash, &after.hash);
        for (name, h) in &before.machines {
            let moved = after.machines[name] != *h;
            prop_assert_eq!(moved, *name == format!("m{i}"), "machine {}", name);
        }
    }

    #[test]
    fn input_bytes_count_for_the_machines_that_read_them(
        machines in prop::collection::vec(machine_spec(), 1..5),
        flip in 0usize..3,
        byte in any::<u8>(),
    ) {
        let before_fx = Fixture::new("echo setup\n", "a = 1\n");
        let text = render(&machines, 0);
        let before = before_fx.hash(&text, BOX_A);
        let (after, touched): (HashReport, Reads) = match flip {
            0 => {
                let mut script = b"echo setup\n".to_vec();
                script.push(byte);
                let fx = Fixture::new(std::str::from_utf8(&script).unwrap_or("echo other\n"), "a = 1\n");
                (fx.hash(&text, BOX_A), Box::new(|m: &MachineSpec| m.uses_script))
            }
            1 => {
                let fx = Fixture::new("echo setup\n", &format!("a = {byte}{byte}\n"));
                (fx.hash(&text, BOX_A), Box::new(|m: &MachineSpec| m.uses_file))
            }
            _ => (before_fx.hash(&text, BOX_B), Box::new(|m: &MachineSpec| m.uses_box)),
        };
        // The box digest is part of the environment hash even when no machine uses it.
        let any_touched = machines.iter().any(&touched);
        prop_assert_eq!(before.hash != after.hash, any_touched || flip == 2);
        for (i, m) in machines.iter().enumerate() {
            let name = format!("m{i}");
            prop_assert_eq!(before.machines[&name] != after.machines[&name], touched(m), "machine {}", name);
        }
    }
}

#[test]
fn the_hash_is_printed_in_full_and_short_forms() {
    let f = Fixture::new("echo setup\n", "a = 1\n");
    let spec = MachineSpec {
        cpus: 1,
        memory_mb: 64,
        env: vec![],
        ports: vec![],
        shell: "true".into(),
        uses_script: true,
        uses_file: true,
        uses_box: true,
    };
    let r = f.hash(&render(&[spec], 0), BOX_A);
    let s = r.hash.to_string();
    assert!(s.starts_with("sha256:") && s.len() == 7 + 64, "{s}");
    assert_eq!(r.hash.short(), &s[7..19]);
    assert!(r.hash.matches(&s[7..20]));
    assert!(!r.hash.matches("abc"));
}
