//! The cloud-init NoCloud seed of a VM that boots a cloud image from its own disk: the
//! guest's hostname, the environment's SSH key for root, and each NIC's static address
//! matched by MAC, as the `user-data`, `meta-data` and `network-config` files of an
//! ISO 9660 volume labelled `cidata` that the VM sees as a read-only disk.
//!
//! The ISO is written here rather than by genisoimage or xorriso, so a host needs no
//! extra tool and the seed is byte-for-byte reproducible: one directory, a primary tree
//! with ISO names and a Joliet tree with the real (lower-case, hyphenated) names, which
//! Linux and cloud-init read.

use std::fmt::Write as _;

use super::xml::Nic;
use crate::backend::ssh::HostKey;

/// Volume label cloud-init's NoCloud data source looks for.
pub const LABEL: &str = "cidata";

/// What the seed tells the guest.
#[derive(Debug, Clone)]
pub struct SeedSpec<'a> {
    pub hostname: &'a str,
    /// Changes when the seed does, so cloud-init applies a changed seed again.
    pub instance_id: &'a str,
    pub ssh_public_key: &'a str,
    /// The VM's own host key, the only one its sshd offers.
    pub host_key: &'a HostKey,
    pub nics: &'a [Nic],
    /// Name servers for the first NIC.
    pub dns: &'a [std::net::Ipv4Addr],
}

/// A YAML scalar, quoted the JSON way (YAML reads JSON strings as they are).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `#cloud-config`: hostname, root reachable with the environment's key only, and the
/// host key hdev made for this VM as its only host key (the image's own are deleted).
pub fn user_data(s: &SeedSpec) -> String {
    let key = q(s.ssh_public_key.trim());
    format!(
        "#cloud-config\n\
         # Written by hdev: the machine's name, the environment's SSH key for root, and the\n\
         # host key hdev pinned for this machine.\n\
         hostname: {host}\n\
         manage_etc_hosts: true\n\
         disable_root: false\n\
         users:\n  - name: root\n    lock_passwd: true\n    ssh_authorized_keys:\n      - {key}\n\
         ssh_deletekeys: true\n\
         ssh_genkeytypes: []\n\
         ssh_keys:\n  ed25519_private: {private}\n  ed25519_public: {public}\n",
        host = q(s.hostname),
        private = q(&s.host_key.private),
        public = q(s.host_key.public.trim()),
    )
}

/// The seed of a directly booted VM: a tar archive, read from the raw disk by the box's
/// `hdev-guest-init`, holding the VM's host key as `ssh_host_ed25519_key{,.pub}`. Fixed
/// owners and times, so the same key gives the same bytes.
pub fn host_key_tar(key: &HostKey) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let public = format!("{}\n", key.public.trim());
    for (name, mode, data) in [
        ("ssh_host_ed25519_key", 0o600, key.private.as_bytes()),
        ("ssh_host_ed25519_key.pub", 0o644, public.as_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        // Writing to a Vec cannot fail.
        let _ = b.append_data(&mut h, name, data);
    }
    b.into_inner().unwrap_or_default()
}

pub fn meta_data(s: &SeedSpec) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(s.instance_id),
        q(s.hostname)
    )
}

/// Network config version 2: a static address per NIC, found by MAC; the default route
/// through the first network's gateway, as directly booted VMs have it.
pub fn network_config(s: &SeedSpec) -> String {
    let mut out = String::from("version: 2\nethernets:\n");
    for (i, n) in s.nics.iter().enumerate() {
        let _ = writeln!(out, "  eth{i}:");
        let _ = writeln!(out, "    match:\n      macaddress: {}", q(&n.mac));
        let _ = writeln!(out, "    set-name: eth{i}");
        let _ = writeln!(out, "    dhcp4: false");
        let _ = writeln!(
            out,
            "    addresses: [{}]",
            q(&format!("{}/{}", n.address, n.prefix))
        );
        if i == 0 {
            let _ = writeln!(
                out,
                "    routes:\n      - to: \"0.0.0.0/0\"\n        via: {}",
                q(&n.gateway.to_string())
            );
            if !s.dns.is_empty() {
                let list: Vec<String> = s.dns.iter().map(|a| q(&a.to_string())).collect();
                let _ = writeln!(
                    out,
                    "    nameservers:\n      addresses: [{}]",
                    list.join(", ")
                );
            }
        }
    }
    out
}

/// The seed's files, in the order they are written.
pub fn files(s: &SeedSpec) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("meta-data", meta_data(s).into_bytes()),
        ("network-config", network_config(s).into_bytes()),
        ("user-data", user_data(s).into_bytes()),
    ]
}

/// The seed as an ISO image.
pub fn seed_iso(s: &SeedSpec) -> Vec<u8> {
    iso9660(LABEL, &files(s))
}

const SECTOR: usize = 2048;

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// Fixed recording time (2020-01-01 00:00 UTC), so equal seeds are equal bytes.
const RECORDED: [u8; 7] = [120, 1, 1, 0, 0, 0, 0];

/// One directory record.
fn dir_record(extent: u32, len: u32, dir: bool, name: &[u8]) -> Vec<u8> {
    let size = 33 + name.len() + (name.len() + 1) % 2;
    let mut r = Vec::with_capacity(size);
    r.push(size as u8);
    r.push(0);
    r.extend_from_slice(&both32(extent));
    r.extend_from_slice(&both32(len));
    r.extend_from_slice(&RECORDED);
    r.push(if dir { 2 } else { 0 });
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(&both16(1));
    r.push(name.len() as u8);
    r.extend_from_slice(name);
    r.resize(size, 0);
    r
}

/// A name the primary tree may hold: upper case d-characters, with the version.
fn iso_name(name: &str) -> Vec<u8> {
    let mut n: String = name
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(30)
        .collect();
    n.push_str(".;1");
    n.into_bytes()
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// A text field padded with spaces (UCS-2 spaces for Joliet).
fn field(buf: &mut [u8], text: &str, joliet: bool) {
    let bytes = if joliet {
        ucs2(text)
    } else {
        text.as_bytes().to_vec()
    };
    let pad: &[u8] = if joliet { &[0, b' '] } else { b" " };
    for (i, b) in buf.iter_mut().enumerate() {
        *b = bytes
            .get(i)
            .copied()
            .unwrap_or(pad[(i - bytes.len().min(i)) % pad.len()]);
    }
}

// Layout: system area, PVD (16), Joliet SVD (17), terminator (18), path tables
// (19-22), the two root directories (23, 24), then the files.
const PVD: u32 = 16;
const JOLIET_SVD: u32 = 17;
const TERMINATOR: u32 = 18;
const L_TABLE: u32 = 19;
const JOLIET_L_TABLE: u32 = 21;
const ROOT: u32 = 23;
const JROOT: u32 = 24;
const FIRST_FILE: u32 = 25;

/// The bytes of sector `n` in the image.
fn sector(n: u32) -> std::ops::Range<usize> {
    n as usize * SECTOR..(n as usize + 1) * SECTOR
}

/// Writes an ISO 9660 image with a Joliet tree: one root directory holding `files`.
/// Meant for small seeds: the names must fit one directory sector.
pub fn iso9660(label: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    // Directory records go in name order.
    let mut sorted: Vec<&(&str, Vec<u8>)> = files.iter().collect();
    sorted.sort_by_key(|(n, _)| *n);
    let files = sorted;
    let (extents, total) = extents(&files);
    let mut img = vec![0u8; total as usize * SECTOR];
    for (n, joliet) in [(ROOT, false), (JROOT, true)] {
        let d = directory(n, joliet, &files, &extents);
        let r = sector(n);
        img[r.start..r.start + d.len().min(SECTOR)].copy_from_slice(&d[..d.len().min(SECTOR)]);
    }
    for (n, root, little) in [
        (L_TABLE, ROOT, true),
        (L_TABLE + 1, ROOT, false),
        (JOLIET_L_TABLE, JROOT, true),
        (JOLIET_L_TABLE + 1, JROOT, false),
    ] {
        let p = path_table(root, little);
        let r = sector(n);
        img[r.start..r.start + p.len()].copy_from_slice(&p);
    }
    for (n, joliet) in [(PVD, false), (JOLIET_SVD, true)] {
        volume_descriptor(&mut img[sector(n)], label, joliet, total);
    }
    let t = &mut img[sector(TERMINATOR)];
    t[0] = 255;
    t[1..6].copy_from_slice(b"CD001");
    t[6] = 1;

    for ((_, data), at) in files.iter().zip(&extents) {
        let s = *at as usize * SECTOR;
        img[s..s + data.len()].copy_from_slice(data);
    }
    img
}

/// The first sector of each file (at least one sector each, an empty file too), and the
/// image's size in sectors.
fn extents(files: &[&(&str, Vec<u8>)]) -> (Vec<u32>, u32) {
    let mut next = FIRST_FILE;
    let extents = files
        .iter()
        .map(|(_, data)| {
            let at = next;
            next += data.len().div_ceil(SECTOR).max(1) as u32;
            at
        })
        .collect();
    (extents, next)
}

/// A root directory at sector `own`: ".", "..", then the files, with ISO names in the
/// primary tree and UCS-2 names in the Joliet one.
fn directory(own: u32, joliet: bool, files: &[&(&str, Vec<u8>)], extents: &[u32]) -> Vec<u8> {
    let mut d = dir_record(own, SECTOR as u32, true, &[0]);
    d.extend(dir_record(own, SECTOR as u32, true, &[1]));
    for ((name, data), at) in files.iter().zip(extents) {
        let n = if joliet { ucs2(name) } else { iso_name(name) };
        d.extend(dir_record(*at, data.len() as u32, false, &n));
    }
    d
}

/// A path table holding the root alone, little-endian (L) or big-endian (M).
fn path_table(root: u32, little: bool) -> Vec<u8> {
    let mut p = vec![1u8, 0];
    p.extend(if little {
        root.to_le_bytes()
    } else {
        root.to_be_bytes()
    });
    p.extend(if little {
        1u16.to_le_bytes()
    } else {
        1u16.to_be_bytes()
    });
    p.extend([0, 0]);
    p
}

/// The primary volume descriptor, or the Joliet supplementary one, into sector `v` of an
/// image `total` sectors long.
fn volume_descriptor(v: &mut [u8], label: &str, joliet: bool, total: u32) {
    let (root, l_table) = if joliet {
        (JROOT, JOLIET_L_TABLE)
    } else {
        (ROOT, L_TABLE)
    };
    v[0] = if joliet { 2 } else { 1 };
    v[1..6].copy_from_slice(b"CD001");
    v[6] = 1;
    field(&mut v[8..40], "LINUX", joliet);
    let volume = if joliet {
        label.to_string()
    } else {
        label.to_ascii_uppercase()
    };
    field(&mut v[40..72], &volume, joliet);
    v[80..88].copy_from_slice(&both32(total));
    if joliet {
        v[88..91].copy_from_slice(b"%/E");
    }
    v[120..124].copy_from_slice(&both16(1));
    v[124..128].copy_from_slice(&both16(1));
    v[128..132].copy_from_slice(&both16(SECTOR as u16));
    v[132..140].copy_from_slice(&both32(10));
    v[140..144].copy_from_slice(&l_table.to_le_bytes());
    v[148..152].copy_from_slice(&(l_table + 1).to_be_bytes());
    let root_rec = dir_record(root, SECTOR as u32, true, &[0]);
    v[156..190].copy_from_slice(&root_rec);
    for (range, text) in [
        (190..318, ""),
        (318..446, ""),
        (446..574, ""),
        (574..702, "HDEV"),
        (702..739, ""),
        (739..776, ""),
        (776..813, ""),
    ] {
        field(&mut v[range], text, joliet);
    }
    for at in [813usize, 830, 847, 864] {
        v[at..at + 16].copy_from_slice(b"0000000000000000");
        v[at + 16] = 0;
    }
    v[881] = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn spec_nics() -> Vec<Nic> {
        vec![
            Nic {
                network: "mgmt".into(),
                bridge: "hdabc".into(),
                tap: None,
                mtu: None,
                mac: "52:54:00:01:02:03".into(),
                address: Ipv4Addr::new(10, 1, 0, 200),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 1, 0, 1),
            },
            Nic {
                network: "data".into(),
                bridge: "hddef".into(),
                tap: None,
                mtu: None,
                mac: "52:54:00:04:05:06".into(),
                address: Ipv4Addr::new(10, 2, 0, 200),
                prefix: 16,
                gateway: Ipv4Addr::new(10, 2, 0, 1),
            },
        ]
    }

    #[test]
    fn the_seed_says_name_key_and_addresses() {
        let nics = spec_nics();
        let host_key = HostKey {
            private:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            public: "ssh-ed25519 AAAAhost hdev-e-1-db\n".into(),
        };
        let s = SeedSpec {
            hostname: "db",
            instance_id: "hdev-e-1-db-0123",
            ssh_public_key: "ssh-ed25519 AAAAC3Nz hdev@e\n",
            host_key: &host_key,
            nics: &nics,
            dns: &[Ipv4Addr::new(10, 0, 0, 2)],
        };
        let u = user_data(&s);
        assert!(u.starts_with("#cloud-config\n"), "{u}");
        assert!(u.contains("hostname: \"db\""), "{u}");
        assert!(u.contains("- \"ssh-ed25519 AAAAC3Nz hdev@e\"\n"), "{u}");
        assert!(u.contains("disable_root: false"), "{u}");
        // The host key hdev pinned is the guest's only one.
        assert!(
            u.contains("ssh_deletekeys: true\nssh_genkeytypes: []\n"),
            "{u}"
        );
        assert!(
            u.contains("  ed25519_private: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Bl\\n-----END OPENSSH PRIVATE KEY-----\\n\"\n"),
            "{u}"
        );
        assert!(
            u.contains("  ed25519_public: \"ssh-ed25519 AAAAhost hdev-e-1-db\"\n"),
            "{u}"
        );
        // The directly booted guest's seed: the same key, as a tar archive.
        let tar = host_key_tar(&host_key);
        assert_eq!(tar, host_key_tar(&host_key));
        let mut a = tar::Archive::new(&tar[..]);
        let got: Vec<(String, u32, String)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                let name = e.path().unwrap().display().to_string();
                (name, e.header().mode().unwrap(), text)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "ssh_host_ed25519_key".into(),
                    0o600,
                    host_key.private.clone()
                ),
                (
                    "ssh_host_ed25519_key.pub".into(),
                    0o644,
                    "ssh-ed25519 AAAAhost hdev-e-1-db\n".into()
                ),
            ]
        );
        let n = network_config(&s);
        assert!(n.contains("macaddress: \"52:54:00:01:02:03\""), "{n}");
        assert!(n.contains("addresses: [\"10.2.0.200/16\"]"), "{n}");
        assert_eq!(n.matches("via: \"10.1.0.1\"").count(), 1, "{n}");
        assert_eq!(n.matches("via:").count(), 1, "{n}");
        assert!(
            n.contains("nameservers:\n      addresses: [\"10.0.0.2\"]"),
            "{n}"
        );
        assert_eq!(
            meta_data(&s),
            "instance-id: \"hdev-e-1-db-0123\"\nlocal-hostname: \"db\"\n"
        );
    }

    /// Reads the Joliet root directory of an image back: (name, bytes) of each file.
    fn read_joliet(img: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
        let svd = &img[17 * SECTOR..18 * SECTOR];
        assert_eq!(svd[0], 2);
        assert_eq!(&svd[88..91], b"%/E");
        let label: String = char::decode_utf16(
            svd[40..72]
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap())
        .collect();
        let root = u32::from_le_bytes(svd[158..162].try_into().unwrap()) as usize;
        let dir = &img[root * SECTOR..(root + 1) * SECTOR];
        let mut at = 0;
        let mut out = Vec::new();
        while dir[at] != 0 {
            let len = dir[at] as usize;
            let r = &dir[at..at + len];
            let extent = u32::from_le_bytes(r[2..6].try_into().unwrap()) as usize;
            let size = u32::from_le_bytes(r[10..14].try_into().unwrap()) as usize;
            let name_len = r[32] as usize;
            if r[25] & 2 == 0 {
                let name = String::from_utf16(
                    &r[33..33 + name_len]
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
                out.push((name, img[extent * SECTOR..extent * SECTOR + size].to_vec()));
            }
            at += len;
        }
        (label.trim_end().to_string(), out)
    }

    #[test]
    fn the_iso_holds_the_files_under_their_names() {
        let big = vec![b'x'; 5000];
        let files = vec![
            ("meta-data", b"instance-id: i\n".to_vec()),
            ("user-data", big.clone()),
            ("network-config", Vec::new()),
        ];
        let img = iso9660("cidata", &files);
        assert_eq!(img.len() % SECTOR, 0);
        assert_eq!(&img[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&img[16 * SECTOR + 40..16 * SECTOR + 46], b"CIDATA");
        assert_eq!(img[18 * SECTOR], 255);
        let total = u32::from_le_bytes(img[16 * SECTOR + 80..16 * SECTOR + 84].try_into().unwrap());
        assert_eq!(total as usize * SECTOR, img.len());
        let (label, got) = read_joliet(&img);
        assert_eq!(label, "cidata");
        let mut want: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(iso_name("user-data"), b"USER_DATA.;1");
        assert_eq!(img, iso9660("cidata", &files), "same input, same bytes");
    }
}
