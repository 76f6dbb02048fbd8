//! The reference validator's cases, as tables. Each case is a minimal crate the project writes
//! itself (the shape a case of roc-validator's test corpus checks, described in its name, not a
//! copy of its file) and the exact findings expected: every finding listed must be reported,
//! and nothing else may be. Invalid shapes must be named (as the error or warning the design
//! gives them); valid shapes must load with at most the warnings a person reading the crate
//! would agree with.

use serde_json::{Value, json};

use super::{add, base, bytes, entity, root};
use crate::rocrate::{Limits, Payload, Report, Severity, validate};

/// What one finding must be: severity, entity `@id`, property and a piece of its message.
type Expected = (
    Severity,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

const W: Severity = Severity::Warning;
const E: Severity = Severity::Error;

struct Case {
    name: &'static str,
    change: fn(&mut Value),
    /// The paths the crate holds besides its metadata; `None`: presence is not checked.
    payload: Option<&'static [&'static str]>,
    expected: &'static [Expected],
}

fn report_of(case: &Case) -> Report {
    let mut crate_ = base();
    (case.change)(&mut crate_);
    let present = |path: &str| case.payload.is_some_and(|paths| paths.contains(&path));
    validate(
        &bytes(&crate_),
        &Limits::default(),
        case.payload.map(|_| &present as &dyn Payload),
    )
}

/// Checks every case and lists every mismatch at once, so one run shows all that is wrong.
fn check(cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let report = report_of(case);
        let mut unmatched: Vec<_> = report.diagnostics.iter().collect();
        for &(severity, entity, property, fragment) in case.expected {
            let found = unmatched.iter().position(|d| {
                d.severity == severity
                    && d.entity.as_deref() == entity
                    && d.property.as_deref() == property
                    && d.message.contains(fragment)
            });
            match found {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => failures.push(format!(
                    "{}: expected {severity} on {entity:?}/{property:?} containing {fragment:?}, \
                     got:\n{report}",
                    case.name
                )),
            }
        }
        for extra in unmatched {
            failures.push(format!("{}: unexpected {extra}", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

fn descriptor(crate_: &mut Value) -> &mut serde_json::Map<String, Value> {
    entity(crate_, "ro-crate-metadata.json")
}

fn set_date(crate_: &mut Value, date: &str) {
    root(crate_).insert("datePublished".into(), json!(date));
}

/// Findings the reference validator makes (REQUIRED, RO-Crate 1.1 profile), each on the shape
/// of the corpus case it comes from ([`REQUIRED_FINDINGS`]).
#[test]
fn every_required_finding_of_the_reference_validator_is_reported() {
    check(REQUIRED_FINDINGS);
}

/// Valid crates ([`VALID_SHAPES`]): no error, and only the warnings listed (none, for most).
#[test]
fn valid_crates_load_with_at_most_the_warnings_a_reader_would_agree_with() {
    check(VALID_SHAPES);
}

const REQUIRED_FINDINGS: &[Case] = &[
    Case {
        name: "a descriptor typed CreativeWorkInvalid",
        change: |c| {
            descriptor(c).insert("@type".into(), json!("CreativeWorkInvalid"));
        },
        payload: None,
        expected: &[(
            W,
            Some("ro-crate-metadata.json"),
            Some("@type"),
            "set \"@type\": \"CreativeWork\"",
        )],
    },
    Case {
        name: "a descriptor without conformsTo",
        change: |c| {
            descriptor(c).remove("conformsTo");
        },
        payload: None,
        expected: &[(W, Some("ro-crate-metadata.json"), Some("conformsTo"), "add")],
    },
    Case {
        name: "a descriptor whose conformsTo key is misspelt missing-conformsTo",
        change: |c| {
            let conforms = descriptor(c).remove("conformsTo");
            descriptor(c).insert("missing-conformsTo".into(), conforms.unwrap_or_default());
        },
        payload: None,
        expected: &[
            (W, Some("ro-crate-metadata.json"), Some("conformsTo"), "add"),
            (
                W,
                Some("ro-crate-metadata.json"),
                Some("missing-conformsTo"),
                "not defined by the @context",
            ),
        ],
    },
    Case {
        name: "a descriptor conforming to RO-Crate 1.1-invalid",
        change: |c| {
            descriptor(c).insert(
                "conformsTo".into(),
                json!({"@id": "https://w3id.org/ro/crate/1.1-invalid"}),
            );
        },
        payload: None,
        expected: &[(
            W,
            Some("ro-crate-metadata.json"),
            Some("conformsTo"),
            "'1.1-invalid', which this loader does not know",
        )],
    },
    Case {
        name: "a descriptor whose about names a sub-Dataset instead of the root",
        change: |c| {
            descriptor(c).insert("about".into(), json!({"@id": "tables/"}));
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@id": "tables/"}]),
            );
            add(c, [json!({"@id": "tables/", "@type": "Dataset"})]);
        },
        payload: None,
        expected: &[
            (W, Some("tables/"), Some("name"), "add a `name`"),
            (
                W,
                Some("tables/"),
                Some("description"),
                "add a `description`",
            ),
            (W, Some("tables/"), Some("license"), "add a `license`"),
            (
                W,
                Some("tables/"),
                Some("datePublished"),
                "add `datePublished`",
            ),
            (
                W,
                Some("./"),
                Some("hasPart"),
                "not listed in the hasPart of the root dataset 'tables/'",
            ),
            (W, Some("admissions.csv"), Some("hasPart"), "not listed"),
        ],
    },
    Case {
        name: "a descriptor whose about is misspelt missing-about",
        change: |c| {
            let about = descriptor(c).remove("about");
            descriptor(c).insert("missing-about".into(), about.unwrap_or_default());
        },
        payload: None,
        expected: &[
            (
                E,
                Some("ro-crate-metadata.json"),
                Some("about"),
                "does not say which entity is the root",
            ),
            (
                W,
                Some("ro-crate-metadata.json"),
                Some("missing-about"),
                "not defined by the @context",
            ),
        ],
    },
    Case {
        name: "a descriptor whose about names the workflow file",
        change: |c| {
            descriptor(c).insert("about".into(), json!({"@id": "workflow.cwl"}));
            add(
                c,
                [
                    json!({"@id": "workflow.cwl", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"], "name": "Workflow"}),
                ],
            );
        },
        payload: None,
        expected: &[
            (
                E,
                Some("ro-crate-metadata.json"),
                Some("about"),
                "point `about` at the Dataset './'",
            ),
            (
                W,
                Some("workflow.cwl"),
                Some("@id"),
                "does not end with '/'",
            ),
            (
                W,
                Some("workflow.cwl"),
                Some("description"),
                "add a `description`",
            ),
            (
                W,
                Some("workflow.cwl"),
                Some("datePublished"),
                "add `datePublished`",
            ),
            (W, Some("workflow.cwl"), Some("license"), "add a `license`"),
            (W, Some("./"), Some("hasPart"), "not listed in the hasPart"),
            (W, Some("admissions.csv"), Some("hasPart"), "not listed"),
        ],
    },
    Case {
        name: "a 1.1 root whose @id lacks the trailing slash",
        change: |c| {
            root(c).insert("@id".into(), json!("./invalidRootValue"));
            descriptor(c).insert("about".into(), json!({"@id": "./invalidRootValue"}));
        },
        payload: Some(&["admissions.csv"]),
        expected: &[
            (
                W,
                Some("./invalidRootValue"),
                Some("@id"),
                "does not end with '/'",
            ),
            (
                W,
                Some("./invalidRootValue"),
                Some("@id"),
                "Dataset './invalidRootValue' is described but not in the crate",
            ),
        ],
    },
    Case {
        name: "a root typed WrongDatasetType",
        change: |c| {
            root(c).insert("@type".into(), json!("WrongDatasetType"));
        },
        payload: None,
        expected: &[(E, Some("./"), Some("@type"), "it must be a Dataset")],
    },
    Case {
        name: "a root without name, description, license or datePublished",
        change: |c| {
            for property in ["name", "description", "license", "datePublished"] {
                root(c).remove(property);
            }
        },
        payload: None,
        expected: &[
            (W, Some("./"), Some("name"), "add a `name`"),
            (W, Some("./"), Some("description"), "add a `description`"),
            (W, Some("./"), Some("license"), "add a `license`"),
            (W, Some("./"), Some("datePublished"), "add `datePublished`"),
        ],
    },
    Case {
        name: "a datePublished written in words",
        change: |c| set_date(c, "2024 Jan 01"),
        payload: None,
        expected: &[(W, Some("./"), Some("datePublished"), "not an ISO 8601 date")],
    },
    Case {
        name: "a datePublished with a leap second",
        change: |c| set_date(c, "2021-01-01T23:59:60"),
        payload: None,
        expected: &[(W, Some("./"), Some("datePublished"), "not an ISO 8601 date")],
    },
    Case {
        name: "keys namex and hasPartx the context does not define",
        change: |c| {
            let name = root(c).remove("name").unwrap_or_default();
            let parts = root(c).remove("hasPart").unwrap_or_default();
            root(c).insert("namex".into(), name);
            root(c).insert("hasPartx".into(), parts);
        },
        payload: None,
        expected: &[
            (W, Some("./"), Some("namex"), "did you mean \"name\"?"),
            (W, Some("./"), Some("hasPartx"), "did you mean \"hasPart\"?"),
            (W, Some("./"), Some("name"), "add a `name`"),
            (W, Some("admissions.csv"), Some("hasPart"), "not listed"),
        ],
    },
    Case {
        name: "a key written as a full IRI",
        change: |c| {
            let name = root(c).remove("name").unwrap_or_default();
            root(c).insert("https://schema.org/name".into(), name);
        },
        payload: None,
        expected: &[
            (
                W,
                Some("./"),
                Some("https://schema.org/name"),
                "write \"name\" instead",
            ),
            (W, Some("./"), Some("name"), "add a `name`"),
        ],
    },
    Case {
        name: "a value object with both @id and @value",
        change: |c| {
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@id": "nested.txt", "@value": "x"}]),
            );
        },
        payload: None,
        expected: &[(W, Some("./"), Some("hasPart"), "also has an @id")],
    },
    Case {
        name: "a value object with both @language and @type",
        change: |c| {
            root(c).insert(
                "alternateName".into(),
                json!({"@value": "x", "@language": "en", "@type": "File"}),
            );
        },
        payload: None,
        expected: &[(
            W,
            Some("./"),
            Some("alternateName"),
            "both @language and @type",
        )],
    },
    Case {
        name: "a value object with @language and a number",
        change: |c| {
            root(c).insert(
                "alternateName".into(),
                json!({"@value": 12345, "@language": "en"}),
            );
        },
        payload: None,
        expected: &[(
            W,
            Some("./"),
            Some("alternateName"),
            "@value is not a string",
        )],
    },
    Case {
        name: "a File embedded in hasPart instead of referenced",
        change: |c| {
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@type": "File", "name": "nested"}]),
            );
        },
        payload: None,
        expected: &[(W, Some("./"), Some("hasPart"), "embedded object")],
    },
    Case {
        name: "an entity without an @id",
        change: |c| add(c, [json!({"@type": "File", "name": "MyWorkflow"})]),
        payload: None,
        expected: &[(E, None, Some("@id"), "(name 'MyWorkflow') has no @id")],
    },
    Case {
        name: "an entity without a @type",
        change: |c| {
            entity(c, "admissions.csv").remove("@type");
        },
        payload: None,
        expected: &[(W, Some("admissions.csv"), Some("@type"), "has no @type")],
    },
    Case {
        name: "a context that was never published",
        change: |c| {
            c["@context"] = json!([
                "https://w3id.org/ro/crate/1.1/context",
                "https://w3id.org/ro/terms/invalid/context"
            ]);
        },
        payload: None,
        expected: &[(W, None, Some("@context"), "not a published")],
    },
    Case {
        name: "a WebSite without a name",
        change: |c| {
            root(c).insert(
                "encodingFormat".into(),
                json!({"@id": "https://www.iana.org/assignments/media-types/text/csv"}),
            );
            add(
                c,
                [
                    json!({"@id": "https://www.iana.org/assignments/media-types/text/csv", "@type": "WebSite"}),
                ],
            );
        },
        payload: None,
        expected: &[(
            W,
            Some("https://www.iana.org/assignments/media-types/text/csv"),
            Some("name"),
            "has no `name`",
        )],
    },
    Case {
        name: "a File the crate does not hold",
        change: |_| {},
        payload: Some(&[]),
        expected: &[(
            W,
            Some("admissions.csv"),
            Some("@id"),
            "File 'admissions.csv' is described but not in the crate",
        )],
    },
    Case {
        name: "a Dataset the crate does not hold, with a quoted name",
        change: |c| {
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@id": "data%20set/"}]),
            );
            add(c, [json!({"@id": "data%20set/", "@type": "Dataset"})]);
        },
        payload: Some(&["admissions.csv"]),
        expected: &[(
            W,
            Some("data%20set/"),
            Some("@id"),
            "there is no directory 'data set'",
        )],
    },
    Case {
        name: "a File not reachable from the root through hasPart",
        change: |c| {
            root(c).remove("hasPart");
        },
        payload: None,
        expected: &[(W, Some("admissions.csv"), Some("hasPart"), "not listed")],
    },
    Case {
        name: "a 1.2 crate with the 1.1 context",
        change: |c| {
            descriptor(c).insert(
                "conformsTo".into(),
                json!({"@id": "https://w3id.org/ro/crate/1.2"}),
            );
        },
        payload: None,
        expected: &[(W, None, Some("@context"), "/ro/crate/1.2/context")],
    },
    Case {
        name: "a 1.2 root that is neither ./ nor an absolute IRI",
        change: |c| {
            c["@context"] = json!("https://w3id.org/ro/crate/1.2/context");
            descriptor(c).insert(
                "conformsTo".into(),
                json!({"@id": "https://w3id.org/ro/crate/1.2"}),
            );
            descriptor(c).insert("about".into(), json!({"@id": "crate/"}));
            root(c).insert("@id".into(), json!("crate/"));
        },
        payload: None,
        expected: &[(
            W,
            Some("crate/"),
            Some("@id"),
            "neither './' nor an absolute IRI",
        )],
    },
];

const VALID_SHAPES: &[Case] = &[
    Case {
        name: "an author typed Project (a schema.org Organization)",
        change: |c| {
            root(c).insert("author".into(), json!({"@id": "#project"}));
            add(
                c,
                [json!({"@id": "#project", "@type": "Project", "name": "Project"})],
            );
        },
        payload: None,
        expected: &[],
    },
    Case {
        name: "a hasPart spelling a space as %20 for an entity written with the space",
        change: |c| {
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@id": "data%20set/"}]),
            );
            add(c, [json!({"@id": "data set/", "@type": "Dataset"})]);
        },
        payload: Some(&["admissions.csv", "data set"]),
        // The same entity either way; only its spelling is not an IRI.
        expected: &[(
            W,
            Some("data set/"),
            Some("@id"),
            "write it as 'data%20set/'",
        )],
    },
    Case {
        name: "a hasPart with a space for an entity spelt with %20",
        change: |c| {
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@id": "data set/"}]),
            );
            add(c, [json!({"@id": "data%20set/", "@type": "Dataset"})]);
        },
        payload: Some(&["admissions.csv", "data set"]),
        expected: &[],
    },
    Case {
        name: "a #-identified File, which is contextual rather than data",
        change: |c| {
            add(
                c,
                [json!({"@id": "#notes", "@type": "File", "name": "Notes"})],
            );
        },
        payload: Some(&["admissions.csv"]),
        expected: &[],
    },
    Case {
        name: "a workflow crate whose mainEntity is its workflow",
        change: |c| {
            root(c).insert("mainEntity".into(), json!({"@id": "workflow.cwl"}));
            root(c).insert(
                "hasPart".into(),
                json!([{"@id": "admissions.csv"}, {"@id": "workflow.cwl"}]),
            );
            add(
                c,
                [
                    json!({"@id": "workflow.cwl", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"], "name": "Workflow"}),
                ],
            );
        },
        payload: Some(&["admissions.csv", "workflow.cwl"]),
        expected: &[],
    },
    Case {
        name: "an RO-Crate 1.3 crate",
        change: |c| {
            c["@context"] = json!("https://w3id.org/ro/crate/1.3/context");
            descriptor(c).insert(
                "conformsTo".into(),
                json!({"@id": "https://w3id.org/ro/crate/1.3"}),
            );
        },
        payload: None,
        expected: &[],
    },
    Case {
        name: "an RO-Crate 1.2 crate with an absolute root @id",
        change: |c| {
            c["@context"] = json!("https://w3id.org/ro/crate/1.2/context");
            descriptor(c).insert(
                "conformsTo".into(),
                json!({"@id": "https://w3id.org/ro/crate/1.2"}),
            );
            descriptor(c).insert(
                "about".into(),
                json!({"@id": "https://example.org/crates/admissions/"}),
            );
            root(c).insert(
                "@id".into(),
                json!("https://example.org/crates/admissions/"),
            );
        },
        payload: None,
        expected: &[],
    },
    Case {
        name: "Workflow Run terms and terms defined in the context",
        change: |c| {
            c["@context"] = json!([
                "https://w3id.org/ro/crate/1.1/context",
                "https://w3id.org/ro/terms/workflow-run/context",
                {"myCustomTerm": "https://example.org/terms#myCustomTerm"}
            ]);
            entity(c, "admissions.csv").insert("sha256".into(), json!("00"));
            entity(c, "admissions.csv").insert("myCustomTerm".into(), json!("x"));
            entity(c, "admissions.csv").insert("schema:version".into(), json!("1"));
        },
        payload: None,
        expected: &[],
    },
    Case {
        name: "a data entity the crate holds",
        change: |_| {},
        payload: Some(&["admissions.csv"]),
        expected: &[],
    },
];
