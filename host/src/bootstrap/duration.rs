//! Envoy's `google.protobuf.Duration` JSON form: `"5s"`, `"0.25s"`, `"1.000000001s"`.

use std::time::Duration;

/// Parses a proto3 JSON duration (seconds with up to 9 fractional digits and an `s` suffix).
///
/// # Errors
/// A message saying what a valid value looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (expected seconds like \"5s\" or \"0.25s\")");
    let number = text.strip_suffix('s').ok_or_else(bad)?;
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (number.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let secs: u64 = whole.parse().map_err(|_| bad())?;
    // Envoy's Duration range: up to 315,576,000,000 s.
    if secs > 315_576_000_000 {
        return Err(format!("{text:?} is out of range"));
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_forms() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "5",
            "5ms",
            "-1s",
            "s",
            ".5s",
            "1.s",
            "1.0000000001s",
            "1e3s",
            " 5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
