//! Schedules, transition counting, and the request log.

mod common;

use std::time::{Duration, Instant};

use common::*;
use failover_examples::mock::{self, FailMode, MockOptions, Schedule};

async fn spawn(s: Schedule) -> mock::MockUpstream {
    mock::spawn_with(local(), s, MockOptions::named("f"))
        .await
        .expect("mock starts")
}

/// What a sequential client sees: Some(status) or None for a connection-level failure.
async fn probe(m: &mock::MockUpstream) -> Option<u16> {
    match send(m.addr(), "GET", "/traffic", &[], "", STEP).await {
        Ok(r) => Some(r.status().as_u16()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn flap_down_transitions_match_what_a_sequential_client_saw() {
    let m = spawn(Schedule::Flap {
        healthy_for: Duration::from_millis(120),
        failing_for: Duration::from_millis(120),
        failing: FailMode::status(503),
    })
    .await;
    let mut seen_down = 0u64;
    let mut prev_down = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Run until the client itself has seen three healthy->down changes.
    while seen_down < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "flap too slow to observe"
        );
        let down = probe(&m).await != Some(200);
        if down && !prev_down {
            seen_down += 1;
        }
        prev_down = down;
    }
    let s = m.stats();
    assert_eq!(
        s.down_transitions, seen_down,
        "mock counts what requests observed"
    );
    assert!(s.scheduled_down_transitions >= s.down_transitions);
    assert!(s.mode_changes >= 2 * seen_down);
    assert_eq!(s.healthy_answers + s.failed_answers, s.requests);
}

#[tokio::test]
async fn unobserved_failures_are_not_counted() {
    let m = spawn(Schedule::default()).await;
    assert_eq!(probe(&m).await, Some(200));
    // Down and back up with no request in between: nobody could have noticed.
    m.set_mode(FailMode::status(503)).await;
    m.set_mode(FailMode::Healthy).await;
    assert_eq!(probe(&m).await, Some(200));
    let s = m.stats();
    assert_eq!(s.scheduled_down_transitions, 1);
    assert_eq!(s.down_transitions, 0);
    // Observed this time.
    m.set_mode(FailMode::status(503)).await;
    assert_eq!(probe(&m).await, Some(503));
    assert_eq!(probe(&m).await, Some(503));
    m.set_mode(FailMode::ResetBeforeHeaders).await;
    assert_eq!(probe(&m).await, None, "still down, different fault");
    let s = m.stats();
    assert_eq!(s.down_transitions, 1, "down->down is not a new transition");
    assert_eq!(s.scheduled_down_transitions, 2);
}

#[tokio::test]
async fn client_errors_are_not_down() {
    let m = spawn(Schedule::Fixed(FailMode::status(400))).await;
    for _ in 0..3 {
        assert_eq!(probe(&m).await, Some(400));
    }
    m.set_mode(FailMode::status(422)).await;
    assert_eq!(probe(&m).await, Some(422));
    let s = m.stats();
    assert_eq!(s.down_transitions, 0);
    assert_eq!(s.failed_answers, 4);
}

#[tokio::test]
async fn steps_run_in_order_and_keep_the_last() {
    let m = spawn(
        "steps:150ms=status:503;150ms=refuse;1s=healthy"
            .parse()
            .expect("schedule parses"),
    )
    .await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "steps never reached healthy"
        );
        let r = probe(&m).await;
        if seen.last() != Some(&r) {
            seen.push(r);
        }
        if r == Some(200) {
            break;
        }
    }
    assert_eq!(seen.first(), Some(&Some(503)));
    assert_eq!(seen.last(), Some(&Some(200)));
    assert!(
        seen.iter()
            .all(|r| matches!(r, Some(503) | None | Some(200))),
        "{seen:?}"
    );
    assert_eq!(m.mode(), FailMode::Healthy);
    let s = m.stats();
    assert_eq!(s.down_transitions, 1, "503 then refuse is one down period");
    assert_eq!(s.up_transitions, 1);
}

#[tokio::test]
async fn flap_with_refuse_counts_refusals_at_entry() {
    let m = spawn(Schedule::Flap {
        healthy_for: Duration::from_millis(100),
        failing_for: Duration::from_millis(100),
        failing: FailMode::Refuse,
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    let mut answered = 0;
    while refused == 0 || answered < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal observed"
        );
        match probe(&m).await {
            Some(200) => answered += 1,
            None => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let s = m.stats();
    assert!(s.down_transitions >= 1);
    assert!(s.down_transitions <= s.scheduled_down_transitions);
    // Refused connections never reach the handler; only a connection accepted just before the
    // switch to `refuse` can be answered (closed) in that mode — and the client saw each of
    // those as a failure too.
    assert!(
        s.failed_answers <= refused,
        "handler failures {} > client-observed failures {refused}",
        s.failed_answers
    );
}

#[tokio::test]
async fn request_log_and_timestamps() {
    let m = spawn(Schedule::default()).await;
    get(m.addr(), "/before").await.expect("answered");
    let mark = Instant::now();
    assert_eq!(m.first_request_after(mark, None), None);
    get(m.addr(), "/probe").await.expect("answered");
    get(m.addr(), "/traffic").await.expect("answered");
    let after = m.requests_since(mark);
    assert_eq!(
        after.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/probe", "/traffic"]
    );
    let first = m.first_request_after(mark, Some("/traffic")).expect("seen");
    assert!(first >= mark);
    assert_eq!(m.first_request_after(mark, Some("/nowhere")), None);
    assert!(after[0].seq < after[1].seq);
    assert!(after[0].at_ms <= after[1].at_ms);
}

#[tokio::test]
async fn log_is_bounded() {
    let m = mock::spawn_with(
        local(),
        Schedule::default(),
        MockOptions {
            name: "small".into(),
            log_capacity: 3,
            record_headers: false,
        },
    )
    .await
    .expect("mock starts");
    for p in ["/1", "/2", "/3", "/4", "/5"] {
        get(m.addr(), p).await.expect("answered");
    }
    let log = m.requests();
    assert_eq!(
        log.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/3", "/4", "/5"]
    );
    assert!(
        log[0].headers.is_empty(),
        "headers not recorded when told so"
    );
    let s = m.stats();
    assert_eq!(s.log_dropped, 2);
    assert_eq!(s.requests, 5);
    assert_eq!(
        s.requests_with_header("host"),
        5,
        "header counts kept anyway"
    );
}

#[tokio::test]
async fn reset_stats_keeps_the_observed_state_as_baseline() {
    let m = spawn(Schedule::Fixed(FailMode::status(503))).await;
    assert_eq!(probe(&m).await, Some(503));
    assert_eq!(m.stats().down_transitions, 1);
    m.reset_stats();
    let s = m.stats();
    assert_eq!((s.requests, s.down_transitions, s.connections), (0, 0, 0));
    assert_eq!(s.name, "f");
    // Still down: no new transition after the reset.
    assert_eq!(probe(&m).await, Some(503));
    assert_eq!(m.stats().down_transitions, 0);
    m.set_mode(FailMode::Healthy).await;
    assert_eq!(probe(&m).await, Some(200));
    m.set_mode(FailMode::status(529)).await;
    assert_eq!(probe(&m).await, Some(529));
    let s = m.stats();
    assert_eq!((s.up_transitions, s.down_transitions), (1, 1));
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let m = spawn(Schedule::default()).await;
    let addr = m.addr();
    assert_eq!(probe(&m).await, Some(200));
    m.shutdown();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match send(addr, "GET", "/", &[], "", STEP).await {
            Err(Failure::Connect(_)) => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "still listening"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
