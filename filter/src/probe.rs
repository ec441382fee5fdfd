//! Is a verifier probe's answer a real recovery? A status in `healthy_statuses` is not enough:
//! LLM APIs answer errors with 200 and an error object, and a proxy in front of a dead API
//! answers 200 with an HTML error page. The body must also pass (the configured substring, or
//! valid JSON that is not an error object).

use crate::config::VerifierConfig;

/// The probe verdict, with the reason when unhealthy.
pub fn judge(cfg: &VerifierConfig, status: Option<u16>, body: &[u8]) -> Result<(), String> {
    let Some(status) = status else {
        return Err("no response (reset, timeout or connection failure)".into());
    };
    if !cfg.healthy_statuses.contains(status) {
        return Err(format!("status {status}"));
    }
    if let Some(needle) = &cfg.healthy_body_contains {
        let found =
            !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle.as_bytes());
        return if found {
            Ok(())
        } else {
            Err(format!("status {status} but the body lacks {needle:?}"))
        };
    }
    match crate::json::parse(body) {
        Err(_) => Err(format!("status {status} but the body is not JSON")),
        Ok(v) if is_error_object(&v) => Err(format!("status {status} with an error body")),
        Ok(_) => Ok(()),
    }
}

/// `{"type":"error", ...}` (Anthropic) or `{"error": {...}}` (OpenAI and most others).
fn is_error_object(v: &crate::json::Value) -> bool {
    v.get("type").and_then(|t| t.as_str()) == Some("error")
        || v.get("error").is_some_and(|e| !e.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg(extra: &str) -> VerifierConfig {
        let json = format!(r#"{{"endpoints":[{{"name":"a","cluster":"c"}}]{extra}}}"#);
        Config::parse(json.as_bytes(), &|_| None).unwrap().verifier
    }

    #[test]
    fn a_json_answer_is_healthy() {
        let c = cfg("");
        assert_eq!(
            judge(&c, Some(200), br#"{"type":"message","content":[]}"#),
            Ok(())
        );
    }

    #[test]
    fn error_bodies_status_and_garbage_are_not() {
        let c = cfg("");
        assert!(judge(
            &c,
            Some(200),
            br#"{"type":"error","error":{"type":"overloaded_error"}}"#
        )
        .is_err());
        assert!(judge(&c, Some(200), br#"{"error":{"message":"bad"}}"#).is_err());
        assert!(judge(&c, Some(200), b"<html>oops</html>").is_err());
        assert!(judge(&c, Some(200), b"").is_err());
        assert!(judge(&c, Some(503), br#"{"ok":true}"#).is_err());
        assert!(judge(&c, None, b"").is_err());
        assert_eq!(judge(&c, Some(200), br#"{"error":null,"ok":1}"#), Ok(()));
    }

    #[test]
    fn configured_substring_replaces_the_json_rule() {
        let c = cfg(r#","verifier":{"healthy_body_contains":"OK","healthy_statuses":["2xx"]}"#);
        assert_eq!(judge(&c, Some(204), b"all OK"), Ok(()));
        assert!(judge(&c, Some(200), b"nope").is_err());
    }
}
