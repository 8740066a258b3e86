//! Envfile templates for `hdev init`, compiled into the binary together with the box
//! recipes they use (see `build.rs`).

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

pub(crate) struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub envfile: &'static str,
    /// Prefix of host paths in the Envfile that `init` removes, because the template's
    /// Envfile is also the repository's `Envfile.example` and names its files from there.
    pub strip: &'static str,
    /// (folder in the repository, folder in the new project) copied alongside.
    pub folders: &'static [(&'static str, &'static str)],
}

pub(crate) const TEMPLATES: &[Template] = &[
    Template {
        name: "minimal",
        about: "one container from the busybox box",
        envfile: include_str!("../templates/minimal/Envfile"),
        strip: "",
        folders: &[("boxes/busybox/", "boxes/busybox/")],
    },
    Template {
        name: "harness",
        about:
            "the HARNESS platform: scheduler, resource managers, storage, PaaS, an accelerator VM",
        envfile: include_str!("../Envfile.example"),
        strip: "templates/harness/",
        folders: &[("templates/harness/", ""), ("boxes/", "boxes/")],
    },
    Template {
        name: "harness-sources",
        about: "the HARNESS platform with its services from the teams' git repositories (sources)",
        envfile: include_str!("../templates/harness-sources/Envfile"),
        strip: "",
        folders: &[("boxes/busybox/", "boxes/busybox/")],
    },
];

pub(crate) fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// The files a template writes: (path in the project, content, executable).
pub(crate) fn files(t: &Template) -> Vec<(String, String, bool)> {
    let envfile = if t.strip.is_empty() {
        t.envfile.to_string()
    } else {
        t.envfile.replace(t.strip, "")
    };
    let mut out = vec![("Envfile".to_string(), envfile, false)];
    for (from, to) in t.folders {
        for (path, content, exec) in EMBEDDED {
            if let Some(rest) = path.strip_prefix(from) {
                out.push((format!("{to}{rest}"), content.to_string(), *exec));
            }
        }
    }
    out
}

/// Writes a template into `dir`; refuses to overwrite unless `force`.
pub(crate) fn write(t: &Template, dir: &Path, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let files = files(t);
    if !force {
        let existing: Vec<&str> = files
            .iter()
            .filter(|(p, _, _)| dir.join(p).exists())
            .map(|(p, _, _)| p.as_str())
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
    for (rel, content, exec) in &files {
        let path = dir.join(rel);
        crate::state::write_atomic(&path, content.as_bytes())?;
        if *exec {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_template_carries_every_file_its_envfile_names() {
        let t = find("harness").unwrap();
        let files = files(t);
        let names: Vec<&str> = files.iter().map(|(p, _, _)| p.as_str()).collect();
        for needed in [
            "provision/service.sh",
            "provision/accel.yml",
            "boxes/debian-bookworm/hdev-guest-init",
            "boxes/busybox/build.sh",
        ] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        assert!(!files[0].1.contains("templates/harness/"));
        let script = files.iter().find(|f| f.0 == "provision/paas.sh").unwrap();
        assert!(script.2, "scripts stay executable");
    }
}
