//! A small JSON module of our own: a parser to [`Value`], a writer, and a typed reader that
//! knows the path of what it reads.
//!
//! Why not serde: the filter's `.wasm` must stay under 300 KB (issue 16), and serde_json,
//! serde_path_to_error and the derives of our types were about a third of it. Everything here
//! is non-generic: one parser, one writer, one reader, whatever the shape being read.
//!
//! It reproduces what the filter relied on serde_json for, so that the persisted records and
//! the plugin configuration read exactly as before:
//! - the same syntax accepted and refused, with serde_json's error texts and its
//!   `at line L column C` positions, and its nesting limit of 128 (deeper input is an error,
//!   never a stack overflow);
//! - numbers kept as `u64` / `i64` / float the way serde_json classifies them, so "expected u64"
//!   errors say what serde said;
//! - strings escaped on output the way serde_json escapes them.
//!
//! Nothing here panics on any input: config, shared data and network bodies come from outside.

mod parse;
mod read;
mod write;

#[cfg(test)]
mod tests;

pub use parse::{parse, parse_with_tail};
pub use read::{Path, Reader, Shape};
pub use write::{write_value, Writer};

/// The deepest nesting of arrays and objects accepted (serde_json's limit).
pub const MAX_DEPTH: u32 = 128;

/// A JSON value with where it sits in the source text (for error positions).
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: Kind,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just after its last character.
    pub end: usize,
}

/// The kinds of JSON value. Numbers are split the way serde_json splits them: a non-negative
/// integer that fits is `U64`, a negative one that fits is `I64`, anything else is a float.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer up to `u64::MAX`.
    U64(u64),
    /// A negative integer down to `i64::MIN`.
    I64(i64),
    /// Any other number (fraction, exponent, `-0`, out of integer range), as it was written:
    /// the filter never computes with floats, it only names them in error messages.
    Float(Box<str>),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, members in source order (a repeated key is kept twice; [`Value::get`] sees
    /// the last one, as serde_json's map does).
    Object(Vec<Member>),
}

/// One `"key": value` of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The key.
    pub key: String,
    /// Byte offset just after the key's closing quote (where serde_json reports key errors).
    pub key_end: usize,
    /// The value.
    pub value: Value,
}

impl Value {
    /// A value built in code (no source position).
    pub fn new(kind: Kind) -> Value {
        Value {
            kind,
            start: 0,
            end: 0,
        }
    }

    /// An object built in code from `(key, value)` pairs.
    pub fn object(members: Vec<(&str, Value)>) -> Value {
        Value::new(Kind::Object(
            members
                .into_iter()
                .map(|(k, v)| Member {
                    key: k.to_string(),
                    key_end: 0,
                    value: v,
                })
                .collect(),
        ))
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::new(Kind::Str(s.to_string()))
    }

    /// An unsigned number.
    pub fn u64(n: u64) -> Value {
        Value::new(Kind::U64(n))
    }

    /// A boolean.
    pub fn bool(b: bool) -> Value {
        Value::new(Kind::Bool(b))
    }

    /// The member `key` of an object (the last one when repeated); `None` for other kinds.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.kind {
            Kind::Object(members) => members
                .iter()
                .rev()
                .find(|m| m.key == key)
                .map(|m| &m.value),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The number as a `u64`, if it is a non-negative integer (serde_json's `as_u64`).
    pub fn as_u64(&self) -> Option<u64> {
        match self.kind {
            Kind::U64(n) => Some(n),
            _ => None,
        }
    }

    /// The number as an `i64`, if it is an integer in range (serde_json's `as_i64`).
    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            Kind::U64(n) => i64::try_from(n).ok(),
            Kind::I64(n) => Some(n),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// True for an object.
    pub fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }
}

/// Compact JSON text, object keys sorted — what serde_json's `Value` prints (its map is sorted).
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut w = Writer::new();
        write_value(&mut w, self, true);
        f.write_str(w.as_str())
    }
}

/// A JSON error: serde_json's message and position, and for typed reads the path of the value
/// (`endpoints[1].weight`, `.` at the top), as serde_path_to_error named it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", at(*line, *column))]
pub struct Error {
    /// Where in the document: keys joined by `.`, array indices as `[i]`; `.` for the root.
    pub path: String,
    /// What is wrong, in serde_json's words.
    pub message: String,
    /// 1-based line, 0 when the error has no position.
    pub line: usize,
    /// Column as serde_json counts it (bytes since the start of the line).
    pub column: usize,
}

fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at line {line} column {column}")
    }
}

impl Error {
    /// An error without a position, such as a check made before parsing.
    pub fn custom(message: impl Into<String>) -> Error {
        Error {
            path: ".".into(),
            message: message.into(),
            line: 0,
            column: 0,
        }
    }

    /// An error at byte offset `index` of `src`, with serde_json's line/column arithmetic.
    pub(crate) fn at_index(src: &[u8], index: usize, path: String, message: String) -> Error {
        let i = index.min(src.len());
        let before = src.get(..i).unwrap_or_default();
        let start_of_line = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let line = 1 + before
            .get(..start_of_line)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error {
            path,
            message,
            line,
            column: i - start_of_line,
        }
    }
}
