//! Every fail mode, observed from a plain hyper client.

mod common;

use std::io::ErrorKind as Io;
use std::time::Duration;

use common::*;
use failover_examples::mock::{self, FailMode, MockOptions, Schedule};
use http_body_util::BodyExt;

async fn mock_in(mode: FailMode) -> mock::MockUpstream {
    mock::spawn_with(local(), Schedule::Fixed(mode), MockOptions::named("a"))
        .await
        .expect("mock starts")
}

#[tokio::test]
async fn healthy_answers_json_naming_the_mock_and_counts_headers() {
    let m = mock_in(FailMode::Healthy).await;
    let body = r#"{"model":"m","messages":[]}"#;
    let resp = send(
        m.addr(),
        "POST",
        "/v1/messages",
        &[
            ("x-api-key", "secret-1"),
            ("content-type", "application/json"),
        ],
        body,
        STEP,
    )
    .await
    .expect("answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "a");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json body");
    assert_eq!(v["type"], "message");
    assert_eq!(v["mock"]["name"], "a");
    assert_eq!(v["mock"]["request_bytes"], body.len());

    let s = m.stats();
    assert_eq!(s.requests, 1);
    assert_eq!(s.requests_on("/v1/messages"), 1);
    assert_eq!(s.requests_with_header("X-Api-Key"), 1);
    assert_eq!(s.requests_with_header("connection"), 0);
    assert_eq!(s.healthy_answers, 1);
    assert_eq!(s.failed_answers, 0);
    assert_eq!(s.by_status.get(&200), Some(&1));
    let log = m.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].header("x-api-key"), Some("secret-1"));
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].body_len, body.len() as u64);
}

#[tokio::test]
async fn healthy_streams_when_asked() {
    let m = mock_in(FailMode::Healthy).await;
    let resp = send(
        m.addr(),
        "POST",
        "/v1/messages",
        &[],
        r#"{"stream":true}"#,
        STEP,
    )
    .await
    .expect("answered");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (frames, err) = read_frames(resp.into_body()).await;
    assert!(err.is_none(), "healthy stream ends cleanly: {err:?}");
    let text: String = frames.iter().map(|f| String::from_utf8_lossy(f)).collect();
    assert!(text.starts_with("event: message_start\n"));
    assert!(text.contains("event: message_stop\n"));
    assert!(!text.contains("event: error"));
}

#[tokio::test]
async fn status_modes_send_status_headers_and_body() {
    let m = mock_in(FailMode::Healthy).await;
    type Case<'a> = (&'a str, u16, Option<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 6] = [
        ("status:503", 503, None, "api_error"),
        (
            "status:429:retry-after=3",
            429,
            Some(("retry-after", "3")),
            "rate_limit_error",
        ),
        ("status:400", 400, None, "invalid_request_error"),
        ("status:422", 422, None, "api_error"),
        ("status:529", 529, None, "overloaded_error"),
        ("error-body", 200, None, "api_error"),
    ];
    for (mode, code, header, err_type) in cases {
        m.set_mode(mode.parse().expect("mode parses")).await;
        let (parts, body) = get(m.addr(), "/v1/messages").await.expect("answered");
        assert_eq!(parts.status.as_u16(), code, "{mode}");
        if let Some((k, v)) = header {
            assert_eq!(parts.headers[k], v, "{mode}");
        }
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["type"], "error", "{mode}");
        assert_eq!(v["error"]["type"], err_type, "{mode}");
    }
    let s = m.stats();
    assert_eq!(
        s.failed_answers, 6,
        "a 200 with an error body is not healthy"
    );
    assert_eq!(s.healthy_answers, 0);
}

#[tokio::test]
async fn refuse_refuses_connections_and_listens_again_after() {
    let m = mock_in(FailMode::Healthy).await;
    // An idle keep-alive connection made before `refuse` is closed by the mock.
    let mut idle = tokio::net::TcpStream::connect(m.addr())
        .await
        .expect("connects");
    m.wait_until(STEP, |s| s.connections == 1)
        .await
        .expect("connection accepted");
    m.set_mode(FailMode::Refuse).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read(&mut idle, &mut buf))
        .await
        .expect("idle connection closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "idle connection must be closed, got {n:?}"
    );

    match send(m.addr(), "GET", "/", &[], "", STEP).await {
        Err(Failure::Connect(e)) => assert_eq!(e.kind(), Io::ConnectionRefused),
        other => panic!("expected a refused connection, got {other:?}"),
    }
    m.set_mode(FailMode::Healthy).await;
    let (parts, _) = get(m.addr(), "/").await.expect("listening again");
    assert_eq!(parts.status, 200);
    let s = m.stats();
    assert_eq!(s.down_transitions, 1, "refusal counts as one observed down");
    assert_eq!(s.up_transitions, 1);
}

#[tokio::test]
async fn reset_before_headers_is_a_reset_with_no_response() {
    let m = mock_in(FailMode::ResetBeforeHeaders).await;
    match send(m.addr(), "POST", "/v1/messages", &[], "hello", STEP).await {
        Err(Failure::BeforeHeaders(e)) => {
            assert_eq!(
                io_kind(&e),
                Some(Io::ConnectionReset),
                "RST, not FIN: {e:?}"
            )
        }
        other => panic!("expected an error before headers, got {other:?}"),
    }
    let s = m
        .wait_until(STEP, |s| s.in_flight == 0)
        .await
        .expect("request leaves flight");
    assert_eq!(s.requests, 1, "the request was read");
    assert_eq!(s.request_body_bytes, 5);
    assert_eq!(s.failed_answers, 1);
    assert!(s.by_status.is_empty(), "no status was sent");
}

#[tokio::test]
async fn reset_mid_body_fails_after_headers() {
    let m = mock_in(FailMode::ResetMidBody).await;
    let resp = send(m.addr(), "GET", "/", &[], "", STEP)
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let (frames, err) = read_frames(resp.into_body()).await;
    let err = err.expect("body must fail");
    assert!(!frames.is_empty(), "part of the body arrived first");
    assert_eq!(
        io_kind(&err),
        Some(Io::ConnectionReset),
        "RST mid-body: {err:?}"
    );
}

#[tokio::test]
async fn hang_never_answers_and_leaves_flight_when_client_goes() {
    let m = mock_in(FailMode::Hang).await;
    let r = send(m.addr(), "GET", "/", &[], "", Duration::from_millis(300)).await;
    assert!(
        matches!(r, Err(Failure::Timeout)),
        "client timeout expected: {r:?}"
    );
    // The timed-out client dropped its connection: the mock notices and ends the request.
    let s = m
        .wait_until(STEP, |s| s.requests == 1 && s.in_flight == 0)
        .await
        .expect("hung request ends when the client closes");
    assert_eq!(s.in_flight_max, 1);
    assert!(s.by_status.is_empty());
}

#[tokio::test]
async fn in_flight_max_counts_real_concurrency() {
    let m = mock_in(FailMode::Hang).await;
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let addr = m.addr();
            tokio::spawn(async move { send(addr, "GET", "/", &[], "", STEP).await })
        })
        .collect();
    let s = m
        .wait_until(STEP, |s| s.in_flight == 10)
        .await
        .expect("ten requests hang at once");
    assert_eq!(s.in_flight_max, 10);
    for c in clients {
        c.abort();
    }
    m.wait_until(STEP, |s| s.in_flight == 0)
        .await
        .expect("all leave flight");
}

#[tokio::test]
async fn slow_trickles_a_complete_body() {
    let m = mock_in(FailMode::Slow {
        bytes_per_sec: 2000,
    })
    .await;
    let resp = send(m.addr(), "GET", "/", &[], "", STEP)
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200);
    let (frames, err) = read_frames(resp.into_body()).await;
    assert!(err.is_none());
    assert!(
        frames.len() > 2,
        "body arrives in pieces, got {}",
        frames.len()
    );
    let body: Vec<u8> = frames.concat();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("complete json");
    assert_eq!(v["mock"]["name"], "a");
    assert_eq!(m.stats().healthy_answers, 1);
}

#[tokio::test]
async fn delay_holds_the_answer() {
    let m = mock_in(FailMode::Delay {
        delay: Duration::from_secs(30),
    })
    .await;
    let r = send(m.addr(), "GET", "/", &[], "", Duration::from_millis(200)).await;
    assert!(matches!(r, Err(Failure::Timeout)), "{r:?}");
    m.set_mode(FailMode::Delay {
        delay: Duration::from_millis(1),
    })
    .await;
    let (parts, _) = get(m.addr(), "/").await.expect("answered after the delay");
    assert_eq!(parts.status, 200);
}

#[tokio::test]
async fn sse_cut_sends_n_events_then_breaks() {
    for n in [0usize, 2, 5] {
        let m = mock_in(FailMode::SseCut { events: n }).await;
        let resp = send(m.addr(), "POST", "/v1/messages", &[], "{}", STEP)
            .await
            .expect("headers arrive");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let (frames, err) = read_frames(resp.into_body()).await;
        assert!(err.is_some(), "a cut stream must not end cleanly (n={n})");
        let text: String = frames.iter().map(|f| String::from_utf8_lossy(f)).collect();
        assert_eq!(
            text.matches("\n\n").count(),
            n,
            "complete events before the cut"
        );
        assert_eq!(text.matches("event: ").count(), n);
    }
}

#[tokio::test]
async fn sse_error_ends_with_an_error_event() {
    let m = mock_in(FailMode::SseError).await;
    let resp = send(m.addr(), "POST", "/v1/messages", &[], "{}", STEP)
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200);
    let (frames, err) = read_frames(resp.into_body()).await;
    assert!(err.is_none(), "the stream itself is well-formed");
    let text: String = frames.iter().map(|f| String::from_utf8_lossy(f)).collect();
    let last = text.trim_end().rsplit("\n\n").next().expect("an event");
    assert!(
        last.starts_with("event: error\ndata: {"),
        "last event: {last}"
    );
    assert!(last.contains("overloaded_error"));
    assert_eq!(m.stats().failed_answers, 1);
}
