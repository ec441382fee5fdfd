//! Typed reads from a parsed [`Value`], with serde's error texts and serde_path_to_error's
//! paths, so a config error reads exactly as it did when serde read the config
//! (`failover.max_attempts: invalid type: floating point `1.5`, expected u64 at line 1 column 40`).
//!
//! One non-generic reader serves every type: structs are read with [`Reader::fields`], which
//! takes the field list and a callback, instead of a derived visitor per type (issue 16:
//! module size).

use super::{Error, Kind, Member, Value};

/// Where a value sits in the document, as a chain of borrowed steps on the stack: cheap to
/// extend, turned into text only for an error.
#[derive(Debug, Clone, Copy)]
pub struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    step: Step<'p>,
}

#[derive(Debug, Clone, Copy)]
enum Step<'p> {
    Root,
    Key(&'p str),
    Index(usize),
}

impl<'p> Path<'p> {
    /// The document itself (`.` in messages).
    pub const ROOT: Path<'static> = Path {
        parent: None,
        step: Step::Root,
    };

    /// The member `key` of the object here.
    pub fn key<'q>(&'q self, key: &'q str) -> Path<'q> {
        Path {
            parent: Some(self),
            step: Step::Key(key),
        }
    }

    /// Element `index` of the array here.
    pub fn index(&self, index: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            step: Step::Index(index),
        }
    }

    /// serde_path_to_error's spelling: `endpoints[1].weight`, `.` for the root.
    pub fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut here = Some(self);
        while let Some(p) = here {
            match p.step {
                Step::Root => {}
                Step::Key(k) => steps.push(super::parse::Seg::Key(k.to_string())),
                Step::Index(i) => steps.push(super::parse::Seg::Index(i)),
            }
            here = p.parent;
        }
        steps.reverse();
        super::parse::render(&steps)
    }
}

/// How a struct is read: its name as serde's messages give it, its fields in declaration
/// order, which of them must be present, and whether other keys are errors.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `struct RawFailover` (what "expected …" says).
    pub name: &'static str,
    /// Field names, in declaration order (also the order of the array form).
    pub fields: &'static [&'static str],
    /// Bit `i` set: field `i` has no default and must be present.
    pub required: u64,
    /// `deny_unknown_fields`: a key not in `fields` is an error (else it is skipped).
    pub deny_unknown: bool,
}

/// Reads typed values out of a parsed document; knows the source text, for error positions.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    src: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader for values parsed from `src`.
    pub fn new(src: &'a [u8]) -> Reader<'a> {
        Reader { src }
    }

    /// An error at byte offset `index`, about the value at `path`.
    #[cold]
    pub fn error(&self, path: &Path<'_>, index: usize, message: String) -> Error {
        Error::at_index(self.src, index, path.render(), message)
    }

    /// The offset after any whitespace at `i`.
    fn skip_whitespace(&self, mut i: usize) -> usize {
        while matches!(self.src.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            i += 1;
        }
        i
    }

    /// Where serde_json placed an error raised by an array element's own `Deserialize` (no
    /// position of its own, such as an untagged enum's): after the array looked past the
    /// element for `,` or `]` — past the `]`, or past the `,` and the whitespace after it.
    pub fn after_element(&self, element: &Value) -> usize {
        let i = self.skip_whitespace(element.end);
        match self.src.get(i) {
            Some(b']') => i + 1,
            Some(b',') => self.skip_whitespace(i + 1),
            _ => i,
        }
    }

    /// "invalid type: …, expected …", where serde_json would report it (before an array or
    /// object, after anything else).
    #[cold]
    pub fn invalid_type(&self, v: &Value, path: &Path<'_>, expected: &str) -> Error {
        let index = match v.kind {
            Kind::Array(_) | Kind::Object(_) => v.start,
            _ => v.end,
        };
        self.error(
            path,
            index,
            format!("invalid type: {}, expected {expected}", unexpected(v)),
        )
    }

    /// A `u64` field.
    ///
    /// # Errors
    /// Anything but a non-negative integer that fits.
    pub fn u64(&self, v: &Value, path: &Path<'_>) -> Result<u64, Error> {
        self.unsigned(v, path, u64::MAX, "u64")
    }

    /// A `u32` field.
    ///
    /// # Errors
    /// Anything but a non-negative integer up to `u32::MAX`.
    pub fn u32(&self, v: &Value, path: &Path<'_>) -> Result<u32, Error> {
        let n = self.unsigned(v, path, u64::from(u32::MAX), "u32")?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn unsigned(&self, v: &Value, path: &Path<'_>, max: u64, ty: &str) -> Result<u64, Error> {
        match v.kind {
            Kind::U64(n) if n <= max => Ok(n),
            Kind::U64(_) | Kind::I64(_) => Err(self.error(
                path,
                v.end,
                format!("invalid value: {}, expected {ty}", unexpected(v)),
            )),
            _ => Err(self.invalid_type(v, path, ty)),
        }
    }

    /// A string field.
    ///
    /// # Errors
    /// Anything but a string.
    pub fn str<'v>(&self, v: &'v Value, path: &Path<'_>) -> Result<&'v str, Error> {
        v.as_str()
            .ok_or_else(|| self.invalid_type(v, path, "a string"))
    }

    /// A string field, owned.
    ///
    /// # Errors
    /// Anything but a string.
    pub fn string(&self, v: &Value, path: &Path<'_>) -> Result<String, Error> {
        self.str(v, path).map(str::to_string)
    }

    /// A boolean field.
    ///
    /// # Errors
    /// Anything but `true` / `false`.
    pub fn bool(&self, v: &Value, path: &Path<'_>) -> Result<bool, Error> {
        v.as_bool()
            .ok_or_else(|| self.invalid_type(v, path, "a boolean"))
    }

    /// The elements of an array field (a `Vec`).
    ///
    /// # Errors
    /// Anything but an array.
    pub fn array<'v>(&self, v: &'v Value, path: &Path<'_>) -> Result<&'v [Value], Error> {
        v.as_array()
            .ok_or_else(|| self.invalid_type(v, path, "a sequence"))
    }

    /// The members of an object read as a map (a `BTreeMap`).
    ///
    /// # Errors
    /// Anything but an object.
    pub fn map<'v>(&self, v: &'v Value, path: &Path<'_>) -> Result<&'v [Member], Error> {
        match &v.kind {
            Kind::Object(m) => Ok(m),
            _ => Err(self.invalid_type(v, path, "a map")),
        }
    }

    /// A `Vec<String>` field.
    ///
    /// # Errors
    /// Not an array, or an element that is not a string.
    pub fn strings(&self, v: &Value, path: &Path<'_>) -> Result<Vec<String>, Error> {
        let items = self.array(v, path)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(self.string(item, &path.index(i))?);
        }
        Ok(out)
    }

    /// Reads a struct the way serde's derive does: from an object (keys in document order,
    /// `on_field(i, value, path)` for field `i`), or from an array (elements as the fields in
    /// order). Returns a bit set of the fields seen.
    ///
    /// # Errors
    /// Neither object nor array; an unknown key (with `deny_unknown`); a repeated field; a
    /// required field missing; more array elements than fields; or what `on_field` returns.
    pub fn fields(
        &self,
        v: &Value,
        path: &Path<'_>,
        shape: &Shape,
        on_field: &mut dyn FnMut(usize, &Value, &Path<'_>) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let mut seen: u64 = 0;
        match &v.kind {
            Kind::Object(members) => {
                for m in members {
                    let Some(i) = shape.fields.iter().position(|f| *f == m.key) else {
                        if shape.deny_unknown {
                            // serde_path_to_error had read the key: it names it.
                            return Err(self.error(
                                &path.key(&m.key),
                                self.skip_whitespace(m.key_end),
                                unknown_field(&m.key, shape.fields),
                            ));
                        }
                        continue;
                    };
                    if seen & (1 << i) != 0 {
                        return Err(self.error(
                            path,
                            self.skip_whitespace(m.key_end),
                            format!("duplicate field `{}`", m.key),
                        ));
                    }
                    seen |= 1 << i;
                    on_field(i, &m.value, &path.key(&m.key))?;
                }
                let missing = shape.required & !seen;
                if missing != 0 {
                    let i = missing.trailing_zeros() as usize;
                    let name = shape.fields.get(i).copied().unwrap_or_default();
                    return Err(self.error(path, v.end, format!("missing field `{name}`")));
                }
            }
            Kind::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i >= shape.fields.len() {
                        return Err(self.error(path, item.start + 1, "trailing characters".into()));
                    }
                    seen |= 1 << i;
                    on_field(i, item, &path.index(i))?;
                }
                let missing = shape.required & !seen;
                if missing != 0 {
                    let i = missing.trailing_zeros();
                    return Err(self.error(
                        path,
                        v.end,
                        format!(
                            "invalid length {i}, expected {} with {} elements",
                            shape.name,
                            shape.fields.len()
                        ),
                    ));
                }
            }
            _ => return Err(self.invalid_type(v, path, shape.name)),
        }
        Ok(seen)
    }

    /// A unit-variant enum spelled as its name (`"parked"`); returns the variant's index.
    /// Like serde_json, `{"parked": null}` is the same variant.
    ///
    /// # Errors
    /// Another name, or a value that cannot name a variant.
    pub fn variant(&self, v: &Value, path: &Path<'_>, variants: &[&str]) -> Result<usize, Error> {
        let (name, at) = match &v.kind {
            Kind::Str(s) => (s.as_str(), v.end),
            Kind::Object(m) if m.len() == 1 && m.iter().all(|m| m.value.is_null()) => {
                let m = &m[0];
                (m.key.as_str(), m.key_end)
            }
            _ => return Err(self.error(path, v.start + 1, "expected value".into())),
        };
        variants.iter().position(|x| *x == name).ok_or_else(|| {
            let mut message = format!("unknown variant `{name}`, expected ");
            message.push_str(&one_of(variants));
            self.error(path, at, message)
        })
    }
}

/// serde's text for what was found ("integer `3`", "string \"x\"", "map", …).
fn unexpected(v: &Value) -> String {
    match &v.kind {
        Kind::Null => "null".into(),
        Kind::Bool(b) => format!("boolean `{b}`"),
        Kind::U64(n) => format!("integer `{n}`"),
        Kind::I64(n) => format!("integer `{n}`"),
        Kind::Float(text) => format!("floating point `{}`", float_text(text)),
        Kind::Str(s) => format!("string {s:?}"),
        Kind::Array(_) => "sequence".into(),
        Kind::Object(_) => "map".into(),
    }
}

fn unknown_field(name: &str, fields: &[&str]) -> String {
    if fields.is_empty() {
        format!("unknown field `{name}`, there are no fields")
    } else {
        format!("unknown field `{name}`, expected {}", one_of(fields))
    }
}

/// serde's `OneOf`: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    match names {
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

/// A float as serde_json names it in an error (its `zmij` shortest form: `1.5`, `2.0`,
/// `1e+300`, `1.5e-7`), computed from the digits as written instead of from an `f64`: exact
/// for up to 15 significant digits; longer mantissas are rounded to 17 digits, which is the
/// shortest form in most but not all cases (the filter carries no float formatter: issue 16).
pub(crate) fn float_text(text: &str) -> String {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp_part) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, ""),
    };
    let exp: i64 = {
        let (neg, digits) = match exp_part.as_bytes().first() {
            Some(b'-') => (true, &exp_part[1..]),
            Some(b'+') => (false, &exp_part[1..]),
            _ => (false, exp_part),
        };
        let mut n: i64 = 0;
        for b in digits.bytes().filter(u8::is_ascii_digit) {
            n = (n * 10 + i64::from(b - b'0')).min(100_000);
        }
        if neg {
            -n
        } else {
            n
        }
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .filter(u8::is_ascii_digit)
        .collect();
    // Value = 0.DIGITS × 10^(int_len + exp); dec_exp is the exponent of the first digit.
    let mut dec_exp = int_part.len() as i64 + exp - 1;
    let lead = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..lead);
    dec_exp -= lead as i64;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    let sign = if negative { "-" } else { "" };
    if digits.is_empty() || dec_exp < -324 {
        return format!("{sign}0.0");
    }
    if digits.len() > 17 {
        let round_up = digits[17] >= b'5';
        digits.truncate(17);
        if round_up {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, b'1');
                    digits.pop();
                    dec_exp += 1;
                    break;
                }
                i -= 1;
                if digits[i] == b'9' {
                    digits[i] = b'0';
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
    }
    let d = String::from_utf8_lossy(&digits).into_owned();
    let n = d.len() as i64;
    let body = if (-5..=15).contains(&dec_exp) {
        if n - 1 <= dec_exp {
            format!("{d}{}.0", "0".repeat((dec_exp + 1 - n) as usize))
        } else if dec_exp >= 0 {
            let (a, b) = d.split_at(dec_exp as usize + 1);
            format!("{a}.{b}")
        } else {
            format!("0.{}{d}", "0".repeat((-dec_exp - 1) as usize))
        }
    } else {
        let (a, b) = d.split_at(1);
        let dot = if b.is_empty() { "" } else { "." };
        let esign = if dec_exp >= 0 { "+" } else { "-" };
        format!("{a}{dot}{b}e{esign}{}", dec_exp.abs())
    };
    format!("{sign}{body}")
}
