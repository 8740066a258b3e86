//! Typed, span-keeping reads out of a parsed TOML tree.
//!
//! serde stops at the first problem; users want all of them. So the Envfile is parsed into
//! toml's spanned tree and read field by field here, each wrong type or unknown key
//! recorded as a diagnostic while reading goes on.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{did_you_mean, Diagnostic};

/// A value with the byte span it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sp<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Sp<T> {
    pub(super) fn new(value: T, span: Range<usize>) -> Self {
        Sp { value, span }
    }
}

/// Collects diagnostics while an Envfile is read.
#[derive(Debug, Default)]
pub(super) struct Ctx {
    pub diags: Vec<Diagnostic>,
}

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// What a TOML value is, in the words of an error message.
pub(super) fn kind_of(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Ctx {
    pub(super) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub(super) fn wrong_type(
        &mut self,
        v: &Value<'_>,
        what: &str,
        expected: &str,
        help: Option<&str>,
    ) {
        let d = Diagnostic::new(
            v.span(),
            format!(
                "`{what}` must be {expected}, found {}",
                kind_of(v.get_ref())
            ),
        )
        .label(format!("expected {expected}"))
        .help_opt(help.map(str::to_string));
        self.push(d);
    }

    pub(super) fn string(&mut self, v: &Value<'_>, what: &str) -> Option<Sp<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Sp::new(s.to_string(), v.span())),
            _ => {
                self.wrong_type(v, what, "a string", None);
                None
            }
        }
    }

    pub(super) fn integer(&mut self, v: &Value<'_>, what: &str) -> Option<Sp<i64>> {
        match v.get_ref() {
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(Sp::new(n, v.span())),
                    Err(_) => {
                        self.push(
                            Diagnostic::new(v.span(), format!("`{what}` is out of range"))
                                .label("too large"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(v, what, "an integer", None);
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, v: &Value<'_>, what: &str) -> Option<Sp<bool>> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Sp::new(*b, v.span())),
            _ => {
                self.wrong_type(v, what, "`true` or `false`", None);
                None
            }
        }
    }

    pub(super) fn array<'a, 'i>(
        &mut self,
        v: &'a Value<'i>,
        what: &str,
    ) -> Option<&'a [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(v, what, "an array", None);
                None
            }
        }
    }

    pub(super) fn table<'a, 'i>(
        &mut self,
        v: &'a Value<'i>,
        what: &str,
    ) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, what, "a table", None);
                None
            }
        }
    }

    /// A list of strings; a single string is not accepted, so that a forgotten bracket is
    /// reported rather than guessed at.
    pub(super) fn string_list(&mut self, v: &Value<'_>, what: &str) -> Vec<Sp<String>> {
        let Some(items) = self.array(v, what) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| self.string(item, &format!("{what}[]")))
            .collect()
    }

    /// Reports every key of `table` that is not in `allowed`, with a suggestion.
    pub(super) fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for key in table.keys() {
            if allowed.contains(&key.get_ref().as_ref()) {
                continue;
            }
            let name: &str = key.get_ref();
            let suggestion = did_you_mean(name, allowed.iter().copied());
            let help = match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("{what} accepts: {}", allowed.join(", ")),
            };
            self.push(
                Diagnostic::new(key.span(), format!("unknown key `{name}` in {what}"))
                    .label("unknown key")
                    .help(help),
            );
        }
    }
}

/// Where the value at `path` (table keys, then the key) is written in TOML `text`, for
/// problems found after loading; `None` when it is not written there.
pub(super) fn span_of(text: &str, path: &[&str]) -> Option<Range<usize>> {
    let (root, _) = DeTable::parse_recoverable(text);
    let (last, tables) = path.split_last()?;
    let mut table = root.get_ref();
    for key in tables {
        match get(table, key)?.1.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    get(table, last).map(|(_, v)| v.span())
}

/// Looks a key up, returning the key's span along with the value.
pub(super) fn get<'a, 'i>(
    table: &'a DeTable<'i>,
    key: &str,
) -> Option<(Range<usize>, &'a Value<'i>)> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, v)| (k.span(), v))
}

/// The entries of a table in the order they appear in the file.
pub(super) fn entries_in_order<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(Sp<String>, &'a Value<'i>)> {
    let mut out: Vec<_> = table
        .iter()
        .map(|(k, v)| (Sp::new(k.get_ref().to_string(), k.span()), v))
        .collect();
    out.sort_by_key(|(k, _)| k.span.start);
    out
}
