//! The root data entity: its `@id` form for the crate's RO-Crate version, the properties the
//! datasource is made of (`name`, `description`, `datePublished`, `license`, `publisher`) and
//! which `Project` it belongs to.

use crate::rocrate::graph::{Entity, Graph, Node, each, kind, quoted_list, reference, text};
use crate::rocrate::json::Json;
use crate::rocrate::map::{MAX_LICENCES, ProjectChoice, choose_project};
use crate::rocrate::report::{Collector, Diagnostic, clip};
use crate::rocrate::{iri, iso8601};

/// Types of a root's `mainEntity` that say what the crate is about, and are not projects.
const WORK_TYPES: [&str; 8] = [
    "File",
    "MediaObject",
    "Dataset",
    "ComputationalWorkflow",
    "SoftwareSourceCode",
    "SoftwareApplication",
    "HowTo",
    "Action",
];

pub(super) fn check(
    graph: &Graph<'_>,
    root: &Entity<'_>,
    version: Option<&str>,
    out: &mut Collector,
) {
    identifier(root, version, out);
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
    project(graph, root, out);
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
            Some(date) if iso8601::is_date(date.trim()) => return,
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
            let entity = graph.resolve(main).entity();
            // A workflow or data crate's mainEntity is its workflow or its data, never a
            // project: suggesting to retype it would be wrong.
            if entity.as_ref().is_some_and(is_work) {
                return;
            }
            let what = match entity {
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

fn is_work(entity: &Entity<'_>) -> bool {
    WORK_TYPES.iter().any(|t| entity.has_type(t))
}

/// RO-Crate 1.1 identifies the root as a directory, so its `@id` ends with `/` (`./`, or an
/// absolute IRI ending in `/`); 1.2 and later allow `./` or any absolute IRI (a detached crate's
/// root is its URL).
fn identifier(root: &Entity<'_>, version: Option<&str>, out: &mut Collector) {
    let id = root.id;
    let message = match version {
        Some("1.2" | "1.3") if id == "./" || iri::has_scheme(id) => return,
        Some(v @ ("1.2" | "1.3")) => format!(
            "the root's @id '{}' is neither './' nor an absolute IRI, which RO-Crate {v} \
             requires; set it to './' (and the descriptor's `about` with it), or to the crate's \
             URL for a detached crate",
            clip(id)
        ),
        _ if id.ends_with('/') => return,
        _ => format!(
            "the root's @id '{}' does not end with '/', which RO-Crate 1.1 requires of the root \
             directory; set it to './' (and the descriptor's `about` with it)",
            clip(id)
        ),
    };
    out.push(Diagnostic::warning(message).on(id).at("@id"));
}
