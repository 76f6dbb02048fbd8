//! What stops a crate from loading: each structural break, as the exact error.

use super::*;

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
