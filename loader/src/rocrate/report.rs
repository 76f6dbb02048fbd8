//! Diagnostics: every stage (parse → graph → validate) pushes into one [`Collector`], which
//! becomes the [`Report`] that `load` and `validate` hand back.
//!
//! The collector is where hostile input meets a budget: diagnostics are capped per severity and
//! every crate-supplied string in them is clipped, so a 4 MiB crate full of problems yields a
//! report of bounded size that still says how much was left out.

use std::fmt;

use serde::Serialize;

/// How serious a finding is: errors stop a crate from being published, warnings travel with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One finding about a crate, located by entity `@id` and property where that makes sense.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The `@id` of the entity the finding is about (clipped when very long).
    pub entity: Option<String>,
    /// The property (JSON key) the finding is about.
    pub property: Option<String>,
    /// What is wrong and what to change, for the data engineer who maintains the crate.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, message)
    }

    pub(crate) fn warning(message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, message)
    }

    fn new(severity: Severity, message: impl Into<String>) -> Self {
        // Messages quote crate content; escaped here once, for every output.
        Self {
            severity,
            entity: None,
            property: None,
            message: crate::escape::controls(&message.into()),
        }
    }

    /// Locate the finding on an entity.
    #[must_use]
    pub(crate) fn on(mut self, entity: &str) -> Self {
        self.entity = Some(clip(entity));
        self
    }

    /// Locate the finding on a property.
    #[must_use]
    pub(crate) fn at(mut self, property: &str) -> Self {
        self.property = Some(clip(property));
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.severity)?;
        match (&self.entity, &self.property) {
            (Some(entity), Some(property)) => {
                write!(f, "entity '{entity}' property '{property}': ")?;
            }
            (Some(entity), None) => write!(f, "entity '{entity}': ")?,
            (None, Some(property)) => write!(f, "property '{property}': ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Everything found in one crate, in the order it was found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> + '_ {
        self.of(Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> + '_ {
        self.of(Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    pub fn warning_count(&self) -> usize {
        self.warnings().count()
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    fn of(&self, severity: Severity) -> impl Iterator<Item = &Diagnostic> + '_ {
        self.diagnostics
            .iter()
            .filter(move |d| d.severity == severity)
    }
}

/// One diagnostic per line, so the report reads well in a log or a terminal.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// How many diagnostics of each severity a report lists before it only counts. Errors have their
/// own budget so a flood of warnings can never hide the error that blocks publication.
pub(crate) const MAX_PER_SEVERITY: usize = 200;

/// Crate-supplied strings (ids, property names) are cut to this many characters in diagnostics:
/// one 1 MiB `@id` named in hundreds of messages must not turn into hundreds of MiB of report.
const MAX_SHOWN_CHARS: usize = 120;

/// Gathers diagnostics within the budget above.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    diagnostics: Vec<Diagnostic>,
    errors: usize,
    warnings: usize,
}

impl Collector {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        let count = match diagnostic.severity {
            Severity::Error => &mut self.errors,
            Severity::Warning => &mut self.warnings,
        };
        *count += 1;
        if *count <= MAX_PER_SEVERITY {
            self.diagnostics.push(diagnostic);
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.errors > 0
    }

    pub(crate) fn finish(mut self) -> Report {
        for (severity, count) in [
            (Severity::Error, self.errors),
            (Severity::Warning, self.warnings),
        ] {
            if count > MAX_PER_SEVERITY {
                let more = count - MAX_PER_SEVERITY;
                self.diagnostics.push(Diagnostic::new(
                    severity,
                    format!(
                        "{more} more {severity}s were found but not listed (at most \
                         {MAX_PER_SEVERITY} are); fix the ones above and validate again"
                    ),
                ));
            }
        }
        Report {
            diagnostics: self.diagnostics,
        }
    }
}

/// A crate-supplied string as it appears in a diagnostic: clipped, with an ellipsis when cut.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        None => crate::escape::controls(s),
        Some((cut, _)) => format!("{}…", crate::escape::controls(&s[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnostic_displays_its_severity_entity_property_and_message() {
        let d = Diagnostic::error("add a licence").on("./").at("license");
        assert_eq!(
            d.to_string(),
            "error: entity './' property 'license': add a licence"
        );
        let d = Diagnostic::warning("odd").on("x");
        assert_eq!(d.to_string(), "warning: entity 'x': odd");
        let d = Diagnostic::error("bad").at("@graph");
        assert_eq!(d.to_string(), "error: property '@graph': bad");
        assert_eq!(Diagnostic::error("plain").to_string(), "error: plain");
    }

    #[test]
    fn crate_content_in_a_diagnostic_has_its_control_characters_escaped() {
        let d = Diagnostic::warning("name \"\x1b[2Jx\" is odd")
            .on("./\nforged: line")
            .at("na\rme");
        assert_eq!(
            d.to_string(),
            "warning: entity './\\nforged: line' property 'na\\rme': name \"\\u{1b}[2Jx\" is odd"
        );
    }

    #[test]
    fn severities_serialise_in_lowercase() -> Result<(), serde_json::Error> {
        let d = Diagnostic::warning("m").on("./").at("name");
        let json = serde_json::to_value(&d)?;
        assert_eq!(
            json,
            serde_json::json!({"severity": "warning", "entity": "./", "property": "name", "message": "m"})
        );
        Ok(())
    }

    #[test]
    fn a_collector_lists_a_bounded_number_of_each_severity_and_counts_the_rest() {
        let mut c = Collector::default();
        for _ in 0..MAX_PER_SEVERITY + 5 {
            c.push(Diagnostic::warning("w"));
        }
        c.push(Diagnostic::error("e"));
        let report = c.finish();
        assert_eq!(report.error_count(), 1);
        assert_eq!(report.warning_count(), MAX_PER_SEVERITY + 1);
        let last = report
            .diagnostics
            .last()
            .map(|d| d.message.as_str())
            .unwrap_or_default();
        assert!(last.starts_with("5 more warnings"), "{last}");
    }

    #[test]
    fn long_strings_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(500);
        let shown = clip(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(clip("./"), "./");
    }
}
