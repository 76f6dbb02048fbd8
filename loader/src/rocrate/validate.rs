//! Step 3 of the flow: the soft rules (README, "Validation and mapping"), run over the graph
//! `graph::build` produced.
//! Everything here is a warning: real crates are messy, and a crate with warnings is still
//! published, with the warnings listed next to it. Checks that need the root run only when the
//! root was found; the rest run regardless, so a failing crate's report is complete.

use std::collections::HashMap;

use super::graph::{
    Entity, Graph, Node, RO_CRATE_IRI, each, is_literal, is_reference, kind, quoted_list,
    reference, ro_crate_versions, text, type_is,
};
use super::iri::{self, IdProblem};
use super::json::Json;
use super::map::{MAX_LICENCES, ProjectChoice, choose_project};
use super::report::{Collector, Diagnostic, clip};

/// RO-Crate versions this loader understands.
const KNOWN_VERSIONS: [&str; 3] = ["1.0", "1.1", "1.2"];

/// Properties whose values are references by definition; a plain string there is a mistake.
const REFERENCE_PROPERTIES: [&str; 5] = [
    "about",
    "conformsTo",
    "hasPart",
    "mainEntity",
    "contactPoint",
];

pub(crate) fn check(graph: &Graph<'_>, out: &mut Collector) {
    if let Some(descriptor) = graph.descriptor() {
        conformance(descriptor, out);
    }
    if let Some(root) = graph.root() {
        root_properties(graph, root, out);
        project(graph, root, out);
    }
    for entity in &graph.entities {
        entity_rules(graph, entity, out);
    }
    duplicates(graph, out);
    if let Some(root) = graph.root {
        reachability(graph, root, out);
    }
}

fn conformance(descriptor: &Entity<'_>, out: &mut Collector) {
    let warn = |message: String| {
        Diagnostic::warning(message)
            .on(descriptor.id)
            .at("conformsTo")
    };
    let fix = format!("add \"conformsTo\": {{\"@id\": \"{RO_CRATE_IRI}1.1\"}}");
    if descriptor.get("conformsTo").is_none() {
        out.push(warn(format!(
            "the metadata descriptor does not say which RO-Crate version the crate follows; {fix}"
        )));
        return;
    }
    let versions: Vec<&str> = ro_crate_versions(descriptor).collect();
    if versions.is_empty() {
        out.push(warn(format!(
            "`conformsTo` names no RO-Crate version (an IRI starting {RO_CRATE_IRI}); {fix}"
        )));
    }
    for version in versions.into_iter().filter(|v| !KNOWN_VERSIONS.contains(v)) {
        out.push(warn(format!(
            "`conformsTo` names RO-Crate version '{}', which this loader does not know (it \
             knows {}); check the IRI, e.g. {fix}",
            clip(version),
            KNOWN_VERSIONS.join(", ")
        )));
    }
}

fn root_properties(graph: &Graph<'_>, root: &Entity<'_>, out: &mut Collector) {
    text_property(
        root,
        "name",
        "the title the data source is listed under",
        out,
    );
    text_property(
        root,
        "description",
        "what the data is, for people deciding whether to request it",
        out,
    );
    date_published(root, out);
    licence(graph, root, out);
    publishers(graph, root, out);
}

fn text_property(root: &Entity<'_>, property: &str, purpose: &str, out: &mut Collector) {
    let message = match root.get(property) {
        None => format!(
            "add a `{property}` to the root dataset '{}' ({purpose})",
            clip(root.id)
        ),
        Some(value) => match text(value) {
            Some(s) if s.trim().is_empty() => {
                format!("`{property}` is empty; fill it in ({purpose})")
            }
            Some(_) => return,
            None => format!(
                "`{property}` is {} but must be a string ({purpose})",
                kind(value)
            ),
        },
    };
    out.push(Diagnostic::warning(message).on(root.id).at(property));
}

fn date_published(root: &Entity<'_>, out: &mut Collector) {
    let example = "e.g. \"2025-03-31\" or \"2025-03-31T09:00:00Z\"";
    let message = match root.get("datePublished") {
        None => format!(
            "add `datePublished` to the root dataset '{}' as an ISO 8601 date, {example}",
            clip(root.id)
        ),
        Some(value) => match text(value) {
            Some(date) if is_iso_8601(date.trim()) => return,
            Some(date) => {
                format!(
                    "'{}' is not an ISO 8601 date; write it as {example}",
                    clip(date)
                )
            }
            None => format!(
                "`datePublished` is {} but must be one ISO 8601 date, {example}",
                kind(value)
            ),
        },
    };
    out.push(Diagnostic::warning(message).on(root.id).at("datePublished"));
}

fn licence(graph: &Graph<'_>, root: &Entity<'_>, out: &mut Collector) {
    let message = match root.get("license") {
        None => format!(
            "add a `license` to the root dataset '{}' (a URL or a CreativeWork entity)",
            clip(root.id)
        ),
        Some(value) => {
            let usable = each(value).any(|v| match graph.resolve(v) {
                Node::Text(s) => !s.trim().is_empty(),
                Node::Entity(_) | Node::Embedded(_) | Node::Missing(_) => true,
                Node::Other(_) => false,
            });
            if let Json::Array(items) = value
                && items.len() > MAX_LICENCES
            {
                format!(
                    "{} licences are listed; the datasource shows only the first {MAX_LICENCES}, \
                     so list the licences that govern the data first",
                    items.len()
                )
            } else if usable {
                return;
            } else {
                format!(
                    "`license` is {} with no usable licence; give a URL, a licence name or \
                 {{\"@id\": …}} of a CreativeWork entity",
                    kind(value)
                )
            }
        }
    };
    out.push(Diagnostic::warning(message).on(root.id).at("license"));
}

fn publishers(graph: &Graph<'_>, root: &Entity<'_>, out: &mut Collector) {
    let Some(publishers) = root.get("publisher") else {
        return;
    };
    if let Json::Array(items) = publishers
        && items.len() > 1
    {
        out.push(
            Diagnostic::warning(format!(
                "{} publishers are listed; the datasource takes only the first, so put the \
                 publishing organisation first",
                items.len()
            ))
            .on(root.id)
            .at("publisher"),
        );
    }
    if let Some(Node::Entity(publisher)) = each(publishers).next().map(|v| graph.resolve(v))
        && publisher.name().is_none()
    {
        out.push(
            Diagnostic::warning(
                "the publisher has no `name`, so the datasource shows its @id as the \
                 organisation; add a name",
            )
            .on(publisher.id)
            .at("name"),
        );
    }
}

/// ISO 8601 as crates write it: a date, a date-time with `Z` or an offset, or a local date-time.
fn is_iso_8601(s: &str) -> bool {
    s.parse::<jiff::Timestamp>().is_ok()
        || s.parse::<jiff::civil::DateTime>().is_ok()
        || s.parse::<jiff::civil::Date>().is_ok()
}

fn project(graph: &Graph<'_>, root: &Entity<'_>, out: &mut Collector) {
    match choose_project(graph, root) {
        ProjectChoice::Chosen(_) => {}
        ProjectChoice::Ambiguous(ids) => out.push(
            Diagnostic::warning(format!(
                "cannot tell which Project the data belongs to: {} are candidates and the root's \
                 `mainEntity` does not single one out; set \"mainEntity\": {{\"@id\": …}} on the \
                 root to that project (no project.id is set until then)",
                quoted_list(&ids)
            ))
            .on(root.id)
            .at("mainEntity"),
        ),
        ProjectChoice::NoProject => {
            let Some(main) = root.get("mainEntity").and_then(|v| each(v).next()) else {
                return;
            };
            let what = match graph.resolve(main).entity() {
                Some(e) if e.types.is_empty() => format!("'{}' has no @type", clip(e.id)),
                Some(e) => format!("'{}' is typed {}", clip(e.id), quoted_list(&e.types)),
                None => format!(
                    "{} is not an entity of the crate",
                    reference(main)
                        .or_else(|| text(main))
                        .map_or_else(|| kind(main).to_owned(), |id| format!("'{}'", clip(id)))
                ),
            };
            out.push(
                Diagnostic::warning(format!(
                    "`mainEntity` {what}, and no entity is typed Project, so no project.id is \
                     set; if it is the project, type it \"Project\""
                ))
                .on(root.id)
                .at("mainEntity"),
            );
        }
    }
}

fn entity_rules(graph: &Graph<'_>, entity: &Entity<'_>, out: &mut Collector) {
    if let Err(problem) = iri::check(entity.id) {
        out.push(
            Diagnostic::warning(format!(
                "the @id '{}' {}",
                clip(entity.id),
                explain(&problem)
            ))
            .on(entity.id)
            .at("@id"),
        );
    }
    match entity.get("@type") {
        None => out.push(
            Diagnostic::warning(
                "the entity has no @type; add one (File, Dataset, Person, Organization, …) so \
                 consumers know what it is",
            )
            .on(entity.id)
            .at("@type"),
        ),
        Some(value) if entity.types.is_empty() || each(value).any(|t| !t.is_string()) => out.push(
            Diagnostic::warning(format!(
                "@type is {} but must be a type name or an array of type names",
                kind(value)
            ))
            .on(entity.id)
            .at("@type"),
        ),
        Some(_) => {}
    }
    for (property, value) in entity.props.iter() {
        // Keywords (@id, @type, @reverse, …) are JSON-LD syntax, not properties.
        if property.starts_with('@') {
            continue;
        }
        property_values(graph, entity, property, value, out);
        if property == "publisher" || property == "author" {
            agents(graph, entity, property, value, out);
        }
    }
}

fn property_values(
    graph: &Graph<'_>,
    entity: &Entity<'_>,
    property: &str,
    value: &Json,
    out: &mut Collector,
) {
    let here = |message: String| Diagnostic::warning(message).on(entity.id).at(property);
    let mut embedded = false;
    for item in each(value) {
        match item {
            Json::Object(map) if is_literal(map) => {}
            Json::Object(map) if is_reference(map) => {
                let Some(id) = reference(item) else {
                    out.push(here(format!(
                        "a reference's @id is {} but must be a string",
                        map.get("@id").map_or("missing", kind)
                    )));
                    continue;
                };
                // An id that has its own entity was already checked there.
                if graph.get(id).is_none()
                    && let Err(problem) = iri::check(id)
                {
                    out.push(here(format!(
                        "refers to '{}', which {}",
                        clip(id),
                        explain(&problem)
                    )));
                }
            }
            Json::Object(_) if !embedded => {
                embedded = true;
                out.push(here(format!(
                    "`{}` holds an embedded object; RO-Crate graphs are flat, so make it its own \
                     entity in @graph (with an @id) and refer to it with {{\"@id\": …}}",
                    clip(property)
                )));
            }
            Json::String(s) if REFERENCE_PROPERTIES.contains(&property) => {
                out.push(here(format!(
                    "`{property}` holds the plain string '{}', which JSON-LD reads as text, not as \
                     a link; write {{\"@id\": \"{}\"}}",
                    clip(s),
                    clip(s)
                )));
            }
            _ => {}
        }
    }
}

/// `publisher` and `author` must name Organization or Person entities.
fn agents(
    graph: &Graph<'_>,
    entity: &Entity<'_>,
    property: &str,
    value: &Json,
    out: &mut Collector,
) {
    let here = |message: String| Diagnostic::warning(message).on(entity.id).at(property);
    let expected = if property == "author" {
        "Person"
    } else {
        "Organization"
    };
    for item in each(value) {
        let message = match graph.resolve(item) {
            Node::Text(name) => format!(
                "the {property} is the plain text '{}'; describe it as an entity in @graph \
                 (\"@type\": \"{expected}\" with a `name`) and refer to it with {{\"@id\": …}}",
                clip(name)
            ),
            Node::Missing(id) => format!(
                "refers to '{}' but no entity in @graph has that @id, so its type and name are \
                 unknown; add an entity with that @id, \"@type\": \"{expected}\" and a `name`",
                clip(id)
            ),
            Node::Other(other) => format!(
                "the {property} is {}; refer to an Organization or Person entity with \
                 {{\"@id\": …}}",
                kind(other)
            ),
            node => {
                let Some(agent) = node.entity() else { continue };
                if ["Organization", "Person"].iter().any(|t| agent.has_type(t)) {
                    continue;
                }
                let who = if agent.id.is_empty() {
                    format!("the {property}")
                } else {
                    format!("'{}'", clip(agent.id))
                };
                match agent
                    .types
                    .iter()
                    .find_map(|t| spelling(t).map(|right| (t, right)))
                {
                    Some((wrong, right)) => format!(
                        "{who} is typed '{}', which schema.org spells '{right}'; change its \
                         @type to \"{right}\"",
                        clip(wrong)
                    ),
                    None if agent.types.is_empty() => format!(
                        "{who} has no @type; type it \"{expected}\" (or \"Organization\" / \
                         \"Person\")"
                    ),
                    None => format!(
                        "{who} is typed {}, which is not a kind of {property}; type it \
                         \"Organization\" or \"Person\"",
                        quoted_list(&agent.types)
                    ),
                }
            }
        };
        out.push(here(message));
    }
}

/// The schema.org spelling of a near-miss agent type (`Organisation` → `Organization`).
fn spelling(written: &str) -> Option<&'static str> {
    let local = written
        .rsplit(['/', ':', '#'])
        .next()
        .unwrap_or(written)
        .to_ascii_lowercase();
    match local.as_str() {
        "organisation" | "organization" | "org" => Some("Organization"),
        "person" | "people" | "persons" => Some("Person"),
        _ => None,
    }
    .filter(|right| !type_is(written, right))
}

fn duplicates(graph: &Graph<'_>, out: &mut Collector) {
    // Every later copy is in `duplicates`, so an id's count there plus one is its copies.
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for &index in &graph.duplicates {
        *copies.entry(graph.entities[index].id).or_insert(1) += 1;
    }
    for &index in &graph.duplicates {
        let id = graph.entities[index].id;
        let Some(copies) = copies.remove(id) else {
            continue;
        };
        out.push(
            Diagnostic::warning(format!(
                "{copies} entities have this @id; only the first is used, so merge them into one \
                 entity or give each its own @id"
            ))
            .on(id)
            .at("@id"),
        );
    }
}

/// Data entities must be listed from the root through `hasPart`, directly or through Datasets.
fn reachability(graph: &Graph<'_>, root: usize, out: &mut Collector) {
    let mut reached = vec![false; graph.entities.len()];
    reached[root] = true;
    let mut queue = vec![root];
    while let Some(index) = queue.pop() {
        let parts = graph.entities[index]
            .get("hasPart")
            .into_iter()
            .flat_map(each);
        for id in parts.filter_map(|p| reference(p).or_else(|| text(p))) {
            if let Some(part) = graph.index_of(id)
                && !reached[part]
            {
                reached[part] = true;
                queue.push(part);
            }
        }
    }
    let root_id = graph.entities[root].id;
    for (index, entity) in graph.entities.iter().enumerate() {
        let Some(data_type) = ["File", "MediaObject", "Dataset"]
            .into_iter()
            .find(|t| entity.has_type(t))
        else {
            continue;
        };
        // Judge each id once, by its first entity (the one references resolve to).
        if graph.index_of(entity.id) != Some(index) || reached[index] {
            continue;
        }
        out.push(
            Diagnostic::warning(format!(
                "{data_type} '{}' is not listed in the hasPart of the root dataset '{}' (directly or \
                 through a Dataset listed there); add {{\"@id\": \"{}\"}} to the root's hasPart",
                clip(entity.id),
                clip(root_id),
                clip(entity.id)
            ))
            .on(entity.id)
            .at("hasPart"),
        );
    }
}

/// What is wrong with an id and how to fix it, phrased to follow "the @id 'x' …".
fn explain(problem: &IdProblem) -> String {
    match problem {
        IdProblem::Empty => "is empty; use a relative path, a URL or '#name'".to_owned(),
        IdProblem::Markup(Some(target)) => format!(
            "is HTML markup, not an identifier; use the link target '{}' as the @id and put the \
             link text in `name`",
            clip(target)
        ),
        IdProblem::Markup(None) => "is HTML markup, not an identifier; use a URL, a relative \
                                    path or '#name' and put the text in `name`"
            .to_owned(),
        IdProblem::Whitespace => "contains whitespace, which identifiers cannot; use a URL, a \
                                  '#name' without spaces, or write spaces in a file path as %20"
            .to_owned(),
        IdProblem::Forbidden(c) => format!(
            "contains {c:?}, which identifiers cannot; percent-encode it or use a URL or \
             relative path"
        ),
        IdProblem::BadPercent => {
            "has a '%' that is not followed by two hex digits; write a literal % as %25".to_owned()
        }
        IdProblem::BadAbsolute(error) => {
            format!("looks like an absolute IRI but is not a valid one ({error}); fix the URL")
        }
        IdProblem::EmptyBlank => "is a blank node without a label; write e.g. '_:b0'".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::map::is_project;
    use super::*;

    #[test]
    fn iso_8601_dates_and_date_times_are_accepted() {
        for date in [
            "2025-01-11",
            "2025-01-11T00:57:35+00:00",
            "2025-01-11T00:57:35Z",
            "2025-01-11T00:57:35.123456+01:00",
            "2025-01-11T00:57:35",
            "2025-01-11T00:57",
        ] {
            assert!(is_iso_8601(date), "{date}");
        }
        for date in [
            "11/01/2025",
            "11 January 2025",
            "2025-13-01",
            "yesterday",
            "",
        ] {
            assert!(!is_iso_8601(date), "{date}");
        }
    }

    #[test]
    fn near_miss_agent_types_get_the_schema_org_spelling() {
        assert_eq!(spelling("Organisation"), Some("Organization"));
        assert_eq!(spelling("organization"), Some("Organization"));
        assert_eq!(
            spelling("http://schema.org/Organisation"),
            Some("Organization")
        );
        assert_eq!(spelling("Organization"), None);
        assert_eq!(spelling("person"), Some("Person"));
        assert_eq!(spelling("Thing"), None);
    }

    #[test]
    fn only_project_typed_entities_count_as_projects() {
        let props: Json =
            serde_json::from_str(r#"{"@id": "p", "@type": ["Thing", "ResearchProject"]}"#)
                .expect("test JSON parses");
        let map = props.as_object().expect("an object");
        assert!(is_project(&Entity::new("p", map)));
    }
}
