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
