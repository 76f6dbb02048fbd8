//! Real-world shapes: the cr8tor and RO-Crate 1.2 fixtures, and what the mapping makes of
//! valid variations (licences, publishers, projects, contacts, dates).

use super::*;

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
