//! Verdicts, the report, and its renderings: human text, JSON, JUnit; exit codes.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::Finding;
use crate::outcome::{Outcome, Status};
use crate::rules::{Severity, Side};

/// A side's graded verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Conformed.
    Pass,
    /// The right outcome by a path QEMU tolerates (warnings only).
    PassLenient,
    /// Broke a rule.
    Fail,
    /// Used a feature qmig does not model (counted apart).
    Unsupported,
    /// Nothing of this side's was observed.
    Informational,
}

/// One side in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Verdict.
    pub verdict: Verdict,
    /// Error findings.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Unsupported items.
    pub unsupported: usize,
}

/// What the recording says happened (read only after the outcome was concluded).
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// Source status as recorded.
    pub src: Status,
    /// Destination status as recorded.
    pub dst: Status,
    /// Destination stderr lines.
    pub dst_stderr: Vec<String>,
}

/// A replay or check report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Input name.
    pub input: String,
    /// Source.
    pub src: SideReport,
    /// Destination.
    pub dst: SideReport,
    /// The models' outcome.
    pub outcome: Outcome,
    /// Every finding.
    pub findings: Vec<Finding>,
    /// Recorded outcome, if any.
    pub recorded: Option<Recorded>,
    /// Whether the outcome matches the recording (null without one).
    pub matches_recording: Option<bool>,
    /// Why it does not match.
    pub mismatch: Vec<String>,
    /// Rules disabled by a profile, with reasons.
    pub disabled: Vec<(String, String)>,
}

/// Grade one side.
pub fn side_report(findings: &[Finding], side: Side, observed: bool) -> SideReport {
    let n = |s: Severity| findings.iter().filter(|f| f.side == side && f.severity == s).count();
    let (errors, warnings, unsupported) = (n(Severity::Error), n(Severity::Warning), n(Severity::Unsupported));
    let verdict = if errors > 0 {
        Verdict::Fail
    } else if unsupported > 0 {
        Verdict::Unsupported
    } else if warnings > 0 {
        Verdict::PassLenient
    } else if observed {
        Verdict::Pass
    } else {
        Verdict::Informational
    };
    SideReport { verdict, errors, warnings, unsupported }
}

impl Report {
    /// A report graded from its findings (`dst_observed`: the destination wrote something).
    pub fn new(input: String, findings: Vec<Finding>, outcome: Outcome, dst_observed: bool) -> Self {
        Report {
            input,
            src: side_report(&findings, Side::Src, true),
            dst: side_report(&findings, Side::Dst, dst_observed),
            outcome,
            findings,
            recorded: None,
            matches_recording: None,
            mismatch: Vec::new(),
            disabled: Vec::new(),
        }
    }

    /// The process exit code: 0 conformed and matching, 1 violation or contradiction,
    /// 3 only unsupported items.
    pub fn exit_code(&self) -> i32 {
        let fail = self.src.verdict == Verdict::Fail || self.dst.verdict == Verdict::Fail || self.matches_recording == Some(false);
        if fail {
            1
        } else if self.src.verdict == Verdict::Unsupported || self.dst.verdict == Verdict::Unsupported {
            3
        } else {
            0
        }
    }

    /// Human text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.input);
        let _ = writeln!(
            s,
            "  source:      {:?} ({} errors, {} warnings, {} unsupported)",
            self.src.verdict, self.src.errors, self.src.warnings, self.src.unsupported
        );
        let _ = writeln!(
            s,
            "  destination: {:?} ({} errors, {} warnings, {} unsupported)",
            self.dst.verdict, self.dst.errors, self.dst.warnings, self.dst.unsupported
        );
        let _ = writeln!(
            s,
            "  outcome:     src {:?}, dst {:?}{}",
            self.outcome.src,
            self.outcome.dst,
            self.outcome.cause.map(|c| format!(", cause {c}")).unwrap_or_default()
        );
        if let Some(m) = self.matches_recording {
            let _ =
                writeln!(s, "  recording:   {}", if m { "matches".to_string() } else { format!("DIFFERS: {}", self.mismatch.join("; ")) });
        }
        for f in &self.findings {
            let sec = f.section.as_ref().map(|x| format!(" [{} '{}']", x.id, x.idstr)).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<11} {:<6} {} @{}:0x{:x}{}{}: {}",
                format!("{:?}", f.severity).to_lowercase(),
                format!("{:?}", f.side).to_lowercase(),
                f.rule,
                f.channel,
                f.offset,
                sec,
                if f.qemu_rejects { " (QEMU rejects)" } else { "" },
                f.message
            );
            if !f.context.is_empty() && f.severity >= Severity::Warning {
                let _ = writeln!(s, "              bytes: {}", f.context);
            }
            if let Some(r) = crate::rules::rule(f.rule) {
                if f.severity >= Severity::Error {
                    let _ = writeln!(s, "              rule: {} ({})", r.requirement, r.qemu_ref);
                }
            }
        }
        s
    }

    /// JUnit XML: one testsuite, a testcase per side, failures per finding.
    pub fn junit(reports: &[Report]) -> String {
        let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let tests = reports.len() * 3;
        let failures: usize = reports
            .iter()
            .map(|r| {
                [r.src.verdict, r.dst.verdict].iter().filter(|v| **v == Verdict::Fail).count()
                    + (r.matches_recording == Some(false)) as usize
            })
            .sum();
        let _ = writeln!(s, "<testsuite name=\"qmig\" tests=\"{tests}\" failures=\"{failures}\">");
        for r in reports {
            for (side, sr, who) in [("source", &r.src, Side::Src), ("destination", &r.dst, Side::Dst)] {
                let _ = writeln!(s, "  <testcase classname=\"{}\" name=\"{side}\">", esc(&r.input));
                match sr.verdict {
                    Verdict::Fail => {
                        for f in r.findings.iter().filter(|f| f.side == who && f.severity == Severity::Error) {
                            let _ = writeln!(
                                s,
                                "    <failure type=\"{}\" message=\"{}\">{} offset 0x{:x}</failure>",
                                f.rule,
                                esc(&f.message),
                                f.channel,
                                f.offset
                            );
                        }
                    }
                    Verdict::Unsupported => {
                        let _ = writeln!(s, "    <skipped message=\"unsupported feature\"/>");
                    }
                    _ => {}
                }
                let _ = writeln!(s, "  </testcase>");
            }
            let _ = writeln!(s, "  <testcase classname=\"{}\" name=\"outcome\">", esc(&r.input));
            if r.matches_recording == Some(false) {
                let _ = writeln!(s, "    <failure type=\"outcome\" message=\"{}\"/>", esc(&r.mismatch.join("; ")));
            }
            let _ = writeln!(s, "  </testcase>");
        }
        s.push_str("</testsuite>\n");
        s
    }
}
