//! Step 1 of the flow: untrusted bytes → a JSON value, or a located error.
//!
//! Every limit is checked before `serde_json` sees the input: the size first (it bounds all
//! later work), then UTF-8, then nesting depth with a flat byte scan (no recursion, so a file of
//! 10,000 `[` costs one pass and no stack). `serde_json`'s own recursion limit stays as a second
//! line of defence when a caller configures a depth above it; its error becomes a diagnostic.

use super::Limits;
use super::json::Json;
use super::report::{Collector, Diagnostic};

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn parse(bytes: &[u8], limits: &Limits, out: &mut Collector) -> Option<Json> {
    if bytes.len() > limits.max_bytes {
        out.push(Diagnostic::error(format!(
            "the metadata file is {} bytes, over the limit of {} bytes; keep ro-crate-metadata.json \
             to metadata and move bulk content into files listed through hasPart",
            bytes.len(),
            limits.max_bytes
        )));
        return None;
    }
    // Editors on Windows like to write a byte-order mark; JSON allows a parser to skip it.
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let (line, column) = position(bytes, e.valid_up_to());
            out.push(Diagnostic::error(format!(
                "the metadata file is not UTF-8 text (invalid byte at line {line}, column \
                 {column}); save it as UTF-8"
            )));
            return None;
        }
    };
    if let Some(offset) = first_too_deep(text.as_bytes(), limits.max_depth) {
        let (line, column) = position(text.as_bytes(), offset);
        out.push(Diagnostic::error(format!(
            "the JSON nests deeper than {} levels (at line {line}, column {column}); an RO-Crate is \
             a flat @graph of entities, so flatten the nested objects into entities that refer to \
             each other with {{\"@id\": ...}}",
            limits.max_depth
        )));
        return None;
    }
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(e) => {
            out.push(Diagnostic::error(json_error_message(&e, limits)));
            None
        }
    }
}

fn json_error_message(e: &serde_json::Error, limits: &Limits) -> String {
    let (line, column) = (e.line(), e.column());
    // serde_json reports its recursion limit as a syntax error; say what it really is.
    if e.to_string().starts_with("recursion limit exceeded") {
        return format!(
            "the JSON nests too deeply for the parser (at line {line}, column {column}, below the \
             configured limit of {} levels); flatten the nested objects into @graph entities",
            limits.max_depth
        );
    }
    format!(
        "the metadata file is not valid JSON: {e}; fix the syntax at line {line}, column {column} \
         (a JSON linter such as `jq . ro-crate-metadata.json` shows the spot)"
    )
}

/// Byte offset of the first `[` or `{` that opens a level deeper than `max_depth`.
///
/// Strings are tracked so brackets inside them do not count. Malformed JSON may confuse the
/// count, which is harmless: this only bounds the work, `serde_json` decides what is valid.
fn first_too_deep(bytes: &[u8], max_depth: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// 1-based line and column (in characters, as an editor shows them) of a byte offset.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.split(|&b| b == b'\n').count();
    // Count characters, not bytes; continuation bytes (10xxxxxx) do not start a character.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(bytes: &[u8], limits: &Limits) -> Vec<String> {
        let mut out = Collector::default();
        let parsed = parse(bytes, limits, &mut out);
        assert!(parsed.is_none());
        out.finish()
            .diagnostics
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn brackets_inside_strings_do_not_count_towards_depth() {
        let json = br#"{"a": "[[[[[[[[[[\"[[[[", "b": [1]}"#;
        assert_eq!(first_too_deep(json, 2), None);
        let list = json.iter().rposition(|&b| b == b'[');
        assert_eq!(first_too_deep(json, 1), list);
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\né[x";
        assert_eq!(position(text.as_bytes(), 0), (1, 1));
        assert_eq!(position(text.as_bytes(), 3), (2, 1));
        // 'é' is two bytes but one column
        assert_eq!(position(text.as_bytes(), 5), (2, 2));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let mut out = Collector::default();
        let parsed = parse(b"\xEF\xBB\xBF{\"a\": 1}", &Limits::default(), &mut out);
        let a = parsed
            .as_ref()
            .and_then(Json::as_object)
            .and_then(|o| o.get("a"));
        assert_eq!(a, Some(&Json::Number));
    }

    #[test]
    fn empty_input_is_not_json() {
        let messages = errors(b"", &Limits::default());
        assert!(messages[0].contains("not valid JSON"), "{messages:?}");
    }

    #[test]
    fn a_depth_exactly_at_the_limit_is_accepted() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let mut out = Collector::default();
        assert!(parse(b"[[[]]]", &limits, &mut out).is_some());
        let messages = errors(b"[[[[]]]]", &limits);
        assert!(
            messages[0].contains("deeper than 3 levels (at line 1, column 4)"),
            "{messages:?}"
        );
    }
}
