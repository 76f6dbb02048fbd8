//! Payload presence: a File or Dataset whose `@id` is a path in the crate must be there. The
//! caller says what is there ([`Payload`]); this module only asks.

use crate::rocrate::graph::Graph;
use crate::rocrate::payload::{Outside, Payload, data_entities};
use crate::rocrate::report::{Collector, Diagnostic, clip};

pub(super) fn check(graph: &Graph<'_>, payload: &dyn Payload, out: &mut Collector) {
    for (entity, path) in data_entities(graph) {
        let (kind, noun) = if entity.has_type("Dataset") {
            ("Dataset", "directory")
        } else {
            ("File", "file")
        };
        let message = match path {
            Ok(path) if payload.contains(&path) => continue,
            Ok(path) => format!(
                "{kind} '{}' is described but not in the crate: there is no {noun} '{}' beside \
                 the metadata file; add it to the crate, or, if the data lives elsewhere, use its \
                 URL as the @id",
                clip(entity.id),
                clip(&path)
            ),
            Err(Outside::AboveRoot) => format!(
                "{kind} '{}' is outside the crate (its path climbs above the directory of the \
                 metadata file); move it into the crate and give its path from there, or use its \
                 URL as the @id",
                clip(entity.id)
            ),
        };
        out.push(Diagnostic::warning(message).on(entity.id).at("@id"));
    }
}
