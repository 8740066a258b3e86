//! What this host can do: whether KVM can really run guests, and which acceleration a VM
//! gets. `/dev/kvm` alone is not enough: without the CPU's vmx or svm flag (nested
//! virtualisation switched off, say) a stock guest kernel will not boot under KVM.

use serde::Serialize;

use crate::envfile::Accel;

/// The host's virtualisation facts, as `doctor` and `status` report them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KvmProbe {
    /// `/dev/kvm` exists and opens read-write.
    pub dev_kvm: bool,
    /// The CPU advertises vmx (Intel) or svm (AMD).
    pub cpu_virt_flag: bool,
}

impl KvmProbe {
    pub fn read() -> Self {
        let dev_kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let cpu_virt_flag = std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| cpu_has_virt_flag(&s))
            .unwrap_or(false);
        KvmProbe {
            dev_kvm,
            cpu_virt_flag,
        }
    }

    pub fn usable(&self) -> bool {
        self.dev_kvm && self.cpu_virt_flag
    }

    /// Why KVM is or is not used, in a sentence.
    pub fn explain(&self) -> &'static str {
        match (self.dev_kvm, self.cpu_virt_flag) {
            (true, true) => "KVM is usable",
            (true, false) => {
                "/dev/kvm exists but the CPU has no vmx/svm flag, so KVM cannot run guests"
            }
            (false, true) => {
                "the CPU supports virtualisation but /dev/kvm is missing or not writable"
            }
            (false, false) => "no /dev/kvm and no vmx/svm CPU flag",
        }
    }
}

pub fn cpu_has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Why a requested acceleration cannot be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccelError {
    /// The Envfile asks for KVM on a host where KVM cannot run guests.
    #[error("`accel = \"kvm\"` was asked for, but {0}; use `accel = \"auto\"` or `\"qemu\"`")]
    KvmUnavailable(&'static str),
}

/// The libvirt domain type a VM gets: `kvm` or `qemu` (software emulation).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    Kvm,
    Qemu,
}

impl DomainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

/// Chooses the domain type for a requested acceleration on a host.
pub fn choose(requested: Accel, probe: &KvmProbe) -> Result<DomainType, AccelError> {
    match requested {
        Accel::Qemu => Ok(DomainType::Qemu),
        Accel::Kvm if probe.usable() => Ok(DomainType::Kvm),
        Accel::Kvm => Err(AccelError::KvmUnavailable(probe.explain())),
        Accel::Auto if probe.usable() => Ok(DomainType::Kvm),
        Accel::Auto => Ok(DomainType::Qemu),
    }
}

/// The host's upstream name servers, for VMs: the IPv4 `nameserver`s of
/// `/etc/resolv.conf`, or of systemd-resolved's upstream list when that file only names
/// a local stub (a loopback address a VM cannot use). At most three.
pub fn upstream_resolvers() -> Vec<std::net::Ipv4Addr> {
    for path in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        let found = parse_resolvers(&std::fs::read_to_string(path).unwrap_or_default());
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// IPv4 name servers of a resolv.conf text, loopback ones left out.
pub fn parse_resolvers(text: &str) -> Vec<std::net::Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .take(3)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_leave_out_local_stubs() {
        let text = "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\noptions edns0\nnameserver 9.9.9.9\n";
        assert_eq!(
            parse_resolvers(text),
            vec![
                std::net::Ipv4Addr::new(10, 0, 0, 2),
                std::net::Ipv4Addr::new(9, 9, 9, 9)
            ]
        );
        assert!(parse_resolvers("nameserver 127.0.0.53\n").is_empty());
    }

    const NO_VIRT: KvmProbe = KvmProbe {
        dev_kvm: true,
        cpu_virt_flag: false,
    };
    const FULL: KvmProbe = KvmProbe {
        dev_kvm: true,
        cpu_virt_flag: true,
    };

    #[test]
    fn dev_kvm_without_a_cpu_flag_means_emulation() {
        assert_eq!(choose(Accel::Auto, &NO_VIRT), Ok(DomainType::Qemu));
        assert!(choose(Accel::Kvm, &NO_VIRT).is_err());
        assert_eq!(choose(Accel::Auto, &FULL), Ok(DomainType::Kvm));
        assert_eq!(choose(Accel::Qemu, &FULL), Ok(DomainType::Qemu));
    }

    #[test]
    fn reads_flags_lines_only() {
        assert!(cpu_has_virt_flag("model name: x\nflags\t: fpu vmx sse\n"));
        assert!(!cpu_has_virt_flag("model name: vmx\nflags\t: fpu sse\n"));
    }
}

/// Whether this machine's kernel has what Docker Swarm's overlay networks use: `None`
/// where it could not be told (the module is neither loaded nor on disk and probing
/// needs root).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KernelFeatures {
    /// VXLAN, which carries overlay networks between hosts.
    pub vxlan: Option<bool>,
    /// IPVS, behind the virtual IPs of Swarm services.
    pub ipvs: Option<bool>,
    /// ESP (IPsec), behind encrypted overlay networks.
    pub esp: Option<bool>,
}

impl KernelFeatures {
    /// Reads the features from /sys and /proc, and where those do not tell (a feature
    /// built in without a trace, or modules that cannot be listed), tries it in a network
    /// namespace of its own (root only).
    pub fn read() -> Self {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let modules = std::path::Path::new("/lib/modules").join(release.trim());
        let known = |module: &str, trace: &str| -> Option<bool> {
            if std::path::Path::new(&format!("/sys/module/{module}")).exists()
                || std::path::Path::new(trace).exists()
                || module_on_disk(&modules, module)
            {
                Some(true)
            } else {
                None
            }
        };
        KernelFeatures {
            vxlan: known("vxlan", "/sys/module/vxlan").or_else(|| {
                try_in_netns(&[
                    "link", "add", "hdv0", "type", "vxlan", "id", "42", "dstport", "4789",
                ])
            }),
            // Loaded or built in, IPVS shows in /proc/net/ip_vs; on disk, modules list it.
            ipvs: known("ip_vs", "/proc/net/ip_vs").or(Some(false)),
            esp: known("esp4", "/sys/module/esp4").or_else(|| {
                try_in_netns(&[
                    "xfrm",
                    "state",
                    "add",
                    "src",
                    "192.0.2.1",
                    "dst",
                    "192.0.2.2",
                    "proto",
                    "esp",
                    "spi",
                    "0x100",
                    "enc",
                    "cbc(aes)",
                    "0x00112233445566778899aabbccddeeff",
                ])
            }),
        }
    }
}

/// Whether `module` is among the kernel's loadable modules (`modules.dep` or
/// `modules.builtin` list it).
fn module_on_disk(dir: &std::path::Path, module: &str) -> bool {
    let needle = format!("/{module}.ko");
    ["modules.dep", "modules.builtin"].iter().any(|f| {
        std::fs::read_to_string(dir.join(f))
            .map(|s| s.lines().any(|l| l.contains(&needle)))
            .unwrap_or(false)
    })
}

/// Runs `ip ARGS` in a new, empty network namespace: whether the kernel accepted it
/// (`None` when that cannot be tried: not root, or no `unshare`).
fn try_in_netns(args: &[&str]) -> Option<bool> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let out = std::process::Command::new("unshare")
        .arg("--net")
        .arg("ip")
        .args(args)
        .output()
        .ok()?;
    Some(out.status.success())
}

/// Ends the process with `code` once stdout and stderr are flushed, without the C library's
/// exit handlers. Those handlers (OpenSSL's cleanup, linked in through libvirt) free memory
/// that threads still ending at that moment free too (a blocking-pool thread running its
/// thread-local destructors after the runtime let it go): one `hdev exec` in a few hundred
/// aborted with "malloc_consolidate(): invalid chunk size" after its work was done.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}
