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
fn an_embedded_publisher_still_maps_and_is_reported() {
    let mut crate_ = base();
    root(&mut crate_).insert(
        "publisher".into(),
        json!({"@type": "Organization", "name": "Embedded Trust"}),
    );
    let loaded = loaded(&crate_);
    only_warning(&loaded.report, "./", "publisher");
    assert_eq!(organisation(&loaded), Some("Embedded Trust"));
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
    assert_eq!(organisation(&loaded), Some("First"));
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
    assert_eq!(organisation(&loaded), Some("https://ror.org/02wnqcb97"));
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

/// The metadata descriptor's `@id`.
const DESCRIPTOR: &str = "ro-crate-metadata.json";

/// Sets `key` of an entity (the tables' changes are one-liners).
fn set(entity: &mut Map<String, Value>, key: &str, value: Value) {
    entity.insert(key.to_owned(), value);
}

/// A change to the base crate after which it still loads with exactly one warning: its name,
/// the change, then the warning's entity, property and a piece of its message.
type OneWarning = (
    &'static str,
    fn(&mut Value),
    &'static str,
    &'static str,
    &'static str,
);

/// Soft rules whose whole effect is one warning. Those that also change what is mapped, or
/// report several findings, have tests of their own.
#[allow(clippy::semicolon_if_nothing_returned)] // a change is one call, as a table cell
const ONE_WARNING: &[OneWarning] = &[
    (
        "a datePublished that is not ISO 8601",
        |c| set(root(c), "datePublished", json!("31/01/2025")),
        "./",
        "datePublished",
        "'31/01/2025' is not an ISO 8601 date",
    ),
    (
        "a name that is not text",
        |c| set(root(c), "name", json!(["a", "b"])),
        "./",
        "name",
        "",
    ),
    (
        "a missing conformsTo",
        |c| drop(entity(c, DESCRIPTOR).remove("conformsTo")),
        DESCRIPTOR,
        "conformsTo",
        "",
    ),
    (
        "an unknown RO-Crate version",
        |c| {
            set(
                entity(c, DESCRIPTOR),
                "conformsTo",
                json!({"@id": "https://w3id.org/ro/crate/2.0"}),
            )
        },
        DESCRIPTOR,
        "conformsTo",
        "version '2.0'",
    ),
    (
        "conformsTo without an RO-Crate IRI",
        |c| {
            set(
                entity(c, DESCRIPTOR),
                "conformsTo",
                json!({"@id": "https://example.org/profile"}),
            )
        },
        DESCRIPTOR,
        "conformsTo",
        "",
    ),
    (
        "a conformsTo written as a plain string (it still counts as 1.1)",
        |c| {
            set(
                entity(c, DESCRIPTOR),
                "conformsTo",
                json!("https://w3id.org/ro/crate/1.1"),
            )
        },
        DESCRIPTOR,
        "conformsTo",
        "",
    ),
    (
        "an embedded object (a value literal is not one)",
        |c| {
            set(root(c), "name", json!({"@value": "Synthetic admissions"}));
            let funder = json!([{"@id": "#nihr", "@type": "Organization", "name": "NIHR"}, {"name": "another"}]);
            set(root(c), "funder", funder);
        },
        "./",
        "funder",
        "embedded object",
    ),
    (
        "a publisher typed Organisation",
        |c| {
            set(root(c), "publisher", json!({"@id": "#lsc"}));
            add(
                c,
                [json!({"@id": "#lsc", "@type": "Organisation", "name": "LSC SDE"})],
            );
        },
        "./",
        "publisher",
        "'#lsc' is typed 'Organisation', which schema.org spells 'Organization'",
    ),
    (
        "an author of an unrelated type",
        |c| {
            set(root(c), "author", json!({"@id": "#x"}));
            add(
                c,
                [json!({"@id": "#x", "@type": "SoftwareApplication", "name": "x"})],
            );
        },
        "./",
        "author",
        "not a kind of author",
    ),
    (
        "an author referring to a missing entity",
        |c| {
            set(
                root(c),
                "author",
                json!({"@id": "https://orcid.org/0000-0002-1825-0097"}),
            )
        },
        "./",
        "author",
        "no entity in @graph has that @id",
    ),
    (
        "a plain-text author of a data entity (data entities are checked too)",
        |c| set(entity(c, "admissions.csv"), "author", json!("J. Bloggs")),
        "admissions.csv",
        "author",
        "",
    ),
    (
        "hasPart written as plain strings (it still links the file)",
        |c| set(root(c), "hasPart", json!(["admissions.csv"])),
        "./",
        "hasPart",
        "write {\"@id\": \"admissions.csv\"}",
    ),
    (
        "an entity without a type",
        |c| drop(entity(c, "admissions.csv").remove("@type")),
        "admissions.csv",
        "@type",
        "",
    ),
];

#[test]
fn each_soft_rule_of_the_table_is_its_one_warning() {
    for &(name, change, entity, property, says) in ONE_WARNING {
        // Printed with a failure: the last case named is the one that failed.
        eprintln!("case: {name}");
        let mut crate_ = base();
        change(&mut crate_);
        let report = warnings_of(&crate_);
        let warning = only_warning(&report, entity, property);
        assert!(warning.message.contains(says), "{name}: {warning}");
    }
}
