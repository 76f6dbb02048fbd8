//! The metadata descriptor and the `@context`: which RO-Crate version the crate follows, that
//! the descriptor is a `CreativeWork`, and that the context is one that exists and matches the
//! version.

use super::KNOWN_VERSIONS;
use crate::rocrate::context::Context;
use crate::rocrate::graph::{
    DRAFT_DESCRIPTOR_ID, Entity, RO_CRATE_IRI, quoted_list, ro_crate_versions,
};
use crate::rocrate::report::{Collector, Diagnostic, clip};

pub(super) fn check(descriptor: &Entity<'_>, context: &Context<'_>, out: &mut Collector) {
    conformance(descriptor, context, out);
    // An entity with no @type at all is already reported once, by the rule for every entity.
    if !descriptor.types.is_empty() && !descriptor.has_type("CreativeWork") {
        out.push(
            Diagnostic::warning(format!(
                "the metadata descriptor is typed {}, but RO-Crate requires it to be a \
                 CreativeWork; set \"@type\": \"CreativeWork\"",
                quoted_list(&descriptor.types)
            ))
            .on(descriptor.id)
            .at("@type"),
        );
    }
    if descriptor.id == DRAFT_DESCRIPTOR_ID {
        out.push(
            Diagnostic::warning(
                "the metadata descriptor is named 'ro-crate-metadata.jsonld', the RO-Crate \
                 0.2-DRAFT name; since RO-Crate 1.0 the file and its descriptor are \
                 'ro-crate-metadata.json': rename the file and set this @id to match",
            )
            .on(descriptor.id)
            .at("@id"),
        );
    }
    for iri in context.unpublished() {
        out.push(
            Diagnostic::warning(format!(
                "the @context names '{}', which is not a published RO-Crate or RO-Terms context \
                 (so JSON-LD tools cannot load it); check its spelling, e.g. \
                 \"{RO_CRATE_IRI}1.1/context\"",
                clip(iri)
            ))
            .at("@context"),
        );
    }
}

fn conformance(descriptor: &Entity<'_>, context: &Context<'_>, out: &mut Collector) {
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
    for version in versions.iter().filter(|v| !KNOWN_VERSIONS.contains(v)) {
        out.push(warn(format!(
            "`conformsTo` names RO-Crate version '{}', which this loader does not know (it \
             knows {}); check the IRI, e.g. {fix}",
            clip(version),
            KNOWN_VERSIONS.join(", ")
        )));
    }
    // A crate declaring 1.2 with only the 1.1 context loses the terms 1.2 added: say which to
    // use. A newer context than the version is harmless (each context keeps the older terms).
    let declared: Vec<&str> = context.versions().collect();
    if let Some(version) = versions.iter().find(|v| KNOWN_VERSIONS.contains(v))
        && !declared.is_empty()
        && declared.iter().all(|d| d < version)
    {
        out.push(
            Diagnostic::warning(format!(
                "the descriptor conformsTo RO-Crate {version} but the @context is the RO-Crate {} \
                 context; use \"@context\": \"{RO_CRATE_IRI}{version}/context\" (or conform to \
                 the version of the context)",
                declared.join(" and ")
            ))
            .at("@context"),
        );
    }
}
