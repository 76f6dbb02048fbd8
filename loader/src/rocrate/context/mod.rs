//! What a crate's `@context` defines: which JSON keys are terms, so a key the context does not
//! define (`namex`) or one written as a full IRI (`https://schema.org/name`) can be named.
//!
//! A JSON-LD processor silently drops a key its context does not define, so `namex` is not a
//! typo the crate's readers see: it is a property that is not there. The loader cannot fetch
//! contexts (no network beyond the repository, and validation is pure), so the RO-Crate contexts
//! 1.0–1.3 are built in ([`terms`]) together with the extension contexts real crates combine
//! with them. A context it does not know could define any key, so with one present only keys
//! that are near misses of RO-Crate terms are named.
//!
//! `terms.rs` is generated: for each version, the keys of the `@context` object served at
//! `https://w3id.org/ro/crate/<version>/context` (keywords and `null` mappings left out), one
//! row per key with a bit per version, sorted by bytes.

mod terms;

use super::json::Json;

/// RO-Crate drafts before 1.0 whose contexts exist but are not built in.
const DRAFTS: [&str; 3] = ["0.1", "0.2", "0.3"];

/// The RO-Crate versions whose contexts are built in, with their bit in [`terms::TERMS`].
const VERSION_BITS: [(&str, u8); 4] = [("1.0", 1), ("1.1", 2), ("1.2", 4), ("1.3", 8)];

/// Terms of the Workflow Run RO-Crate context (`https://w3id.org/ro/terms/workflow-run`, the
/// `wfrun:` vocabulary 0.6.0), which the Workflow Run, Process Run and Provenance Run profiles
/// add to the RO-Crate one.
const WORKFLOW_RUN_TERMS: [&str; 16] = [
    "ContainerImage",
    "DockerImage",
    "ParameterConnection",
    "SIFImage",
    "connection",
    "containerImage",
    "environment",
    "md5",
    "registry",
    "resourceUsage",
    "sha1",
    "sha256",
    "sha512",
    "sourceParameter",
    "tag",
    "targetParameter",
];

/// Terms of the Workflow Testing RO-Crate context (`https://w3id.org/ro/terms/test`).
const TEST_TERMS: [&str; 13] = [
    "GithubService",
    "JenkinsService",
    "PlanemoEngine",
    "TestDefinition",
    "TestInstance",
    "TestService",
    "TestSuite",
    "TravisService",
    "definition",
    "engineVersion",
    "instance",
    "resource",
    "runsOn",
];

/// Extension contexts whose terms are known, by the IRIs crates write for them (w3id serves the
/// context both with and without `/context`).
const EXTENSIONS: [(&str, &[&str]); 5] = [
    ("https://w3id.org/ro/terms/test", &TEST_TERMS),
    ("https://w3id.org/ro/terms/test/context", &TEST_TERMS),
    (
        "https://w3id.org/ro/terms/workflow-run",
        &WORKFLOW_RUN_TERMS,
    ),
    (
        "https://w3id.org/ro/terms/workflow-run/context",
        &WORKFLOW_RUN_TERMS,
    ),
    (
        "https://www.researchobject.org/ro-terms/workflow-run/context.json",
        &WORKFLOW_RUN_TERMS,
    ),
];

/// The vocabularies published under `https://w3id.org/ro/terms/` (ResearchObject/ro-terms): a
/// context there with another name is a misspelling, not a vocabulary the loader lacks.
const RO_TERMS_VOCABULARIES: [&str; 17] = [
    "arc",
    "cca",
    "compss",
    "copo",
    "criminalcharacters",
    "earth-science",
    "example",
    "gpg",
    "ods",
    "openpgp",
    "sample",
    "sapporo",
    "test",
    "text-commons",
    "treecript-metrics",
    "wfexs",
    "workflow-run",
];

/// The terms in force for a crate, from its `@context`.
#[derive(Debug, Default)]
pub(crate) struct Context<'a> {
    /// Bits of the RO-Crate contexts referenced.
    versions: u8,
    /// Terms defined in place (`{"myTerm": "https://…"}`) or by a known extension context.
    local: Vec<&'a str>,
    /// Remote contexts whose terms the loader does not know.
    unknown: Vec<&'a str>,
    /// `@vocab` is set: every key expands, so none is undefined.
    vocab: bool,
}

/// How a JSON key fares against the context.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Key {
    /// A keyword, a term or a compact IRI with a defined prefix.
    Defined,
    /// A full IRI used as a key (not compacted); `term` is the term that stands for it, when the
    /// context has one with the same local name.
    FullIri { term: Option<&'static str> },
    /// A key the context does not define; `like` is a term it is probably a misspelling of.
    Undefined { like: Option<&'static str> },
    /// Not defined by any context the loader knows, but a context it does not know may define it.
    Unknown,
}

impl<'a> Context<'a> {
    /// The context a document declares (its top-level `@context`).
    pub(crate) fn of(declared: Option<&'a Json>) -> Self {
        let mut context = Context::default();
        if let Some(declared) = declared {
            context.add(declared, 0);
        }
        context.local.sort_unstable();
        context.local.dedup();
        context
    }

    fn add(&mut self, value: &'a Json, depth: usize) {
        match value {
            Json::String(iri) => {
                if let Some(bit) = ro_crate_version(iri).and_then(version_bit) {
                    self.versions |= bit;
                } else if let Some((_, terms)) =
                    EXTENSIONS.iter().find(|(known, _)| *known == &**iri)
                {
                    self.local.extend(terms.iter().copied());
                } else {
                    self.unknown.push(iri);
                }
            }
            // Arrays of contexts nest at most one level in practice; deeper is not JSON-LD.
            Json::Array(items) if depth == 0 => {
                for item in items {
                    self.add(item, depth + 1);
                }
            }
            Json::Object(map) => {
                for (term, definition) in map.iter() {
                    match term {
                        "@vocab" => self.vocab = !matches!(definition, Json::Null),
                        _ if term.starts_with('@') => {}
                        // `"term": null` (or an `@id` of null) un-defines a term.
                        _ if matches!(definition, Json::Null)
                            || definition
                                .as_object()
                                .and_then(|d| d.get("@id"))
                                .is_some_and(|id| matches!(id, Json::Null)) => {}
                        _ => self.local.push(term),
                    }
                }
            }
            _ => {}
        }
    }

    /// The RO-Crate versions whose context the document references (`"1.1"`, …).
    pub(crate) fn versions(&self) -> impl Iterator<Item = &'static str> + '_ {
        VERSION_BITS
            .iter()
            .filter(|(_, bit)| self.versions & bit != 0)
            .map(|(version, _)| *version)
    }

    /// Whether the document uses a context at all that the loader can judge keys by.
    pub(crate) fn is_known(&self) -> bool {
        self.versions != 0 || !self.local.is_empty()
    }

    fn defines(&self, term: &str) -> bool {
        self.local.binary_search(&term).is_ok()
            || lookup(term).is_some_and(|(_, bits)| bits & self.active() != 0)
    }

    /// The versions keys are judged by: those referenced, or all when none is (an unknown
    /// context may well be a copy of one of them).
    fn active(&self) -> u8 {
        if self.versions == 0 {
            0b1111
        } else {
            self.versions
        }
    }

    /// How `key` fares; `suggest` looks for the term it misspells (a scan of the term table).
    pub(crate) fn judge(&self, key: &str, suggest: bool) -> Key {
        if key.starts_with('@') || self.defines(key) {
            return Key::Defined;
        }
        if let Some((scheme, rest)) = key.split_once(':') {
            if rest.starts_with("//") {
                let local = rest.rsplit(['/', '#']).next().unwrap_or(rest);
                return Key::FullIri {
                    term: lookup(local)
                        .filter(|(_, bits)| bits & self.active() != 0)
                        .map(|(term, _)| term),
                };
            }
            // A compact IRI (`schema:name`) expands when its prefix is a term.
            if scheme != "_" && self.defines(scheme) {
                return Key::Defined;
            }
        }
        if self.vocab || !self.is_known() {
            return Key::Unknown;
        }
        let like = if suggest { self.near_miss(key) } else { None };
        if self.unknown.is_empty() || like.is_some() {
            Key::Undefined { like }
        } else {
            Key::Unknown
        }
    }

    /// A term `key` is one edit (or only letter case) away from, if there is one.
    fn near_miss(&self, key: &str) -> Option<&'static str> {
        let active = self.active();
        let candidates = || {
            terms::TERMS
                .iter()
                .filter(move |(_, bits)| bits & active != 0)
                .map(|(term, _)| *term)
        };
        candidates()
            .find(|term| term.eq_ignore_ascii_case(key))
            .or_else(|| candidates().find(|term| one_edit_apart(term, key)))
    }

    /// Remote contexts that cannot exist: an RO-Crate version or an RO-Terms vocabulary that was
    /// never published (most likely misspelt).
    pub(crate) fn unpublished(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.unknown.iter().copied().filter(|iri| {
            if let Some(version) = ro_crate_version(iri) {
                // The 0.x drafts were published too, though their terms are not built in.
                return version_bit(version).is_none() && !DRAFTS.contains(&version);
            }
            let Some(rest) = iri
                .strip_prefix("https://w3id.org/ro/terms/")
                .or_else(|| iri.strip_prefix("http://w3id.org/ro/terms/"))
            else {
                return false;
            };
            let vocabulary = rest.split('/').next().unwrap_or(rest);
            !RO_TERMS_VOCABULARIES.contains(&vocabulary)
        })
    }
}

/// The version in an RO-Crate context IRI (`https://w3id.org/ro/crate/1.1/context` → `1.1`);
/// drafts count as their release.
pub(crate) fn ro_crate_version(iri: &str) -> Option<&str> {
    let rest = iri
        .strip_prefix("https://w3id.org/ro/crate/")
        .or_else(|| iri.strip_prefix("http://w3id.org/ro/crate/"))?;
    let version = rest
        .strip_suffix("/context")
        .or_else(|| rest.strip_suffix("/context/"))?;
    Some(version.strip_suffix("-DRAFT").unwrap_or(version))
}

fn version_bit(version: &str) -> Option<u8> {
    VERSION_BITS
        .iter()
        .find(|(known, _)| *known == version)
        .map(|(_, bit)| *bit)
}

fn lookup(term: &str) -> Option<(&'static str, u8)> {
    terms::TERMS
        .binary_search_by(|(t, _)| (*t).cmp(term))
        .ok()
        .map(|i| terms::TERMS[i])
}

/// Whether two strings differ by one inserted, deleted or replaced character.
fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 || a == b {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        short[prefix + 1..] == long[prefix + 1..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(json: &str) -> Json {
        serde_json::from_str(json).expect("test JSON parses")
    }

    #[test]
    fn the_term_table_is_sorted_so_lookups_can_bisect() {
        assert!(terms::TERMS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn terms_of_the_referenced_ro_crate_context_are_defined() {
        let json = context(r#""https://w3id.org/ro/crate/1.1/context""#);
        let context = Context::of(Some(&json));
        for key in ["name", "hasPart", "@id", "schema:name", "conformsTo"] {
            assert_eq!(context.judge(key, true), Key::Defined, "{key}");
        }
        assert_eq!(context.versions().collect::<Vec<_>>(), ["1.1"]);
    }

    #[test]
    fn misspelt_keys_are_undefined_with_the_term_they_resemble() {
        let json = context(r#""https://w3id.org/ro/crate/1.1/context""#);
        let context = Context::of(Some(&json));
        assert_eq!(
            context.judge("namex", true),
            Key::Undefined { like: Some("name") }
        );
        assert_eq!(
            context.judge("hasPartx", true),
            Key::Undefined {
                like: Some("hasPart")
            }
        );
        assert_eq!(
            context.judge("should_be_the_id", true),
            Key::Undefined { like: None }
        );
    }

    #[test]
    fn full_iri_keys_name_the_term_to_write_instead() {
        let json = context(r#""https://w3id.org/ro/crate/1.2/context""#);
        let context = Context::of(Some(&json));
        assert_eq!(
            context.judge("https://schema.org/name", true),
            Key::FullIri { term: Some("name") }
        );
        assert_eq!(
            context.judge("http://example.org/custom", true),
            Key::FullIri { term: None }
        );
    }

    #[test]
    fn terms_defined_in_place_or_by_a_known_extension_are_defined() {
        let json = context(
            r#"["https://w3id.org/ro/crate/1.1/context",
                "https://w3id.org/ro/terms/workflow-run/context",
                {"myCustomTerm": "https://example.org#myCustomTerm", "gone": null}]"#,
        );
        let context = Context::of(Some(&json));
        assert_eq!(context.judge("myCustomTerm", true), Key::Defined);
        assert_eq!(context.judge("sha256", true), Key::Defined);
        assert!(matches!(context.judge("gone", true), Key::Undefined { .. }));
    }

    #[test]
    fn with_an_unknown_context_only_near_misses_are_named() {
        let json =
            context(r#"["https://w3id.org/ro/crate/1.1/context", "https://example.org/context"]"#);
        let context = Context::of(Some(&json));
        assert_eq!(context.judge("myTerm", true), Key::Unknown);
        assert_eq!(
            context.judge("namex", true),
            Key::Undefined { like: Some("name") }
        );
        assert_eq!(context.unpublished().count(), 0);
    }

    #[test]
    fn ro_crate_1_3_and_drafts_are_known_versions() {
        let json = context(
            r#"["https://w3id.org/ro/crate/1.3/context", "https://w3id.org/ro/crate/1.2-DRAFT/context"]"#,
        );
        let context = Context::of(Some(&json));
        assert_eq!(context.versions().collect::<Vec<_>>(), ["1.2", "1.3"]);
        assert!(context.unknown.is_empty());
    }

    #[test]
    fn misspelt_ro_crate_and_ro_terms_contexts_are_unpublished() {
        let json = context(
            r#"["https://w3id.org/ro/crate/1.9/context", "https://w3id.org/ro/terms/invalid/context",
                "https://w3id.org/ro/terms/test/context"]"#,
        );
        let context = Context::of(Some(&json));
        assert_eq!(
            context.unpublished().collect::<Vec<_>>(),
            [
                "https://w3id.org/ro/crate/1.9/context",
                "https://w3id.org/ro/terms/invalid/context"
            ]
        );
    }

    #[test]
    fn one_edit_apart_means_one_insertion_deletion_or_replacement() {
        assert!(one_edit_apart("name", "namex"));
        assert!(one_edit_apart("name", "nme"));
        assert!(one_edit_apart("name", "nbme"));
        assert!(!one_edit_apart("name", "name"));
        assert!(!one_edit_apart("name", "nmae"));
        assert!(!one_edit_apart("name", "named1"));
    }
}
