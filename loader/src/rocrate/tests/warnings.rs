//! What a crate still loads with: each soft rule, as the exact warning.

use super::*;

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
