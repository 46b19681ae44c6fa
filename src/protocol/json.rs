//! JSON the way Go's `encoding/json` reads and writes it.
//!
//! Deployed proxies and clients were written against Go's decoder, so we accept
//! what it accepts: keys match case-insensitively, the last duplicate wins,
//! unknown keys are ignored, `null` leaves a field untouched, invalid UTF-8 in
//! strings becomes U+FFFD. Output escapes like Go's `json.Marshal`.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// A decoded top-level JSON object: its members in document order.
/// `None` stands for a top-level `null`, which Go decodes as "nothing set".
pub struct Object(Option<Vec<(String, Value)>>);

/// Why a body is not the JSON object a message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects a JSON object's members without merging duplicates, so that
/// "last key wins" can be applied in document order as Go does.
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Option<Vec<(String, Value)>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            members.push((key, value));
        }
        Ok(Some(members))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct Members(Option<Vec<(String, Value)>>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MembersVisitor).map(Members)
    }
}

/// Replaces each byte of an invalid UTF-8 sequence with U+FFFD, one per byte,
/// as Go's decoder does (Rust's lossy conversion would merge some of them).
pub fn go_lossy_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            let mut rest = bytes;
            loop {
                match std::str::from_utf8(rest) {
                    Ok(s) => {
                        out.push_str(s);
                        break;
                    }
                    Err(e) => {
                        let (valid, tail) = rest.split_at(e.valid_up_to());
                        // `valid` is valid UTF-8 by construction.
                        out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                        out.push('\u{FFFD}');
                        rest = tail.get(1..).unwrap_or_default();
                    }
                }
            }
            std::borrow::Cow::Owned(out)
        }
    }
}

/// Parses `bytes` as one JSON value that must be an object or `null`;
/// surrounding whitespace is allowed, trailing data is not.
pub fn parse_object(bytes: &[u8], type_name: &str) -> Result<Object, JsonError> {
    let text = go_lossy_utf8(bytes);
    match serde_json::from_str::<Members>(&text) {
        Ok(Members(members)) => Ok(Object(members)),
        Err(e) => Err(describe_error(&text, &e, type_name)),
    }
}

/// Go-like wording for the common failures; clients only log these texts.
fn describe_error(text: &str, e: &serde_json::Error, type_name: &str) -> JsonError {
    use serde_json::error::Category;
    let msg = match e.classify() {
        Category::Eof => "unexpected end of JSON input".to_string(),
        Category::Data => match text.trim_start().chars().next() {
            Some('[') => format!("json: cannot unmarshal array into Go value of type {type_name}"),
            Some('"') => format!("json: cannot unmarshal string into Go value of type {type_name}"),
            Some('t' | 'f') => {
                format!("json: cannot unmarshal bool into Go value of type {type_name}")
            }
            _ => format!("json: cannot unmarshal number into Go value of type {type_name}"),
        },
        Category::Syntax | Category::Io => {
            // serde_json reports a 1-based column on the failing line.
            let offending = offending_char(text, e.line(), e.column());
            let after_value = e.to_string().contains("trailing characters");
            match offending {
                Some(c) if after_value => {
                    format!("invalid character {} after top-level value", quote_char(c))
                }
                Some(c) => format!(
                    "invalid character {} looking for beginning of value",
                    quote_char(c)
                ),
                None => "unexpected end of JSON input".to_string(),
            }
        }
    };
    JsonError(msg)
}

fn offending_char(text: &str, line: usize, column: usize) -> Option<char> {
    let line_text = text.split('\n').nth(line.checked_sub(1)?)?;
    line_text.chars().nth(column.checked_sub(1)?)
}

fn quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        '"' => "'\"'".to_string(),
        c if c.is_control() => format!("{:?}", c),
        c => format!("'{c}'"),
    }
}

/// Go's case folding for matching a JSON key to an ASCII field name:
/// ASCII letters ignore case, and U+017F (long s) and U+212A (Kelvin sign)
/// fold to `s` and `k`.
pub fn key_matches(key: &str, field: &str) -> bool {
    let mut k = key.chars();
    let mut f = field.chars();
    loop {
        match (k.next(), f.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) => {
                let same = a.eq_ignore_ascii_case(&b)
                    || (a == '\u{017F}' && b.eq_ignore_ascii_case(&'s'))
                    || (a == '\u{212A}' && b.eq_ignore_ascii_case(&'k'));
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// A field's decoded value, following Go's assignment rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    /// The key never appeared (or only with `null`, for non-pointer fields).
    Absent,
    /// The key appeared with `null` last: matters for Go pointer fields only.
    Null,
    Set(T),
}

impl<T> Field<T> {
    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }
}

impl Object {
    /// Every key, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flatten().map(|(k, _)| k.as_str())
    }

    /// The members whose key folds to `field`, in document order.
    fn values<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .iter()
            .flatten()
            .filter(move |(k, _)| key_matches(k, field))
            .map(|(_, v)| v)
    }

    /// A string field of a Go struct: `null` leaves the previous value.
    pub fn string(&self, field: &str, go_field: &str) -> Result<Option<String>, JsonError> {
        let mut out = None;
        for v in self.values(field) {
            match v {
                Value::Null => {}
                Value::String(s) => out = Some(s.clone()),
                other => return Err(type_error(other, go_field, "string")),
            }
        }
        Ok(out)
    }

    /// A `*string` field of a Go struct: `null` resets it to nil.
    pub fn string_pointer(&self, field: &str, go_field: &str) -> Result<Field<String>, JsonError> {
        let mut out = Field::Absent;
        for v in self.values(field) {
            match v {
                Value::Null => out = Field::Null,
                Value::String(s) => out = Field::Set(s.clone()),
                other => return Err(type_error(other, go_field, "string")),
            }
        }
        Ok(out)
    }

    /// An `int` (int64) field: integers only, as Go's strconv.ParseInt reads them.
    pub fn int(&self, field: &str, go_field: &str) -> Result<Option<i64>, JsonError> {
        let mut out = None;
        for v in self.values(field) {
            match v {
                Value::Null => {}
                Value::Number(n) => match n.as_i64() {
                    Some(i) => out = Some(i),
                    None => {
                        return Err(JsonError(format!(
                            "json: cannot unmarshal number {n} into Go struct field {go_field} of type int"
                        )))
                    }
                },
                other => return Err(type_error(other, go_field, "int")),
            }
        }
        Ok(out)
    }
}

fn type_error(v: &Value, go_field: &str, go_type: &str) -> JsonError {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    JsonError(format!(
        "json: cannot unmarshal {kind} into Go struct field {go_field} of type {go_type}"
    ))
}

/// Appends `s` as a JSON string literal escaped exactly like Go 1.21's
/// `json.Marshal`: HTML-safe (`<`, `>`, `&`), U+2028/U+2029 escaped, and
/// `\u0008`/`\u000c` rather than `\b`/`\f` (docs/protocol.md §2.0, §13).
pub fn push_go_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX.get(b >> 4).map_or('0', |&h| h as char));
                out.push(HEX.get(b & 0xf).map_or('0', |&h| h as char));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a Go-escaped JSON string literal.
pub fn go_string(s: &str) -> String {
    let mut out = String::new();
    push_go_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go_1_21() {
        assert_eq!(
            go_string("a\"b\\c\n\r\t<>&\u{8}\u{c}\u{1}\u{1f}/\u{7f}\u{2028}\u{2029}é"),
            "\"a\\\"b\\\\c\\n\\r\\t\\u003c\\u003e\\u0026\\u0008\\u000c\\u0001\\u001f/\u{7f}\\u2028\\u2029é\""
        );
    }

    #[test]
    fn invalid_utf8_becomes_one_replacement_per_byte() {
        assert_eq!(
            go_lossy_utf8(b"a\xe2\x82b\xffc"),
            "a\u{FFFD}\u{FFFD}b\u{FFFD}c"
        );
        assert_eq!(go_lossy_utf8(b"plain"), "plain");
    }

    #[test]
    fn keys_fold_like_go() {
        assert!(key_matches("sid", "Sid"));
        assert!(key_matches("SID", "Sid"));
        assert!(key_matches("\u{017F}id", "Sid"));
        assert!(key_matches("\u{212A}ey", "Key"));
        assert!(!key_matches("Sidd", "Sid"));
        assert!(!key_matches("Si", "Sid"));
    }

    #[test]
    fn last_duplicate_wins_across_case_variants_and_null_keeps_value() {
        let o = parse_object(br#"{"Sid":"a","sid":"b","SID":null}"#, "T").unwrap();
        assert_eq!(o.string("Sid", "T.Sid").unwrap().as_deref(), Some("b"));
        let o = parse_object(br#"{"P":"x","p":null}"#, "T").unwrap();
        assert_eq!(o.string_pointer("P", "T.P").unwrap(), Field::Null);
    }

    #[test]
    fn rejects_non_objects_and_trailing_data() {
        assert!(parse_object(b"[]", "T").is_err());
        assert!(parse_object(b"{} x", "T").is_err());
        assert!(parse_object(b"", "T").is_err());
        assert!(parse_object(b" {} \n", "T").is_ok());
        assert_eq!(
            parse_object(b"", "T").err().unwrap().0,
            "unexpected end of JSON input"
        );
        assert_eq!(
            parse_object(b"x", "T").err().unwrap().0,
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            parse_object(b"{}x", "T").err().unwrap().0,
            "invalid character 'x' after top-level value"
        );
    }

    #[test]
    fn ints_are_integers_only() {
        let o = parse_object(br#"{"Clients":1.5}"#, "T").unwrap();
        assert!(o.int("Clients", "T.Clients").is_err());
        let o = parse_object(br#"{"Clients":"1"}"#, "T").unwrap();
        assert!(o.int("Clients", "T.Clients").is_err());
        let o = parse_object(br#"{"Clients":-3}"#, "T").unwrap();
        assert_eq!(o.int("Clients", "T.Clients").unwrap(), Some(-3));
        let o = parse_object(br#"{"Clients":99999999999999999999}"#, "T").unwrap();
        assert!(o.int("Clients", "T.Clients").is_err());
    }
}
