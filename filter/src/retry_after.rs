//! When may an overloaded endpoint be asked again? Reads `retry-after` (seconds or an HTTP
//! date) and the rate-limit reset headers LLM APIs send (`anthropic-ratelimit-*-reset` as
//! RFC 3339 times, `x-ratelimit-reset-*` as durations like `6m0s`), for 429, 503 and 529.
//!
//! The result only ever pushes an endpoint's next check later (see
//! [`crate::state::Record::record_failure`]); a bad value is ignored, never an error.

/// Deadlines further out than this are clamped: a broken header must not park an endpoint for
/// days.
pub const MAX_DELAY_MS: u64 = 24 * 3600 * 1000;

/// The statuses whose headers are honoured.
pub fn applies_to(status: u16) -> bool {
    matches!(status, 429 | 503 | 529)
}

/// The deadline (ms since the epoch) the answer asks for, if any. `headers` are
/// `(lowercase name, value)` pairs. `retry-after` wins when valid; otherwise the latest of the
/// reset headers.
pub fn deadline_ms(status: u16, headers: &[(String, String)], now_ms: u64) -> Option<u64> {
    if !applies_to(status) {
        return None;
    }
    let clamp = |t: u64| t.min(now_ms.saturating_add(MAX_DELAY_MS));
    if let Some(v) = header(headers, "retry-after") {
        if let Some(t) = parse_retry_after(v, now_ms) {
            return Some(clamp(t));
        }
    }
    headers
        .iter()
        .filter_map(|(name, value)| {
            if name.starts_with("anthropic-ratelimit-") && name.ends_with("-reset") {
                parse_rfc3339_ms(value.trim())
            } else if name.starts_with("x-ratelimit-reset") {
                parse_go_duration_ms(value.trim()).map(|d| now_ms.saturating_add(d))
            } else {
                None
            }
        })
        .max()
        .map(clamp)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `retry-after: 120` or `retry-after: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(now_ms.saturating_add(secs.saturating_mul(1000)));
    }
    if let Some(secs) = parse_f64(v) {
        if secs.is_finite() && secs >= 0.0 {
            return Some(now_ms.saturating_add((secs * 1000.0) as u64));
        }
    }
    parse_http_date_ms(v)
}

/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn parse_http_date_ms(v: &str) -> Option<u64> {
    let rest = v.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = month_number(parts.next()?)?;
    let year: i64 = parts.next()?.parse().ok()?;
    let (h, m, s) = hms(parts.next()?)?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    epoch_ms(year, month, day, h, m, s, 0)
}

/// RFC 3339: `2026-11-24T17:00:05Z`, `2026-11-24T17:00:05.25+01:00`.
pub fn parse_rfc3339_ms(v: &str) -> Option<u64> {
    let (date, time) = v.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let (clock, offset_min): (&str, i64) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let pos = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (oh.parse::<i64>().ok()?, om.parse::<i64>().ok()?);
        if !(0..=23).contains(&oh) || !(0..=59).contains(&om) {
            return None;
        }
        (c, sign * (oh * 60 + om))
    };
    let (whole, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let (h, m, s) = hms(whole)?;
    let millis: u64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(3).collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<3}").parse().ok()?
    };
    let local = epoch_ms(year, month, day, h, m, s, millis)?;
    let shifted = i128::from(local) - i128::from(offset_min) * 60_000;
    u64::try_from(shifted).ok()
}

/// Go-style durations as OpenAI sends them: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
pub fn parse_go_duration_ms(v: &str) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    if let Some(secs) = parse_f64(v) {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let mut total = 0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let n = parse_f64(&rest[..num_len])?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then_some(total as u64)
}

/// A decimal number as `f64::from_str` reads it (`[+-]digits[.digits][e[+-]digits]`, either
/// digit run may be empty but not both), without core's float parser and its 10 KB table
/// (issue 16: module size). Exactly `f64::from_str`'s value (its own fast path) whenever the
/// significant digits fit 2^53 and the decimal exponent is within ±22 — every value these headers
/// carry; beyond that, within a few ulps, which no caller can tell apart after converting to
/// whole milliseconds. `inf`/`nan`, which `from_str` also accepts, read as `None`: every caller
/// refuses a non-finite value anyway.
fn parse_f64(s: &str) -> Option<f64> {
    let (negative, body) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    let mut mantissa = 0u64;
    let mut exp10 = 0i64; // value = mantissa · 10^exp10 (· 10^exponent below)
    let mut digits = 0usize;
    let mut seen_dot = false;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(b - b'0');
                    if seen_dot {
                        exp10 -= 1;
                    }
                } else if !seen_dot {
                    // Digits past u64's precision: dropped, but they still scale the value.
                    exp10 += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if let Some((&e, rest)) = body[i..].split_first() {
        if e != b'e' && e != b'E' {
            return None;
        }
        let (negative_exp, exp_digits) = match rest {
            [b'-', r @ ..] => (true, r),
            [b'+', r @ ..] => (false, r),
            r => (false, r),
        };
        if exp_digits.is_empty() || !exp_digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let exponent = exp_digits.iter().fold(0i64, |acc, d| {
            acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
        exp10 = if negative_exp {
            exp10.saturating_sub(exponent)
        } else {
            exp10.saturating_add(exponent)
        };
    }
    let m = mantissa as f64; // exact below 2^53: the fast path's condition
    let magnitude = if mantissa == 0 {
        0.0
    } else if exp10 > 400 {
        f64::INFINITY
    } else if exp10 < -400 {
        0.0
    } else {
        // 10^k is exact in an f64 for k <= 22, so below 2^53 one rounding gives exactly the
        // correctly rounded value, as core's fast path does.
        let mut scale = 1.0f64;
        for _ in 0..exp10.unsigned_abs().min(22) {
            scale *= 10.0;
        }
        let mut v = if exp10 < 0 { m / scale } else { m * scale };
        for _ in 22..exp10.unsigned_abs() {
            v = if exp10 < 0 { v / 10.0 } else { v * 10.0 };
        }
        v
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn hms(t: &str) -> Option<(u32, u32, u32)> {
    let mut p = t.split(':');
    let h = p.next()?.parse().ok()?;
    let m = p.next()?.parse().ok()?;
    let s = p.next()?.parse().ok()?;
    if p.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some((h, m, s))
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|m| *m == name)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Civil date to ms since the epoch (Howard Hinnant's days-from-civil).
fn epoch_ms(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32, ms: u64) -> Option<u64> {
    // Years past 9999 are not dates any header means; refusing them also keeps the
    // arithmetic below far from overflow.
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
    u64::try_from(secs).ok()?.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn own_float_parser_reads_what_core_reads() {
        for s in [
            "0",
            "3",
            "1.5",
            "62.5",
            ".5",
            "5.",
            "+1",
            "+.5",
            "-0",
            "-5",
            "1e3",
            "1E3",
            "1.e2",
            "2.5e-3",
            "0.001",
            "1.005",
            "0.29",
            "99999999999",
            "123456789012345",
            "0.000001",
            "00012.50",
            "1e999",
            "1e-999",
            "1e",
            "e5",
            ".",
            "+",
            "-",
            "1.2.3",
            "1e+",
            "1e+2",
            "1x",
            "",
            " 1",
            "1 ",
            "1_0",
            "..5",
            "1e2.5",
            "1e--2",
        ] {
            let core = s.parse::<f64>().ok().map(f64::to_bits);
            assert_eq!(parse_f64(s).map(f64::to_bits), core, "{s:?}");
        }
        for s in ["inf", "NaN", "-inf", "infinity", "+Infinity"] {
            assert!(s.parse::<f64>().is_ok_and(|v| !v.is_finite()), "{s:?}");
            assert_eq!(
                parse_f64(s),
                None,
                "{s:?}: callers refuse non-finite values anyway"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn own_float_parser_is_exact_on_short_decimals(
            int in 0u64..1_000_000_000,
            frac in 0u32..1_000_000,
            frac_digits in 0usize..7,
            exp in -16i32..=10,
            form in 0u8..3,
        ) {
            let frac = frac % 10u32.pow(u32::try_from(frac_digits).unwrap_or(0));
            let s = match form {
                0 => format!("{int}.{frac:0frac_digits$}"),
                1 => format!("{int}.{frac:0frac_digits$}e{exp}"),
                _ => format!("{int}"),
            };
            let core = s.parse::<f64>().ok().map(f64::to_bits);
            proptest::prop_assert_eq!(parse_f64(&s).map(f64::to_bits), core, "{:?}", s);
        }
    }

    #[test]
    fn seconds_and_dates() {
        assert_eq!(
            deadline_ms(429, &h(&[("retry-after", "3")]), NOW),
            Some(NOW + 3000)
        );
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            parse_rfc3339_ms("1994-11-06T08:49:37Z"),
            Some(784_111_777_000)
        );
        assert_eq!(
            parse_rfc3339_ms("1994-11-06T09:49:37.5+01:00"),
            Some(784_111_777_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
    }

    #[test]
    fn only_overload_statuses() {
        assert_eq!(deadline_ms(500, &h(&[("retry-after", "3")]), NOW), None);
        assert_eq!(deadline_ms(200, &h(&[("retry-after", "3")]), NOW), None);
        assert!(deadline_ms(503, &h(&[("retry-after", "3")]), NOW).is_some());
        assert!(deadline_ms(529, &h(&[("retry-after", "3")]), NOW).is_some());
    }

    #[test]
    fn llm_reset_headers() {
        let v = deadline_ms(
            429,
            &h(&[
                ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:25Z"),
                ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:30Z"),
            ]),
            NOW,
        );
        assert_eq!(v, Some(1_700_000_010_000));
        let v = deadline_ms(429, &h(&[("x-ratelimit-reset-requests", "1m2.5s")]), NOW);
        assert_eq!(v, Some(NOW + 62_500));
        assert_eq!(parse_go_duration_ms("20ms"), Some(20));
        assert_eq!(parse_go_duration_ms("6m0s"), Some(360_000));
        assert_eq!(parse_go_duration_ms("1h"), Some(3_600_000));
    }

    #[test]
    fn garbage_is_ignored_and_huge_values_clamped() {
        for bad in [
            "",
            "soon",
            "-5",
            "Sun, 99 Nov 1994 08:49:37 GMT",
            "1e999",
            "NaN",
        ] {
            assert_eq!(
                deadline_ms(429, &h(&[("retry-after", bad)]), NOW),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(parse_go_duration_ms("5x"), None);
        assert_eq!(parse_rfc3339_ms("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("300000000000-1-1T0:0:0Z"), None);
        assert_eq!(
            parse_rfc3339_ms("1970-01-01T00:00:00-99999999999999:00"),
            None
        );
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 9223372036854775807 08:49:37 GMT"),
            None
        );
        assert_eq!(
            deadline_ms(429, &h(&[("retry-after", "99999999999")]), NOW),
            Some(NOW + MAX_DELAY_MS)
        );
    }
}
