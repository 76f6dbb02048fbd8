//! Hostile and large input: bounded reports, linear work, no panics.

use super::*;

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
    assert_eq!(organisation(&loaded), Some("Loop"));
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
