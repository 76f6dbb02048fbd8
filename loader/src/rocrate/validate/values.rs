//! JSON-LD form: keys the `@context` does not define (a JSON-LD processor drops them, so the
//! property is silently not there) or that are full IRIs instead of terms, and value objects
//! (`{"@value": …}`) JSON-LD does not allow.

use std::collections::HashMap;

use crate::rocrate::context::{Context, Key};
use crate::rocrate::graph::Graph;
use crate::rocrate::json::{Json, Object};
use crate::rocrate::report::{Collector, Diagnostic, clip};

/// How many distinct undefined keys get a "did you mean" search (each scans the term table).
const MAX_SUGGESTED: usize = 50;

/// Why a value object is not one JSON-LD allows, phrased to follow "a value object …".
pub(super) fn malformed(map: &Object) -> Option<String> {
    let value = map.get("@value")?;
    if map.contains_key("@id") {
        return Some(
            "a value object (an object with @value) also has an @id: it is either a literal or \
             a reference to an entity, not both; keep {\"@value\": …} for text or \
             {\"@id\": …} for a reference"
                .to_owned(),
        );
    }
    let language = map.contains_key("@language");
    if language && map.contains_key("@type") {
        return Some(
            "a value object has both @language and @type, which JSON-LD does not allow; keep \
             @language for text in a language, or @type for a typed literal such as a date"
                .to_owned(),
        );
    }
    if language && !value.is_string() {
        return Some(
            "a value object has @language but its @value is not a string; a language applies \
             only to text, so drop @language or write the value as a string"
                .to_owned(),
        );
    }
    None
}

/// Every key of every entity (and of objects inside them) that the context does not define,
/// reported once per key with where it first appears and how often.
pub(super) fn keys(graph: &Graph<'_>, context: &Context<'_>, out: &mut Collector) {
    // key → its row in `report`: (key, first entity, occurrences, verdict), in order of first
    // appearance.
    let mut found: HashMap<&str, usize> = HashMap::new();
    let mut report: Vec<(&str, &str, usize, Key)> = Vec::new();
    let mut stack: Vec<&Object> = Vec::new();
    for entity in &graph.entities {
        stack.push(entity.props);
        while let Some(object) = stack.pop() {
            for (key, value) in object.iter() {
                if let Some(&i) = found.get(key) {
                    report[i].2 += 1;
                } else {
                    // Past the budget, keys are still named, without a suggestion.
                    let verdict = context.judge(key, report.len() < MAX_SUGGESTED);
                    found.insert(key, report.len());
                    report.push((key, entity.id, 1, verdict));
                }
                // A literal's content and an in-place context are not node properties.
                if key != "@value" && key != "@context" {
                    push_objects(value, &mut stack);
                }
            }
        }
    }
    for (key, entity, count, verdict) in report {
        let times = if count == 1 {
            String::new()
        } else {
            format!(" (and {} more times)", count - 1)
        };
        let message = match verdict {
            Key::Defined | Key::Unknown => continue,
            Key::FullIri { term: Some(term) } => format!(
                "the key '{}'{times} is a full IRI, not a term of the @context, so the crate is \
                 not in compacted JSON-LD; write \"{term}\" instead",
                clip(key)
            ),
            Key::FullIri { term: None } => format!(
                "the key '{}'{times} is a full IRI, not a term of the @context, so the crate is \
                 not in compacted JSON-LD; define a term for it in the @context (e.g. \
                 {{\"myTerm\": \"{}\"}}) and use that",
                clip(key),
                clip(key)
            ),
            Key::Undefined { like: Some(term) } => format!(
                "the key '{}'{times} is not defined by the @context, so JSON-LD tools drop it; \
                 did you mean \"{term}\"?",
                clip(key)
            ),
            Key::Undefined { like: None } => format!(
                "the key '{}'{times} is not defined by the @context, so JSON-LD tools drop it; \
                 use a term of the RO-Crate context, or define it in the @context (e.g. \
                 {{\"{}\": \"https://example.org/terms#{}\"}})",
                clip(key),
                clip(key),
                clip(key)
            ),
        };
        out.push(Diagnostic::warning(message).on(entity).at(key));
    }
}

fn push_objects<'a>(value: &'a Json, stack: &mut Vec<&'a Object>) {
    match value {
        Json::Object(object) => stack.push(object),
        Json::Array(items) => {
            for item in items {
                match item {
                    Json::Object(object) => stack.push(object),
                    // Arrays in arrays are not JSON-LD; their objects are still looked at.
                    Json::Array(_) => push_objects(item, stack),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}
