//! The JSON tree the other steps read: what `parse` produces and `graph` indexes.
//!
//! Why not `serde_json::Value`: its objects are B-trees whose smallest node reserves room for
//! eleven entries (about 600 bytes), so a 4 MiB file of tiny objects such as `{"a":0},` costs
//! some 360 MiB to hold. Here an object is an exact-size slice of entries and scalars we never
//! read (numbers) carry no payload. Containers start with room for one element: most JSON
//! containers in hostile shapes hold one or two, and a vector grown past its first allocation
//! and then shrunk leaves a hole the allocator cannot reuse for the next one (starting empty
//! made 4 MiB of nested `[[[…]]]` cost 235 MB, 56× the input). Measured peak memory of
//! `validate` (release build): about 8× the input for a realistic crate, and for 4 MiB of the
//! worst shapes found: 103 MB (25×) for binary trees of arrays, 96 MB for 5-ary trees, 75 MB for
//! deeply nested arrays, 64 MB for `{"a":0},` repeated. `tests/cli.rs` holds the loader to 30×.
//!
//! Object entries are sorted by key so a lookup is a binary search: hostile crates can make an
//! entity with 100,000 properties and refer to it 100,000 times, and a linear lookup per
//! reference would turn that into 10^10 steps.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value.
#[derive(Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// Numbers only ever need to be recognised as numbers, so their value is not kept.
    Number,
    String(Box<str>),
    Array(Box<[Json]>),
    Object(Object),
}

/// A JSON object: its entries sorted by key, one per key (the last one written, as in most JSON
/// parsers).
#[derive(Debug, PartialEq)]
pub(crate) struct Object(Box<[(Box<str>, Json)]>);

impl Json {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Object> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }

    pub(crate) fn is_string(&self) -> bool {
        matches!(self, Json::String(_))
    }
}

impl Object {
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        let index = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[index].1)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Containers are collected with a capped initial capacity (a size hint is input-controlled), and
/// at least 1 (see the module comment).
const MAX_PREALLOCATED: usize = 1024;

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Number)
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s.into_boxed_str()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).clamp(1, MAX_PREALLOCATED));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items.into_boxed_slice()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries =
            Vec::with_capacity(map.size_hint().unwrap_or(1).clamp(1, MAX_PREALLOCATED));
        while let Some(entry) = map.next_entry::<Box<str>, Json>()? {
            entries.push(entry);
        }
        // Reversed, a stable sort puts the last of duplicate keys first, which dedup keeps.
        entries.reverse();
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        entries.dedup_by(|(a, _), (b, _)| a == b);
        Ok(Json::Object(Object(entries.into_boxed_slice())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_parses_into_the_compact_tree() -> Result<(), serde_json::Error> {
        let parsed: Json =
            serde_json::from_str(r#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": "d"}}"#)?;
        let object = parsed.as_object().map(Object::len);
        assert_eq!(object, Some(2));
        let Some(Json::Array(items)) = parsed.as_object().and_then(|o| o.get("a")) else {
            panic!("a is an array: {parsed:?}");
        };
        assert_eq!(
            &**items,
            &[
                Json::Number,
                Json::Number,
                Json::Number,
                Json::Bool(true),
                Json::Null,
                Json::String("x".into())
            ]
        );
        Ok(())
    }

    #[test]
    fn the_last_of_duplicate_keys_wins() -> Result<(), serde_json::Error> {
        let parsed: Json =
            serde_json::from_str(r#"{"z": 1, "k": "first", "a": 2, "k": "last", "k": "really"}"#)?;
        let object = parsed.as_object();
        assert_eq!(
            object.and_then(|o| o.get("k")).and_then(Json::as_str),
            Some("really")
        );
        let keys: Vec<&str> = object
            .map(|o| o.iter().map(|(k, _)| k).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["a", "k", "z"]);
        assert!(object.is_some_and(|o| o.contains_key("z") && !o.contains_key("b")));
        Ok(())
    }

    #[test]
    fn escaped_strings_are_decoded() -> Result<(), serde_json::Error> {
        let parsed: Json = serde_json::from_str(r#""caf\u00e9 \"quoted\"""#)?;
        assert_eq!(parsed.as_str(), Some("café \"quoted\""));
        Ok(())
    }
}
