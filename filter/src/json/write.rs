//! JSON output: a [`Writer`] that fields and values are pushed into, compact and escaped the
//! way serde_json writes (so stored records and wire bodies keep their exact bytes).

use super::{Kind, Value};

/// Builds compact JSON text. Commas and colons are placed by the writer; the caller only says
/// what comes next (`begin_object`, `key`, a value, `end_object`, …).
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    /// A comma is due before the next key or value.
    comma: bool,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// The finished text.
    pub fn into_string(self) -> String {
        self.out
    }

    /// The finished text as bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    fn sep(&mut self) {
        if self.comma {
            self.out.push(',');
        }
        self.comma = true;
    }

    /// `{`
    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push('{');
        self.comma = false;
    }

    /// `}`
    pub fn end_object(&mut self) {
        self.out.push('}');
        self.comma = true;
    }

    /// `[`
    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push('[');
        self.comma = false;
    }

    /// `]`
    pub fn end_array(&mut self) {
        self.out.push(']');
        self.comma = true;
    }

    /// An object key; its value comes next.
    pub fn key(&mut self, key: &str) {
        self.sep();
        escape_into(&mut self.out, key);
        self.out.push(':');
        self.comma = false;
    }

    /// A string value.
    pub fn str(&mut self, s: &str) {
        self.sep();
        escape_into(&mut self.out, s);
    }

    /// An unsigned number.
    pub fn u64(&mut self, n: u64) {
        self.sep();
        self.out.push_str(&n.to_string());
    }

    /// A signed number.
    pub fn i64(&mut self, n: i64) {
        self.sep();
        self.out.push_str(&n.to_string());
    }

    /// `true` / `false`.
    pub fn bool(&mut self, b: bool) {
        self.sep();
        self.out.push_str(if b { "true" } else { "false" });
    }

    /// `null`.
    pub fn null(&mut self) {
        self.sep();
        self.out.push_str("null");
    }

    /// Number text written as it is (a float kept from parsed input).
    fn raw(&mut self, text: &str) {
        self.sep();
        self.out.push_str(text);
    }

    /// `"key":"value"`.
    pub fn field_str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.str(value);
    }

    /// `"key":123`.
    pub fn field_u64(&mut self, key: &str, value: u64) {
        self.key(key);
        self.u64(value);
    }

    /// `"key":true`.
    pub fn field_bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.bool(value);
    }
}

/// `s` as a JSON string literal: `"` and `\` escaped, control characters as serde_json writes
/// them (`\n`, `\t`, … or `\u001f`), everything else (non-ASCII included) as it is.
fn escape_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escaped.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Writes a [`Value`]; with `sorted`, object keys in byte order (what serde_json's `Value`,
/// whose map is a `BTreeMap`, prints — a repeated key then keeps only its last value).
pub fn write_value(w: &mut Writer, v: &Value, sorted: bool) {
    match &v.kind {
        Kind::Null => w.null(),
        Kind::Bool(b) => w.bool(*b),
        Kind::U64(n) => w.u64(*n),
        Kind::I64(n) => w.i64(*n),
        Kind::Float(text) => w.raw(text),
        Kind::Str(s) => w.str(s),
        Kind::Array(items) => {
            w.begin_array();
            for item in items {
                write_value(w, item, sorted);
            }
            w.end_array();
        }
        Kind::Object(members) => {
            w.begin_object();
            let mut order: Vec<usize> = (0..members.len()).collect();
            if sorted {
                // Stable: among equal keys the last one stays last; keep only it.
                order.sort_by(|&a, &b| members[a].key.cmp(&members[b].key));
                let mut kept: Vec<usize> = Vec::with_capacity(order.len());
                for i in order {
                    match kept.last_mut() {
                        Some(last) if members[*last].key == members[i].key => *last = i,
                        _ => kept.push(i),
                    }
                }
                order = kept;
            }
            for i in order {
                if let Some(m) = members.get(i) {
                    w.key(&m.key);
                    write_value(w, &m.value, sorted);
                }
            }
            w.end_object();
        }
    }
}
