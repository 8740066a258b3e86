//! The environment hash against its published specification, `docs/HASH.md`.
//!
//! `tests/hashspec/hdevhash.py` implements the specification from its text alone (Python's
//! standard library, no hdev): it must give the environment hash and every per-machine
//! hash that `hdev --json hash` gives, for `Envfile.example`, every template `hdev init`
//! writes, the cases in `tests/hashspec/cases/`, and generated Envfiles (with host files
//! that provisioning reads, boxes from the Envfile, `Envfile.lock` and recipes).
//!
//! The schema guard pins the hashes of fixed Envfiles at [`PINNED_SCHEMA`]: when they move
//! while `SCHEMA_VERSION` does not, the hash's meaning changed without a new version.
//!
//! Python 3.11 or newer (`tomllib`) is needed; without it the comparisons are skipped,
//! except under `CI=true`, where a missing Python fails them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::{repo, TestEnv};

/// The schema version the pins below were taken at (an environment without sources is
/// hashed at version 1, so the first two pins are those of version 1).
const PINNED_SCHEMA: u32 = 2;

/// The hashes of one environment, as either side reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hashes {
    env: String,
    machines: BTreeMap<String, String>,
}

impl Hashes {
    fn from_json(v: &serde_json::Value) -> Hashes {
        Hashes {
            env: v["hash"]
                .as_str()
                .expect("`hash` in the output")
                .to_string(),
            machines: v["machines"]
                .as_object()
                .expect("`machines` in the output")
                .iter()
                .map(|(k, h)| (k.clone(), h.as_str().expect("a machine hash").to_string()))
                .collect(),
        }
    }
}

/// Whether Python 3.11+ is here; under `CI=true` its absence is a failure.
fn python_available() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("python3")
            .args([
                "-c",
                "import sys, tomllib; sys.exit(0 if sys.version_info >= (3, 11) else 1)",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 (3.11 or newer, with tomllib) is needed to check the hash against \
             docs/HASH.md; CI must provide it"
        );
        eprintln!("skipped: no python3 3.11+ to check the hash against docs/HASH.md");
    }
    found
}

/// A folder with a box store of its own (so recipe boxes count by their recipe digest).
fn folder() -> TestEnv {
    TestEnv::build().own_home().var("NO_COLOR", "1").create()
}

/// `hdev --json -f ENVFILE hash` in `dir`.
fn hdev_hashes(dir: &TestEnv, envfile: &Path) -> Result<Hashes, String> {
    let out = dir
        .cmd()
        .arg("--json")
        .arg("-f")
        .arg(envfile)
        .arg("hash")
        .output()
        .map_err(|e| format!("cannot run hdev: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "hdev hash failed on {}:\n{}",
            envfile.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("hdev hash --json printed no JSON: {e}"))?;
    Ok(Hashes::from_json(&v))
}

/// `python3 tests/hashspec/hdevhash.py --json ENVFILE` in `dir`.
fn python_hashes(dir: &TestEnv, envfile: &Path) -> Result<Hashes, String> {
    let script = repo().join("tests/hashspec/hdevhash.py");
    let out = Command::new("python3")
        .current_dir(dir.path())
        .arg(&script)
        .arg("--json")
        .arg(envfile)
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "hdevhash.py failed on {}:\n{}",
            envfile.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("hdevhash.py printed no JSON: {e}"))?;
    Ok(Hashes::from_json(&v))
}

/// Both sides on one Envfile: hdev's hashes, or what differs.
fn agree(dir: &TestEnv, envfile: &Path, what: &str) -> Result<Hashes, String> {
    let rust = hdev_hashes(dir, envfile).map_err(|e| format!("{what}: {e}"))?;
    let py = python_hashes(dir, envfile).map_err(|e| format!("{what}: {e}"))?;
    if rust != py {
        let text = std::fs::read_to_string(envfile).unwrap_or_default();
        return Err(format!(
            "{what}: docs/HASH.md (tests/hashspec/hdevhash.py) and hdev disagree\n\
             hdev:   {rust:#?}\nspec:   {py:#?}\n--- {}\n{text}",
            envfile.display()
        ));
    }
    Ok(rust)
}

/// Copies folder `from` into `to`: files with their modes, links as links.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read folder") {
        let e = e.expect("entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).expect("link"), &dst)
                .expect("symlink");
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// The folders of `tests/hashspec/cases/`, each an Envfile and the files it reads.
fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/hashspec/cases"))
        .expect("tests/hashspec/cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Envfile").is_file())
        .collect();
    v.sort();
    v
}

/// A case copied into a fresh folder.
fn case_copy(name: &str) -> TestEnv {
    let dir = folder();
    copy_tree(&repo().join("tests/hashspec/cases").join(name), dir.path());
    dir
}

/// Writes `Envfile.lock` pinning `boxes` (name -> digest).
fn write_lock(dir: &Path, boxes: &[(&str, String)]) {
    let mut text = "version = 1\nhash = \"sha256:00\"\n".to_string();
    for (name, digest) in boxes {
        let _ = write!(
            text,
            "\n[boxes.{name}]\ndigest = \"{digest}\"\nsource = \"test\"\n"
        );
    }
    // The sources `hdev lock` pinned stay pinned.
    let kept = std::fs::read_to_string(dir.join("Envfile.lock"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("sources").cloned());
    if let Some(sources) = kept {
        let table = toml::Table::from_iter([("sources".to_string(), sources)]);
        text.push('\n');
        text.push_str(&toml::to_string(&table).expect("sources as TOML"));
    }
    std::fs::write(dir.join("Envfile.lock"), text).expect("write lock");
}

/// Box names of the Envfile in `dir`.
fn box_names(envfile: &Path) -> Vec<String> {
    let doc: toml::Table = std::fs::read_to_string(envfile)
        .expect("read Envfile")
        .parse()
        .expect("TOML");
    doc.get("box")
        .and_then(|b| b.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_specification_agrees_with_hdev_on_the_example_the_templates_and_the_cases() {
    if !python_available() {
        return;
    }
    let mut failures = Vec::new();

    // The example, in place (its recipes counted by their digests).
    let dir = folder();
    check(
        agree(&dir, &repo().join("Envfile.example"), "Envfile.example"),
        &mut failures,
    );

    // Every template `hdev init` writes: as written, then with every box pinned by a lock.
    let list = dir
        .cmd()
        .args(["init", "--list"])
        .output()
        .expect("init --list");
    let templates: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(templates.len() >= 2, "templates: {templates:?}");
    for t in &templates {
        let dir = folder();
        dir.cmd().args(["init", "--template", t]).assert().success();
        let envfile = dir.path().join("Envfile");
        if crate::support::git::has_sources(&envfile) {
            // Its repositories, pinned by `hdev lock` (what the specification reads).
            crate::support::git::harness_repos(dir.path());
            dir.ok(&["lock"]);
        }
        let unpinned = check(
            agree(&dir, &envfile, &format!("template {t}")),
            &mut failures,
        );
        let names = box_names(&envfile);
        let pins: Vec<(&str, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_str(),
                    format!("sha256:{}", format!("{i:x}").repeat(64)),
                )
            })
            .collect();
        write_lock(dir.path(), &pins);
        let pinned = check(
            agree(&dir, &envfile, &format!("template {t}, locked")),
            &mut failures,
        );
        if let (Some(a), Some(b)) = (unpinned, pinned) {
            if !names.is_empty() && a.env == b.env {
                failures.push(format!("template {t}: the lock's box pins did not count"));
            }
        }
    }

    // The cases, then again with a changed byte in every host file provisioning reads.
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let dir = case_copy(&name);
        let envfile = dir.path().join("Envfile");
        let before = check(
            agree(&dir, &envfile, &format!("case {name}")),
            &mut failures,
        );
        for f in ["setup.sh", "conf/sub/a.conf", "play.yml"] {
            let p = dir.path().join(f);
            if p.exists() {
                let mut bytes = std::fs::read(&p).unwrap();
                bytes.push(b'\n');
                std::fs::write(&p, bytes).unwrap();
            }
        }
        let after = check(
            agree(&dir, &envfile, &format!("case {name}, files changed")),
            &mut failures,
        );
        if let (Some(a), Some(b)) = (before, after) {
            if dir.path().join("setup.sh").exists() && a.env == b.env {
                failures.push(format!("case {name}: changed host files did not count"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// Generated Envfiles

/// An environment variable's value as the Envfile writes it.
#[derive(Debug, Clone)]
enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn toml(&self) -> String {
        match self {
            Scalar::Str(s) => q(s),
            Scalar::Int(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        "\\PC{0,10}".prop_map(Scalar::Str),
        "[\\x00-\\x1f\"\\\\\\x7f/]{0,4}".prop_map(Scalar::Str),
        any::<i64>().prop_map(Scalar::Int),
        any::<bool>().prop_map(Scalar::Bool),
    ]
}

fn vars() -> impl Strategy<Value = BTreeMap<String, Scalar>> {
    prop::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", scalar(), 0..3)
}

#[derive(Debug, Clone)]
struct Health {
    table: bool,
    interval: Option<(u32, &'static str)>,
    timeout: Option<(u32, &'static str)>,
    retries: Option<u32>,
}

#[derive(Debug, Clone)]
struct Gm {
    vm: bool,
    /// 0 image, 1 the pinned box, 2 the recipe box, 3 the file box.
    base: u8,
    count: u32,
    cpus: Option<u32>,
    memory: Option<String>,
    disk: Option<String>,
    env: BTreeMap<String, Scalar>,
    /// (as a list, the words).
    command: Option<(bool, Vec<String>)>,
    /// (network, fixed address).
    nets: Vec<(Index, bool)>,
    /// (form 0 guest only / 1 host:guest / 2 ip:host:guest, protocol 0 none / 1 tcp / 2 udp, guest).
    ports: Vec<(u8, u8, u16)>,
    /// 0 shell, 1 script, 2 `./`script, 3 file folder, 4 file, 5 ansible.
    steps: Vec<u8>,
    shell: String,
    extra_vars: BTreeMap<String, Scalar>,
    health: Option<Health>,
    deps: Vec<(Index, bool)>,
    /// 0 here, 1 the remote host, 2 in an earlier VM.
    place: u8,
    synced: Option<bool>,
    libvirt_uri: bool,
    accel: Option<u8>,
}

fn size() -> impl Strategy<Value = String> {
    (
        1u32..4096,
        prop::sample::select(vec!["M", "MiB", "G", "MB", "K", "kB", " M"]),
        any::<bool>(),
    )
        .prop_map(|(n, unit, half)| {
            if half {
                format!("{}.5{unit}", n % 8)
            } else {
                format!("{n}{unit}")
            }
        })
}

fn duration() -> impl Strategy<Value = (u32, &'static str)> {
    (1u32..5000, prop::sample::select(vec!["ms", "s", "m", "h"]))
}

fn health() -> impl Strategy<Value = Health> {
    (
        any::<bool>(),
        prop::option::of(duration()),
        prop::option::of(duration()),
        prop::option::of(1u32..100),
    )
        .prop_map(|(table, interval, timeout, retries)| Health {
            table,
            interval,
            timeout,
            retries,
        })
}

fn machine() -> impl Strategy<Value = Gm> {
    let shape = (
        any::<bool>(),
        0u8..4,
        prop_oneof![Just(1u32), 1u32..4],
        prop::option::of(1u32..8),
        prop::option::of(size()),
        prop::option::of(size()),
        0u8..3,
        prop::option::of(any::<bool>()),
        any::<bool>(),
        prop::option::of(0u8..3),
    );
    let content = (
        vars(),
        prop::option::of((any::<bool>(), prop::collection::vec("[a-z/ -]{1,8}", 1..3))),
        prop::collection::vec((any::<Index>(), any::<bool>()), 0..3),
        prop::collection::vec((0u8..3, 0u8..3, 1u16..=65535), 0..3),
        prop::collection::vec(0u8..6, 0..4),
        "\\PC{0,16}",
        vars(),
        prop::option::of(health()),
        prop::collection::vec((any::<Index>(), any::<bool>()), 0..3),
    );
    (shape, content).prop_map(
        |(
            (vm, base, count, cpus, memory, disk, place, synced, libvirt_uri, accel),
            (env, command, nets, ports, steps, shell, extra_vars, health, deps),
        )| Gm {
            vm,
            base,
            count,
            cpus,
            memory,
            disk,
            env,
            command,
            nets,
            ports,
            steps,
            shell,
            extra_vars,
            health,
            deps,
            place,
            synced,
            libvirt_uri,
            accel,
        },
    )
}

#[derive(Debug, Clone)]
struct Gt {
    machine: Index,
    run: String,
    expect_exit: Option<i64>,
    expect_output: Option<String>,
    timeout: Option<(u32, &'static str)>,
}

fn test_check() -> impl Strategy<Value = Gt> {
    (
        any::<Index>(),
        "\\PC{1,12}",
        prop::option::of(prop::sample::select(vec![0i64, 1, -1, 255, 4_294_967_297])),
        prop::option::of("\\PC{0,8}"),
        prop::option::of(duration()),
    )
        .prop_map(|(machine, run, expect_exit, expect_output, timeout)| Gt {
            machine,
            run,
            expect_exit,
            expect_output,
            timeout,
        })
}

#[derive(Debug, Clone)]
struct Genv {
    description: Option<String>,
    parallel: Option<u32>,
    accel: Option<u8>,
    libvirt_uri: bool,
    host_paths: bool,
    networks: usize,
    /// The pinned box's `sha256`: (digest byte, upper case, with `sha256:`).
    pin: (u8, bool, bool),
    version: Option<String>,
    machines: Vec<Gm>,
    tests: Vec<Gt>,
    /// Pin the recipe box in `Envfile.lock` (and the pinned box, which the Envfile's own
    /// `sha256` overrides).
    lock: Option<u8>,
    /// Bytes of the host files: setup.sh, conf/sub/a.conf, the recipe's extra file, the
    /// file box; whether conf/run.sh is executable.
    files: (String, String, String, String, bool),
}

fn environment() -> impl Strategy<Value = Genv> {
    let settings = (
        prop::option::of("\\PC{0,12}"),
        prop::option::of(1u32..32),
        prop::option::of(0u8..3),
        any::<bool>(),
        any::<bool>(),
        0usize..3,
        (any::<u8>(), any::<bool>(), any::<bool>()),
        prop::option::of("[0-9.]{1,5}"),
    );
    let body = (
        prop::collection::vec(machine(), 1..5),
        prop::collection::vec(test_check(), 0..3),
        prop::option::of(any::<u8>()),
        (
            "\\PC{0,20}",
            "\\PC{0,20}",
            "\\PC{0,20}",
            "\\PC{0,20}",
            any::<bool>(),
        ),
    );
    (settings, body).prop_map(
        |(
            (description, parallel, accel, libvirt_uri, host_paths, networks, pin, version),
            (machines, tests, lock, files),
        )| Genv {
            description,
            parallel,
            accel,
            libvirt_uri,
            host_paths,
            networks,
            pin,
            version,
            machines,
            tests,
            lock,
            files,
        },
    )
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

const ACCELS: [&str; 3] = ["auto", "kvm", "qemu"];

/// The instance names of machine `i` of `g`.
fn instances(i: usize, m: &Gm) -> Vec<String> {
    if m.count > 1 {
        (1..=m.count).map(|r| format!("m{i}-{r}")).collect()
    } else {
        vec![format!("m{i}")]
    }
}

/// The Envfile of `g`; always valid (the test insists hdev accepts it).
fn render(g: &Genv) -> String {
    let mut out = String::from("[env]\nname = \"gen\"\n");
    if let Some(d) = &g.description {
        let _ = writeln!(out, "description = {}", q(d));
    }
    if let Some(p) = g.parallel {
        let _ = writeln!(out, "parallel = {p}");
    }
    if let Some(a) = g.accel {
        let _ = writeln!(out, "accel = \"{}\"", ACCELS[a as usize]);
    }
    if g.libvirt_uri {
        out.push_str("libvirt_uri = \"qemu:///session\"\n");
    }
    if g.host_paths {
        out.push_str("host_paths = true\n");
    }
    out.push_str(
        "\n[host.far]\ndocker = \"tcp://10.0.0.9:2375\"\nlibvirt_uri = \"qemu+ssh://u@far/system\"\n",
    );
    let (byte, upper, prefixed) = g.pin;
    let mut pin = format!("{byte:02x}").repeat(32);
    if upper {
        pin = pin.to_ascii_uppercase();
    }
    if prefixed {
        pin = format!("sha256:{pin}");
    }
    let _ = writeln!(
        out,
        "\n[box.pinned]\nurl = \"https://example.org/p.box\"\nsha256 = \"{pin}\""
    );
    if let Some(v) = &g.version {
        let _ = writeln!(out, "version = {}", q(v));
    }
    out.push_str("\n[box.rec]\nrecipe = \"boxes/rec\"\n\n[box.disk]\nfile = \"disk.img\"\n");
    for n in 0..g.networks {
        let subnet = if n == 0 {
            "10.100.0.0/24"
        } else {
            "10.101.0.0/16"
        };
        let _ = writeln!(out, "\n[network.n{n}]\nsubnet = \"{subnet}\"");
        if n == 1 {
            out.push_str("encrypted = true\n");
        }
    }
    let mut host_port = 20000u16;
    let mut vm_instances: Vec<String> = Vec::new();
    for (i, m) in g.machines.iter().enumerate() {
        let name = format!("m{i}");
        let _ = writeln!(
            out,
            "\n[machine.{name}]\nbackend = \"{}\"",
            if m.vm { "libvirt" } else { "docker" }
        );
        match m.base {
            1 => out.push_str("box = \"pinned\"\n"),
            2 => out.push_str("box = \"rec\"\n"),
            3 => out.push_str("box = \"disk\"\n"),
            _ => out.push_str("image = \"local/app:1\"\n"),
        }
        // `count = 1` is written now and then: the default, written out.
        if m.count > 1 || m.cpus == Some(1) {
            let _ = writeln!(out, "count = {}", m.count);
        }
        if let Some(c) = m.cpus {
            let _ = writeln!(out, "cpus = {c}");
        }
        if let Some(s) = &m.memory {
            let _ = writeln!(out, "memory = \"{s}\"");
        }
        if let Some(s) = &m.disk {
            let _ = writeln!(out, "disk = \"{s}\"");
        }
        // Placement: a remote host, or (containers) the engine of an earlier VM; placed
        // machines keep off networks, which would then span places.
        let place = match m.place {
            1 => Some("far".to_string()),
            2 if !m.vm => vm_instances.first().cloned(),
            _ => None,
        };
        if let Some(h) = &place {
            let _ = writeln!(out, "host = \"{h}\"");
        } else if m.libvirt_uri {
            out.push_str("libvirt_uri = \"qemu:///system\"\n");
        }
        if let Some(a) = m.accel {
            let _ = writeln!(out, "accel = \"{}\"", ACCELS[a as usize]);
        }
        if g.networks > 0 && place.is_none() && !m.nets.is_empty() {
            let mut seen = std::collections::BTreeSet::new();
            let attaches: Vec<String> = m
                .nets
                .iter()
                .filter_map(|(ix, fixed)| {
                    let n = ix.index(g.networks);
                    if !seen.insert(n) {
                        return None;
                    }
                    Some(if *fixed {
                        let prefix = if n == 0 { "10.100.0" } else { "10.101.0" };
                        format!(
                            "{{ name = \"n{n}\", address = \"{prefix}.{}\" }}",
                            10 + 20 * i
                        )
                    } else if ix.index(2) == 0 {
                        format!("\"n{n}\"")
                    } else {
                        format!("{{ name = \"n{n}\" }}")
                    })
                })
                .collect();
            let _ = writeln!(out, "networks = [{}]", attaches.join(", "));
        }
        if !m.vm && !m.ports.is_empty() {
            let ports: Vec<String> = m
                .ports
                .iter()
                .map(|(form, proto, guest)| {
                    // Replicas cannot share a host port: they publish the guest port only.
                    let form = if m.count > 1 { 0 } else { *form };
                    let proto = ["", "/tcp", "/udp"][*proto as usize];
                    host_port += 1;
                    match form {
                        0 => format!("\"{guest}{proto}\""),
                        1 => format!("\"{host_port}:{guest}{proto}\""),
                        _ => format!("\"127.0.0.1:{host_port}:{guest}{proto}\""),
                    }
                })
                .collect();
            let _ = writeln!(out, "ports = [{}]", ports.join(", "));
        }
        if !m.env.is_empty() {
            let pairs: Vec<String> = m
                .env
                .iter()
                .map(|(k, v)| format!("{k} = {}", v.toml()))
                .collect();
            let _ = writeln!(out, "env = {{ {} }}", pairs.join(", "));
        }
        if let Some((list, words)) = &m.command {
            if *list {
                let words: Vec<String> = words.iter().map(|w| q(w)).collect();
                let _ = writeln!(out, "command = [{}]", words.join(", "));
            } else {
                let _ = writeln!(out, "command = {}", q(&words.join(" ")));
            }
        }
        if let Some(s) = m.synced {
            let _ = writeln!(
                out,
                "synced_folders = [{{ host = \"conf\", guest = \"/c\", readonly = {s} }}]"
            );
        }
        let earlier: Vec<String> = (0..i)
            .flat_map(|j| {
                // A definition's name stands for all its replicas; a replica for itself.
                let mut v = vec![format!("m{j}")];
                if g.machines[j].count > 1 {
                    v.extend(instances(j, &g.machines[j]));
                }
                v
            })
            .collect();
        if !earlier.is_empty() && !m.deps.is_empty() {
            let deps: Vec<String> = m
                .deps
                .iter()
                .map(|(ix, _)| q(&earlier[ix.index(earlier.len())]))
                .collect();
            let _ = writeln!(out, "depends_on = [{}]", deps.join(", "));
        }
        if let Some(h) = &m.health {
            if h.table {
                let _ = writeln!(
                    out,
                    "\n[machine.{name}.healthcheck]\ncommand = {}",
                    q(&m.shell)
                );
                if let Some((n, u)) = h.interval {
                    let _ = writeln!(out, "interval = \"{n}{u}\"");
                }
                if let Some((n, u)) = h.timeout {
                    let _ = writeln!(out, "timeout = \"{n}{u}\"");
                }
                if let Some(r) = h.retries {
                    let _ = writeln!(out, "retries = {r}");
                }
            } else {
                let _ = writeln!(out, "healthcheck = {}", q(&m.shell));
            }
        }
        for (k, step) in m.steps.iter().enumerate() {
            let _ = writeln!(out, "\n[[machine.{name}.provision]]");
            if k % 2 == 1 {
                let _ = writeln!(out, "name = \"step {k}\"");
            }
            match step {
                0 => {
                    let _ = writeln!(out, "shell = {}", q(&m.shell));
                }
                1 | 2 => {
                    let path = if *step == 1 { "setup.sh" } else { "./setup.sh" };
                    let _ = writeln!(out, "script = \"{path}\"\nargs = [{}, \"x\"]", q(&name));
                }
                3 => out.push_str("file = \"conf\"\ndestination = \"/etc/conf\"\n"),
                4 => out.push_str("file = \"conf/sub/a.conf\"\ndestination = \"/etc/a.conf\"\n"),
                _ => {
                    let vars: Vec<String> = m
                        .extra_vars
                        .iter()
                        .map(|(k, v)| format!("{k} = {}", v.toml()))
                        .collect();
                    let _ = writeln!(
                        out,
                        "ansible = \"play.yml\"\nextra_vars = {{ {} }}",
                        vars.join(", ")
                    );
                }
            }
        }
        if m.vm {
            vm_instances.extend(instances(i, m));
        }
    }
    let all: Vec<String> = g
        .machines
        .iter()
        .enumerate()
        .flat_map(|(i, m)| instances(i, m))
        .collect();
    for (k, t) in g.tests.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n[[test]]\nname = \"t{k}\"\nmachine = \"{}\"\nrun = {}",
            all[t.machine.index(all.len())],
            q(&t.run)
        );
        if let Some(e) = t.expect_exit {
            let _ = writeln!(out, "expect_exit = {e}");
        }
        if let Some(o) = &t.expect_output {
            let _ = writeln!(out, "expect_output = {}", q(o));
        }
        if let Some((n, u)) = t.timeout {
            let _ = writeln!(out, "timeout = \"{n}{u}\"");
        }
    }
    out
}

/// A folder with `g`'s Envfile and every file it reads.
fn generated(g: &Genv) -> TestEnv {
    let (setup, conf, extra, disk, exec) = &g.files;
    let dir = TestEnv::build()
        .own_home()
        .envfile(&render(g))
        .file("setup.sh", setup)
        .file("conf/sub/a.conf", conf)
        .file("conf/run.sh", "#!/bin/sh\n")
        .file("play.yml", "- hosts: all\n")
        .file("disk.img", disk)
        .file(
            "boxes/rec/box.toml",
            "name = \"rec\"\nversion = \"1\"\nscript = \"build.sh\"\n\n[artifacts]\ndocker = \"rootfs.tar\"\n",
        )
        .file("boxes/rec/build.sh", "true\n")
        .file("boxes/rec/extra", extra)
        .create();
    if *exec {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join("conf/run.sh");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink("sub/a.conf", dir.path().join("conf/link")).unwrap();
    if let Some(b) = g.lock {
        write_lock(
            dir.path(),
            &[
                ("rec", format!("sha256:{}", format!("{b:02x}").repeat(32))),
                ("pinned", format!("sha256:{}", "ee".repeat(32))),
            ],
        );
    }
    dir
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_specification_agrees_with_hdev_on_generated_envfiles(g in environment()) {
        if !python_available() {
            return Ok(());
        }
        let dir = generated(&g);
        let envfile = dir.path().join("Envfile");
        let r = agree(&dir, &envfile, "generated Envfile");
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}

// ---------------------------------------------------------------------------------------
// The schema guard

/// An environment of images only: no host file, no box.
const SMALL: &str = r#"
[env]
name = "small"

[network.lan]
subnet = "10.60.0.0/24"

[machine.db]
backend = "docker"
image = "postgres:16"
memory = "256M"
networks = [{ name = "lan", address = "10.60.0.10" }]
env = { POSTGRES_PASSWORD = "dev" }
healthcheck = "pg_isready"

[machine.app]
backend = "docker"
image = "local/app:1"
count = 2
networks = ["lan"]
ports = ["8000"]
depends_on = ["db"]
command = "serve --port 8000"

[[test]]
name = "app answers"
machine = "app-1"
run = "wget -q -O- http://127.0.0.1:8000/"
"#;

/// What the pinned environments hash to at [`PINNED_SCHEMA`]: (what, environment hash,
/// one machine and its hash).
fn pinned() -> Vec<(
    &'static str,
    TestEnv,
    &'static str,
    &'static str,
    &'static str,
)> {
    vec![
        (
            "the small environment",
            TestEnv::build().own_home().envfile(SMALL).create(),
            "sha256:b0c0c898a3001637d04a53108adacbde8bf65f4dfd28c4be2530890938413320",
            "app-2",
            "sha256:b29e0f3e321d8f0a3e8a210755c0546044e6820684417e095398eda9ee9f4327",
        ),
        (
            "an environment with sources",
            with_sources(),
            "sha256:c6ef7503161f02f405aaa5a58ec94fa15ab54c85b70797160044cf04dcccbfe0",
            "app-1",
            "sha256:4d25385a9e481176370521fd11e9162ee89351db88deb74e3d26c89a888ad88e",
        ),
        (
            "tests/hashspec/cases/corners",
            case_copy("corners"),
            "sha256:ffe356b7264051c37ab0025d23ec8b3d043a0c11b955d12697723506b81dcc83",
            "web-2",
            "sha256:84fc1b1b3b2527436de4f816ab3ce830a03a9d380be11a155305041be46c113d",
        ),
    ]
}

/// [`SMALL`] with a source used by one machine, from a repository made here with fixed
/// files (so a fixed tree), pinned by `hdev lock`.
fn with_sources() -> TestEnv {
    let text = SMALL.replace(
        "[machine.app]",
        "[source.site]\ngit = \"repos/site\"\nbranch = \"main\"\nsubdir = \"www\"\n\n\
         [machine.app]\nsynced_folders = [{ source = \"site\", guest = \"/srv/site\" }]",
    ) + "\n[[machine.db.provision]]\nscript = \"source:site/init.sh\"\n";
    let env = TestEnv::build().own_home().envfile(&text).create();
    crate::support::git::repo_with(
        &env.path().join("repos/site"),
        &[
            ("www/init.sh", "#!/bin/sh\necho init\n"),
            ("www/index.html", "hello\n"),
            ("README", "x\n"),
        ],
    );
    env.ok(&["lock"]);
    env
}

#[test]
fn the_hash_keeps_its_meaning_at_this_schema_version() {
    let version = hdev::envfile::SCHEMA_VERSION;
    assert_eq!(
        version, PINNED_SCHEMA,
        "SCHEMA_VERSION is now {version}, the pinned hashes are for {PINNED_SCHEMA}: describe \
         version {version} in docs/HASH.md, then set PINNED_SCHEMA and the pins in \
         tests/it/offline/hashspec.rs to what it gives"
    );
    let mut moved = Vec::new();
    for (what, dir, env_hash, machine, machine_hash) in pinned() {
        let got = hdev_hashes(&dir, &dir.path().join("Envfile")).expect("hdev hash");
        if got.env != env_hash {
            moved.push(format!(
                "{what}: environment {} (pinned {env_hash})",
                got.env
            ));
        }
        if got.machines.get(machine).map(String::as_str) != Some(machine_hash) {
            moved.push(format!(
                "{what}: machine `{machine}` {:?} (pinned {machine_hash})",
                got.machines.get(machine)
            ));
        }
        // The specification's implementation must give the pins too.
        if python_available() {
            match python_hashes(&dir, &dir.path().join("Envfile")) {
                Ok(py) if py == got => {}
                Ok(py) => moved.push(format!("{what}: hdevhash.py gives {py:?}, hdev {got:?}")),
                Err(e) => moved.push(e),
            }
        }
    }
    assert!(
        moved.is_empty(),
        "the hash's meaning changed while SCHEMA_VERSION is still {version}: bump \
         SCHEMA_VERSION (src/envfile/model.rs), describe the new version in docs/HASH.md, and \
         update the pinned values in tests/it/offline/hashspec.rs.\n{}",
        moved.join("\n")
    );
}

/// The hashes of `r`, or `None` with its failure recorded.
fn check(r: Result<Hashes, String>, failures: &mut Vec<String>) -> Option<Hashes> {
    r.map_err(|e| failures.push(e)).ok()
}
