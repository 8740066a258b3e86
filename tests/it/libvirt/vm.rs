//! A real VM under the real libvirtd: the debian-bookworm box booted directly from its
//! kernel on an overlay, configured from the kernel command line, reached over SSH with
//! the environment's own key, and destroyed without leftovers.
//!
//! The box is built once into a store under the target folder and reused by later runs.

use std::collections::BTreeMap;
use std::path::Path;

use hdev::backend::libvirt::vm::{self, VmInputs};
use hdev::backend::libvirt::LibvirtBackend;
use hdev::backend::ssh::SshKey;
use hdev::boxes::Store;
use hdev::envfile::Env;
use hdev::host::{self, KvmProbe};

use crate::support::engines::{one_vm_test_at_a_time, LIBVIRT_URI};
use crate::support::{hdev_home, repo, require_libvirt};

fn shared_store() -> Store {
    Store::at(hdev_home().to_path_buf())
}

/// An environment with one VM on one network, using the repository's debian recipe.
fn vm_env(dir: &Path, subnet: &str, name: &str) -> Env {
    let text = format!(
        r#"
[env]
name = "{name}"

[box.debian]
recipe = "{}"

[network.lan]
subnet = "{subnet}"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["lan"]
"#,
        repo().join("boxes/debian-bookworm").display()
    );
    let path = dir.join("Envfile");
    std::fs::write(&path, text).unwrap();
    hdev::envfile::load(&path).unwrap()
}

/// A Linux bridge standing in for the environment network, removed on drop.
struct Bridge(String);

impl Bridge {
    fn new(name: &str, gateway_cidr: &str) -> Bridge {
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args:?}");
        };
        let _ = std::process::Command::new("ip")
            .args(["link", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        run(&["link", "add", name, "type", "bridge"]);
        run(&["addr", "add", gateway_cidr, "dev", name]);
        run(&["link", "set", name, "up"]);
        Bridge(name.to_string())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_boots_from_its_box_answers_ssh_and_is_destroyed_cleanly() {
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    let uri = LIBVIRT_URI;
    let lv = LibvirtBackend::connect(uri)
        .await
        .unwrap_or_else(|e| panic!("libvirtd must be reachable: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let env = vm_env(dir.path(), "10.231.7.0/24", "vmtest");
    let instance = format!("vmtest-{}", std::process::id());
    let store = shared_store();
    let base = hdev::backend::libvirt::volumes::libvirt_base_in(&store, uri, &env, "debian")
        .await
        .expect("the debian box builds and uploads");
    let bridge = Bridge::new(
        &format!("hdt{}", std::process::id() % 100_000),
        "10.231.7.1/24",
    );
    let bridges = BTreeMap::from([("lan".to_string(), bridge.0.clone())]);
    let spec = hdev::backend::spec_for(
        &env,
        &env.machines["vm"],
        "sha256:test",
        hdev::backend::Resolved::Volumes(base.clone()),
    );
    let layout = vm::layout(&instance, &spec, &bridges).unwrap();
    assert_eq!(layout.nics[0].address.to_string(), "10.231.7.192");
    let key = SshKey::ensure(&dir.path().join(".hdev")).unwrap();
    let domain_type = host::choose(env.settings.accel, &KvmProbe::read()).unwrap();
    let console = vm::console_log(&dir.path().join(".hdev"), &layout.domain);

    let result = vm::bring_up(
        &lv,
        VmInputs {
            spec: &spec,
            instance: &instance,
            env_dir: dir.path(),
            base: &base,
            layout: &layout,
            key: &key,
            domain_type,
            console_log: console.clone(),
        },
    )
    .await;
    let outcome = async {
        result?;
        let target = vm::ssh_target(&key, &layout).unwrap();
        let out = target
            .run(
                "hostname; awk '/^nameserver/ {print $2}' /etc/resolv.conf | paste -sd, -; cat /proc/cmdline | tr ' ' '\\n' | grep -c hdev.; exit 7",
                None,
                &|_| {},
                20,
            )
            .await?;
        let observed = lv.observe(Some(&instance)).await?;
        Ok::<_, Box<dyn std::error::Error>>((out, observed))
    }
    .await;
    let destroyed = lv.destroy(&layout.domain).await;
    let left = lv.observe(Some(&instance)).await.unwrap();
    let console_text = std::fs::read_to_string(&console).unwrap_or_default();
    let (out, observed) = outcome.unwrap_or_else(|e| {
        panic!(
            "{e}\n--- console (last 3000 bytes) ---\n{}",
            &console_text[console_text.len().saturating_sub(3000)..]
        )
    });
    destroyed.unwrap();

    assert_eq!(out.exit_code, 7, "exit codes pass through: {:?}", out.tail);
    assert_eq!(out.tail.first().map(String::as_str), Some("vm"));
    // The guest uses the host's upstream name servers (when the host has any).
    let dns: Vec<String> = host::upstream_resolvers()
        .iter()
        .map(|a| a.to_string())
        .collect();
    if !dns.is_empty() {
        assert_eq!(out.tail.get(1), Some(&dns.join(",")), "{:?}", out.tail);
    }
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].machine, "vm");
    assert_eq!(observed[0].addresses["lan"], "10.231.7.192");
    assert!(observed[0].running);
    assert!(left.is_empty(), "destroy leaves no domain: {left:?}");
    assert!(
        !Path::new(&format!(
            "/var/lib/libvirt/images/hdev/{}.qcow2",
            layout.domain
        ))
        .exists(),
        "destroy leaves no overlay"
    );
    assert!(
        console_text.contains("Linux version"),
        "the serial console is captured"
    );
}
