//! A real VM under the real libvirtd: the debian-bookworm box booted directly from its
//! kernel on an overlay, configured from the kernel command line, reached over SSH with
//! the environment's own key and the host key hdev pinned for it (and refused when
//! another host key answers), and destroyed without leftovers.
//!
//! The box is built once into a store under the target folder and reused by later runs.

use std::collections::BTreeMap;
use std::path::Path;

use hdev::backend::libvirt::vm::{self, VmInputs};
use hdev::backend::libvirt::LibvirtBackend;
use hdev::backend::ssh::{HostKey, SshError, SshKey};
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
    let state = dir.path().join(".hdev");
    let key = SshKey::ensure(&state).unwrap();
    let host_key = HostKey::ensure(&state, &layout.domain).unwrap();
    let domain_type = host::choose(env.settings.accel, &KvmProbe::read()).unwrap();
    let console = vm::console_log(&dir.path().join(".hdev"), &layout.domain);

    let target = vm::ssh_target(&key, &layout, &state).unwrap();
    assert!(
        target.pin.is_some(),
        "the host key is pinned before first contact"
    );
    let outcome = async {
        vm::define(
            &lv,
            VmInputs {
                spec: &spec,
                instance: &instance,
                env_dir: dir.path(),
                base: &base,
                layout: &layout,
                key: &key,
                host_key: &host_key,
                domain_type,
                console_log: console.clone(),
                memory: None,
            },
        )
        .await?;
        lv.start(&layout.domain).await?;
        target.wait_ready(vm::BOOT_TIMEOUT).await?;
        let out = target
            .run(
                "hostname; awk '/^nameserver/ {print $2}' /etc/resolv.conf | paste -sd, -; cat /proc/cmdline | tr ' ' '\\n' | grep -c hdev.; exit 7",
                None,
                &|_| {},
                20,
            )
            .await?;
        let observed = lv.observe(Some(&instance)).await?;
        // The guest's sshd offers the host key hdev made, and no other.
        let keys = target
            .run(
                "cat /etc/ssh/ssh_host_ed25519_key.pub; ls /etc/ssh | grep -c '^ssh_host_.*_key$'",
                None,
                &|_| {},
                5,
            )
            .await?;
        // Something else answering at the VM's address: here, the VM itself with a new
        // host key. hdev refuses it at once, never waiting for it to get better.
        target
            .run(
                "rm -f /etc/ssh/ssh_host_ed25519_key*; ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh",
                None,
                &|_| {},
                5,
            )
            .await?;
        let started = std::time::Instant::now();
        let impostor = target.run("true", None, &|_| {}, 5).await;
        let waited = target.wait_ready(std::time::Duration::from_secs(60)).await;
        let refused_in = started.elapsed();
        Ok::<_, Box<dyn std::error::Error>>((out, observed, keys, impostor, waited, refused_in))
    }
    .await;
    let destroyed = lv.destroy(&layout.domain).await;
    let left = lv.observe(Some(&instance)).await.unwrap();
    let console_text = std::fs::read_to_string(&console).unwrap_or_default();
    let (out, observed, keys, impostor, waited, refused_in) = outcome.unwrap_or_else(|e| {
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
    let pinned: Vec<&str> = host_key.public.split_whitespace().take(2).collect();
    let offered: Vec<&str> = keys.tail[0].split_whitespace().take(2).collect();
    assert_eq!(offered, pinned, "the guest holds the pinned host key");
    assert_eq!(keys.tail[1], "1", "and no other host key: {:?}", keys.tail);
    let known = std::fs::read_to_string(hdev::backend::ssh::known_hosts(&state)).unwrap();
    assert_eq!(known, format!("{} {}\n", layout.domain, pinned.join(" ")));
    for refused in [impostor.map(|o| o.exit_code), waited.map(|()| 0)] {
        assert!(
            matches!(refused, Err(SshError::HostKey { .. })),
            "another host key is refused: {refused:?}"
        );
    }
    assert!(
        refused_in < std::time::Duration::from_secs(30),
        "a wrong host key fails at once, not after the boot timeout: {refused_in:?}"
    );
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
