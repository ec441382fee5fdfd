//! JSON text → [`Value`], accepting and refusing exactly what serde_json's `from_slice`
//! does, with its error texts and positions.
//!
//! Recursive descent, bounded by [`MAX_DEPTH`] like serde_json: deeper input is an error, so a
//! hostile `[[[[…` can never overflow the stack. The path of a syntax error (the key or index
//! being read) is collected only while unwinding, so a successful parse pays nothing for it.

use super::{Error, Kind, Member, Value, MAX_DEPTH};

/// Parses a whole document: one value, optional whitespace around it, nothing else.
///
/// # Errors
/// serde_json's syntax error (message, line, column), with the path of the value it was in.
pub fn parse(src: &[u8]) -> Result<Value, Error> {
    match parse_with_tail(src)? {
        (_, Some(trailing)) => Err(trailing),
        (v, None) => Ok(v),
    }
}

/// Parses the first value of `src`; what follows it, if not only whitespace, is returned as
/// the "trailing characters" error, so that a typed read can report its own errors first, as
/// serde_json (which checks the end only after deserializing) does.
///
/// # Errors
/// serde_json's syntax error inside the value, with its path.
pub fn parse_with_tail(src: &[u8]) -> Result<(Value, Option<Error>), Error> {
    let mut p = Parser {
        src,
        i: 0,
        remaining_depth: MAX_DEPTH,
        trail: Vec::new(),
    };
    match p.value() {
        Ok(v) => {
            let tail = p.whitespace().map(|_| {
                let mut e = p.peek_error("trailing characters").0;
                e.path = ".".into();
                e
            });
            Ok((v, tail))
        }
        Err(fail) => {
            let mut e = fail.0;
            p.trail.reverse();
            e.path = render(&p.trail);
            Err(e)
        }
    }
}

/// One step of a path: an object key or an array index.
pub(super) enum Seg {
    Key(String),
    Index(usize),
    /// An object key not read yet (serde_path_to_error's `?`): an error between members or
    /// inside a key.
    Unknown,
}

/// serde_path_to_error's spelling: `a.b[2].c`, `.` for the root.
pub(super) fn render(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return ".".into();
    }
    let mut out = String::new();
    for (n, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Seg::Key(k) => {
                if n > 0 {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Unknown => {
                if n > 0 {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// An error on its way up; the path is filled in at the top.
struct Fail(Error);

type R<T> = Result<T, Fail>;

struct Parser<'a> {
    src: &'a [u8],
    i: usize,
    remaining_depth: u32,
    /// Path segments pushed while an error unwinds (innermost first).
    trail: Vec<Seg>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.i).copied()
    }

    fn peek_or_null(&self) -> u8 {
        self.peek().unwrap_or(0)
    }

    fn whitespace(&mut self) -> Option<u8> {
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                self.i += 1;
            } else {
                return Some(b);
            }
        }
        None
    }

    /// An error about the byte just consumed (serde_json's `error`).
    #[cold]
    fn error(&self, message: &str) -> Fail {
        Fail(Error::at_index(
            self.src,
            self.i,
            String::new(),
            message.into(),
        ))
    }

    /// An error about the byte about to be read (serde_json's `peek_error`).
    #[cold]
    fn peek_error(&self, message: &str) -> Fail {
        Fail(Error::at_index(
            self.src,
            (self.i + 1).min(self.src.len()),
            String::new(),
            message.into(),
        ))
    }

    fn value(&mut self) -> R<Value> {
        let Some(peek) = self.whitespace() else {
            return Err(self.peek_error("EOF while parsing a value"));
        };
        let start = self.i;
        let kind = match peek {
            b'n' => {
                self.i += 1;
                self.ident(b"ull")?;
                Kind::Null
            }
            b't' => {
                self.i += 1;
                self.ident(b"rue")?;
                Kind::Bool(true)
            }
            b'f' => {
                self.i += 1;
                self.ident(b"alse")?;
                Kind::Bool(false)
            }
            b'-' => {
                self.i += 1;
                self.number(start, false)?
            }
            b'0'..=b'9' => self.number(start, true)?,
            b'"' => {
                self.i += 1;
                Kind::Str(self.string()?)
            }
            b'[' => {
                self.enter()?;
                self.i += 1;
                let a = self.array();
                self.remaining_depth += 1;
                Kind::Array(a?)
            }
            b'{' => {
                self.enter()?;
                self.i += 1;
                let o = self.object();
                self.remaining_depth += 1;
                Kind::Object(o?)
            }
            _ => return Err(self.peek_error("expected value")),
        };
        Ok(Value {
            kind,
            start,
            end: self.i,
        })
    }

    fn enter(&mut self) -> R<()> {
        self.remaining_depth -= 1;
        if self.remaining_depth == 0 {
            self.remaining_depth += 1;
            return Err(self.peek_error("recursion limit exceeded"));
        }
        Ok(())
    }

    fn ident(&mut self, rest: &[u8]) -> R<()> {
        for &expected in rest {
            match self.peek() {
                None => return Err(self.error("EOF while parsing a value")),
                Some(b) => {
                    self.i += 1;
                    if b != expected {
                        return Err(self.error("expected ident"));
                    }
                }
            }
        }
        Ok(())
    }

    // ===== numbers =====

    /// serde_json's `parse_integer` and what follows it; `start` is where the number (its
    /// sign included) began, for the text of a float.
    fn number(&mut self, start: usize, positive: bool) -> R<Kind> {
        let Some(first) = self.peek() else {
            return Err(self.error("EOF while parsing a value"));
        };
        self.i += 1;
        let mut significand: u64 = match first {
            b'0' => {
                if self.peek_or_null().is_ascii_digit() {
                    return Err(self.peek_error("invalid number"));
                }
                0
            }
            b'1'..=b'9' => u64::from(first - b'0'),
            _ => return Err(self.error("invalid number")),
        };
        // Integer digits. Past u64 the number becomes a float; only its magnitude matters
        // from then on (for "number out of range").
        let mut exponent: i64 = 0;
        let mut overflowed = false;
        if first != b'0' {
            while let c @ b'0'..=b'9' = self.peek_or_null() {
                self.i += 1;
                if overflowed {
                    exponent += 1;
                    continue;
                }
                match significand
                    .checked_mul(10)
                    .and_then(|s| s.checked_add(u64::from(c - b'0')))
                {
                    Some(s) => significand = s,
                    None => {
                        overflowed = true;
                        exponent += 1;
                    }
                }
            }
        }
        let mut float = overflowed;
        if self.peek_or_null() == b'.' {
            float = true;
            self.i += 1;
            let mut digits = 0;
            while let c @ b'0'..=b'9' = self.peek_or_null() {
                self.i += 1;
                digits += 1;
                if overflowed {
                    continue;
                }
                match significand
                    .checked_mul(10)
                    .and_then(|s| s.checked_add(u64::from(c - b'0')))
                {
                    Some(s) => {
                        significand = s;
                        exponent -= 1;
                    }
                    None => overflowed = true,
                }
            }
            if digits == 0 {
                return Err(match self.peek() {
                    Some(_) => self.peek_error("invalid number"),
                    None => self.peek_error("EOF while parsing a value"),
                });
            }
        }
        if matches!(self.peek_or_null(), b'e' | b'E') {
            float = true;
            self.i += 1;
            let positive_exp = match self.peek_or_null() {
                b'+' => {
                    self.i += 1;
                    true
                }
                b'-' => {
                    self.i += 1;
                    false
                }
                _ => true,
            };
            let Some(next) = self.peek() else {
                return Err(self.error("EOF while parsing a value"));
            };
            self.i += 1;
            if !next.is_ascii_digit() {
                return Err(self.error("invalid number"));
            }
            let mut exp = i64::from(next - b'0');
            let mut exp_overflow = false;
            while let c @ b'0'..=b'9' = self.peek_or_null() {
                self.i += 1;
                if exp_overflow {
                    continue;
                }
                exp = exp * 10 + i64::from(c - b'0');
                if exp > i64::from(i32::MAX) {
                    // serde_json: an exponent past i32 is ±0, or out of range when positive
                    // with a non-zero significand.
                    if significand != 0 && positive_exp {
                        return Err(self.error("number out of range"));
                    }
                    exp_overflow = true;
                }
            }
            if exp_overflow {
                exponent = i64::MIN / 2;
            } else if positive_exp {
                exponent += exp;
            } else {
                exponent -= exp;
            }
        }
        if !float {
            return Ok(if positive {
                Kind::U64(significand)
            } else {
                match i64::try_from(significand) {
                    Ok(n) if n > 0 => Kind::I64(-n),
                    // `-0` is a float; below i64::MIN too.
                    _ if significand == 1 << 63 => Kind::I64(i64::MIN),
                    _ => Kind::Float(self.text(start)),
                }
            });
        }
        if significand != 0 && exponent >= 0 && too_large(significand, exponent) {
            return Err(self.error("number out of range"));
        }
        Ok(Kind::Float(self.text(start)))
    }

    fn text(&self, start: usize) -> Box<str> {
        let bytes = self.src.get(start..self.i).unwrap_or_default();
        String::from_utf8_lossy(bytes).into()
    }

    // ===== strings =====

    /// The rest of a string after its opening quote (serde_json's `parse_str`, validating).
    fn string(&mut self) -> R<String> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                0..=0x1f => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                _ => out.push(b),
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Ok(s),
            Err(e) => {
                let bad = e.as_bytes().len() - e.utf8_error().valid_up_to();
                let mut err = Error::at_index(
                    self.src,
                    self.i,
                    String::new(),
                    "invalid unicode code point".into(),
                );
                err.column = err.column.saturating_sub(bad);
                Err(Fail(err))
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> R<()> {
        let Some(c) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.i += 1;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(out),
            _ => return Err(self.error("invalid escape")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> R<u16> {
        let Some(digits) = self.src.get(self.i..self.i + 4) else {
            self.i = self.src.len();
            return Err(self.error("EOF while parsing a string"));
        };
        self.i += 4;
        let mut n: u16 = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            n = (n << 4) | u16::from(v);
        }
        Ok(n)
    }

    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> R<()> {
        let n = self.hex4()?;
        if (0xDC00..=0xDFFF).contains(&n) {
            return Err(self.error("lone leading surrogate in hex escape"));
        }
        let code = if (0xD800..=0xDBFF).contains(&n) {
            // A leading surrogate: a `\u` trailing one must follow.
            for expected in [b'\\', b'u'] {
                match self.peek() {
                    None => return Err(self.error("EOF while parsing a string")),
                    Some(b) => {
                        self.i += 1;
                        if b != expected {
                            return Err(self.error("unexpected end of hex escape"));
                        }
                    }
                }
            }
            let n2 = self.hex4()?;
            if !(0xDC00..=0xDFFF).contains(&n2) {
                return Err(self.error("lone leading surrogate in hex escape"));
            }
            ((u32::from(n - 0xD800) << 10) | u32::from(n2 - 0xDC00)) + 0x1_0000
        } else {
            u32::from(n)
        };
        let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    // ===== arrays and objects =====

    fn array(&mut self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let Some(peek) = self.whitespace() else {
                return Err(self.peek_error("EOF while parsing a list"));
            };
            if peek == b']' {
                self.i += 1;
                return Ok(out);
            }
            if !out.is_empty() {
                if peek != b',' {
                    return Err(self.peek_error("expected `,` or `]`"));
                }
                self.i += 1;
                match self.whitespace() {
                    Some(b']') => return Err(self.peek_error("trailing comma")),
                    Some(_) => {}
                    None => return Err(self.peek_error("EOF while parsing a value")),
                }
            }
            match self.value() {
                Ok(v) => out.push(v),
                Err(e) => {
                    self.trail.push(Seg::Index(out.len()));
                    return Err(e);
                }
            }
        }
    }

    fn object(&mut self) -> R<Vec<Member>> {
        let mut out: Vec<Member> = Vec::new();
        loop {
            let key = match self.next_key(out.is_empty()) {
                Ok(None) => return Ok(out),
                Ok(Some(key)) => key,
                Err(e) => {
                    self.trail.push(Seg::Unknown);
                    return Err(e);
                }
            };
            let key_end = self.i;
            match self.whitespace() {
                Some(b':') => self.i += 1,
                Some(_) => return Err(self.peek_error("expected `:`")),
                None => return Err(self.peek_error("EOF while parsing an object")),
            }
            match self.value() {
                Ok(value) => out.push(Member {
                    key,
                    key_end,
                    value,
                }),
                Err(e) => {
                    self.trail.push(Seg::Key(key));
                    return Err(e);
                }
            }
        }
    }

    /// The separator before the next key and the key itself; `None` at the closing `}`.
    fn next_key(&mut self, first: bool) -> R<Option<String>> {
        let Some(peek) = self.whitespace() else {
            return Err(self.peek_error("EOF while parsing an object"));
        };
        if peek == b'}' {
            self.i += 1;
            return Ok(None);
        }
        if first {
            if peek != b'"' {
                return Err(self.peek_error("key must be a string"));
            }
        } else {
            if peek != b',' {
                return Err(self.peek_error("expected `,` or `}`"));
            }
            self.i += 1;
            match self.whitespace() {
                Some(b'"') => {}
                Some(b'}') => return Err(self.peek_error("trailing comma")),
                Some(_) => return Err(self.peek_error("key must be a string")),
                None => return Err(self.peek_error("EOF while parsing a value")),
            }
        }
        self.i += 1;
        self.string().map(Some)
    }
}

/// True when `significand × 10^exponent` is past `f64::MAX` (serde_json: "number out of
/// range"). Decided on the decimal digits, no float arithmetic.
fn too_large(significand: u64, exponent: i64) -> bool {
    let digits = significand.to_string();
    // The value is 0.DIGITS × 10^magnitude.
    let magnitude = digits.len() as i64 + exponent;
    match magnitude.cmp(&309) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => digits.as_str() > "17976931348623157",
    }
}
