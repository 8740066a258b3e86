//! A VM on a remote libvirt host, reached the way any remote host is: the Envfile's
//! `libvirt_uri = "qemu+ssh://root@127.0.0.1:PORT/system?keyfile=..."`, through an SSH
//! server this test starts on loopback with its own keys (the "remote" host is this
//! machine, but hdev goes through SSH for libvirt, for the box upload and for every
//! command in the VM). The VM's network is a libvirt network on that host, not a Docker
//! one; a container keeps its own network here; a network joining both is refused with
//! its line; destroy removes the VM, its volumes and the libvirt network, and so does
//! `gc` once the environment's folder is gone.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::engines::{libvirt_leftovers, one_vm_test_at_a_time};
use crate::support::{machine, repo, require_docker, require_libvirt, TestEnv};

/// An sshd on 127.0.0.1 that lets in one key as root; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    if path.exists() {
        return;
    }
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "{o:?}");
}

fn start_sshd() -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "this test needs an SSH server binary (openssh-server; .ci/setup installs it)"
    );
    // Keys live with the build, so the host key is the same from run to run.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("remote-sshd");
    std::fs::create_dir_all(&dir).unwrap();
    let (host_key, key) = (dir.join("host_ed25519"), dir.join("client_ed25519"));
    keygen(&host_key);
    keygen(&key);
    std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join(format!("sshd_config.{port}"));
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PidFile {}\nAllowTcpForwarding yes\nLogLevel DEBUG1\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            dir.join(format!("sshd.{port}.pid")).display(),
        ),
    )
    .unwrap();
    // sshd's privilege separation folder.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let log = dir.join(format!("sshd.{port}.log"));
    let _ = std::fs::remove_file(&log);
    let child = Command::new(sshd)
        .args(["-D", "-f"])
        .arg(&config)
        .arg("-E")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let s = Sshd {
        child,
        port,
        key,
        log,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sshd did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

#[test]
fn a_vm_on_a_remote_libvirt_host_gets_its_network_there_and_is_reached_through_it() {
    require_docker();
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    let sshd = start_sshd();
    let uri = format!(
        "qemu+ssh://root@127.0.0.1:{}/system?keyfile={}&no_verify=1&no_tty=1",
        sshd.port,
        sshd.key.display()
    );
    let third = std::process::id() % 200 + 20;
    let envfile = |web_networks: &str| {
        format!(
            r#"
[env]
name = "remote"
libvirt_uri = "{uri}"

[box.debian]
recipe = "{debian}"

[box.busybox]
recipe = "{busybox}"

[network.far]
subnet = "10.231.{third}.0/24"

[network.near]
subnet = "10.230.{third}.0/24"

[machine.vm]
backend = "libvirt"
box = "debian"
memory = "384M"
networks = ["far"]
provision = [{{ shell = "echo remote > /root/where" }}]

[machine.web]
backend = "docker"
box = "busybox"
networks = {web_networks}
"#,
            debian = repo().join("boxes/debian-bookworm").display(),
            busybox = repo().join("boxes/busybox").display(),
        )
    };

    let live_env = |web_networks: &str| {
        TestEnv::build()
            .envfile(&envfile(web_networks))
            .no_timeout()
            .create()
    };

    // A network cannot join the remote VM and a container here.
    let spanning = live_env(r#"["near", "far"]"#);
    let v = spanning.run(&["validate"]);
    assert_ne!(v.code, 0, "{v}");
    assert!(v.stderr.contains("network `far` would span hosts"), "{v}");
    assert!(
        v.stderr.contains("Envfile:13:"),
        "points at [network.far]: {v}"
    );

    let env = live_env(r#"["near"]"#);
    env.ok(&["up"]);
    let st = env.status();
    let instance = st["instance"].as_str().unwrap().to_string();
    assert_eq!(
        env.ok(&["exec", "vm", "--", "cat", "/root/where"]),
        "remote\n",
        "provisioned and read back through the remote host"
    );

    // Commands reached the VM through the remote host (ssh -W there).
    let address = machine(&st, "vm")["addresses"]["far"]
        .as_str()
        .unwrap_or_else(|| panic!("no address on far: {st}"))
        .to_string();
    let log = std::fs::read_to_string(&sshd.log).unwrap_or_default();
    assert!(
        log.contains(&format!("target {address} port 22")),
        "no forwarding to {address}:22 in the remote host's sshd log"
    );

    // `far` is a libvirt network on the remote host; `near` a Docker network here.
    let nets = libvirt_leftovers(&instance);
    assert!(
        nets.contains(&format!("network hdev-{instance}-far")),
        "{nets:?}"
    );
    let docker = Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}"])
        .args(["--filter", &format!("label=hdev.env={instance}")])
        .output()
        .expect("docker");
    let docker = String::from_utf8_lossy(&docker.stdout);
    assert!(docker.lines().any(|l| l.ends_with("-near")), "{docker}");
    assert!(!docker.lines().any(|l| l.ends_with("-far")), "{docker}");

    env.ok(&["destroy", "-y"]);
    assert_eq!(
        libvirt_leftovers(&instance),
        Vec::<String>::new(),
        "destroy leaves no domain, volume or network"
    );

    // When the folder of an environment with a remote VM is gone, `gc` finds its VM and
    // network on the remote host (it remembers the hosts environments used).
    let lost = live_env(r#"["near"]"#);
    lost.ok(&["up"]);
    let lost_instance = lost.status()["instance"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(lost.dir.path()).unwrap();
    let gc = lost
        .cmd()
        .args(["gc", "--json"])
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("hdev gc");
    let out = String::from_utf8_lossy(&gc.stdout);
    assert!(out.contains(&lost_instance), "gc names it: {out}");
    assert_eq!(
        libvirt_leftovers(&lost_instance),
        Vec::<String>::new(),
        "gc removed the remote VM, its volumes and its network: {out}"
    );
    drop(sshd);
}

/// A libvirt network hdev made for a VM on another host outlives its VM when a command
/// dies between the two removals: `gc` finds it by its metadata (the environment's folder
/// is recorded in it) and removes it once that folder is gone, and only then. (Before,
/// gc looked only for networks of environments whose VMs it found.)
#[test]
fn gc_removes_a_remote_network_whose_environment_folder_is_gone() {
    require_libvirt();
    let alive = tempfile::tempdir().expect("temp folder");
    let pid = std::process::id();
    let define = |tag: &str, dir: &str, octet: u32| {
        let name = format!("hdev-gcnet{tag}-{pid}-far");
        let xml = format!(
            "<network><name>{name}</name><metadata><hdev:network xmlns:hdev='https://hdev.dev/xmlns/network/1' env='gcnet{tag}-{pid}' network='far' dir='{dir}'/></metadata><bridge name='hdg{tag}{}' stp='off'/><ip address='10.236.{octet}.1' prefix='24'/></network>",
            pid % 100_000
        );
        let file = alive.path().join(format!("{tag}.xml"));
        std::fs::write(&file, xml).expect("xml");
        let ok = Command::new("virsh")
            .args(["-c", "qemu:///system", "net-define"])
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .expect("virsh")
            .success();
        assert!(ok, "define {name}");
        name
    };
    let gone_dir = alive.path().join("gone");
    let dead = define("d", &gone_dir.display().to_string(), pid % 200 + 20);
    let kept = define("k", &alive.path().display().to_string(), pid % 200 + 21);
    let home = tempfile::tempdir().expect("home");
    let out = Command::new(crate::support::hdev_bin())
        .arg("gc")
        .env("HDEV_HOME", home.path())
        .current_dir(alive.path())
        .output()
        .expect("hdev gc");
    let nets = String::from_utf8_lossy(
        &Command::new("virsh")
            .args(["-c", "qemu:///system", "net-list", "--all", "--name"])
            .output()
            .expect("virsh")
            .stdout,
    )
    .to_string();
    let _ = Command::new("virsh")
        .args(["-c", "qemu:///system", "net-undefine", &kept])
        .output();
    let _ = Command::new("virsh")
        .args(["-c", "qemu:///system", "net-undefine", &dead])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !nets.lines().any(|l| l.trim() == dead),
        "gc removed {dead}: {nets}"
    );
    assert!(
        nets.lines().any(|l| l.trim() == kept),
        "gc kept {kept}: {nets}"
    );
}
