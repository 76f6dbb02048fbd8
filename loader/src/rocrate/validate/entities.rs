//! Rules for every entity: a usable `@id` and `@type`, references rather than embedded
//! objects or plain strings, `author` and `publisher` that are agents; then across entities:
//! duplicate `@id`s and data entities the root's `hasPart` does not reach.

use std::collections::HashMap;

use super::values;
use crate::rocrate::graph::{
    Entity, Graph, Node, each, is_literal, is_reference, kind, quoted_list, reference, text,
    type_is,
};
use crate::rocrate::html;
use crate::rocrate::iri::{self, IdProblem};
use crate::rocrate::json::Json;
use crate::rocrate::payload::is_data_entity;
use crate::rocrate::report::{Collector, Diagnostic, clip};

/// Properties whose values are references by definition; a plain string there is a mistake.
const REFERENCE_PROPERTIES: [&str; 5] = [
    "about",
    "conformsTo",
    "hasPart",
    "mainEntity",
    "contactPoint",
];

/// What an `author` or `publisher` may be: schema.org's Organization and Person and their
/// subtypes that describe who made or published something (a `Project` is an Organization).
const AGENT_TYPES: [&str; 22] = [
    "Organization",
    "Person",
    "Patient",
    "Airline",
    "Consortium",
    "Corporation",
    "EducationalOrganization",
    "CollegeOrUniversity",
    "FundingScheme",
    "GovernmentOrganization",
    "LibrarySystem",
    "LocalBusiness",
    "MedicalOrganization",
    "Hospital",
    "NGO",
    "NewsMediaOrganization",
    "PerformingGroup",
    "Project",
    "FundingAgency",
    "ResearchProject",
    "ResearchOrganization",
    "SportsOrganization",
];

pub(super) fn check(graph: &Graph<'_>, entity: &Entity<'_>, out: &mut Collector) {
    if let Err(problem) = iri::check(entity.id) {
        out.push(
            Diagnostic::warning(format!(
                "the @id '{}' {}",
                clip(entity.id),
                explain_for(entity, &problem)
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
    // A WebSite is only ever shown by its name (RO-Crate 1.1 requires one).
    if entity.has_type("WebSite") && entity.name().is_none() {
        out.push(
            Diagnostic::warning(
                "the WebSite has no `name`; give it the site's title so readers know what the \
                 link is",
            )
            .on(entity.id)
            .at("name"),
        );
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
            Json::Object(map) if is_literal(map) => {
                if let Some(problem) = values::malformed(map) {
                    out.push(here(problem));
                }
            }
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
                if AGENT_TYPES.iter().any(|t| agent.has_type(t)) {
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

pub(super) fn duplicates(graph: &Graph<'_>, out: &mut Collector) {
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
pub(super) fn reachability(graph: &Graph<'_>, root: usize, out: &mut Collector) {
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
        if !is_data_entity(entity) {
            continue;
        }
        let data_type = if entity.has_type("Dataset") {
            "Dataset"
        } else {
            "File"
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

/// [`explain`], with the exact fix for a data entity's path with spaces (`data set/` → `data%20set/`):
/// the same path either way, but only the encoded one is an IRI.
fn explain_for(entity: &Entity<'_>, problem: &IdProblem) -> String {
    let id = entity.id;
    let is_path = is_data_entity(entity) && !iri::has_scheme(id) && !html::has_markup(id);
    match problem {
        IdProblem::Whitespace if is_path && !id.contains(['\t', '\n', '\r']) => format!(
            "contains a space, which an IRI cannot; write it as '{}' (the same path, spaces as \
             %20)",
            clip(&id.replace(' ', "%20"))
        ),
        _ => explain(problem),
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
    use super::*;
    use crate::rocrate::map::is_project;

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
