//! Step 4 of the flow (only for crates without errors): the entity graph → the
//! `AnalyticsDataSourceSpec` fields the loader owns (README, "Validation and mapping").
//!
//! Pure and silent: every way a value can be missing or odd is already reported by `validate`,
//! which shares [`choose_project`] with this module so the two never disagree. Markup in names,
//! licences and ids is reduced to text here (see `html`).

use crate_operator_api::AnalyticsDataSourceSpec;
use crate_operator_api::datasource::{Contact, DEFAULT_TYPE, Project, Publisher};

use super::Fallback;
use super::graph::{Entity, Graph, Node, each, reference, text};
use super::html::reduce;
use super::iri;
use super::json::Json;

pub(crate) fn map(graph: &Graph<'_>, fallback: &Fallback) -> AnalyticsDataSourceSpec {
    let root = graph.root();
    let from_crate = |property| root.and_then(|r| r.get(property)).and_then(text);
    AnalyticsDataSourceSpec {
        type_: Some(DEFAULT_TYPE.to_owned()),
        display_name: from_crate("name")
            .map(reduce)
            .and_then(non_empty)
            .or_else(|| fallback.display_name.clone().and_then(non_empty)),
        // A description is prose, not a name: only trimmed, never rewritten.
        description: from_crate("description")
            .map(|d| d.trim().to_owned())
            .and_then(non_empty)
            .or_else(|| fallback.description.clone().and_then(non_empty)),
        license: root.and_then(|r| license(graph, r)),
        publisher: root.and_then(|r| publisher(graph, r)),
        project: root.and_then(|r| match choose_project(graph, r) {
            ProjectChoice::Chosen(id) => non_empty(reduce(id)).map(|id| Project { id: Some(id) }),
            ProjectChoice::Ambiguous(_) | ProjectChoice::NoProject => None,
        }),
        connections: None,
        approvals: None,
    }
}

/// Which `Project` the data belongs to, decided once for mapping and validation alike.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProjectChoice<'a> {
    Chosen(&'a str),
    /// Several candidates and nothing to pick one by (their ids, in graph order).
    Ambiguous(Vec<&'a str>),
    NoProject,
}

/// The root's `mainEntity` when it is a Project; else the only Project in the graph.
pub(crate) fn choose_project<'a>(graph: &Graph<'a>, root: &Entity<'a>) -> ProjectChoice<'a> {
    let main: Vec<&'a str> = root
        .get("mainEntity")
        .into_iter()
        .flat_map(each)
        .filter_map(|v| reference(v).or_else(|| text(v)))
        .filter_map(|id| graph.get(id))
        .filter(|e| is_project(e))
        .map(|e| e.id)
        .collect();
    let candidates = if main.is_empty() {
        graph
            .entities
            .iter()
            .filter(|e| is_project(e))
            .map(|e| e.id)
            .collect()
    } else {
        main
    };
    // The same id twice (a duplicated entity, or listed twice) is still one project.
    let mut distinct: Vec<&'a str> = Vec::with_capacity(candidates.len());
    for id in candidates {
        if !distinct.contains(&id) {
            distinct.push(id);
            if distinct.len() > 100 {
                // Enough to say "ambiguous" and list a few; no need to go quadratic on more.
                break;
            }
        }
    }
    match distinct.as_slice() {
        [] => ProjectChoice::NoProject,
        [id] => ProjectChoice::Chosen(id),
        _ => ProjectChoice::Ambiguous(distinct),
    }
}

pub(crate) fn is_project(entity: &Entity<'_>) -> bool {
    entity.has_type("Project") || entity.has_type("ResearchProject")
}

/// How many of the root's licences the datasource shows. The cap also keeps the output linear:
/// without it, many references to one entity with a huge name would copy that name each time.
pub(crate) const MAX_LICENCES: usize = 8;

/// The root's licences, each as text; several are joined with "; ".
fn license(graph: &Graph<'_>, root: &Entity<'_>) -> Option<String> {
    let parts: Vec<String> = root
        .get("license")
        .into_iter()
        .flat_map(each)
        .take(MAX_LICENCES)
        .filter_map(|v| licence_text(graph, v))
        .collect();
    non_empty(parts.join("; "))
}

/// A licence as text: a string as written (markup reduced); an entity as its name plus its
/// `@id` when that is a link; a reference nobody describes as the bare `@id`.
fn licence_text(graph: &Graph<'_>, value: &Json) -> Option<String> {
    match graph.resolve(value) {
        Node::Text(s) | Node::Missing(s) => non_empty(reduce(s)),
        node => {
            let entity = node.entity()?;
            match entity.name().map(reduce).and_then(non_empty) {
                Some(name) if iri::is_web_url(entity.id) && !name.contains(entity.id) => {
                    Some(format!("{name} ({})", entity.id))
                }
                Some(name) => Some(name),
                None => non_empty(reduce(entity.id)),
            }
        }
    }
}

/// Organisation from the first publisher; contact from its contactPoint, else the first author
/// who is a Person.
fn publisher(graph: &Graph<'_>, root: &Entity<'_>) -> Option<Publisher> {
    let first = root.get("publisher").and_then(|v| each(v).next());
    let organisation = first.and_then(|v| shown(graph, v));
    let contact = first
        .and_then(|v| graph.resolve(v).entity())
        .and_then(|p| contact_point(graph, &p))
        .or_else(|| author_contact(graph, root));
    (organisation.is_some() || contact.is_some()).then_some(Publisher {
        organisation,
        contact,
    })
}

fn contact_point(graph: &Graph<'_>, publisher: &Entity<'_>) -> Option<Contact> {
    publisher
        .get("contactPoint")
        .into_iter()
        .flat_map(each)
        .filter_map(|v| graph.resolve(v).entity())
        .find_map(|point| contact(graph, &point, "contactType"))
}

fn author_contact(graph: &Graph<'_>, root: &Entity<'_>) -> Option<Contact> {
    root.get("author")
        .into_iter()
        .flat_map(each)
        .filter_map(|v| graph.resolve(v).entity())
        .filter(|a| a.has_type("Person"))
        .find_map(|person| contact(graph, &person, "jobTitle"))
}

/// A contact from a `ContactPoint` or `Person`. A `ContactPoint` often has only an email, which is
/// still the best way to reach someone, so it stands in for a missing name.
fn contact(graph: &Graph<'_>, entity: &Entity<'_>, role_property: &str) -> Option<Contact> {
    let name = entity.name().map(reduce).and_then(non_empty).or_else(|| {
        entity
            .get("email")
            .and_then(text)
            .map(|e| e.trim().to_owned())
            .and_then(non_empty)
    });
    let role = entity
        .get(role_property)
        .and_then(|v| each(v).next())
        .and_then(|v| shown(graph, v));
    (name.is_some() || role.is_some()).then_some(Contact { name, role })
}

/// How a name-like value is shown: text as written, an entity by its name, else by its id;
/// markup reduced either way.
fn shown(graph: &Graph<'_>, value: &Json) -> Option<String> {
    match graph.resolve(value) {
        Node::Text(s) | Node::Missing(s) => non_empty(reduce(s)),
        node => {
            let entity = node.entity()?;
            entity
                .name()
                .map(reduce)
                .and_then(non_empty)
                .or_else(|| non_empty(reduce(entity.id)))
        }
    }
}

fn non_empty(s: String) -> Option<String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == s.len() {
        Some(s)
    } else {
        Some(trimmed.to_owned())
    }
}
