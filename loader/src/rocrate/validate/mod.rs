//! Step 3 of the flow: the soft rules (README, "Validation and mapping"), run over the graph
//! `graph::build` produced.
//!
//! Everything here is a warning: real crates are messy, and a crate with warnings is still
//! published, with the warnings listed next to it. Checks that need the root run only when the
//! root was found; the rest run regardless, so a failing crate's report is complete.
//!
//! One module per concept: [`descriptor`] (the metadata descriptor and the `@context`),
//! [`root`] (the root data entity), [`entities`] (every entity's id, type, references and
//! agents; duplicates; `hasPart` reachability), [`values`] (JSON-LD keys and value objects) and
//! [`payload`] (data entities present in the crate).

mod descriptor;
mod entities;
mod payload;
mod root;
mod values;

use super::context::Context;
use super::graph::{Graph, ro_crate_versions};
use super::payload::Payload;
use super::report::Collector;

/// RO-Crate versions this loader understands.
const KNOWN_VERSIONS: [&str; 4] = ["1.0", "1.1", "1.2", "1.3"];

/// Runs every soft rule. `payload` answers whether a data entity's path is in the crate; `None`
/// when the caller cannot tell (then presence is not checked).
pub(crate) fn check(graph: &Graph<'_>, payload: Option<&dyn Payload>, out: &mut Collector) {
    let context = Context::of(graph.context);
    if let Some(descriptor) = graph.descriptor() {
        descriptor::check(descriptor, &context, out);
    }
    if let Some(root) = graph.root() {
        root::check(graph, root, version(graph, &context), out);
    }
    for entity in &graph.entities {
        entities::check(graph, entity, out);
    }
    values::keys(graph, &context, out);
    entities::duplicates(graph, out);
    if let Some(root) = graph.root {
        entities::reachability(graph, root, out);
    }
    if let Some(payload) = payload {
        payload::check(graph, payload, out);
    }
}

/// The RO-Crate version the crate follows: the one its descriptor `conformsTo`, else the one
/// its `@context` names. `None` when neither names a version this loader knows.
fn version(graph: &Graph<'_>, context: &Context<'_>) -> Option<&'static str> {
    graph
        .descriptor()
        .and_then(|d| {
            ro_crate_versions(d).find_map(|v| KNOWN_VERSIONS.iter().find(|k| **k == v).copied())
        })
        .or_else(|| context.versions().last())
}
