//! Envfile templates for `hdev init`, compiled into the binary from `templates/`.

use std::path::{Path, PathBuf};

pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    /// Prefix of host paths in the Envfile that `init` removes, because the template's
    /// Envfile is also the repository's `Envfile.example` and names its files from there.
    pub strip: &'static str,
    /// (path relative to the new project, content, executable)
    pub files: &'static [(&'static str, &'static str, bool)],
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "minimal",
        about: "one container from the busybox box",
        strip: "",
        files: &[
            (
                "Envfile",
                include_str!("../templates/minimal/Envfile"),
                false,
            ),
            (
                "boxes/busybox/box.toml",
                include_str!("../boxes/busybox/box.toml"),
                false,
            ),
            (
                "boxes/busybox/build.sh",
                include_str!("../boxes/busybox/build.sh"),
                true,
            ),
        ],
    },
    Template {
        name: "harness",
        about: "the HARNESS platform: scheduler, resource managers, storage, a VM",
        strip: "templates/harness/",
        files: &[
            ("Envfile", include_str!("../Envfile.example"), false),
            (
                "provision/service.sh",
                include_str!("../templates/harness/provision/service.sh"),
                true,
            ),
            (
                "provision/scheduler.sh",
                include_str!("../templates/harness/provision/scheduler.sh"),
                true,
            ),
            (
                "services/index.html",
                include_str!("../templates/harness/services/index.html"),
                false,
            ),
            (
                "boxes/busybox/box.toml",
                include_str!("../boxes/busybox/box.toml"),
                false,
            ),
            (
                "boxes/busybox/build.sh",
                include_str!("../boxes/busybox/build.sh"),
                true,
            ),
            (
                "boxes/debian-bookworm/box.toml",
                include_str!("../boxes/debian-bookworm/box.toml"),
                false,
            ),
            (
                "boxes/debian-bookworm/build.sh",
                include_str!("../boxes/debian-bookworm/build.sh"),
                true,
            ),
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Writes a template into `dir`; refuses to overwrite unless `force`.
pub fn write(t: &Template, dir: &Path, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    if !force {
        let existing: Vec<String> = t
            .files
            .iter()
            .filter(|(p, _, _)| dir.join(p).exists())
            .map(|(p, _, _)| p.to_string())
            .collect();
        if !existing.is_empty() {
            anyhow::bail!(
                "refusing to overwrite {} in `{}`; use `--force` to replace them",
                existing.join(", "),
                dir.display()
            );
        }
    }
    let mut written = Vec::new();
    for (rel, content, exec) in t.files {
        let path = dir.join(rel);
        let content = if t.strip.is_empty() {
            content.to_string()
        } else {
            content.replace(t.strip, "")
        };
        crate::state::write_atomic(&path, content.as_bytes())?;
        if *exec {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}
