//! Identifier checks used by validation (and by the mapping's "is this id a URL" question).
//!
//! RO-Crate `@id`s are IRIs resolved against the crate: absolute IRIs (`https://…`, `urn:…`),
//! `#fragment`s, `_:blank` nodes or relative paths (`./`, `data/file.csv`). What real crates get
//! wrong is text that is none of these: HTML links, names with spaces, Windows paths.

use url::Url;

use super::html;

/// Why an `@id` is not a usable identifier.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdProblem {
    Empty,
    /// HTML markup such as `<a href="…">…</a>`; carries the link target when there is one.
    Markup(Option<String>),
    Whitespace,
    /// A character IRIs do not allow (`<`, `"`, `\`, …).
    Forbidden(char),
    /// A `%` not followed by two hexadecimal digits.
    BadPercent,
    /// Looks absolute (has a scheme) but does not parse.
    BadAbsolute(String),
    /// `_:` with nothing after it.
    EmptyBlank,
}

pub(crate) fn check(id: &str) -> Result<(), IdProblem> {
    if id.is_empty() {
        return Err(IdProblem::Empty);
    }
    if html::has_markup(id) {
        return Err(IdProblem::Markup(link_target(id)));
    }
    if id.chars().any(char::is_whitespace) {
        return Err(IdProblem::Whitespace);
    }
    if let Some(c) = id
        .chars()
        .find(|&c| c.is_control() || "<>\"{}|\\^`".contains(c))
    {
        return Err(IdProblem::Forbidden(c));
    }
    if !percent_escapes_are_valid(id) {
        return Err(IdProblem::BadPercent);
    }
    if let Some(label) = id.strip_prefix("_:") {
        return if label.is_empty() {
            Err(IdProblem::EmptyBlank)
        } else {
            Ok(())
        };
    }
    if has_scheme(id) {
        return Url::parse(id)
            .map(drop)
            .map_err(|e| IdProblem::BadAbsolute(e.to_string()));
    }
    // What is left is a fragment or a relative reference, both fine once the characters are.
    Ok(())
}

/// Whether `id` is a web URL, which the mapping shows next to a name ("MIT (https://…)").
pub(crate) fn is_web_url(id: &str) -> bool {
    Url::parse(id).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// A scheme per RFC 3986: a letter, then letters, digits, `+`, `-` or `.`, then `:`, before any
/// `/`, `?` or `#`.
pub(crate) fn has_scheme(id: &str) -> bool {
    let Some(colon) = id.find(':') else {
        return false;
    };
    let scheme = &id[..colon];
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn percent_escapes_are_valid(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'%')
        .all(|(i, _)| {
            bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
}

/// The URL inside the first link of a markup id, for the "use this as @id instead" hint.
fn link_target(id: &str) -> Option<String> {
    let reduced = html::reduce(id);
    let start = reduced.rfind(" (")? + 2;
    let target = reduced[start..].strip_suffix(')')?;
    is_web_url(target).then(|| target.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_iris_fragments_blank_nodes_and_relative_paths_are_valid() {
        for id in [
            "./",
            "ro-crate-metadata.json",
            "data/admissions_2024.csv",
            "../shared/codes.csv",
            "test_project",
            "https://ror.org/02wnqcb97",
            "https://orcid.org/0000-0002-1825-0097",
            "mailto:sde-support@example.nhs.uk",
            "urn:uuid:3f2b3c3e-1d2a-4c8e-9f00-5b0f0c1c1a10",
            "#contact-data-office",
            "_:b0",
            "data/file%20name.csv",
            "données/fichier.csv",
        ] {
            assert_eq!(check(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn markup_spaces_and_forbidden_characters_are_problems() {
        assert_eq!(
            check(r#"<a href="https://github.com/lsc-sde-crates">LSC SDE</a>"#),
            Err(IdProblem::Markup(Some(
                "https://github.com/lsc-sde-crates".to_owned()
            )))
        );
        assert_eq!(check("<b>x</b>"), Err(IdProblem::Markup(None)));
        assert_eq!(
            check("Lancashire Teaching Hospitals"),
            Err(IdProblem::Whitespace)
        );
        assert_eq!(check(r"C:\data\x.csv"), Err(IdProblem::Forbidden('\\')));
        assert_eq!(check("a{b}"), Err(IdProblem::Forbidden('{')));
        assert_eq!(check("100%"), Err(IdProblem::BadPercent));
        assert_eq!(check(""), Err(IdProblem::Empty));
        assert_eq!(check("_:"), Err(IdProblem::EmptyBlank));
        assert!(matches!(check("https://"), Err(IdProblem::BadAbsolute(_))));
    }

    #[test]
    fn only_http_and_https_ids_count_as_web_urls() {
        assert!(is_web_url("https://spdx.org/licenses/MIT"));
        assert!(!is_web_url("urn:x:y"));
        assert!(!is_web_url("#licence"));
        assert!(!is_web_url("MIT"));
    }
}
