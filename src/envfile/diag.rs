//! Diagnostics that point into the Envfile.
//!
//! Every problem found while reading an Envfile becomes one [`Diagnostic`] with the byte
//! span it is about, so that all problems are reported at once, each rendered with the
//! file, line, column and a caret under the offending text.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// The text of one file, named the way the user should see it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub display_name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: &Path, display_name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceFile {
            path: path.to_path_buf(),
            display_name: display_name.into(),
            text: text.into(),
        }
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

/// One problem in an Envfile.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub span: Range<usize>,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            message: message.into(),
            label: String::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// All problems found in one file, in the order they appear in it.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub source: SourceFile,
    pub items: Vec<Diagnostic>,
}

/// A diagnostic as `--json` reports it.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: &'a str,
    pub label: &'a str,
    pub help: Option<&'a str>,
}

impl Diagnostics {
    pub fn new(source: SourceFile, mut items: Vec<Diagnostic>) -> Self {
        items.sort_by_key(|d| (d.span.start, d.span.end));
        items.dedup_by(|a, b| a.span == b.span && a.message == b.message);
        Diagnostics { source, items }
    }

    /// Renders every diagnostic the way a terminal shows it, followed by a count.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let mut out = String::new();
        for item in &self.items {
            let report = Rendered {
                diag: item,
                source: NamedSource::new(&self.source.display_name, self.source.text.clone()),
            };
            // Rendering into a String cannot fail.
            let _ = handler.render_report(&mut out, &report);
            out.push('\n');
        }
        let n = self.items.len();
        out.push_str(&format!(
            "error: {} problem{} in `{}`\n",
            n,
            if n == 1 { "" } else { "s" },
            self.source.display_name
        ));
        out
    }

    pub fn to_json(&self) -> Vec<JsonDiagnostic<'_>> {
        self.items
            .iter()
            .map(|d| {
                let (line, column) = self.source.line_col(d.span.start);
                let (end_line, end_column) = self.source.line_col(d.span.end);
                JsonDiagnostic {
                    file: &self.source.display_name,
                    line,
                    column,
                    end_line,
                    end_column,
                    message: &d.message,
                    label: &d.label,
                    help: d.help.as_deref(),
                }
            })
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

struct Rendered<'a> {
    diag: &'a Diagnostic,
    source: NamedSource<Arc<str>>,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.diag.span.clone();
        let label = if self.diag.label.is_empty() {
            None
        } else {
            Some(self.diag.label.clone())
        };
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            label,
            span.start..span.end.max(span.start),
        ))))
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
}

/// The closest of `candidates` to `name`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = SourceFile::new(Path::new("E"), "E", "ab\ncdé\nf");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(3), (2, 1));
        assert_eq!(src.line_col(8), (3, 1));
        assert_eq!(src.line_col(7), (2, 4));
    }

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(
            did_you_mean("schedular", ["scheduler", "storage"]),
            Some("scheduler".into())
        );
        assert_eq!(did_you_mean("zzz", ["scheduler", "storage"]), None);
    }
}
