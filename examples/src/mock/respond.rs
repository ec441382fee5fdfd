//! The texts the mock sends: an LLM-style messages answer, its SSE form, and error bodies.
//! Pure functions, so their shape is easy to check.

use serde_json::json;

/// Healthy JSON answer, shaped like an Anthropic messages response, plus a `mock` object
/// saying which mock answered and what it received.
pub fn healthy_json(name: &str, method: &str, path: &str, request_bytes: u64) -> String {
    json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": "mock",
        "content": [{ "type": "text", "text": format!("hello from {name}") }],
        "stop_reason": "end_turn",
        "usage": { "input_tokens": request_bytes, "output_tokens": 3 },
        "mock": { "name": name, "method": method, "path": path, "request_bytes": request_bytes }
    })
    .to_string()
}

/// One SSE frame.
pub fn sse_frame(event: &str, data: &serde_json::Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// The frames of a complete healthy streamed answer (message_start ... message_stop).
pub fn healthy_sse(name: &str) -> Vec<String> {
    let mut frames = vec![
        sse_frame(
            "message_start",
            &json!({"type":"message_start","message":{"id":"msg_mock","type":"message",
                "role":"assistant","model":"mock","content":[],"mock":{"name":name}}}),
        ),
        sse_frame(
            "content_block_start",
            &json!({"type":"content_block_start","index":0,
                "content_block":{"type":"text","text":""}}),
        ),
    ];
    for word in ["hello ", "from ", name] {
        frames.push(delta(word));
    }
    frames.push(sse_frame(
        "content_block_stop",
        &json!({"type":"content_block_stop","index":0}),
    ));
    frames.push(sse_frame(
        "message_delta",
        &json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},
            "usage":{"output_tokens":3}}),
    ));
    frames.push(sse_frame("message_stop", &json!({"type":"message_stop"})));
    frames
}

/// A text delta frame.
pub fn delta(text: &str) -> String {
    sse_frame(
        "content_block_delta",
        &json!({"type":"content_block_delta","index":0,
            "delta":{"type":"text_delta","text":text}}),
    )
}

/// The `event: error` frame an overloaded LLM API sends mid-stream.
pub fn sse_error_frame() -> String {
    sse_frame(
        "error",
        &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    )
}

/// Default body for a `status:CODE` answer with no body given: an Anthropic-style error
/// object for error codes, a small JSON object otherwise.
pub fn status_body(code: u16, name: &str) -> String {
    let kind = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        c if c >= 400 => "api_error",
        _ => return json!({"mock": {"name": name, "status": code}}).to_string(),
    };
    json!({"type":"error","error":{"type":kind,"message":format!("mock {name}: status {code}")}})
        .to_string()
}

/// Whether a request body asks for a streamed answer (`"stream": true`).
pub fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_json_names_the_mock() {
        let v: serde_json::Value =
            serde_json::from_str(&healthy_json("a", "POST", "/v1/messages", 12)).expect("json");
        assert_eq!(v["type"], "message");
        assert_eq!(v["mock"]["name"], "a");
        assert_eq!(v["mock"]["request_bytes"], 12);
    }

    #[test]
    fn sse_frames_are_well_formed() {
        let frames = healthy_sse("b");
        assert!(frames[0].starts_with("event: message_start\ndata: {"));
        assert!(frames.iter().all(|f| f.ends_with("}\n\n")));
        assert!(frames
            .last()
            .is_some_and(|f| f.starts_with("event: message_stop")));
        assert!(sse_error_frame().starts_with("event: error\n"));
    }

    #[test]
    fn status_bodies() {
        let v: serde_json::Value = serde_json::from_str(&status_body(529, "x")).expect("json");
        assert_eq!(v["error"]["type"], "overloaded_error");
        let v: serde_json::Value = serde_json::from_str(&status_body(204, "x")).expect("json");
        assert!(v.get("type").is_none());
    }

    #[test]
    fn stream_detection() {
        assert!(wants_stream(br#"{"stream":true,"model":"m"}"#));
        assert!(!wants_stream(br#"{"stream":false}"#));
        assert!(!wants_stream(b"not json"));
    }
}
