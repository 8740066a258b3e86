//! The box manifest: what a box is, and the digest of every artifact it carries.
//!
//! The manifest is the first entry of a box archive and the root of trust: each artifact is
//! listed with its sha256, and the box digest is the sha256 of the manifest's exact bytes.
//! So one short digest pins every byte of a multi-gigabyte box.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::BoxDigest;

/// Version of the manifest format; a newer one is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside an archive and in a stored box's folder.
pub const MANIFEST: &str = "manifest.json";

/// Well-known artifact providers.
pub const DOCKER: &str = "docker";
pub const LIBVIRT_DISK: &str = "libvirt-disk";
pub const LIBVIRT_KERNEL: &str = "libvirt-kernel";
pub const LIBVIRT_INITRD: &str = "libvirt-initrd";

/// One file of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name inside the archive (and the stored box's folder): one plain name.
    pub path: String,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    pub size: u64,
}

/// Where a box came from, for `box list` and for finding a built box again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeRef {
    /// The recipe folder's name (older boxes: the folder as given when it was built).
    /// Only the name, so that the same recipe reached by another path gives one digest.
    pub path: String,
    /// Digest of the recipe's folder and its host inputs (see `Recipe::digest`).
    pub digest: String,
    /// The fixed build time the script ran with (`SOURCE_DATE_EPOCH`, Unix seconds).
    /// Absent in boxes built before builds were reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
}

/// One package a box was built from, as its build script reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// Parses a package list as build scripts write it (`dpkg-query -W` output): one
/// `NAME VERSION` per line (tab or spaces between), blank lines and `#` comments
/// skipped. Sorted by name, duplicates dropped; a line without a version is an error.
pub fn parse_packages(text: &str) -> Result<Vec<Package>, String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(version), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: `{line}` is not `NAME VERSION`", i + 1));
        };
        out.insert(Package {
            name: name.to_string(),
            version: version.to_string(),
        });
    }
    Ok(out.into_iter().collect())
}

/// How a libvirt machine boots from this box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Boot {
    /// From the disk's own boot loader.
    #[default]
    Disk,
    /// Directly from the box's kernel and initrd, root file system on the disk.
    Kernel,
    /// From the disk, configured at first boot by cloud-init (NoCloud seed).
    CloudInit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    /// RFC 3339 UTC: for a built box its recipe's `SOURCE_DATE_EPOCH` (never the wall
    /// clock, so that two builds of one recipe give one digest); for an imported image the
    /// file's modification time. When a box entered this store is [`StoredBox::stored`].
    ///
    /// [`StoredBox::stored`]: super::StoredBox::stored
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<RecipeRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Boot>,
    /// Provider -> artifact.
    pub artifacts: BTreeMap<String, Artifact>,
    /// The packages (name and version) the box was built from, sorted by name, as its
    /// build script reported them. Absent in older boxes and in imported images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
}

impl Manifest {
    /// The canonical bytes written into archives and the store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn digest(&self) -> BoxDigest {
        BoxDigest::of(&self.to_bytes())
    }

    /// Parses and checks a manifest: known format, plain artifact names, no duplicates.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.format > FORMAT_VERSION {
            return Err(format!(
                "manifest format {} is newer than this hdev reads ({FORMAT_VERSION}); upgrade hdev",
                m.format
            ));
        }
        if !is_box_name(&m.name) {
            return Err(format!("box name `{}` is not a plain name", m.name));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (provider, a) in &m.artifacts {
            if !is_plain_name(&a.path) || a.path == MANIFEST {
                return Err(format!(
                    "artifact `{provider}` has path `{}`: it must be one plain file name",
                    a.path
                ));
            }
            if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("artifact `{provider}` has no valid sha256"));
            }
            if !seen.insert(a.path.as_str()) {
                return Err(format!("artifact path `{}` is listed twice", a.path));
            }
        }
        if m.artifacts.is_empty() {
            return Err("the manifest lists no artifacts".into());
        }
        if let Some(p) = m
            .packages
            .iter()
            .find(|p| p.name.is_empty() || p.name.chars().any(char::is_control))
        {
            return Err(format!("package `{}` has no usable name", p.name));
        }
        Ok(m)
    }

    /// Total bytes of all artifacts.
    pub fn size(&self) -> u64 {
        self.artifacts.values().map(|a| a.size).sum()
    }

    /// The providers, sorted, for listings.
    pub fn providers(&self) -> Vec<&str> {
        self.artifacts.keys().map(String::as_str).collect()
    }
}

/// A box name: letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn is_box_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A single path component without separators, `.`/`..` or control characters.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains('/')
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
}

/// Now as RFC 3339 UTC, or `SOURCE_DATE_EPOCH` when set (reproducible builds).
pub fn now_rfc3339() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    rfc3339(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            name: "busybox".into(),
            version: "1".into(),
            created: rfc3339(0),
            description: None,
            recipe: None,
            boot: None,
            packages: vec![],
            artifacts: [(
                DOCKER.to_string(),
                Artifact {
                    path: "rootfs.tar".into(),
                    sha256: "0".repeat(64),
                    size: 3,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn rfc3339_formats_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn manifest_round_trips_and_digest_is_of_bytes() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes).expect("parse"), m);
        assert_eq!(m.digest(), BoxDigest::of(&bytes));
    }

    /// A manifest as hdev wrote it before provenance was recorded (no `packages`, no
    /// `source_date_epoch`) still loads, and its bytes, hence its digest, are unchanged.
    #[test]
    fn an_older_manifest_still_loads_with_its_digest() {
        let old = format!(
            "{{\n  \"format\": 1,\n  \"name\": \"busybox\",\n  \"version\": \"1.35.0\",\n  \"created\": \"2026-01-02T03:04:05Z\",\n  \"recipe\": {{\n    \"path\": \"/x/boxes/busybox\",\n    \"digest\": \"sha256:{0}\"\n  }},\n  \"artifacts\": {{\n    \"docker\": {{\n      \"path\": \"rootfs.tar\",\n      \"sha256\": \"{0}\",\n      \"size\": 3\n    }}\n  }}\n}}\n",
            "0".repeat(64)
        );
        let m = Manifest::parse(old.as_bytes()).expect("older manifest loads");
        assert!(m.packages.is_empty());
        assert_eq!(m.recipe.as_ref().and_then(|r| r.source_date_epoch), None);
        assert_eq!(m.to_bytes(), old.as_bytes(), "re-serialised byte for byte");
        assert_eq!(m.digest(), BoxDigest::of(old.as_bytes()));
    }

    #[test]
    fn package_lists_parse_sorted_and_refuse_garbage() {
        let p = parse_packages(
            "# comment\nlibc6:amd64\t2.36-9\n\nbusybox 1:1.35.0-4\nbusybox 1:1.35.0-4\n",
        )
        .expect("parse");
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["busybox", "libc6:amd64"]);
        assert_eq!(p[0].version, "1:1.35.0-4");
        assert!(parse_packages("busybox\n").is_err());
        assert!(parse_packages("a b c\n").is_err());
    }

    #[test]
    fn manifest_refuses_paths_that_are_not_plain_names() {
        for bad in ["../x", "/etc/passwd", "a/b", "..", MANIFEST] {
            let mut m = sample();
            m.artifacts.get_mut(DOCKER).expect("docker").path = bad.into();
            assert!(Manifest::parse(&m.to_bytes()).is_err(), "{bad}");
        }
    }
}
