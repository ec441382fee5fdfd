use proptest::prelude::*;

use super::*;
use crate::config::Config;

fn config(extra: &str) -> Config {
    let json = format!(
        r#"{{"endpoints":[
            {{"name":"main","cluster":"c_main","request_headers":{{"x-api-key":"k-main"}}}},
            {{"name":"spare","cluster":"c_spare","authority":"spare.test"}},
            {{"name":"backup","cluster":"c_backup","group":"secondary"}}]{extra}}}"#
    );
    Config::parse(json.as_bytes(), &|_| None).expect("test config")
}

fn h(list: &[(&str, &str)]) -> HeaderList {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn request() -> HeaderList {
    h(&[
        (":authority", "api.test"),
        (":path", "/v1/messages"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("content-length", "12"),
        ("x-failover-cluster", "c_backup"),
        ("x-api-key", "client-supplied"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("x-trace", "abc"),
    ])
}

fn idx(c: &Config, name: &str) -> EndpointIdx {
    c.index_of(name).expect("endpoint")
}

#[test]
fn capture_keeps_what_a_call_needs_and_drops_route_endpoint_and_hop_headers() {
    let c = config("");
    let r = ReplayRequest::capture(&request(), &c).expect("replayable");
    let names: Vec<String> = r
        .headers_for(&c, idx(&c, "backup"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            ":authority",
            ":path",
            ":method",
            ":scheme",
            "content-type",
            "x-trace"
        ]
    );
}

#[test]
fn capture_without_a_required_pseudo_header_is_not_replayable() {
    let c = config("");
    for missing in [":method", ":path", ":authority"] {
        let list: HeaderList = request()
            .into_iter()
            .filter(|(n, _)| n != missing)
            .collect();
        assert_eq!(ReplayRequest::capture(&list, &c), None, "{missing}");
    }
}

#[test]
fn headers_for_an_endpoint_use_its_authority_and_its_own_headers_only() {
    let c = config("");
    let r = ReplayRequest::capture(&request(), &c).expect("replayable");
    let spare = r.headers_for(&c, idx(&c, "spare"));
    let authorities: Vec<&str> = spare
        .iter()
        .filter(|(n, _)| n == ":authority")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(authorities, ["spare.test"]);
    assert!(!spare.iter().any(|(n, _)| n == "x-api-key"));
    let main = r.headers_for(&c, idx(&c, "main"));
    let keys: Vec<&str> = main
        .iter()
        .filter(|(n, _)| n == "x-api-key")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(keys, ["k-main"], "the client's copy never goes out");
    assert!(main.contains(&(":authority".into(), "api.test".into())));
}

#[test]
fn refused_sends_are_excluded_but_neither_counted_nor_named() {
    let c = config("");
    let mut a = Attempts::default();
    a.attempted(idx(&c, "main"));
    a.refused(idx(&c, "spare"));
    assert!(a.may_attempt(2), "a refused send does not use an attempt");
    assert_eq!(a.excluded(), [idx(&c, "main"), idx(&c, "spare")]);
    assert_eq!(a.tried_list(&c), "main");
    a.attempted(idx(&c, "backup"));
    assert!(!a.may_attempt(2));
    assert_eq!(a.tried_list(&c), "main, backup");
}

#[test]
fn a_failure_is_first_only_once_per_endpoint() {
    let c = config("");
    let mut a = Attempts::default();
    assert!(a.first_failure(idx(&c, "main")));
    assert!(!a.first_failure(idx(&c, "main")));
    assert!(a.first_failure(idx(&c, "spare")));
}

#[test]
fn hold_only_when_configured_replayable_and_keepable() {
    let held = config(r#","failover":{"hold_headers":true,"max_request_bytes":100}"#);
    assert!(hold_request(&held, false, Some(100)));
    assert!(
        hold_request(&held, false, None),
        "chunked: held until it passes the limit"
    );
    assert!(
        !hold_request(&held, false, Some(101)),
        "over the limit streams"
    );
    assert!(!hold_request(&held, false, Some(0)), "no body to wait for");
    assert!(!hold_request(&held, true, None), "headers only");
    assert!(
        !hold_request(&config(""), false, Some(10)),
        "off by default"
    );
    let one = config(r#","failover":{"hold_headers":true,"max_attempts":1}"#);
    assert!(!hold_request(&one, false, Some(10)), "nothing to replay");
}

#[test]
fn kept_body_gives_up_over_the_limit_and_says_why() {
    let mut b = KeptBody::default();
    assert_eq!(b.not_replayable(), Some(NotReplayable::BodyIncomplete));
    assert!(b.fits(4, 4));
    b.keep(b"ab".to_vec());
    assert_eq!(&*b.bytes(), b"ab");
    b.keep(Vec::new());
    b.keep(b"cd".to_vec());
    assert_eq!(b.len(), 4);
    assert!(!b.fits(1, 4));
    b.complete();
    assert_eq!(b.not_replayable(), None);
    assert_eq!(&*b.bytes(), b"abcd");
    b.give_up();
    assert_eq!(b.not_replayable(), Some(NotReplayable::BodyOverLimit));
    assert!(b.is_empty());
    b.keep(b"more".to_vec());
    assert!(b.is_empty(), "nothing is kept after giving up");
}

#[test]
fn streamed_requests_get_the_stream_budget() {
    let c = config(r#","failover":{"attempt_timeout_ms":5000,"stream_attempt_timeout_ms":900000}"#);
    assert_eq!(replay_timeout_ms(&c, false), 5000);
    assert_eq!(replay_timeout_ms(&c, true), 900_000);
    assert!(body_asks_for_stream(br#" {"model":"m","stream":true}"#));
    assert!(!body_asks_for_stream(br#"{"model":"m","stream":false}"#));
    assert!(!body_asks_for_stream(br#"{"model":"m","stream":"yes"}"#));
    assert!(!body_asks_for_stream(b"stream=true"));
    assert!(!body_asks_for_stream(b""));
    let mut list = request();
    list.push(("accept".into(), b"text/event-stream".to_vec()));
    let r = ReplayRequest::capture(&list, &config("")).expect("replayable");
    assert!(r.accepts_event_stream());
}

#[test]
fn only_a_spent_budget_is_ours() {
    assert!(budget_ran_out(5000, 5000));
    assert!(budget_ran_out(4950, 5000), "within the margin");
    assert!(
        !budget_ran_out(10, 5000),
        "a quick failure is the endpoint's"
    );
    assert!(!budget_ran_out(4000, 5000));
    assert!(budget_ran_out(1, 1));
}

#[test]
fn only_a_504_or_no_answer_at_the_deadline_is_our_timeout() {
    assert!(ours_timed_out(Some(504), 300, 300));
    assert!(ours_timed_out(None, 301, 300));
    assert!(
        !ours_timed_out(Some(504), 20, 300),
        "an upstream's quick 504 is its own"
    );
    assert!(
        !ours_timed_out(Some(503), 300, 300),
        "only the timeout's local reply"
    );
    assert!(
        !ours_timed_out(None, 5, 300),
        "a quick reset is the endpoint's"
    );
}

#[test]
fn first_event_is_judged_at_its_blank_line() {
    assert_eq!(first_event(b""), FirstEvent::Pending);
    assert_eq!(first_event(b"event: message_start\n"), FirstEvent::Pending);
    assert_eq!(
        first_event(b"event: message_start\ndata: {}\n\n"),
        FirstEvent::Good
    );
    assert_eq!(
        first_event(b"event: error\ndata: {\"type\":\"error\"}\n\n"),
        FirstEvent::Error
    );
    assert_eq!(
        first_event(b"event: error\r\ndata: x\r\n\r\n"),
        FirstEvent::Error
    );
    assert_eq!(
        first_event(b"event: error\r\ndata: x\r\n\r"),
        FirstEvent::Pending
    );
    assert_eq!(
        first_event(b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n"),
        FirstEvent::Error
    );
    assert_eq!(
        first_event(b": ping\n\nevent: error\ndata: {}\n\n"),
        FirstEvent::Error,
        "a comment block is not the first event"
    );
    assert_eq!(first_event(b": ping\n\n"), FirstEvent::Pending);
    assert_eq!(
        first_event(b"data: {\"type\":\"message_start\"}\n\nevent: error\n\n"),
        FirstEvent::Good,
        "only the first event decides"
    );
}

proptest! {
    /// Splitting a stream anywhere never changes the verdict once the first event is whole:
    /// a prefix is either still pending or already has the final answer.
    #[test]
    fn first_event_verdict_is_stable_over_prefixes(
        events in proptest::collection::vec(
            prop_oneof![
                Just(": ping\n\n".to_string()),
                Just("event: error\ndata: {\"type\":\"error\"}\n\n".to_string()),
                Just("event: message_start\r\ndata: {}\r\n\r\n".to_string()),
                Just("data: {\"error\":{\"m\":1}}\n\n".to_string()),
                Just("data: hello\n\n".to_string()),
            ],
            1..6,
        ),
    ) {
        let stream = events.concat();
        let whole = first_event(stream.as_bytes());
        for cut in 0..=stream.len() {
            let v = first_event(&stream.as_bytes()[..cut]);
            prop_assert!(v == FirstEvent::Pending || v == whole, "cut {cut}: {v:?} vs {whole:?}");
        }
    }

    /// However attempts and refusals interleave, the tried list names exactly the attempted
    /// endpoints, attempts never pass the limit when the caller asks `may_attempt` first, and
    /// every endpoint is a first failure at most once.
    #[test]
    fn attempts_bookkeeping_holds(ops in proptest::collection::vec((0usize..3, any::<bool>()), 0..20), max in 1u32..4) {
        let c = config("");
        let mut a = Attempts::default();
        let mut attempted = Vec::new();
        let mut firsts = 0;
        for (i, accept) in ops {
            let e = EndpointIdx(i);
            if a.first_failure(e) {
                firsts += 1;
            }
            if a.excluded().contains(&e) || !a.may_attempt(max) {
                continue;
            }
            if accept {
                a.attempted(e);
                attempted.push(c.endpoint(e).id.as_str().to_string());
            } else {
                a.refused(e);
            }
        }
        prop_assert!(a.tried().len() <= max as usize);
        prop_assert_eq!(a.tried_list(&c), attempted.join(", "));
        prop_assert!(firsts <= 3);
    }
}
