//! Whole-flow tests: bytes in, spec and report out. Realistic crates come from
//! `loader/tests/fixtures/crates/`; each rule is exercised on a minimal valid crate with one
//! thing changed, asserting the exact diagnostic (severity, entity, property).

use crate_operator_api::datasource::{Contact, Project, Publisher};
use serde_json::{Map, Value, json};

use super::report::MAX_PER_SEVERITY;
use super::*;

mod corpus;

const CR8TOR_DEMO: &[u8] = include_bytes!("../../../tests/fixtures/crates/cr8tor-demo.json");
const CR8TOR_LEGACY: &[u8] = include_bytes!("../../../tests/fixtures/crates/cr8tor-legacy.json");
const RO_CRATE_1_2: &[u8] = include_bytes!("../../../tests/fixtures/crates/ro-crate-1.2-ror.json");

// ---------------------------------------------------------------------------------------------
// helpers

/// A minimal crate with no errors and no warnings; tests change one thing in it.
fn base() -> Value {
    json!({
        "@context": "https://w3id.org/ro/crate/1.1/context",
        "@graph": [
            {
                "@id": "ro-crate-metadata.json",
                "@type": "CreativeWork",
                "about": {"@id": "./"},
                "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}
            },
            {
                "@id": "./",
                "@type": "Dataset",
                "name": "Synthetic admissions",
                "description": "Synthetic admissions for tests",
                "datePublished": "2025-01-31",
                "license": "CC-BY-4.0",
                "hasPart": [{"@id": "admissions.csv"}]
            },
            {"@id": "admissions.csv", "@type": "File", "name": "Admissions"}
        ]
    })
}

fn graph_of(crate_: &mut Value) -> &mut Vec<Value> {
    crate_
        .get_mut("@graph")
        .and_then(Value::as_array_mut)
        .expect("test crate has a @graph")
}

fn entity<'v>(crate_: &'v mut Value, id: &str) -> &'v mut Map<String, Value> {
    graph_of(crate_)
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|e| e.get("@id").and_then(Value::as_str) == Some(id))
        .expect("test crate has the entity")
}

fn root(crate_: &mut Value) -> &mut Map<String, Value> {
    entity(crate_, "./")
}

fn add(crate_: &mut Value, entities: impl IntoIterator<Item = Value>) {
    graph_of(crate_).extend(entities);
}

fn bytes(crate_: &Value) -> Vec<u8> {
    serde_json::to_vec(crate_).expect("test crate serialises")
}

fn loaded(crate_: &Value) -> Loaded {
    match load(
        &bytes(crate_),
        &Limits::default(),
        &Fallback::default(),
        None,
    ) {
        Ok(loaded) => loaded,
        Err(report) => panic!("expected the crate to load, got:\n{report}"),
    }
}

fn failed(input: &[u8]) -> Report {
    match load(input, &Limits::default(), &Fallback::default(), None) {
        Ok(loaded) => panic!(
            "expected the crate to fail, got {:?}\n{}",
            loaded.spec, loaded.report
        ),
        Err(report) => report,
    }
}

/// The one diagnostic with this severity, entity and property; fails listing the report if not.
fn find<'r>(
    report: &'r Report,
    severity: Severity,
    entity: Option<&str>,
    property: Option<&str>,
) -> &'r Diagnostic {
    let matching: Vec<&Diagnostic> = report
        .diagnostics
        .iter()
        .filter(|d| {
            d.severity == severity
                && d.entity.as_deref() == entity
                && d.property.as_deref() == property
        })
        .collect();
    match matching.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one {severity} on {entity:?}/{property:?}, found {}:\n{report}",
            matching.len()
        ),
    }
}

fn only_warning<'r>(report: &'r Report, entity: &str, property: &str) -> &'r Diagnostic {
    assert_eq!(
        report.diagnostics.len(),
        1,
        "expected exactly one diagnostic:\n{report}"
    );
    find(report, Severity::Warning, Some(entity), Some(property))
}

fn warnings_of(crate_: &Value) -> Report {
    loaded(crate_).report
}

// ---------------------------------------------------------------------------------------------
// real-world shapes

#[test]
fn the_cr8tor_demo_crate_loads_with_only_the_organisation_spelling_warning() {
    let loaded = load(CR8TOR_DEMO, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    let warning = only_warning(&loaded.report, "./", "publisher");
    assert!(warning.message.contains("'Organisation'"), "{warning}");
    assert!(warning.message.contains("\"Organization\""), "{warning}");
    assert_eq!(loaded.spec.type_.as_deref(), Some("Uploaded"));
    assert_eq!(
        loaded.spec.display_name.as_deref(),
        Some("Antimicrobial Prescribing in Secondary Care (OMOP)")
    );
    assert!(
        loaded
            .spec
            .description
            .as_deref()
            .is_some_and(|d| d.starts_with("Pseudonymised"))
    );
}

#[test]
fn a_cr8tor_crate_with_an_html_licence_maps_to_text_and_link() {
    let loaded = load(CR8TOR_DEMO, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(
        loaded.spec.license.as_deref(),
        Some("MIT (https://opensource.org/licenses/MIT)")
    );
}

#[test]
fn a_cr8tor_crate_maps_its_project_publisher_and_first_author() {
    let loaded = load(CR8TOR_DEMO, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(
        loaded.spec.project,
        Some(Project {
            id: Some("CR8TOR-017".to_owned())
        })
    );
    assert_eq!(
        loaded.spec.publisher,
        Some(Publisher {
            organisation: Some("LSC SDE".to_owned()),
            contact: Some(Contact {
                name: Some("Jordan Hale".to_owned()),
                role: Some("SDE Data Engineer".to_owned()),
            }),
        })
    );
    assert_eq!(loaded.spec.connections, None);
    assert_eq!(loaded.spec.approvals, None);
}

#[test]
fn a_legacy_cr8tor_crate_with_an_html_publisher_id_maps_the_link_text_and_warns() {
    let loaded = load(
        CR8TOR_LEGACY,
        &Limits::default(),
        &Fallback::default(),
        None,
    )
    .unwrap_or_else(|report| panic!("{report}"));
    let spec = &loaded.spec;
    assert_eq!(
        spec.license.as_deref(),
        Some("MIT License (https://opensource.org/license/mit)")
    );
    assert_eq!(
        spec.publisher
            .as_ref()
            .and_then(|p| p.organisation.as_deref()),
        Some("LSC SDE (https://github.com/lsc-sde-crates)")
    );
    assert_eq!(
        spec.publisher.as_ref().and_then(|p| p.contact.as_ref()),
        None
    );
    // mainEntity is typed Thing and there is no Project: nothing to map, and it is said why.
    assert_eq!(spec.project, None);
    let main = find(
        &loaded.report,
        Severity::Warning,
        Some("./"),
        Some("mainEntity"),
    );
    assert!(
        main.message.contains("'ed_pilot' is typed 'Thing'"),
        "{main}"
    );
    // The HTML id is reported twice over on the publisher: not an identifier, and undescribed.
    let publisher: Vec<&Diagnostic> = loaded
        .report
        .warnings()
        .filter(|d| d.entity.as_deref() == Some("./") && d.property.as_deref() == Some("publisher"))
        .collect();
    assert_eq!(publisher.len(), 2, "{}", loaded.report);
    assert!(publisher.iter().any(|d| {
        d.message
            .contains("use the link target 'https://github.com/lsc-sde-crates' as the @id")
    }));
    assert!(
        publisher
            .iter()
            .any(|d| d.message.contains("no entity in @graph has that @id"))
    );
    assert_eq!(loaded.report.diagnostics.len(), 3, "{}", loaded.report);
}

#[test]
fn an_ro_crate_1_2_crate_with_an_absolute_descriptor_id_finds_its_root_through_conforms_to() {
    let loaded = load(RO_CRATE_1_2, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert_eq!(
        loaded.spec.display_name.as_deref(),
        Some("Maternity Outcomes Linked Dataset")
    );
}

#[test]
fn a_ror_publisher_with_a_contact_point_maps_to_organisation_and_contact() {
    let loaded = load(RO_CRATE_1_2, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(
        loaded.spec.publisher,
        Some(Publisher {
            organisation: Some("Lancashire and South Cumbria Secure Data Environment".to_owned()),
            contact: Some(Contact {
                name: Some("SDE Data Access Office".to_owned()),
                role: Some("Data access enquiries".to_owned()),
            }),
        })
    );
}

#[test]
fn a_licence_entity_maps_to_its_name_and_spdx_link() {
    let loaded = load(RO_CRATE_1_2, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(
        loaded.spec.license.as_deref(),
        Some("CC BY 4.0 (https://spdx.org/licenses/CC-BY-4.0)")
    );
}

#[test]
fn a_main_entity_project_wins_over_other_projects_in_the_graph() {
    let loaded = load(RO_CRATE_1_2, &Limits::default(), &Fallback::default(), None)
        .unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(
        loaded.spec.project,
        Some(Project {
            id: Some("#project-maternity-outcomes".to_owned())
        })
    );
}

#[test]
fn a_root_typed_with_an_array_including_dataset_is_accepted() {
    let mut crate_ = base();
    root(&mut crate_).insert("@type".into(), json!(["Dataset", "SoftwareSourceCode"]));
    assert!(warnings_of(&crate_).is_empty());
}

#[test]
fn types_written_as_schema_org_iris_count() {
    let mut crate_ = base();
    root(&mut crate_).insert("@type".into(), json!("http://schema.org/Dataset"));
    assert!(warnings_of(&crate_).is_empty());
}

#[test]
fn a_descriptor_with_a_dot_slash_id_is_found_through_conforms_to() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json")
        .insert("@id".into(), json!("./ro-crate-metadata.json"));
    let loaded = loaded(&crate_);
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert_eq!(
        loaded.spec.display_name.as_deref(),
        Some("Synthetic admissions")
    );
}

#[test]
fn a_descriptor_with_any_id_is_found_through_conforms_to_and_about() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert("@id".into(), json!("#metadata"));
    assert!(warnings_of(&crate_).is_empty());
}

#[test]
fn conforms_to_may_be_an_array_of_references() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert(
        "conformsTo".into(),
        json!([{"@id": "https://w3id.org/ro/crate/1.1"}, {"@id": "https://w3id.org/5s/crate/0.4"}]),
    );
    assert!(warnings_of(&crate_).is_empty());
}

#[test]
fn crate_spec_values_fill_in_a_missing_name_and_description() {
    let mut crate_ = base();
    root(&mut crate_).remove("name");
    root(&mut crate_).insert("description".into(), json!("   "));
    let fallback = Fallback {
        display_name: Some("Admissions (from the AnalyticsCrate)".to_owned()),
        description: Some("Described in the crate spec".to_owned()),
    };
    let loaded = load(&bytes(&crate_), &Limits::default(), &fallback, None).expect("loads");
    assert_eq!(loaded.spec.display_name, fallback.display_name);
    assert_eq!(loaded.spec.description, fallback.description);
}

#[test]
fn crate_values_win_over_the_crate_spec() {
    let fallback = Fallback {
        display_name: Some("spec".to_owned()),
        description: Some("spec".to_owned()),
    };
    let loaded = load(&bytes(&base()), &Limits::default(), &fallback, None).expect("loads");
    assert_eq!(
        loaded.spec.display_name.as_deref(),
        Some("Synthetic admissions")
    );
    assert_eq!(
        loaded.spec.description.as_deref(),
        Some("Synthetic admissions for tests")
    );
}

#[test]
fn a_plain_string_licence_is_kept_as_written() {
    assert_eq!(loaded(&base()).spec.license.as_deref(), Some("CC-BY-4.0"));
}

#[test]
fn a_licence_reference_without_an_entity_maps_to_the_bare_id() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "license".into(),
        json!({"@id": "https://spdx.org/licenses/MIT"}),
    );
    let loaded = loaded(&crate_);
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert_eq!(
        loaded.spec.license.as_deref(),
        Some("https://spdx.org/licenses/MIT")
    );
}

#[test]
fn a_licence_entity_with_a_local_id_maps_to_its_name_only() {
    let mut crate_ = base();
    root(&mut crate_).insert("license".into(), json!({"@id": "#ogl"}));
    add(
        &mut crate_,
        [
            json!({"@id": "#ogl", "@type": "CreativeWork", "name": "<b>Open Government Licence v3.0</b>"}),
        ],
    );
    assert_eq!(
        loaded(&crate_).spec.license.as_deref(),
        Some("Open Government Licence v3.0")
    );
}

#[test]
fn several_licences_are_joined() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "license".into(),
        json!(["CC-BY-4.0", {"@id": "https://spdx.org/licenses/MIT"}]),
    );
    assert_eq!(
        loaded(&crate_).spec.license.as_deref(),
        Some("CC-BY-4.0; https://spdx.org/licenses/MIT")
    );
}

#[test]
fn html_in_the_name_is_reduced_but_the_description_is_kept() {
    let mut crate_ = base();
    root(&mut crate_).insert("name".into(), json!("<em>Synthetic</em> admissions"));
    root(&mut crate_).insert("description".into(), json!("Rows with <b>bold</b> claims"));
    let spec = loaded(&crate_).spec;
    assert_eq!(spec.display_name.as_deref(), Some("Synthetic admissions"));
    assert_eq!(
        spec.description.as_deref(),
        Some("Rows with <b>bold</b> claims")
    );
}

#[test]
fn a_value_literal_name_is_read_as_text() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "name".into(),
        json!({"@value": "Literal name", "@language": "en"}),
    );
    let loaded = loaded(&crate_);
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert_eq!(loaded.spec.display_name.as_deref(), Some("Literal name"));
}

#[test]
fn the_only_project_in_the_graph_is_chosen_without_a_main_entity() {
    let mut crate_ = base();
    add(
        &mut crate_,
        [json!({"@id": "#proj-1", "@type": "Project", "name": "P"})],
    );
    let loaded = loaded(&crate_);
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert_eq!(
        loaded.spec.project,
        Some(Project {
            id: Some("#proj-1".to_owned())
        })
    );
}

#[test]
fn the_contact_comes_from_the_first_author_who_is_a_person() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "publisher".into(),
        json!({"@id": "https://ror.org/02wnqcb97"}),
    );
    root(&mut crate_).insert(
        "author".into(),
        json!([{"@id": "#team"}, {"@id": "#ana"}, {"@id": "#ben"}]),
    );
    add(
        &mut crate_,
        [
            json!({"@id": "https://ror.org/02wnqcb97", "@type": "Organization", "name": "NHS Trust"}),
            json!({"@id": "#team", "@type": "Organization", "name": "Team"}),
            json!({"@id": "#ana", "@type": "Person", "name": "Ana Example", "jobTitle": {"@id": "#steward"}}),
            json!({"@id": "#ben", "@type": "Person", "name": "Ben Example", "jobTitle": "Analyst"}),
            json!({"@id": "#steward", "@type": "DefinedTerm", "name": "Data Steward"}),
        ],
    );
    let loaded = loaded(&crate_);
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert_eq!(
        loaded.spec.publisher,
        Some(Publisher {
            organisation: Some("NHS Trust".to_owned()),
            contact: Some(Contact {
                name: Some("Ana Example".to_owned()),
                role: Some("Data Steward".to_owned()),
            }),
        })
    );
}

#[test]
fn a_contact_point_with_only_an_email_uses_the_email_as_name() {
    let mut crate_ = base();
    root(&mut crate_).insert("publisher".into(), json!({"@id": "#org"}));
    add(
        &mut crate_,
        [
            json!({"@id": "#org", "@type": "Organization", "name": "Org", "contactPoint": {"@id": "#cp"}}),
            json!({"@id": "#cp", "@type": "ContactPoint", "email": "sde@example.nhs.uk"}),
        ],
    );
    let contact = loaded(&crate_).spec.publisher.and_then(|p| p.contact);
    assert_eq!(
        contact,
        Some(Contact {
            name: Some("sde@example.nhs.uk".to_owned()),
            role: None
        })
    );
}

#[test]
fn a_crate_without_publisher_or_project_leaves_them_out_of_the_spec() {
    let spec = loaded(&base()).spec;
    assert_eq!(spec.publisher, None);
    assert_eq!(spec.project, None);
    let json = serde_json::to_value(&spec).expect("spec serialises");
    assert_eq!(
        json,
        json!({
            "type": "Uploaded",
            "displayName": "Synthetic admissions",
            "description": "Synthetic admissions for tests",
            "license": "CC-BY-4.0"
        })
    );
}

#[test]
fn iso_8601_date_publication_forms_are_all_accepted() {
    for date in [
        "2025-01-31",
        "2025-01-31T09:30:00Z",
        "2025-01-31T09:30:00+01:00",
        "2025-01-31T09:30:00",
        "2024",
        "2024-01",
        "202401",
        "2024-001",
        "2024-W01",
        "2024-W01-1",
    ] {
        let mut crate_ = base();
        root(&mut crate_).insert("datePublished".into(), json!(date));
        assert!(warnings_of(&crate_).is_empty(), "{date}");
    }
}

#[test]
fn a_file_reached_through_a_listed_dataset_is_reachable() {
    let mut crate_ = base();
    root(&mut crate_).insert("hasPart".into(), json!([{"@id": "tables/"}]));
    add(
        &mut crate_,
        [json!({"@id": "tables/", "@type": "Dataset", "hasPart": [{"@id": "admissions.csv"}]})],
    );
    assert!(warnings_of(&crate_).is_empty());
}

#[test]
fn a_byte_order_mark_before_the_json_is_accepted() {
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend(bytes(&base()));
    assert!(load(&input, &Limits::default(), &Fallback::default(), None).is_ok());
}

// ---------------------------------------------------------------------------------------------
// errors

#[test]
fn text_that_is_not_json_is_an_error_naming_line_and_column() {
    let report = failed(b"{\n  \"@graph\": [\n    {\"@id\": \"./\",}\n  ]\n}");
    let error = find(&report, Severity::Error, None, None);
    assert!(error.message.contains("not valid JSON"), "{error}");
    assert!(error.message.contains("line 3, column"), "{error}");
    assert_eq!(report.diagnostics.len(), 1);
}

#[test]
fn bytes_that_are_not_utf8_are_an_error_naming_line_and_column() {
    let report = failed(b"{\n  \"name\": \"caf\xE9\"\n}");
    let error = find(&report, Severity::Error, None, None);
    assert!(error.message.contains("not UTF-8"), "{error}");
    assert!(error.message.contains("line 2, column 15"), "{error}");
}

#[test]
fn input_over_the_size_limit_is_an_error_before_parsing() {
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    let input = vec![b'x'; 101];
    let report = load(&input, &limits, &Fallback::default(), None).expect_err("too big");
    let error = find(&report, Severity::Error, None, None);
    assert!(
        error
            .message
            .contains("101 bytes, over the limit of 100 bytes"),
        "{error}"
    );
    assert!(validate(&input, &limits, None).has_errors());
}

#[test]
fn ten_thousand_open_brackets_are_refused_as_too_deep() {
    let input = vec![b'['; 10_000];
    let report = failed(&input);
    let error = find(&report, Severity::Error, None, None);
    assert!(
        error
            .message
            .contains("deeper than 64 levels (at line 1, column 65)"),
        "{error}"
    );
}

#[test]
fn nesting_beyond_serde_jsons_own_limit_becomes_a_diagnostic() {
    let limits = Limits {
        max_depth: 100_000,
        ..Limits::default()
    };
    let mut input = "[".repeat(5_000);
    input.push_str(&"]".repeat(5_000));
    let report = load(input.as_bytes(), &limits, &Fallback::default(), None).expect_err("too deep");
    let error = find(&report, Severity::Error, None, None);
    assert!(
        error.message.contains("nests too deeply for the parser"),
        "{error}"
    );
}

#[test]
fn a_document_that_is_not_an_object_is_an_error() {
    let report = failed(b"[]");
    let error = find(&report, Severity::Error, None, None);
    assert!(
        error
            .message
            .contains("holds an array but must be a JSON object"),
        "{error}"
    );
}

#[test]
fn a_missing_context_is_an_error() {
    let mut crate_ = base();
    crate_.as_object_mut().map(|top| top.remove("@context"));
    let report = failed(&bytes(&crate_));
    find(&report, Severity::Error, None, Some("@context"));
    assert_eq!(report.diagnostics.len(), 1, "{report}");
}

#[test]
fn a_missing_graph_is_an_error() {
    let report = failed(br#"{"@context": "https://w3id.org/ro/crate/1.1/context"}"#);
    find(&report, Severity::Error, None, Some("@graph"));
}

#[test]
fn a_graph_that_is_not_an_array_is_an_error() {
    let report = failed(br#"{"@context": "x", "@graph": {"@id": "./"}}"#);
    let error = find(&report, Severity::Error, None, Some("@graph"));
    assert!(
        error
            .message
            .contains("@graph is an object but must be an array"),
        "{error}"
    );
}

#[test]
fn an_entity_that_is_not_an_object_is_an_error() {
    let mut crate_ = base();
    add(&mut crate_, [json!("admissions.csv")]);
    let report = failed(&bytes(&crate_));
    let error = find(&report, Severity::Error, None, Some("@graph"));
    assert!(
        error
            .message
            .contains("item 3 of @graph is a string, not an object"),
        "{error}"
    );
}

#[test]
fn an_entity_without_a_string_id_is_an_error() {
    let mut crate_ = base();
    add(
        &mut crate_,
        [
            json!({"@type": "File", "name": "orphan.csv"}),
            json!({"@id": 42, "@type": "File"}),
        ],
    );
    let report = failed(&bytes(&crate_));
    let errors: Vec<&Diagnostic> = report.errors().collect();
    assert_eq!(errors.len(), 2, "{report}");
    assert!(
        errors
            .iter()
            .all(|e| e.entity.is_none() && e.property.as_deref() == Some("@id"))
    );
    assert!(
        errors[0]
            .message
            .contains("item 3 of @graph (name 'orphan.csv') has no @id")
    );
    assert!(errors[1].message.contains("has an @id that is a number"));
}

#[test]
fn a_crate_without_a_descriptor_is_an_error() {
    let mut crate_ = base();
    graph_of(&mut crate_).remove(0);
    let report = failed(&bytes(&crate_));
    let error = find(&report, Severity::Error, None, None);
    assert!(
        error.message.contains("there is no metadata descriptor"),
        "{error}"
    );
}

#[test]
fn a_descriptor_without_about_is_an_error() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").remove("about");
    let report = failed(&bytes(&crate_));
    let error = find(
        &report,
        Severity::Error,
        Some("ro-crate-metadata.json"),
        Some("about"),
    );
    assert!(
        error.message.contains("\"about\": {\"@id\": \"./\"}"),
        "{error}"
    );
}

#[test]
fn a_descriptor_whose_about_is_not_a_reference_is_an_error() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert("about".into(), json!(7));
    let report = failed(&bytes(&crate_));
    find(
        &report,
        Severity::Error,
        Some("ro-crate-metadata.json"),
        Some("about"),
    );
}

#[test]
fn a_descriptor_naming_a_missing_root_is_an_error() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert("about".into(), json!({"@id": "./data/"}));
    let report = failed(&bytes(&crate_));
    let error = find(
        &report,
        Severity::Error,
        Some("ro-crate-metadata.json"),
        Some("about"),
    );
    assert!(
        error.message.contains("names './data/' but no entity"),
        "{error}"
    );
}

#[test]
fn a_root_that_is_not_a_dataset_is_an_error() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "@type".into(),
        json!(["CreativeWork", "SoftwareSourceCode"]),
    );
    let report = failed(&bytes(&crate_));
    let error = find(&report, Severity::Error, Some("./"), Some("@type"));
    assert!(
        error
            .message
            .contains("is typed 'CreativeWork', 'SoftwareSourceCode'"),
        "{error}"
    );
}

#[test]
fn a_failed_load_reports_every_error_and_every_warning_together() {
    let mut crate_ = base();
    root(&mut crate_).insert("@type".into(), json!("Thing"));
    root(&mut crate_).remove("license");
    add(
        &mut crate_,
        [json!(null), json!({"@id": "unlisted.csv", "@type": "File"})],
    );
    let report = failed(&bytes(&crate_));
    assert_eq!(report.error_count(), 2, "{report}");
    find(&report, Severity::Error, Some("./"), Some("@type"));
    find(&report, Severity::Error, None, Some("@graph"));
    find(&report, Severity::Warning, Some("./"), Some("license"));
    find(
        &report,
        Severity::Warning,
        Some("unlisted.csv"),
        Some("hasPart"),
    );
    assert_eq!(validate(&bytes(&crate_), &Limits::default(), None), report);
}

// ---------------------------------------------------------------------------------------------
// warnings

#[test]
fn a_root_without_name_description_date_or_licence_gets_one_warning_for_each() {
    let mut crate_ = base();
    for property in ["name", "description", "datePublished", "license"] {
        root(&mut crate_).remove(property);
    }
    let report = warnings_of(&crate_);
    assert_eq!(report.diagnostics.len(), 4, "{report}");
    for property in ["name", "description", "datePublished"] {
        find(&report, Severity::Warning, Some("./"), Some(property));
    }
    let licence = find(&report, Severity::Warning, Some("./"), Some("license"));
    assert_eq!(
        licence.to_string(),
        "warning: entity './' property 'license': add a `license` to the root dataset './' (a URL \
         or a CreativeWork entity)"
    );
}

#[test]
fn a_date_published_that_is_not_iso_8601_is_a_warning() {
    let mut crate_ = base();
    root(&mut crate_).insert("datePublished".into(), json!("31/01/2025"));
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "./", "datePublished");
    assert!(
        warning
            .message
            .contains("'31/01/2025' is not an ISO 8601 date"),
        "{warning}"
    );
}

#[test]
fn a_name_that_is_not_text_is_a_warning() {
    let mut crate_ = base();
    root(&mut crate_).insert("name".into(), json!(["a", "b"]));
    let report = warnings_of(&crate_);
    only_warning(&report, "./", "name");
}

#[test]
fn a_missing_conforms_to_is_a_warning() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").remove("conformsTo");
    let report = warnings_of(&crate_);
    only_warning(&report, "ro-crate-metadata.json", "conformsTo");
}

#[test]
fn an_unknown_ro_crate_version_is_a_warning() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert(
        "conformsTo".into(),
        json!({"@id": "https://w3id.org/ro/crate/2.0"}),
    );
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "ro-crate-metadata.json", "conformsTo");
    assert!(warning.message.contains("version '2.0'"), "{warning}");
}

#[test]
fn conforms_to_without_an_ro_crate_iri_is_a_warning() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert(
        "conformsTo".into(),
        json!({"@id": "https://example.org/profile"}),
    );
    let report = warnings_of(&crate_);
    only_warning(&report, "ro-crate-metadata.json", "conformsTo");
}

#[test]
fn an_embedded_object_is_a_warning_but_value_literals_are_not() {
    let mut crate_ = base();
    root(&mut crate_).insert("name".into(), json!({"@value": "Synthetic admissions"}));
    root(&mut crate_).insert(
        "funder".into(),
        json!([{"@id": "#nihr", "@type": "Organization", "name": "NIHR"}, {"name": "another"}]),
    );
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "./", "funder");
    assert!(warning.message.contains("embedded object"), "{warning}");
}

#[test]
fn an_embedded_publisher_still_maps_and_is_reported() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "publisher".into(),
        json!({"@type": "Organization", "name": "Embedded Trust"}),
    );
    let loaded = loaded(&crate_);
    only_warning(&loaded.report, "./", "publisher");
    assert_eq!(
        loaded
            .spec
            .publisher
            .and_then(|p| p.organisation)
            .as_deref(),
        Some("Embedded Trust")
    );
}

#[test]
fn ids_with_spaces_or_markup_are_warnings_but_iris_fragments_blank_nodes_and_paths_are_not() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "citation".into(),
        json!([{"@id": "Smith et al 2024"}, {"@id": "https://doi.org/10.1000/xyz"}]),
    );
    add(
        &mut crate_,
        [
            json!({"@id": "Data Access Committee", "@type": "Organization", "name": "DAC"}),
            json!({"@id": "#dac", "@type": "Organization"}),
            json!({"@id": "_:b0", "@type": "PropertyValue"}),
            json!({"@id": "urn:uuid:8c8d5a3e-66a2-4a57-9b0e-0c5e3f0e2a11", "@type": "Thing"}),
        ],
    );
    let report = warnings_of(&crate_);
    assert_eq!(report.diagnostics.len(), 2, "{report}");
    let entity_id = find(
        &report,
        Severity::Warning,
        Some("Data Access Committee"),
        Some("@id"),
    );
    assert!(
        entity_id.message.contains("contains whitespace"),
        "{entity_id}"
    );
    let reference = find(&report, Severity::Warning, Some("./"), Some("citation"));
    assert!(
        reference.message.contains("refers to 'Smith et al 2024'"),
        "{reference}"
    );
}

#[test]
fn a_plain_string_publisher_is_a_warning_and_still_maps() {
    let mut crate_ = base();
    root(&mut crate_).insert("publisher".into(), json!("Lancashire Teaching Hospitals"));
    let loaded = loaded(&crate_);
    let warning = only_warning(&loaded.report, "./", "publisher");
    assert!(
        warning
            .message
            .contains("plain text 'Lancashire Teaching Hospitals'"),
        "{warning}"
    );
    assert_eq!(
        loaded.spec.publisher,
        Some(Publisher {
            organisation: Some("Lancashire Teaching Hospitals".to_owned()),
            contact: None
        })
    );
}

#[test]
fn a_publisher_typed_organisation_gets_the_schema_org_spelling() {
    let mut crate_ = base();
    root(&mut crate_).insert("publisher".into(), json!({"@id": "#lsc"}));
    add(
        &mut crate_,
        [json!({"@id": "#lsc", "@type": "Organisation", "name": "LSC SDE"})],
    );
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "./", "publisher");
    assert!(
        warning
            .message
            .contains("'#lsc' is typed 'Organisation', which schema.org spells 'Organization'"),
        "{warning}"
    );
}

#[test]
fn an_author_of_an_unrelated_type_is_a_warning() {
    let mut crate_ = base();
    root(&mut crate_).insert("author".into(), json!({"@id": "#x"}));
    add(
        &mut crate_,
        [json!({"@id": "#x", "@type": "SoftwareApplication", "name": "x"})],
    );
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "./", "author");
    assert!(
        warning.message.contains("not a kind of author"),
        "{warning}"
    );
}

#[test]
fn an_author_referring_to_a_missing_entity_is_a_warning() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "author".into(),
        json!({"@id": "https://orcid.org/0000-0002-1825-0097"}),
    );
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "./", "author");
    assert!(
        warning.message.contains("no entity in @graph has that @id"),
        "{warning}"
    );
}

#[test]
fn authors_of_data_entities_are_checked_too() {
    let mut crate_ = base();
    entity(&mut crate_, "admissions.csv").insert("author".into(), json!("J. Bloggs"));
    let report = warnings_of(&crate_);
    only_warning(&report, "admissions.csv", "author");
}

#[test]
fn several_publishers_is_a_warning_and_the_first_is_used() {
    let mut crate_ = base();
    root(&mut crate_).insert("publisher".into(), json!([{"@id": "#a"}, {"@id": "#b"}]));
    add(
        &mut crate_,
        [
            json!({"@id": "#a", "@type": "Organization", "name": "First"}),
            json!({"@id": "#b", "@type": "Organization", "name": "Second"}),
        ],
    );
    let loaded = loaded(&crate_);
    only_warning(&loaded.report, "./", "publisher");
    assert_eq!(
        loaded
            .spec
            .publisher
            .and_then(|p| p.organisation)
            .as_deref(),
        Some("First")
    );
}

#[test]
fn a_publisher_without_a_name_is_a_warning_and_its_id_is_shown() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "publisher".into(),
        json!({"@id": "https://ror.org/02wnqcb97"}),
    );
    add(
        &mut crate_,
        [json!({"@id": "https://ror.org/02wnqcb97", "@type": "Organization"})],
    );
    let loaded = loaded(&crate_);
    only_warning(&loaded.report, "https://ror.org/02wnqcb97", "name");
    assert_eq!(
        loaded
            .spec
            .publisher
            .and_then(|p| p.organisation)
            .as_deref(),
        Some("https://ror.org/02wnqcb97")
    );
}

#[test]
fn duplicate_ids_are_one_warning_per_id() {
    let mut crate_ = base();
    add(
        &mut crate_,
        [
            json!({"@id": "admissions.csv", "@type": "File", "name": "Again"}),
            json!({"@id": "admissions.csv", "@type": "File", "name": "And again"}),
        ],
    );
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "admissions.csv", "@id");
    assert!(
        warning.message.starts_with("3 entities have this @id"),
        "{warning}"
    );
}

#[test]
fn a_data_entity_not_reachable_through_has_part_is_a_warning() {
    let mut crate_ = base();
    add(
        &mut crate_,
        [
            json!({"@id": "staging/", "@type": "Dataset", "name": "Staging", "hasPart": [{"@id": "staging/a.csv"}]}),
            json!({"@id": "staging/a.csv", "@type": "File"}),
        ],
    );
    let report = warnings_of(&crate_);
    assert_eq!(report.diagnostics.len(), 2, "{report}");
    let dataset = find(
        &report,
        Severity::Warning,
        Some("staging/"),
        Some("hasPart"),
    );
    assert!(
        dataset.message.contains("Dataset 'staging/' is not listed"),
        "{dataset}"
    );
    find(
        &report,
        Severity::Warning,
        Some("staging/a.csv"),
        Some("hasPart"),
    );
}

#[test]
fn has_part_written_as_plain_strings_is_a_warning_but_still_links() {
    let mut crate_ = base();
    root(&mut crate_).insert("hasPart".into(), json!(["admissions.csv"]));
    let report = warnings_of(&crate_);
    let warning = only_warning(&report, "./", "hasPart");
    assert!(
        warning
            .message
            .contains("write {\"@id\": \"admissions.csv\"}"),
        "{warning}"
    );
}

#[test]
fn several_projects_without_a_main_entity_is_a_warning_and_no_project_id() {
    let mut crate_ = base();
    add(
        &mut crate_,
        [
            json!({"@id": "#p1", "@type": "Project", "name": "One"}),
            json!({"@id": "#p2", "@type": "Project", "name": "Two"}),
        ],
    );
    let loaded = loaded(&crate_);
    let warning = only_warning(&loaded.report, "./", "mainEntity");
    assert!(
        warning.message.contains("'#p1', '#p2' are candidates"),
        "{warning}"
    );
    assert_eq!(loaded.spec.project, None);
}

#[test]
fn a_main_entity_naming_several_projects_is_a_warning() {
    let mut crate_ = base();
    root(&mut crate_).insert("mainEntity".into(), json!([{"@id": "#p1"}, {"@id": "#p2"}]));
    add(
        &mut crate_,
        [
            json!({"@id": "#p1", "@type": "Project"}),
            json!({"@id": "#p2", "@type": "Project"}),
        ],
    );
    let loaded = loaded(&crate_);
    only_warning(&loaded.report, "./", "mainEntity");
    assert_eq!(loaded.spec.project, None);
}

#[test]
fn an_entity_without_a_type_is_a_warning() {
    let mut crate_ = base();
    entity(&mut crate_, "admissions.csv").remove("@type");
    let report = warnings_of(&crate_);
    only_warning(&report, "admissions.csv", "@type");
}

#[test]
fn a_conforms_to_written_as_a_plain_string_is_a_warning_but_still_counts() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json")
        .insert("conformsTo".into(), json!("https://w3id.org/ro/crate/1.1"));
    let report = warnings_of(&crate_);
    only_warning(&report, "ro-crate-metadata.json", "conformsTo");
}

// ---------------------------------------------------------------------------------------------
// hostile and large input

#[test]
fn a_huge_but_valid_crate_loads() {
    let mut crate_ = base();
    let files = 25_000;
    let mut parts = vec![json!({"@id": "admissions.csv"})];
    parts.extend((0..files).map(|i| json!({"@id": format!("rows/part-{i:05}.csv")})));
    root(&mut crate_).insert("hasPart".into(), Value::Array(parts));
    add(
        &mut crate_,
        (0..files).map(|i| {
            json!({
                "@id": format!("rows/part-{i:05}.csv"),
                "@type": "File",
                "name": format!("Partition {i} of the synthetic admissions extract"),
                "encodingFormat": "text/csv"
            })
        }),
    );
    let input = bytes(&crate_);
    assert!(
        input.len() > 3 * 1024 * 1024 && input.len() < Limits::default().max_bytes,
        "{}",
        input.len()
    );
    let loaded = load(&input, &Limits::default(), &Fallback::default(), None).expect("loads");
    assert!(loaded.report.is_empty(), "{}", loaded.report);
    assert!(loaded.spec.display_name.is_some());
}

#[test]
fn a_flood_of_problems_is_capped_with_a_count_of_the_rest() {
    let mut crate_ = base();
    add(
        &mut crate_,
        (0..1_000).map(|i| json!({"@id": format!("bad id {i}"), "@type": "Thing"})),
    );
    add(&mut crate_, (0..300).map(|_| json!(1)));
    let report = failed(&bytes(&crate_));
    assert_eq!(report.error_count(), MAX_PER_SEVERITY + 1);
    assert_eq!(report.warning_count(), MAX_PER_SEVERITY + 1);
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.message.starts_with("100 more errors")),
        "{report}"
    );
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.message.starts_with("800 more warnings"))
    );
}

#[test]
fn very_long_ids_are_clipped_in_diagnostics() {
    let mut crate_ = base();
    let long = format!("#{}", "x y".repeat(100_000));
    add(
        &mut crate_,
        [
            json!({"@id": long, "@type": "File"}),
            json!({"@id": format!("data/{long}"), "@type": "File"}),
        ],
    );
    let report = warnings_of(&crate_);
    // The '#' id: whitespace; the path: whitespace and not listed in hasPart.
    assert_eq!(report.diagnostics.len(), 3, "{report}");
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.to_string().len() < 1_000)
    );
}

#[test]
fn an_entity_that_is_an_array_or_null_is_an_error_and_the_rest_is_still_checked() {
    let mut crate_ = base();
    add(&mut crate_, [json!([{"@id": "nested"}]), json!(null)]);
    root(&mut crate_).remove("license");
    let report = failed(&bytes(&crate_));
    assert_eq!(report.error_count(), 2, "{report}");
    find(&report, Severity::Warning, Some("./"), Some("license"));
}

#[test]
fn garbage_input_never_panics() {
    let samples: [&[u8]; 12] = [
        b"",
        b"null",
        b"\"just a string\"",
        b"{\"@graph\": null}",
        b"{\"@context\": {}, \"@graph\": [{\"@id\": \"ro-crate-metadata.json\", \"about\": []}]}",
        b"{\"@context\": {}, \"@graph\": [{\"@id\": \"ro-crate-metadata.json\", \"about\": [{\"@id\": \"a\"}, {\"@id\": \"b\"}]}]}",
        b"{\"@context\": {}, \"@graph\": [{\"@id\": \"x\", \"conformsTo\": {\"@id\": \"https://w3id.org/ro/crate/1.1\"}, \"about\": {\"@id\": \"x\"}}]}",
        b"{\"@context\": {}, \"@graph\": [{\"@id\": \"./\", \"@type\": [1, null]}]}",
        b"{\"@context\": {}, \"@graph\": [{\"@id\": \"a\", \"hasPart\": {\"@id\": 3}, \"publisher\": [[]]}]}",
        b"\xff\xfe{",
        b"{\"a\": \"\\ud800\"}",
        b"{\"@context\":1,\"@graph\":[{\"@id\":\"ro-crate-metadata.json\",\"about\":{\"@id\":\"./\"}},{\"@id\":\"./\",\"@type\":\"Dataset\",\"mainEntity\":{\"@id\":\"./\"},\"hasPart\":[{\"@id\":\"./\"}],\"publisher\":{\"@id\":\"./\"},\"license\":{\"@id\":\"./\"}}]}",
    ];
    for sample in samples {
        let report = validate(sample, &Limits::default(), None);
        let loaded = load(sample, &Limits::default(), &Fallback::default(), None);
        if let Err(failure) = &loaded {
            assert_eq!(failure, &report);
        }
        assert_eq!(loaded.is_err(), report.has_errors());
    }
}

#[test]
fn a_self_referencing_root_loads_and_names_itself_as_publisher() {
    let input = br#"{"@context":1,"@graph":[{"@id":"ro-crate-metadata.json","about":{"@id":"./"},"conformsTo":{"@id":"https://w3id.org/ro/crate/1.2"}},{"@id":"./","@type":"Dataset","name":"Loop","mainEntity":{"@id":"./"},"hasPart":[{"@id":"./"}],"publisher":{"@id":"./"},"license":{"@id":"./"}}]}"#;
    let loaded = load(input, &Limits::default(), &Fallback::default(), None).expect("loads");
    assert_eq!(loaded.spec.license.as_deref(), Some("Loop"));
    assert_eq!(
        loaded
            .spec
            .publisher
            .and_then(|p| p.organisation)
            .as_deref(),
        Some("Loop")
    );
}

#[test]
fn a_report_serialises_as_a_list_of_diagnostics() {
    let mut crate_ = base();
    root(&mut crate_).remove("license");
    let json = serde_json::to_value(warnings_of(&crate_)).expect("serialises");
    assert_eq!(json["diagnostics"][0]["severity"], "warning");
    assert_eq!(json["diagnostics"][0]["entity"], "./");
    assert_eq!(json["diagnostics"][0]["property"], "license");
}

#[test]
fn many_licences_are_capped_with_a_warning() {
    let mut crate_ = base();
    let licences: Vec<Value> = (0..10).map(|i| json!(format!("L{i}"))).collect();
    root(&mut crate_).insert("license".into(), Value::Array(licences));
    let loaded = loaded(&crate_);
    only_warning(&loaded.report, "./", "license");
    assert_eq!(
        loaded.spec.license.as_deref(),
        Some("L0; L1; L2; L3; L4; L5; L6; L7")
    );
}

#[test]
fn many_references_to_a_wide_entity_stay_linear() {
    // Quadratic work here (each reference scanning every property or type of its target) would
    // be 10^10 steps and hang the test; linear work takes a moment.
    let n = 60_000;
    let mut crate_ = base();
    let refs: Vec<Value> = (0..n).map(|_| json!({"@id": "#wide"})).collect();
    root(&mut crate_).insert("author".into(), Value::Array(refs.clone()));
    root(&mut crate_).insert("license".into(), Value::Array(refs));
    let mut wide = Map::new();
    wide.insert("@id".into(), json!("#wide"));
    wide.insert(
        "@type".into(),
        Value::Array((0..n).map(|i| json!(format!("T{i}"))).collect()),
    );
    wide.insert("name".into(), json!("n".repeat(100_000)));
    for i in 0..n {
        wide.insert(format!("k{i}"), json!(0));
    }
    add(&mut crate_, [Value::Object(wide)]);
    let input = bytes(&crate_);
    assert!(input.len() < Limits::default().max_bytes, "{}", input.len());
    let loaded = load(&input, &Limits::default(), &Fallback::default(), None).expect("loads");
    assert!(loaded.report.warning_count() > 1);
    assert!(loaded.spec.license.is_some_and(|l| l.len() <= 8 * 100_010));
}

#[test]
fn a_descriptor_found_by_file_name_alone_gets_a_conforms_to_warning() {
    let mut crate_ = base();
    let descriptor = entity(&mut crate_, "ro-crate-metadata.json");
    descriptor.insert("@id".into(), json!("./ro-crate-metadata.json"));
    descriptor.remove("conformsTo");
    let report = warnings_of(&crate_);
    only_warning(&report, "./ro-crate-metadata.json", "conformsTo");
}

#[test]
fn an_about_written_as_a_plain_string_is_a_warning_but_still_finds_the_root() {
    let mut crate_ = base();
    entity(&mut crate_, "ro-crate-metadata.json").insert("about".into(), json!("./"));
    let report = warnings_of(&crate_);
    only_warning(&report, "ro-crate-metadata.json", "about");
}
