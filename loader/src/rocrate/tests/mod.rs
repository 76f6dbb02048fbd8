//! Whole-flow tests: bytes in, spec and report out. Realistic crates come from
//! `loader/tests/fixtures/crates/`; each rule is exercised on a minimal valid crate with one
//! thing changed, asserting the exact diagnostic (severity, entity, property). This module holds
//! the helpers; the tests are grouped by concept: [`shapes`] (real-world crates and the
//! mapping), [`errors`], [`warnings`], [`hostile`] (hostile and large input) and [`corpus`] (the
//! reference validator's cases as tables).

use crate_operator_api::datasource::{Contact, Project, Publisher};
use serde_json::{Map, Value, json};

use super::report::MAX_PER_SEVERITY;
use super::*;

mod corpus;
mod errors;
mod hostile;
mod shapes;
mod warnings;

const CR8TOR_DEMO: &[u8] = include_bytes!("../../../tests/fixtures/crates/cr8tor-demo.json");
const CR8TOR_LEGACY: &[u8] = include_bytes!("../../../tests/fixtures/crates/cr8tor-legacy.json");
const RO_CRATE_1_2: &[u8] = include_bytes!("../../../tests/fixtures/crates/ro-crate-1.2-ror.json");

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

/// The publisher organisation a loaded crate maps to.
fn organisation(loaded: &Loaded) -> Option<&str> {
    loaded.spec.publisher.as_ref()?.organisation.as_deref()
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
