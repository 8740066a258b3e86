//! Pure pieces of the libvirt backend: names, MAC addresses, VM addresses, the kernel
//! command line that configures a directly booted guest, and the domain XML. No I/O, so
//! they are tested without libvirtd.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::host::DomainType;

/// XML namespace of hdev's domain metadata.
pub const METADATA_NS: &str = "https://hdev.dev/xmlns/machine/1";
/// Prefix used for that namespace in domain XML.
pub const METADATA_PREFIX: &str = "hdev";

/// Domain (and overlay volume) name of a machine: unique per environment instance.
pub fn domain_name(instance: &str, machine: &str) -> String {
    crate::backend::vm_domain(instance, machine)
}

/// A stable, locally administered MAC address (QEMU's 52:54:00 prefix) for one NIC.
pub fn mac_for(instance: &str, machine: &str, network: &str) -> String {
    let d = Sha256::digest(format!("{instance}\0{machine}\0{network}").as_bytes());
    format!("52:54:00:{:02x}:{:02x}:{:02x}", d[0], d[1], d[2])
}

pub use crate::envfile::addresses::{vm_addresses, vm_pool_start};

/// One network card of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub network: String,
    /// Linux bridge the NIC plugs into (shared with the network's containers).
    pub bridge: String,
    /// Instead of a bridge: a tap libvirt opens by this name, which hdev moves into an
    /// anchor container's namespace (see `backend::anchor`).
    pub tap: Option<String>,
    /// MTU the guest is told (an overlay's is smaller).
    pub mtu: Option<u32>,
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// The serial number of a VM's seed disk, as the guest sees it.
pub const SEED_SERIAL: &str = "hdev-seed";

/// How a VM boots. Either way the VM gets a read-only seed disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The box's own kernel and initrd, configured through the kernel command line; the
    /// seed is a tar archive of the VM's host key (see [`super::seed::host_key_tar`]).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        seed: PathBuf,
    },
    /// The disk's boot loader; configured through a cloud-init NoCloud seed.
    Disk { seed: PathBuf },
}

/// Everything a domain definition needs, resolved.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub instance: String,
    pub machine: String,
    pub hash: String,
    pub env_dir: String,
    pub domain_type: DomainType,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk: PathBuf,
    pub boot: Boot,
    pub nics: Vec<Nic>,
    pub ssh_public_key: String,
    pub console_log: PathBuf,
    /// Name servers the guest uses (the host's upstream ones).
    pub dns: Vec<Ipv4Addr>,
    /// Resumed from a memory image rather than booted: see [`Resume`].
    pub resume: Option<Resume>,
}

/// A domain defined to resume from the memory image of another, earlier domain of the
/// same identity (see [`identity`]): it takes that domain's UUID, which the image
/// carries, and records the image in its metadata for its first start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub uuid: String,
    /// The memory image (a libvirt save image).
    pub memory: String,
}

/// What a domain's definition says apart from its disk's top, its UUID and its memory
/// image: two domains of equal identity differ in nothing a running guest could notice
/// (name, memory, CPUs, boot files and kernel command line, NICs with their MACs, bridges
/// and addresses, seed path, console), so one can resume from the other's memory.
pub fn identity(spec: &DomainSpec) -> String {
    let plain = DomainSpec {
        disk: PathBuf::new(),
        resume: None,
        ..spec.clone()
    };
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(definition(&plain, None)))
    )
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The kernel command line of a directly booted guest. The box's `hdev-guest-init`
/// reads the `hdev.*` parameters at boot: hostname, the SSH key, and each NIC's address.
pub fn kernel_cmdline(spec: &DomainSpec) -> String {
    use base64_lite::encode;
    let mut s = format!(
        "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 hdev.hostname={} hdev.key={}",
        spec.machine,
        encode(spec.ssh_public_key.trim().as_bytes())
    );
    for (i, nic) in spec.nics.iter().enumerate() {
        let _ = write!(s, " hdev.net{i}={},{}/{}", nic.mac, nic.address, nic.prefix);
        if i == 0 {
            let _ = write!(s, ",{}", nic.gateway);
        }
    }
    if !spec.dns.is_empty() {
        let list: Vec<String> = spec.dns.iter().map(Ipv4Addr::to_string).collect();
        let _ = write!(s, " hdev.dns={}", list.join(","));
    }
    s
}

/// Base64 without a dependency: the kernel command line needs nothing more.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes_like_rfc4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }
}

/// The domain definition; its metadata records its [`identity`].
pub fn domain_xml(spec: &DomainSpec) -> String {
    definition(spec, Some(&identity(spec)))
}

fn definition(spec: &DomainSpec, identity: Option<&str>) -> String {
    let name = domain_name(&spec.instance, &spec.machine);
    let mem_kib = (spec.memory_bytes / 1024).max(64 * 1024);
    let mut x = String::new();
    let _ = writeln!(x, "<domain type='{}'>", spec.domain_type.as_str());
    let _ = writeln!(x, "  <name>{}</name>", esc(&name));
    let resume = match &spec.resume {
        Some(r) => {
            let _ = writeln!(x, "  <uuid>{}</uuid>", esc(&r.uuid));
            format!(" resume='{}'", esc(&r.memory))
        }
        None => String::new(),
    };
    let identity = identity.map_or(String::new(), |i| format!(" identity='{}'", esc(i)));
    let _ = writeln!(x, "  <metadata>");
    let _ = writeln!(
        x,
        "    <{p}:machine xmlns:{p}='{ns}' env='{}' machine='{}' hash='{}' dir='{}' addresses='{}'{identity}{resume}/>",
        esc(&spec.instance),
        esc(&spec.machine),
        esc(&spec.hash),
        esc(&spec.env_dir),
        esc(&format_addresses(&spec.nics)),
        p = METADATA_PREFIX,
        ns = METADATA_NS
    );
    let _ = writeln!(x, "  </metadata>");
    let _ = writeln!(x, "  <memory unit='KiB'>{mem_kib}</memory>");
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", spec.cpus.max(1));
    let _ = writeln!(x, "  <os>");
    let _ = writeln!(x, "    <type arch='x86_64' machine='pc'>hvm</type>");
    match &spec.boot {
        Boot::Kernel { kernel, initrd, .. } => {
            let _ = writeln!(x, "    <kernel>{}</kernel>", esc(&kernel.to_string_lossy()));
            let _ = writeln!(x, "    <initrd>{}</initrd>", esc(&initrd.to_string_lossy()));
            let _ = writeln!(x, "    <cmdline>{}</cmdline>", esc(&kernel_cmdline(spec)));
        }
        Boot::Disk { .. } => {
            let _ = writeln!(x, "    <boot dev='hd'/>");
        }
    }
    let _ = writeln!(x, "  </os>");
    let _ = writeln!(x, "  <features><acpi/><apic/></features>");
    if spec.domain_type == DomainType::Kvm {
        let _ = writeln!(x, "  <cpu mode='host-passthrough'/>");
    }
    let _ = writeln!(x, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(x, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(x, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(x, "  <devices>");
    let _ = writeln!(x, "    <disk type='file' device='disk'>");
    let _ = writeln!(x, "      <driver name='qemu' type='qcow2' cache='unsafe'/>");
    let _ = writeln!(
        x,
        "      <source file='{}'/>",
        esc(&spec.disk.to_string_lossy())
    );
    let _ = writeln!(x, "      <target dev='vda' bus='virtio'/>");
    let _ = writeln!(x, "    </disk>");
    {
        // A virtio disk rather than a CD drive: every cloud image has the virtio driver,
        // not every cloud kernel has SATA or IDE. No snapshot ever includes it. Its serial
        // is how `hdev-guest-init` finds it.
        let (Boot::Disk { seed } | Boot::Kernel { seed, .. }) = &spec.boot;
        let _ = writeln!(x, "    <disk type='file' device='disk' snapshot='no'>");
        let _ = writeln!(x, "      <driver name='qemu' type='raw'/>");
        let _ = writeln!(x, "      <source file='{}'/>", esc(&seed.to_string_lossy()));
        let _ = writeln!(x, "      <target dev='vdb' bus='virtio'/>");
        let _ = writeln!(x, "      <serial>{SEED_SERIAL}</serial>");
        let _ = writeln!(x, "      <readonly/>");
        let _ = writeln!(x, "    </disk>");
    }
    for nic in &spec.nics {
        match &nic.tap {
            Some(tap) => {
                let _ = writeln!(x, "    <interface type='ethernet'>");
                let _ = writeln!(x, "      <target dev='{}' managed='yes'/>", esc(tap));
            }
            None => {
                let _ = writeln!(x, "    <interface type='bridge'>");
                let _ = writeln!(x, "      <source bridge='{}'/>", esc(&nic.bridge));
            }
        }
        let _ = writeln!(x, "      <mac address='{}'/>", nic.mac);
        let _ = writeln!(x, "      <model type='virtio'/>");
        if let Some(mtu) = nic.mtu {
            let _ = writeln!(x, "      <mtu size='{mtu}'/>");
        }
        let _ = writeln!(x, "    </interface>");
    }
    let log = esc(&spec.console_log.to_string_lossy());
    let _ = writeln!(x, "    <serial type='pty'>");
    let _ = writeln!(x, "      <log file='{log}' append='on'/>");
    let _ = writeln!(x, "      <target port='0'/>");
    let _ = writeln!(x, "    </serial>");
    let _ = writeln!(
        x,
        "    <console type='pty'><target type='serial' port='0'/></console>"
    );
    let _ = writeln!(
        x,
        "    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
    );
    let _ = writeln!(x, "    <memballoon model='none'/>");
    let _ = writeln!(x, "  </devices>");
    let _ = writeln!(x, "</domain>");
    x
}

/// `net=addr,net=addr`, as the metadata records a VM's addresses.
pub fn format_addresses(nics: &[Nic]) -> String {
    nics.iter()
        .map(|n| format!("{}={}", n.network, n.address))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn parse_addresses(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// hdev's metadata element with attributes `attrs`, as `virDomainSetMetadata` takes it.
pub fn metadata_element(attrs: &BTreeMap<String, String>) -> String {
    let body: String = attrs
        .iter()
        .map(|(k, v)| format!(" {k}='{}'", esc(v)))
        .collect();
    format!("<machine{body}/>")
}

/// hdev's metadata read back from a domain: `(attribute, value)` pairs.
pub fn parse_metadata(xml: &str) -> BTreeMap<String, String> {
    parse_element_metadata(xml, "machine")
}

/// hdev's metadata element `element` (`machine`, `network`) read back: its attributes.
pub fn parse_element_metadata(xml: &str, element: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(start) = xml
        .find(&format!(":{element} "))
        .or_else(|| xml.find(&format!("<{element} ")))
    else {
        return out;
    };
    let rest = &xml[start..];
    let end = rest.find('>').unwrap_or(rest.len());
    let mut s = &rest[..end];
    while let Some(eq) = s.find("='").or_else(|| s.find("=\"")) {
        let quote = &s[eq + 1..eq + 2];
        let key = s[..eq].rsplit(' ').next().unwrap_or("").to_string();
        let after = &s[eq + 2..];
        let Some(close) = after.find(quote) else {
            break;
        };
        let value = after[..close]
            .replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        if !key.starts_with("xmlns") {
            out.insert(key, value);
        }
        s = &after[close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envfile::{load_source, SourceFile};
    use std::path::Path;

    fn spec() -> DomainSpec {
        DomainSpec {
            instance: "demo-abc123".into(),
            machine: "accel".into(),
            hash: "sha256:00ff".into(),
            env_dir: "/srv/it's".into(),
            domain_type: DomainType::Qemu,
            cpus: 2,
            memory_bytes: 512 << 20,
            disk: "/var/lib/hdev/pool/hdev-demo-abc123-accel.qcow2".into(),
            boot: Boot::Kernel {
                kernel: "/pool/k".into(),
                initrd: "/pool/i".into(),
                seed: "/pool/s.tar".into(),
            },
            nics: vec![Nic {
                network: "mgmt".into(),
                bridge: "hd1234567890".into(),
                tap: None,
                mtu: None,
                mac: mac_for("demo-abc123", "accel", "mgmt"),
                address: Ipv4Addr::new(10, 42, 0, 50),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 42, 0, 1),
            }],
            ssh_public_key: "ssh-ed25519 AAAAC3Nz hdev".into(),
            console_log: "/x/console.log".into(),
            dns: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(9, 9, 9, 9)],
            resume: None,
        }
    }

    #[test]
    fn identity_ignores_the_disk_and_the_memory_image_only() {
        let a = spec();
        let resumed = DomainSpec {
            disk: "/pool/other-top.qcow2".into(),
            resume: Some(Resume {
                uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
                memory: "/pool/hdev-cache-00ff.mem".into(),
            }),
            ..spec()
        };
        assert_eq!(identity(&a), identity(&resumed));
        let x = domain_xml(&resumed);
        assert!(
            x.contains("<uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>"),
            "{x}"
        );
        assert_eq!(
            parse_metadata(&x).get("resume").map(String::as_str),
            Some("/pool/hdev-cache-00ff.mem")
        );
        assert!(!domain_xml(&a).contains("<uuid>"));
        assert_eq!(parse_metadata(&x).get("identity"), Some(&identity(&a)));
        let mut other = spec();
        other.nics[0].address = Ipv4Addr::new(10, 42, 0, 51);
        assert_ne!(identity(&a), identity(&other), "another address");
        let mut other = spec();
        other.ssh_public_key = "ssh-ed25519 AAAAother hdev".into();
        assert_ne!(identity(&a), identity(&other), "another key");
        let other = DomainSpec {
            memory_bytes: 1 << 30,
            ..spec()
        };
        assert_ne!(identity(&a), identity(&other), "more memory");
        let other = DomainSpec {
            instance: "demo-def456".into(),
            ..spec()
        };
        assert_ne!(identity(&a), identity(&other), "another instance");
    }

    #[test]
    fn domain_xml_carries_metadata_boot_and_nics() {
        let x = domain_xml(&spec());
        assert!(x.starts_with("<domain type='qemu'>"));
        assert!(x.contains("<name>hdev-demo-abc123-accel</name>"));
        assert!(x.contains("<memory unit='KiB'>524288</memory>"));
        assert!(x.contains("<source bridge='hd1234567890'/>"));
        assert!(x.contains("hdev.net0=52:54:00:"));
        assert!(x.contains(" hdev.dns=10.0.0.2,9.9.9.9"), "{x}");
        assert!(x.contains(",10.42.0.50/24,10.42.0.1"));
        let meta = parse_metadata(&x);
        assert_eq!(meta["env"], "demo-abc123");
        assert_eq!(meta["machine"], "accel");
        assert_eq!(meta["dir"], "/srv/it's");
        assert_eq!(meta["hash"], "sha256:00ff");
        assert_eq!(parse_addresses(&meta["addresses"])["mgmt"], "10.42.0.50");
    }

    #[test]
    fn macs_are_stable_and_distinct() {
        let a = mac_for("e", "m", "n1");
        assert_eq!(a, mac_for("e", "m", "n1"));
        assert_ne!(a, mac_for("e", "m", "n2"));
        assert_ne!(a, mac_for("f", "m", "n1"));
        assert!(a.starts_with("52:54:00:") && a.len() == 17);
    }

    #[test]
    fn vms_get_upper_half_addresses_around_fixed_ones() {
        let text = r#"
[env]
name = "t"
[network.mgmt]
subnet = "10.9.0.0/24"
[machine.a]
backend = "libvirt"
image = "x.qcow2"
networks = ["mgmt"]
[machine.b]
backend = "libvirt"
image = "x.qcow2"
count = 2
networks = ["mgmt"]
[machine.c]
backend = "docker"
image = "y"
networks = [{ name = "mgmt", address = "10.9.0.10" }]
"#;
        let env = load_source(
            &SourceFile::new(Path::new("E"), "E", text),
            Path::new("/"),
            false,
        )
        .unwrap();
        let got = vm_addresses(&env);
        let ip = |m: &str| got[&(m.to_string(), "mgmt".to_string())].to_string();
        assert_eq!(ip("a"), "10.9.0.192");
        assert_eq!(ip("b-1"), "10.9.0.193");
        assert_eq!(ip("b-2"), "10.9.0.194");
        assert!(!got.contains_key(&("c".to_string(), "mgmt".to_string())));
        let net = env.networks["mgmt"].subnet;
        assert_eq!(
            crate::backend::docker::container_range(&net).to_string(),
            "10.9.0.128/26"
        );
    }
}
