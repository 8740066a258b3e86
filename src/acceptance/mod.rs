//! Acceptance checks (`[[test]]`): judging a check's result, and reporting results as
//! lines, JSON or JUnit XML. Judging and reporting are pure, so they are tested without
//! daemons; [`run`] runs the commands through the backends.

pub(crate) mod run;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::envfile::TestCheck;

/// One check's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TestResult {
    pub name: String,
    pub machine: String,
    pub passed: bool,
    pub exit_code: i64,
    pub duration_ms: u64,
    /// Why it failed, in a sentence.
    pub failure: Option<String>,
    /// What the command printed (stdout and stderr, last lines).
    pub output: String,
}

/// Judges a finished command against its check.
pub(crate) fn judge(
    check: &TestCheck,
    exit_code: i64,
    output: &str,
    duration_ms: u64,
) -> TestResult {
    let mut failure = None;
    if exit_code != i64::from(check.expect_exit) {
        failure = Some(format!(
            "exit code {exit_code}, expected {}",
            check.expect_exit
        ));
    } else if let Some(want) = &check.expect_output {
        if !output.contains(want.as_str()) {
            failure = Some(format!("output does not contain `{want}`"));
        }
    }
    TestResult {
        name: check.name.clone(),
        machine: check.machine.clone(),
        passed: failure.is_none(),
        exit_code,
        duration_ms,
        failure,
        output: output.to_string(),
    }
}

/// A result for a check that could not be run at all (machine missing, engine error).
pub(crate) fn errored(check: &TestCheck, message: String) -> TestResult {
    TestResult {
        name: check.name.clone(),
        machine: check.machine.clone(),
        passed: false,
        exit_code: -1,
        duration_ms: 0,
        failure: Some(message),
        output: String::new(),
    }
}

/// Totals over a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub duration_ms: u64,
}

impl Summary {
    pub(crate) fn of(results: &[TestResult]) -> Summary {
        let passed = results.iter().filter(|r| r.passed).count();
        Summary {
            total: results.len(),
            passed,
            failed: results.len() - passed,
            duration_ms: results.iter().map(|r| r.duration_ms).sum(),
        }
    }

    pub(crate) fn ok(&self) -> bool {
        self.failed == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} total",
            self.passed, self.failed, self.total
        )
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no way to carry most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The results as a JUnit XML report, one test case per check, classed by machine.
pub(crate) fn junit(suite: &str, results: &[TestResult]) -> String {
    let s = Summary::of(results);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"hdev\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        s.total,
        s.failed,
        s.duration_ms as f64 / 1000.0
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{:.3}\">",
        xml_escape(suite),
        s.total,
        s.failed,
        s.duration_ms as f64 / 1000.0
    );
    for r in results {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            xml_escape(&r.name),
            xml_escape(&r.machine),
            r.duration_ms as f64 / 1000.0
        );
        if r.passed && r.output.is_empty() {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        if let Some(f) = &r.failure {
            let _ = writeln!(
                x,
                "      <failure message=\"{}\">{}</failure>",
                xml_escape(f),
                xml_escape(&r.output)
            );
        }
        if !r.output.is_empty() {
            let _ = writeln!(
                x,
                "      <system-out>{}</system-out>",
                xml_escape(&r.output)
            );
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect_exit: i32, expect_output: Option<&str>) -> TestCheck {
        TestCheck {
            name: "web <answers>".into(),
            machine: "web".into(),
            run: "true".into(),
            expect_exit,
            expect_output: expect_output.map(str::to_string),
            timeout_ms: None,
            span: 0..0,
        }
    }

    #[test]
    fn judges_exit_code_then_output() {
        assert!(judge(&check(0, None), 0, "", 1).passed);
        let r = judge(&check(0, None), 3, "boom", 1);
        assert_eq!(r.failure.as_deref(), Some("exit code 3, expected 0"));
        assert!(judge(&check(2, None), 2, "", 1).passed);
        assert!(judge(&check(0, Some("ok")), 0, "all ok\n", 1).passed);
        let r = judge(&check(0, Some("ok")), 0, "nope", 1);
        assert_eq!(r.failure.as_deref(), Some("output does not contain `ok`"));
    }

    #[test]
    fn junit_counts_and_escapes() {
        let results = vec![
            judge(&check(0, None), 0, "", 1500),
            judge(&check(0, Some("x")), 0, "a & b\u{1}", 250),
        ];
        let x = junit("env <demo>", &results);
        assert!(x.contains("<testsuite name=\"env &lt;demo&gt;\" tests=\"2\" failures=\"1\""));
        assert!(
            x.contains("<testcase name=\"web &lt;answers&gt;\" classname=\"web\" time=\"1.500\"/>")
        );
        assert!(x.contains("<failure message=\"output does not contain `x`\">a &amp; b?</failure>"));
        assert_eq!(
            Summary::of(&results).to_string(),
            "1 passed, 1 failed, 2 total"
        );
    }
}
