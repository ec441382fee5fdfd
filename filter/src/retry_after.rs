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
    if let Ok(secs) = v.parse::<f64>() {
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
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let mut total = 0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
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
