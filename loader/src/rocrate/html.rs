//! Markup reduction, used by the mapping (and by id warnings) wherever a crate puts HTML into a
//! name, a licence or an id we show. cr8tor writes `<a href="URL">MIT</a>`; the datasource field is
//! free text, so links become `MIT (URL)` and every other tag is dropped.
//!
//! This is not an HTML parser and does not need to be: the output is plain text that is never
//! rendered as markup, so the only goals are readable text, keeping the link targets, and work
//! linear in the input (a single forward pass; output at most twice the input).

/// Whether `s` contains something that looks like a tag (`<` followed by a letter, `/` or `!`).
pub(crate) fn has_markup(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

/// Plain text for `s`: tags removed, links kept as `text (href)`, entities decoded, whitespace
/// collapsed. Text without markup is returned trimmed but otherwise as written.
pub(crate) fn reduce(s: &str) -> String {
    if !has_markup(s) {
        return s.trim().to_owned();
    }
    let mut out = String::with_capacity(s.len());
    // The open link: its target and where its text starts in `out`.
    let mut link: Option<(String, usize)> = None;
    // Inside <script> or <style>, whose content is code, not text.
    let mut skipping: Option<String> = None;
    let mut rest = s;
    while let Some(lt) = rest.find('<') {
        let (text, tail) = rest.split_at(lt);
        if skipping.is_none() {
            push_decoded(&mut out, text);
        }
        if let Some(comment) = tail.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let starts_tag = tail[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!');
        if !starts_tag {
            // A lone '<' as in "a < b" is text.
            if skipping.is_none() {
                out.push('<');
            }
            rest = &tail[1..];
            continue;
        }
        let Some(end) = tag_end(tail) else {
            // A tag that never closes swallows the rest, as in a browser. Stopping here also
            // keeps the pass linear: rescanning from every later '<' would be quadratic.
            if skipping.is_none() {
                push_decoded(&mut out, tail);
            }
            rest = "";
            break;
        };
        let tag = Tag::parse(&tail[1..end]);
        rest = &tail[end + 1..];
        if let Some(name) = &skipping {
            if tag.closing && tag.name.eq_ignore_ascii_case(name) {
                skipping = None;
            }
            continue;
        }
        match tag.name.to_ascii_lowercase().as_str() {
            "a" if tag.closing => close_link(&mut out, link.take()),
            "a" => {
                close_link(&mut out, link.take());
                link = tag.href().map(|href| (href, out.len()));
            }
            "script" | "style" if !tag.closing => skipping = Some(tag.name.to_owned()),
            // Block-level and line-break tags separate words.
            "br" | "p" | "div" | "li" | "ul" | "ol" | "tr" | "td" | "th" | "h1" | "h2" | "h3"
            | "h4" | "h5" | "h6" | "hr" | "table" => out.push(' '),
            _ => {}
        }
    }
    if skipping.is_none() {
        push_decoded(&mut out, rest);
    }
    close_link(&mut out, link);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Finish a link: its text followed by the target, or just the target when the text is empty
/// or already is the target.
fn close_link(out: &mut String, link: Option<(String, usize)>) {
    let Some((href, start)) = link else { return };
    if href.is_empty() {
        return;
    }
    let text = out[start..].trim();
    if text.is_empty() {
        out.truncate(start);
        out.push(' ');
        out.push_str(&href);
    } else if text != href {
        out.push_str(" (");
        out.push_str(&href);
        out.push(')');
    }
}

/// Index of the `>` closing the tag that starts at `tail[0] == '<'`, skipping quoted values.
fn tag_end(tail: &str) -> Option<usize> {
    let mut quote = None;
    for (i, b) in tail.bytes().enumerate().skip(1) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

struct Tag<'a> {
    closing: bool,
    name: &'a str,
    attributes: &'a str,
}

impl<'a> Tag<'a> {
    /// `inner` is the text between `<` and `>`.
    fn parse(inner: &'a str) -> Self {
        let (closing, inner) = match inner.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, inner),
        };
        let name_end = inner
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(inner.len());
        Self {
            closing,
            name: &inner[..name_end],
            attributes: &inner[name_end..],
        }
    }

    /// The decoded `href` attribute, if there is one.
    fn href(&self) -> Option<String> {
        let mut rest = self.attributes;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if rest.is_empty() {
                return None;
            }
            let name_end = rest
                .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            rest = rest[name_end..].trim_start();
            let value = if let Some(after) = rest.strip_prefix('=') {
                let after = after.trim_start();
                let (value, remaining) = if let Some(q @ ('"' | '\'')) = after.chars().next() {
                    let body = &after[1..];
                    let end = body.find(q).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                } else {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                };
                rest = remaining;
                value
            } else {
                ""
            };
            if name.eq_ignore_ascii_case("href") {
                let mut href = String::with_capacity(value.len());
                push_decoded(&mut href, value);
                return Some(href.trim().to_owned());
            }
            if name.is_empty() {
                // Not an attribute name (stray punctuation): skip one character to make progress.
                let mut chars = rest.chars();
                chars.next();
                rest = chars.as_str();
            }
        }
    }
}

/// Append `text` with the common character references decoded; unknown ones stay as written.
fn push_decoded(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        // Entity names are short; a far-away ';' belongs to something else.
        let decoded = tail
            .get(..tail.len().min(12))
            .and_then(|window| window.find(';'))
            .and_then(|semi| decode_entity(&tail[1..semi]).map(|c| (c, semi)));
        if let Some((c, semi)) = decoded {
            out.push(c);
            rest = &tail[semi + 1..];
        } else {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
}

fn decode_entity(name: &str) -> Option<char> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cr8tor_licence_link_becomes_text_and_link() {
        assert_eq!(
            reduce(r#"<a href="https://opensource.org/licenses/MIT">MIT</a>"#),
            "MIT (https://opensource.org/licenses/MIT)"
        );
    }

    #[test]
    fn text_without_markup_is_kept_as_written() {
        assert_eq!(reduce("CC-BY-4.0"), "CC-BY-4.0");
        assert_eq!(reduce("a < b & c"), "a < b & c");
        assert_eq!(
            reduce("https://spdx.org/licenses/MIT"),
            "https://spdx.org/licenses/MIT"
        );
    }

    #[test]
    fn plain_tags_are_stripped_and_words_kept_apart() {
        assert_eq!(
            reduce("<b>Open</b> <i>Government</i> Licence"),
            "Open Government Licence"
        );
        assert_eq!(reduce("<p>one</p><p>two</p>"), "one two");
        assert_eq!(reduce("line<br/>break"), "line break");
    }

    #[test]
    fn a_link_whose_text_is_its_target_is_shown_once() {
        assert_eq!(
            reduce("<a href='https://x.org'>https://x.org</a>"),
            "https://x.org"
        );
        assert_eq!(reduce("<a href=https://x.org></a>"), "https://x.org");
    }

    #[test]
    fn attributes_entities_and_surrounding_text_are_handled() {
        assert_eq!(
            reduce(
                r#"Licensed under <A class="l" HREF="https://x.org/?a=1&amp;b=2">OGL &amp; more</A>."#
            ),
            "Licensed under OGL & more (https://x.org/?a=1&b=2)."
        );
        assert_eq!(reduce("<a title='x > y' href=\"u\">t</a>"), "t (u)");
        assert_eq!(reduce("&#77;&#x49;T <b>x</b>"), "MIT x");
    }

    #[test]
    fn scripts_comments_and_broken_tags_do_not_leak_or_hang() {
        assert_eq!(reduce("<script>alert(1)</script>MIT<!-- hidden -->"), "MIT");
        assert_eq!(reduce("<b>unclosed <a href=\"x"), "unclosed <a href=\"x");
        assert_eq!(reduce("<a href=\"u\">open link"), "open link (u)");
        assert_eq!(reduce("<!-- never closed"), "");
        assert_eq!(reduce("<a =\"x\" ==  href=u>t</a>"), "t (u)");
        assert_eq!(reduce("&#xFFFFFFFF; &bogus; &"), "&#xFFFFFFFF; &bogus; &");
    }

    #[test]
    fn markup_is_detected_only_for_tag_like_text() {
        assert!(has_markup("<a href=x>y</a>"));
        assert!(has_markup("x</b>"));
        assert!(!has_markup("a < b"));
        assert!(!has_markup("<"));
    }
}
