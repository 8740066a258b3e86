//! A stock cloud image as a libvirt machine (`image = "disk.qcow2"`): it boots from its
//! own disk and cloud-init configures it from hdev's NoCloud seed alone (hostname, the
//! environment's key for root, a static address found by MAC). It then shares a network
//! with a container, resets from its baseline's memory, and destroy leaves no domain or
//! volume behind (the seed included).
//!
//! No cloud image can be downloaded here, so the test builds one the way distributions
//! do (debootstrap, a boot loader, cloud-init; `tests/fixtures/cloud-image/build.sh`),
//! once per version of the script, into the target folder.

use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::engines::{libvirt_leftovers, one_vm_test_at_a_time};
use crate::support::{machine, repo, require_docker, require_libvirt, TestEnv};

/// The cloud image, built when this version of the script has not built it yet.
fn cloud_image() -> PathBuf {
    let script = repo().join("tests/fixtures/cloud-image/build.sh");
    let digest = hex::encode(Sha256::digest(std::fs::read(&script).unwrap()));
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cloud-image-{}", &digest[..12]));
    let disk = dir.join("disk.qcow2");
    if disk.exists() {
        return disk;
    }
    let tmp = dir.with_extension("building");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let o = Command::new("sh")
        .arg(&script)
        .arg(&tmp)
        .current_dir(script.parent().unwrap())
        .output()
        .expect("run the cloud image build");
    assert!(
        o.status.success(),
        "building the cloud image failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).unwrap();
    disk
}

#[test]
fn a_cloud_image_is_configured_by_the_nocloud_seed() {
    require_docker();
    require_libvirt();
    let _vm = one_vm_test_at_a_time();
    let image = cloud_image();
    let subnet_third = std::process::id() % 200 + 20;
    let env = TestEnv::build()
        .envfile(&format!(
            r#"
[env]
name = "cloudimg"

[box.busybox]
recipe = "{busybox}"

[network.lan]
subnet = "10.232.{subnet_third}.0/24"

[machine.cloud]
backend = "libvirt"
image = "{image}"
memory = "512M"
networks = ["lan"]
provision = [{{ shell = "hostname > /root/name; echo 1 >> /root/provisioned" }}]

[machine.web]
backend = "docker"
box = "busybox"
networks = ["lan"]
depends_on = ["cloud"]
command = "sh -c 'mkdir -p /www; echo hello > /www/index.html; exec httpd -f -p 80 -h /www'"
"#,
            busybox = repo().join("boxes/busybox").display(),
            image = image.display(),
        ))
        .no_timeout()
        .create();
    env.ok(&["up"]);

    let st = env.status();
    let instance = st["instance"].as_str().unwrap().to_string();
    let cloud = machine(&st, "cloud");
    let address = cloud["addresses"]["lan"]
        .as_str()
        .unwrap_or_else(|| panic!("no address on lan: {cloud}"))
        .to_string();

    // Everything below came from the seed: cloud-init set the name, installed the
    // environment's key for root (or hdev could not have provisioned over SSH), and put
    // the address hdev chose on the NIC with the MAC hdev chose.
    assert_eq!(
        env.ok(&["exec", "cloud", "--", "cat", "/root/name"]),
        "cloud\n"
    );
    let key = std::fs::read_to_string(env.dir.path().join(".hdev/ssh/id_ed25519.pub")).unwrap();
    let keys = env.ok(&["exec", "cloud", "--", "cat", "/root/.ssh/authorized_keys"]);
    assert!(
        keys.contains(key.split_whitespace().nth(1).unwrap()),
        "the environment's key is root's: {keys}"
    );
    let ip = env.ok(&[
        "exec", "cloud", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(ip.contains(&format!("{address}/24")), "{ip}");
    let seen = env.ok(&["exec", "cloud", "--", "cloud-init", "status", "--long"]);
    assert!(seen.contains("NoCloud"), "datasource: {seen}");

    // The container and the VM reach each other on `lan`, by name and by address.
    env.ok(&["exec", "web", "--", "ping", "-c", "1", "-W", "10", "cloud"]);
    let web = machine(&st, "web")["addresses"]["lan"]
        .as_str()
        .unwrap_or_else(|| panic!("no address for web: {st}"))
        .to_string();
    // The image has no ping; bash talks HTTP to the container's web server.
    let get =
        format!("exec 3<>/dev/tcp/{web}/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
    let page = env.ok(&["exec", "cloud", "--", "bash", "-c", &get]);
    assert!(page.ends_with("hello\n"), "{page}");

    // A baseline and a reset work as for any VM: from memory, the seed left in place.
    env.ok(&["exec", "cloud", "--", "sh", "-c", "rm /root/name"]);
    env.ok(&["reset", "cloud"]);
    assert_eq!(
        env.ok(&[
            "exec",
            "cloud",
            "--",
            "cat",
            "/root/name",
            "/root/provisioned"
        ]),
        "cloud\n1\n"
    );
    assert!(
        libvirt_leftovers(&instance)
            .iter()
            .any(|v| v.ends_with(".seed.iso")),
        "the seed stays while the machine exists"
    );

    env.ok(&["destroy", "-y"]);
    assert_eq!(
        libvirt_leftovers(&instance),
        Vec::<String>::new(),
        "destroy leaves nothing"
    );
}
