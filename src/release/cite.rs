//! `hdev cite`: what a paper names to pin an environment. The environment hash always;
//! when HEAD is at a release tag made by the gatekeeper (`hdev release`, whose annotated
//! tag message records the hash), the tag, its commit and the Software Heritage
//! identifier of the tagged tree, so that a reader can fetch exactly that tree again.
//!
//! A Software Heritage directory identifier (`swh:1:dir:…`) is computed like a git tree
//! id, so for a SHA-1 repository it is `swh:1:dir:` + `git rev-parse TAG^{tree}`; the
//! commit is `swh:1:rev:` + its id likewise.

use std::path::Path;

use serde::Serialize;

use super::{git, repo_of, tags, ReleaseError};
use crate::envfile::hash::HashReport;

/// A citation of one environment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Citation {
    /// The `[env] name` of the Envfile.
    pub name: String,
    pub description: Option<String>,
    /// `hdev hash` of the environment here.
    pub hash: String,
    /// Version of the hash specification (docs/HASH.md) the hash follows.
    pub hash_schema_version: u32,
    /// The gatekeeper's release tag at HEAD, when there is one.
    pub release: Option<Release>,
    /// The repository's `origin` remote, without any credentials in it.
    pub repository: Option<String>,
    /// The Envfile's folder inside the repository (`""` at its top).
    pub envfile_dir: Option<String>,
    /// What makes the citation weaker than it could be.
    pub warnings: Vec<String>,
}

/// A release tag and what identifies its content.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Release {
    pub tag: String,
    pub commit: String,
    /// Committer date of the tagged commit, ISO 8601.
    pub date: String,
    /// The git tree id of the tagged tree (`git rev-parse TAG^{tree}`).
    pub tree: String,
    /// `swh:1:dir:<tree>`; absent for a repository with SHA-256 object ids, which
    /// Software Heritage identifiers do not cover.
    pub swhid: Option<String>,
    /// `swh:1:rev:<commit>`, likewise.
    pub swhid_revision: Option<String>,
    /// The hash `hdev release` recorded in the tag.
    pub recorded_hash: String,
}

/// Builds the citation of the environment of `env_dir`, hashed as `report`.
pub(crate) fn cite(
    name: &str,
    description: Option<&str>,
    env_dir: &Path,
    report: &HashReport,
) -> Result<Citation, ReleaseError> {
    let mut c = Citation {
        name: name.to_string(),
        description: description.map(str::to_string),
        hash: report.hash.to_string(),
        hash_schema_version: report.schema_version,
        release: None,
        repository: None,
        envfile_dir: None,
        warnings: Vec::new(),
    };
    let untagged = "it is citable by its hash only and cannot be retrieved by tag: make a release with `hdev release TAG` (tests a fresh copy, then tags it) and cite again";
    let (repo, rel) = match repo_of(env_dir) {
        Ok(r) => r,
        Err(ReleaseError::NotARepo(_)) => {
            c.warnings.push(format!(
                "`{}` is not in a git repository: {untagged}",
                env_dir.display()
            ));
            return Ok(c);
        }
        Err(e) => return Err(e),
    };
    c.envfile_dir = Some(rel.display().to_string());
    c.repository = git(&repo, &["remote", "get-url", "origin"])
        .ok()
        .map(|u| without_credentials(u.trim()))
        .filter(|u| !u.is_empty());
    let Ok(head) = git(
        &repo,
        &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
    ) else {
        c.warnings
            .push(format!("the repository has no commit yet: {untagged}"));
        return Ok(c);
    };
    let head = head.trim().to_string();
    let at_head: Vec<_> = tags(&repo)?
        .into_iter()
        .filter(|t| t.commit == head)
        .collect();
    let (released, other): (Vec<_>, Vec<_>) =
        at_head.into_iter().partition(|t| t.recorded_hash.is_some());
    if !other.is_empty() {
        let names: Vec<&str> = other.iter().map(|t| t.name.as_str()).collect();
        c.warnings.push(format!(
            "tag{} {} at HEAD {} not made by `hdev release` (no environment hash recorded in {}); not cited",
            if names.len() == 1 { "" } else { "s" },
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if names.len() == 1 { "was" } else { "were" },
            if names.len() == 1 { "it" } else { "them" },
        ));
    }
    // Highest version first (as `tags` sorts them).
    let Some(tag) = released.into_iter().next() else {
        c.warnings.push(format!(
            "HEAD ({}) is at no release tag: {untagged}",
            &head[..head.len().min(12)]
        ));
        return Ok(c);
    };
    let tree = git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            &format!("refs/tags/{}^{{tree}}", tag.name),
        ],
    )?
    .trim()
    .to_string();
    let sha1 = |id: &str| id.len() == 40;
    let (swhid, swhid_revision) = if sha1(&tree) && sha1(&tag.commit) {
        (
            Some(format!("swh:1:dir:{tree}")),
            Some(format!("swh:1:rev:{}", tag.commit)),
        )
    } else {
        c.warnings.push(
            "the repository uses SHA-256 object ids, which Software Heritage identifiers do not cover; cite the tag and commit".into(),
        );
        (None, None)
    };
    let recorded = tag.recorded_hash.clone().unwrap_or_default();
    if !report.hash.matches(&recorded) {
        c.warnings.push(format!(
            "release `{}` recorded the environment hash {recorded}, but the environment here hashes to {}: a reader who checks out `{}` gets the recorded one (a box built since, or uncommitted changes?)",
            tag.name, report.hash, tag.name
        ));
    }
    if super::is_dirty(&repo)? {
        c.warnings.push(format!(
            "the working tree has uncommitted changes: what is cited is release `{}` as committed",
            tag.name
        ));
    }
    c.release = Some(Release {
        tag: tag.name,
        commit: tag.commit,
        date: tag.date,
        tree,
        swhid,
        swhid_revision,
        recorded_hash: recorded,
    });
    Ok(c)
}

/// A remote URL without a user name or password in it (`https://user:token@host/x`).
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

impl Citation {
    /// The BibTeX key: `hdev-NAME-SHORTHASH`.
    pub(crate) fn key(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let hex = self.hash.strip_prefix("sha256:").unwrap_or(&self.hash);
        format!("hdev-{name}-{}", &hex[..hex.len().min(12)])
    }

    /// How a reader brings the environment back.
    pub(crate) fn rebuild(&self) -> String {
        match &self.release {
            Some(r) => {
                let cd = match self.envfile_dir.as_deref() {
                    Some(d) if !d.is_empty() => format!(" && cd {d}"),
                    _ => String::new(),
                };
                format!(
                    "git checkout {}{cd} && hdev up && hdev verify {}",
                    r.tag, self.hash
                )
            }
            None => format!("hdev up && hdev verify {}", self.hash),
        }
    }

    /// A `@software` entry (biblatex; plain BibTeX styles read it as `@misc`).
    pub(crate) fn bibtex(&self) -> String {
        let mut f: Vec<(&str, String)> = Vec::new();
        let what = match &self.description {
            Some(d) => format!("{}: {d}", self.name),
            None => format!("{}: a development environment", self.name),
        };
        f.push(("title", bib(&what)));
        if let Some(r) = &self.release {
            f.push(("version", bib(&r.tag)));
            if let Some(day) = r.date.get(..10) {
                f.push(("date", bib(day)));
            }
            if let Some(year) = r.date.get(..4) {
                f.push(("year", bib(year)));
            }
            if let Some(s) = &r.swhid {
                f.push(("swhid", bib(s)));
            }
        }
        if let Some(u) = &self.repository {
            // biblatex reads `url` verbatim: no escapes.
            f.push(("url", u.replace(['{', '}'], "")));
        }
        let mut note = format!(
            "hdev environment hash {} (hash schema {})",
            self.hash, self.hash_schema_version
        );
        match &self.release {
            Some(r) => note.push_str(&format!(
                "; release {}, commit {}; rebuild: {}",
                r.tag,
                r.commit,
                self.rebuild().replace(" && ", ", then ")
            )),
            None => note.push_str("; untagged: not retrievable by tag"),
        }
        f.push(("note", bib(&note)));
        let mut out = format!("@software{{{},\n", self.key());
        for (k, v) in f {
            out.push_str(&format!("  {k:<7} = {{{v}}},\n"));
        }
        out.push_str("}\n");
        out
    }

    /// Plain text, one fact a line.
    pub(crate) fn text(&self) -> String {
        let mut out = match &self.release {
            Some(r) => format!(
                "{}, development environment, release {} ({}), managed with hdev.\n",
                self.name,
                r.tag,
                r.date.get(..10).unwrap_or(&r.date)
            ),
            None => format!(
                "{}, development environment (untagged), managed with hdev.\n",
                self.name
            ),
        };
        out.push_str(&format!(
            "  Environment hash:  {} (hdev hash schema {})\n",
            self.hash, self.hash_schema_version
        ));
        if let Some(r) = &self.release {
            out.push_str(&format!("  Release tag:       {}\n", r.tag));
            out.push_str(&format!("  Commit:            {}\n", r.commit));
            match &r.swhid {
                Some(s) => out.push_str(&format!("  Software Heritage: {s}\n")),
                None => out.push_str(&format!("  Tree:              {}\n", r.tree)),
            }
        }
        if let Some(u) = &self.repository {
            out.push_str(&format!("  Repository:        {u}\n"));
        }
        out.push_str(&format!("  Rebuild:           {}\n", self.rebuild()));
        out.push_str(&format!(
            "  Or, offline:       {}\n",
            self.rebuild_offline()
        ));
        out
    }

    /// Bringing the environment back from its archive (`hdev export`), with no network.
    pub(crate) fn rebuild_offline(&self) -> String {
        format!(
            "hdev up --from {} --expect-hash {} (the archive `hdev export` writes)",
            crate::export::file_name(&self.name, &self.hash),
            self.hash
        )
    }
}

/// Escapes text for a BibTeX field in braces.
fn bib(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '{' | '}' | '%' | '&' | '#' | '_' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_citation() {
        assert_eq!(
            without_credentials("https://user:tok@example.org/a/b.git"),
            "https://example.org/a/b.git"
        );
        assert_eq!(
            without_credentials("https://example.org/a"),
            "https://example.org/a"
        );
        assert_eq!(
            without_credentials("git@example.org:a/b.git"),
            "git@example.org:a/b.git"
        );
    }

    #[test]
    fn bibtex_fields_are_escaped() {
        assert_eq!(
            bib("a_b {c} 50% & #1 $x"),
            "a\\_b \\{c\\} 50\\% \\& \\#1 \\$x"
        );
    }
}
