//! Payload presence (the reference validator's check 12.1): every File or Dataset data entity
//! with a relative `@id` must exist in the crate.
//!
//! Validation stays pure: what exists is asked through [`Payload`], which the callers answer
//! from what they have. `validate DIR` looks in the directory; a load asks the fetched commit's
//! trees (no blob is read), inside the fetch worker, which sends back the paths it did not find
//! ([`Missing`]). Both get the paths to look for from [`paths`], so they agree on what a data
//! entity is and where it lives.

use std::collections::HashSet;

use percent_encoding::percent_decode_str;

use super::Limits;
use super::graph::{self, Entity, Graph};
use super::report::Collector;

/// What the crate holds besides its metadata file.
pub trait Payload {
    /// Whether `path` (relative to the directory of the metadata file, `/`-separated, no `.` or
    /// `..` segments, no trailing `/`) is a file or directory of the crate.
    fn contains(&self, path: &str) -> bool;
}

/// A payload known by the paths that were looked for and not found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing(pub HashSet<String>);

impl Payload for Missing {
    fn contains(&self, path: &str) -> bool {
        !self.0.contains(path)
    }
}

/// A payload answered by a function of the path (`validate DIR` looks in the directory).
impl<F: Fn(&str) -> bool> Payload for F {
    fn contains(&self, path: &str) -> bool {
        self(path)
    }
}

/// The paths in the crate that its data entities name, for a caller that looks them up before
/// validating (the fetch worker). Empty when the metadata does not parse: validation then
/// reports that, and there is nothing to look for.
pub fn paths(bytes: &[u8], limits: &Limits) -> Vec<String> {
    let mut ignored = Collector::default();
    let Some(document) = super::parse::parse(bytes, limits, &mut ignored) else {
        return Vec::new();
    };
    let Some(graph) = graph::build(&document, &mut ignored) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    data_entities(&graph)
        .filter_map(|(_, path)| path.ok())
        .filter(|path| seen.insert(path.clone()))
        .collect()
}

/// Why a data entity's `@id` has no path in the crate to look for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outside {
    /// `..` climbs above the directory of the metadata file.
    AboveRoot,
}

/// The data entities whose `@id` is a path in the crate, with that path.
pub(crate) fn data_entities<'g, 'a>(
    graph: &'g Graph<'a>,
) -> impl Iterator<Item = (&'g Entity<'a>, Result<String, Outside>)> + 'g {
    graph
        .entities
        .iter()
        .enumerate()
        // The first of duplicates is the entity; later copies say nothing new about the path.
        // The root is included: a root `./data/` names a directory that must be there too.
        .filter(move |&(index, entity)| graph.index_of(entity.id) == Some(index))
        .map(|(_, entity)| entity)
        .filter(|entity| is_data_entity(entity))
        .filter_map(|entity| local_path(entity.id).map(|path| (entity, path)))
}

/// Files and directories: `File` (RO-Crate's name for `MediaObject`) and `Dataset`. A `#name`
/// is a local identifier, not a path, so an entity with one is contextual whatever its type.
pub(crate) fn is_data_entity(entity: &Entity<'_>) -> bool {
    !entity.id.starts_with('#')
        && ["File", "MediaObject", "Dataset"]
            .iter()
            .any(|t| entity.has_type(t))
}

/// The crate path a relative `@id` names: percent-decoded, `./` and `.` segments dropped, `..`
/// resolved, trailing `/` removed. `None` for ids that are not relative paths (absolute IRIs,
/// `#fragments`, blank nodes, absolute paths) and for the crate root itself.
pub(crate) fn local_path(id: &str) -> Option<Result<String, Outside>> {
    if id.starts_with(['#', '/', '?']) || id.starts_with("_:") || super::iri::has_scheme(id) {
        return None;
    }
    let id = id.split(['#', '?']).next().unwrap_or(id);
    let decoded = percent_decode_str(id).decode_utf8_lossy();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Some(Err(Outside::AboveRoot));
                }
            }
            _ => segments.push(segment),
        }
    }
    (!segments.is_empty()).then(|| Ok(segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_ids_become_crate_paths() {
        for (id, path) in [
            ("data/a.csv", "data/a.csv"),
            ("./data/a.csv", "data/a.csv"),
            ("data/", "data"),
            ("data%20set/", "data set"),
            ("data set/", "data set"),
            ("a/../b.csv", "b.csv"),
            (
                "pics/2017-06-11%2012.56.14.jpg",
                "pics/2017-06-11 12.56.14.jpg",
            ),
            ("report.pdf#page=2", "report.pdf"),
        ] {
            assert_eq!(local_path(id), Some(Ok(path.to_owned())), "{id}");
        }
    }

    #[test]
    fn ids_that_are_not_paths_in_the_crate_are_not_looked_for() {
        for id in [
            "./",
            ".",
            "https://example.org/a.csv",
            "file:///tmp/a.csv",
            "urn:uuid:1",
            "#local",
            "_:b0",
            "/tmp/a.csv",
        ] {
            assert_eq!(local_path(id), None, "{id}");
        }
        assert_eq!(local_path("../a.csv"), Some(Err(Outside::AboveRoot)));
    }

    #[test]
    fn paths_lists_each_data_entity_path_once() {
        let crate_ = br##"{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": [
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}},
            {"@id": "./", "@type": "Dataset"},
            {"@id": "a.csv", "@type": "File"},
            {"@id": "./a.csv", "@type": "File"},
            {"@id": "d%20x/", "@type": "Dataset"},
            {"@id": "#notes", "@type": "File"},
            {"@id": "https://example.org/b.csv", "@type": "File"},
            {"@id": "c.txt", "@type": "Person"}
        ]}"##;
        assert_eq!(paths(crate_, &Limits::default()), ["a.csv", "d x"]);
    }
}
