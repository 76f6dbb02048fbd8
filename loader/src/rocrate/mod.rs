//! RO-Crate metadata: parse the JSON-LD, validate it and map it to an
//! `AnalyticsDataSourceSpec`. Pure: no I/O, no git, no Kubernetes.
//!
//! Flow, one module per step:
//! 1. [`parse`](self::parse): bytes → JSON, inside [`Limits`] (size, UTF-8, nesting);
//! 2. [`graph`](self::graph): JSON → indexed entities, metadata descriptor and root found
//!    (structural errors);
//! 3. [`validate`](self::validate): the soft rules (warnings), payload presence included;
//! 4. [`map`](self::map): graph → spec, only when there is no error.
//!
//! Every step reports into one [`Report`]; `html` (markup → text), `iri` (id checks),
//! `iso8601` (dates), `context` (the terms a `@context` defines) and `payload` (which data
//! entity paths to look for, and the [`Payload`] seam the callers answer) are helpers. Errors block publication; warnings travel with the result.

mod context;
mod graph;
mod html;
mod iri;
mod iso8601;
mod json;
mod map;
mod parse;
mod payload;
mod report;
mod validate;

#[cfg(test)]
mod tests;

use crate_operator_api::AnalyticsDataSourceSpec;

pub use payload::{Missing, Payload, paths as payload_paths};
pub use report::{Diagnostic, Report, Severity};

/// Bounds on untrusted input, checked before any real parsing work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest metadata file accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest JSON nesting accepted (`{}` is depth 1). `serde_json` refuses anything beyond 128
    /// levels whatever this says.
    pub max_depth: usize,
}

impl Default for Limits {
    /// 4 MiB and 64 levels: real crates are tens of KiB and about 5 levels deep.
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Values from the `AnalyticsCrate` spec, used where the crate itself says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fallback {
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// A crate that can be published: the datasource spec and the warnings that come with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub spec: AnalyticsDataSourceSpec,
    /// Warnings only: a crate with errors is never loaded.
    pub report: Report,
}

/// Parse, validate and map a crate's `ro-crate-metadata.json`. `payload` says which of the
/// crate's files exist (`None`: presence is not checked).
///
/// `Err` carries the full report (every error and every warning found) when there is any error.
pub fn load(
    bytes: &[u8],
    limits: &Limits,
    fallback: &Fallback,
    payload: Option<&dyn Payload>,
) -> Result<Loaded, Report> {
    let mut out = report::Collector::default();
    let Some(document) = parse::parse(bytes, limits, &mut out) else {
        return Err(out.finish());
    };
    let Some(graph) = graph::build(&document, &mut out) else {
        return Err(out.finish());
    };
    validate::check(&graph, payload, &mut out);
    if out.has_errors() {
        return Err(out.finish());
    }
    let spec = map::map(&graph, fallback);
    Ok(Loaded {
        spec,
        report: out.finish(),
    })
}

/// Validate only (the `validate` subcommand): every error and warning, nothing mapped.
pub fn validate(bytes: &[u8], limits: &Limits, payload: Option<&dyn Payload>) -> Report {
    let mut out = report::Collector::default();
    if let Some(document) = parse::parse(bytes, limits, &mut out)
        && let Some(graph) = graph::build(&document, &mut out)
    {
        validate::check(&graph, payload, &mut out);
    }
    out.finish()
}
