//! Step 2 of the flow: the parsed JSON → an indexed entity graph with the metadata descriptor and
//! the root data entity found. Only structural breaks are reported here (all as errors); the
//! softer rules live in `validate`, the field mapping in `map`.
//!
//! The graph borrows from the parsed value: nothing crate-supplied is copied, so memory stays a
//! small multiple of the input.

use std::collections::HashMap;

use super::json::{Json, Object};
use super::report::{Collector, Diagnostic, clip};

/// The descriptor `@id` every RO-Crate 1.1 crate uses (and attached 1.2 crates).
pub(crate) const DESCRIPTOR_ID: &str = "ro-crate-metadata.json";

/// The descriptor `@id` of RO-Crate 0.2-DRAFT, which named the file `…metadata.jsonld`.
pub(crate) const DRAFT_DESCRIPTOR_ID: &str = "ro-crate-metadata.jsonld";

/// Prefix of the `conformsTo` IRIs naming an RO-Crate version (`…/1.1`, `…/1.2`).
pub(crate) const RO_CRATE_IRI: &str = "https://w3id.org/ro/crate/";

/// One `@graph` entry with a usable `@id` (or an embedded object seen as one, with the `@id`
/// it has or `""`).
#[derive(Clone, Debug)]
pub(crate) struct Entity<'a> {
    pub(crate) id: &'a str,
    /// The `@type` strings as written (a string or an array of strings in the JSON).
    pub(crate) types: Vec<&'a str>,
    pub(crate) props: &'a Object,
}

impl<'a> Entity<'a> {
    pub(crate) fn new(id: &'a str, props: &'a Object) -> Self {
        Self {
            id,
            types: types_of(props),
            props,
        }
    }

    pub(crate) fn get(&self, property: &str) -> Option<&'a Json> {
        self.props.get(property)
    }

    pub(crate) fn has_type(&self, wanted: &str) -> bool {
        self.types.iter().any(|t| type_is(t, wanted))
    }

    /// The entity's `name` as text, if it has one that is not blank.
    pub(crate) fn name(&self) -> Option<&'a str> {
        self.get("name")
            .and_then(text)
            .filter(|s| !s.trim().is_empty())
    }
}

/// The crate's entities, indexed, with the descriptor and root found when they exist.
#[derive(Debug, Default)]
pub(crate) struct Graph<'a> {
    pub(crate) entities: Vec<Entity<'a>>,
    /// First entity for each `@id`; later duplicates are in `duplicates`.
    by_id: HashMap<&'a str, usize>,
    /// First entity for each percent-decoded `@id`, for ids with a `%` or a space: `data set/`
    /// and `data%20set/` are the same entity, however each reference spells it.
    by_decoded: HashMap<String, usize>,
    /// The document's `@context`.
    pub(crate) context: Option<&'a Json>,
    /// Indices (into `entities`) of entities whose `@id` an earlier entity already has.
    pub(crate) duplicates: Vec<usize>,
    pub(crate) descriptor: Option<usize>,
    pub(crate) root: Option<usize>,
}

/// What a property value stands for once references are followed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node<'g, 'a> {
    /// A reference to an entity of the graph.
    Entity(&'g Entity<'a>),
    /// An object written in place instead of referenced (not flattened).
    Embedded(&'a Object),
    /// A reference to an `@id` no entity has (normal for external IRIs).
    Missing(&'a str),
    /// A string or `{"@value": string}` literal.
    Text(&'a str),
    /// Anything else (numbers, booleans, null, nested arrays).
    Other(&'a Json),
}

impl<'a> Node<'_, 'a> {
    /// The entity behind a reference or an embedded object, for reading its properties.
    pub(crate) fn entity(self) -> Option<Entity<'a>> {
        match self {
            Node::Entity(entity) => Some(entity.clone()),
            Node::Embedded(map) => Some(Entity::new(
                map.get("@id").and_then(Json::as_str).unwrap_or(""),
                map,
            )),
            Node::Missing(_) | Node::Text(_) | Node::Other(_) => None,
        }
    }
}

impl<'a> Graph<'a> {
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied().or_else(|| {
            needs_decoding(id)
                .then(|| self.by_decoded.get(&*decoded(id)).copied())
                .flatten()
        })
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Entity<'a>> {
        self.index_of(id).map(|i| &self.entities[i])
    }

    pub(crate) fn root(&self) -> Option<&Entity<'a>> {
        self.root.map(|i| &self.entities[i])
    }

    pub(crate) fn descriptor(&self) -> Option<&Entity<'a>> {
        self.descriptor.map(|i| &self.entities[i])
    }

    pub(crate) fn resolve(&self, value: &'a Json) -> Node<'_, 'a> {
        if let Some(s) = text(value) {
            return Node::Text(s);
        }
        match value {
            Json::Object(map) if is_literal(map) => Node::Other(value),
            Json::Object(map) if is_reference(map) => match reference(value) {
                Some(id) => self.get(id).map_or(Node::Missing(id), Node::Entity),
                None => Node::Other(value),
            },
            Json::Object(map) => Node::Embedded(map),
            other => Node::Other(other),
        }
    }
}

/// Build the graph from the parsed document, reporting structural errors. `None` when there is
/// no `@graph` array to look at.
pub(crate) fn build<'a>(document: &'a Json, out: &mut Collector) -> Option<Graph<'a>> {
    let Json::Object(top) = document else {
        out.push(Diagnostic::error(format!(
            "the metadata file holds {} but must be a JSON object with \"@context\" and \"@graph\"",
            kind(document)
        )));
        return None;
    };
    if !top.contains_key("@context") {
        out.push(
            Diagnostic::error(
                "there is no @context; add \"@context\": \"https://w3id.org/ro/crate/1.1/context\" \
                 at the top level",
            )
            .at("@context"),
        );
    }
    let items = match top.get("@graph") {
        Some(Json::Array(items)) => items,
        Some(other) => {
            out.push(
                Diagnostic::error(format!(
                    "@graph is {} but must be an array of entity objects",
                    kind(other)
                ))
                .at("@graph"),
            );
            return None;
        }
        None => {
            out.push(
                Diagnostic::error(
                    "there is no @graph; an RO-Crate lists its entities in a top-level \"@graph\" \
                     array",
                )
                .at("@graph"),
            );
            return None;
        }
    };

    let mut graph = Graph {
        context: top.get("@context"),
        ..Graph::default()
    };
    for (position, item) in items.iter().enumerate() {
        let Some(props) = item.as_object() else {
            out.push(
                Diagnostic::error(format!(
                    "item {position} of @graph is {}, not an object; every entity must be a JSON \
                     object with an @id",
                    kind(item)
                ))
                .at("@graph"),
            );
            continue;
        };
        let id = match props.get("@id") {
            Some(Json::String(id)) => &**id,
            found => {
                let what = found.map_or_else(
                    || "has no @id".to_owned(),
                    |v| format!("has an @id that is {}, not a string", kind(v)),
                );
                let named = props
                    .get("name")
                    .and_then(text)
                    .map(|n| format!(" (name '{}')", clip(n)))
                    .unwrap_or_default();
                out.push(
                    Diagnostic::error(format!(
                        "item {position} of @graph{named} {what}; give it a string @id such as \
                         \"data/file.csv\", a URL or \"#local-name\""
                    ))
                    .at("@id"),
                );
                continue;
            }
        };
        let index = graph.entities.len();
        graph.entities.push(Entity::new(id, props));
        if graph.by_id.contains_key(id) {
            graph.duplicates.push(index);
        } else {
            graph.by_id.insert(id, index);
            if needs_decoding(id) {
                graph
                    .by_decoded
                    .entry(decoded(id).into_owned())
                    .or_insert(index);
            }
        }
    }

    find_root(&mut graph, out);
    Some(graph)
}

/// Find the descriptor and, through its `about`, the root data entity.
///
/// RO-Crate 1.1 names the descriptor by its fixed `@id`. RO-Crate 1.2 (and detached crates)
/// find it by `conformsTo` an RO-Crate IRI plus `about`, whatever its `@id`
/// (`https://…/ro-crate-metadata.json`, `./ro-crate-metadata.json`). As a last resort any `@id`
/// ending in the file name counts, so a descriptor missing only `conformsTo` still gets the
/// precise "no about" or "unknown version" diagnostic instead of "no descriptor".
fn find_root(graph: &mut Graph<'_>, out: &mut Collector) {
    let descriptor = graph.by_id.get(DESCRIPTOR_ID).copied().or_else(|| {
        let by_conformance =
            |e: &Entity<'_>| e.get("about").is_some() && ro_crate_versions(e).next().is_some();
        let candidates: Vec<usize> = (0..graph.entities.len())
            .filter(|&i| by_conformance(&graph.entities[i]))
            .collect();
        candidates
            .iter()
            .copied()
            .find(|&i| graph.entities[i].id.ends_with(DESCRIPTOR_ID))
            .or_else(|| candidates.first().copied())
            .or_else(|| {
                graph
                    .entities
                    .iter()
                    .position(|e| e.id.ends_with(DESCRIPTOR_ID) || e.id == DRAFT_DESCRIPTOR_ID)
            })
    });
    let Some(descriptor) = descriptor else {
        out.push(Diagnostic::error(format!(
            "there is no metadata descriptor; add the entity {{\"@id\": \"{DESCRIPTOR_ID}\", \
             \"@type\": \"CreativeWork\", \"about\": {{\"@id\": \"./\"}}, \"conformsTo\": \
             {{\"@id\": \"{RO_CRATE_IRI}1.1\"}}}} to @graph"
        )));
        return;
    };
    graph.descriptor = Some(descriptor);
    let entity = &graph.entities[descriptor];
    let fix = "set \"about\": {\"@id\": \"./\"} (the @id of the root Dataset)";
    let root_id = match entity.get("about") {
        None => {
            out.push(
                Diagnostic::error(format!(
                    "the metadata descriptor does not say which entity is the root; {fix}"
                ))
                .on(entity.id)
                .at("about"),
            );
            return;
        }
        Some(about) => {
            let ids: Vec<&str> = each(about)
                .filter_map(|v| reference(v).or_else(|| text(v)))
                .collect();
            match ids.as_slice() {
                [id] => *id,
                [] => {
                    out.push(
                        Diagnostic::error(format!(
                            "`about` is {} but must refer to the root Dataset; {fix}",
                            kind(about)
                        ))
                        .on(entity.id)
                        .at("about"),
                    );
                    return;
                }
                _ => {
                    out.push(
                        Diagnostic::error(format!(
                            "`about` names {} entities but a crate has exactly one root; {fix}",
                            ids.len()
                        ))
                        .on(entity.id)
                        .at("about"),
                    );
                    return;
                }
            }
        }
    };
    let Some(root) = graph.index_of(root_id) else {
        out.push(
            Diagnostic::error(format!(
                "the descriptor's `about` names '{}' but no entity in @graph has that @id; add the \
                 root Dataset entity or point `about` at it",
                clip(root_id)
            ))
            .on(entity.id)
            .at("about"),
        );
        return;
    };
    let root_entity = &graph.entities[root];
    if !root_entity.has_type("Dataset") {
        out.push(not_a_dataset(graph, entity, root_entity));
    }
    graph.root = Some(root);
}

/// The error for a root that is not a Dataset. When `about` names a file (a workflow, a
/// script) the mistake is almost always `about`, not the file's type: retyping the file as a
/// Dataset would only hide it, so the message says to point `about` at the root instead.
fn not_a_dataset(graph: &Graph<'_>, descriptor: &Entity<'_>, root: &Entity<'_>) -> Diagnostic {
    let found = if root.types.is_empty() {
        "has no @type".to_owned()
    } else {
        format!("is typed {}", quoted_list(&root.types))
    };
    if root.has_type("File") || root.has_type("MediaObject") {
        let dataset = graph
            .get("./")
            .filter(|e| e.has_type("Dataset"))
            .map_or_else(
                || {
                    "the root Dataset (usually \"./\", the entity whose hasPart lists the crate's \
                    files)"
                        .to_owned()
                },
                |e| format!("the Dataset '{}'", clip(e.id)),
            );
        return Diagnostic::error(format!(
            "`about` names '{}', which {found}: a file, not the crate's root; point `about` at \
             {dataset}, e.g. \"about\": {{\"@id\": \"./\"}}, and refer to the file from the \
             root's `mainEntity` or `hasPart` instead",
            clip(root.id)
        ))
        .on(descriptor.id)
        .at("about");
    }
    Diagnostic::error(format!(
        "the root data entity {found}; it must be a Dataset: set \"@type\": \"Dataset\" (or an \
         array that includes \"Dataset\")"
    ))
    .on(root.id)
    .at("@type")
}

/// Whether an id may be spelt another way with the same meaning (`%20` for a space).
fn needs_decoding(id: &str) -> bool {
    id.contains(['%', ' '])
}

fn decoded(id: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(id).decode_utf8_lossy()
}

/// The RO-Crate versions an entity's `conformsTo` names (`"1.1"` for `…/ro/crate/1.1`).
pub(crate) fn ro_crate_versions<'a>(entity: &Entity<'a>) -> impl Iterator<Item = &'a str> + 'a {
    entity
        .get("conformsTo")
        .into_iter()
        .flat_map(each)
        .filter_map(|v| reference(v).or_else(|| text(v)))
        .filter_map(|iri| {
            iri.strip_prefix(RO_CRATE_IRI)
                .or_else(|| iri.strip_prefix("http://w3id.org/ro/crate/"))
                .map(|version| version.trim_end_matches('/'))
        })
}

/// The items of an array, or the value itself: JSON-LD allows one value where many could be.
pub(crate) fn each(value: &Json) -> std::slice::Iter<'_, Json> {
    match value {
        Json::Array(items) => items.iter(),
        other => std::slice::from_ref(other).iter(),
    }
}

/// The `@id` of a `{"@id": …}` value (whatever other keys it has).
pub(crate) fn reference(value: &Json) -> Option<&str> {
    value.as_object()?.get("@id")?.as_str()
}

/// Whether an object is a plain reference (`{"@id": …}` and nothing else), i.e. flattened.
pub(crate) fn is_reference(map: &Object) -> bool {
    map.len() == 1 && map.contains_key("@id")
}

/// Whether an object is a JSON-LD value or container object rather than a node (never embedded).
pub(crate) fn is_literal(map: &Object) -> bool {
    map.contains_key("@value") || map.contains_key("@list") || map.contains_key("@set")
}

/// A string, or the string in a `{"@value": …}` literal.
pub(crate) fn text(value: &Json) -> Option<&str> {
    match value {
        Json::String(s) => Some(s),
        Json::Object(map) => map.get("@value")?.as_str(),
        _ => None,
    }
}

/// Whether a type as written is `wanted`, ignoring the schema.org prefixes JSON-LD allows.
pub(crate) fn type_is(written: &str, wanted: &str) -> bool {
    let local = ["http://schema.org/", "https://schema.org/", "schema:"]
        .iter()
        .find_map(|prefix| written.strip_prefix(prefix))
        .unwrap_or(written);
    local == wanted
}

/// No real entity has more than a handful of types. Capping them keeps every per-reference type
/// check constant-time, even when a hostile crate refers many times to an entity with many types.
const MAX_TYPES: usize = 32;

fn types_of(props: &Object) -> Vec<&str> {
    props
        .get("@type")
        .map(|t| each(t).filter_map(Json::as_str).take(MAX_TYPES).collect())
        .unwrap_or_default()
}

/// "a string", "an array", … for messages about a value of the wrong kind.
pub(crate) fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// `'A', 'B'` with each item clipped and at most a few items, for messages listing ids or types.
pub(crate) fn quoted_list(items: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut list = items
        .iter()
        .take(SHOWN)
        .map(|s| format!("'{}'", clip(s)))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        list = format!("{list} and {} more", items.len() - SHOWN);
    }
    list
}
