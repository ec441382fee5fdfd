use super::*;
use proptest::prelude::*;
use serde_json::json;

// "/failover/v1" in base64, and "{}" ("e30=").
const KEY: &str = "/failover/v1";
const KEY64: &str = "L2ZhaWxvdmVyL3Yx";

#[test]
fn golden_range_request() {
    assert_eq!(
        String::from_utf8(range_request(KEY)).unwrap(),
        r#"{"key":"L2ZhaWxvdmVyL3Yx"}"#
    );
}

#[test]
fn golden_txn_requests() {
    // Compare on the mod_revision read, as a decimal string; put on success, read on failure.
    let expected = concat!(
        r#"{"compare":[{"key":"L2ZhaWxvdmVyL3Yx","target":"MOD","result":"EQUAL","mod_revision":"42"}],"#,
        r#""success":[{"request_put":{"key":"L2ZhaWxvdmVyL3Yx","value":"e30="}}],"#,
        r#""failure":[{"request_range":{"key":"L2ZhaWxvdmVyL3Yx"}}]}"#
    );
    assert_eq!(
        String::from_utf8(txn_request(KEY, Some(42), b"{}")).unwrap(),
        expected
    );
    // A missing key: create_revision 0 means "does not exist".
    let create = concat!(
        r#"{"compare":[{"key":"L2ZhaWxvdmVyL3Yx","target":"CREATE","result":"EQUAL","create_revision":"0"}],"#,
        r#""success":[{"request_put":{"key":"L2ZhaWxvdmVyL3Yx","value":"e30="}}],"#,
        r#""failure":[{"request_range":{"key":"L2ZhaWxvdmVyL3Yx"}}]}"#
    );
    assert_eq!(
        String::from_utf8(txn_request(KEY, None, b"{}")).unwrap(),
        create
    );
}

#[test]
fn range_answers_as_etcd_sends_them() {
    // From etcd's api_grpc_gateway.md.
    let found = format!(
        r#"{{"header":{{"cluster_id":"12585971608760269493","member_id":"13847567121247652255","revision":"2","raft_term":"3"}},"kvs":[{{"key":"{KEY64}","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}],"count":"1"}}"#
    );
    assert_eq!(
        parse_range(Some(200), found.as_bytes()),
        Ok(Some(Kv {
            value: b"bar".to_vec(),
            mod_revision: 2
        }))
    );
    // A missing key: no kvs, no count (proto3 drops zero values).
    let missing = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"3"}}"#;
    assert_eq!(parse_range(Some(200), missing.as_bytes()), Ok(None));
    // An empty value is left out too.
    let empty =
        r#"{"header":{},"kvs":[{"key":"L2ZhaWxvdmVyL3Yx","mod_revision":"9"}],"count":"1"}"#;
    assert_eq!(
        parse_range(Some(200), empty.as_bytes()),
        Ok(Some(Kv {
            value: Vec::new(),
            mod_revision: 9
        }))
    );
}

#[test]
fn txn_answers_both_branches() {
    let ok = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]}"#;
    assert_eq!(
        parse_txn(Some(200), ok.as_bytes()),
        Ok(TxnOutcome::Succeeded { revision: 3 })
    );
    // A failed compare: `succeeded` is absent (false), the failure branch's range is there.
    let lost = r#"{"header":{"revision":"8"},"responses":[{"response_range":{"header":{"revision":"8"},"kvs":[{"key":"L2ZhaWxvdmVyL3Yx","create_revision":"2","mod_revision":"8","version":"4","value":"YmF6"}],"count":"1"}}]}"#;
    assert_eq!(
        parse_txn(Some(200), lost.as_bytes()),
        Ok(TxnOutcome::Failed {
            current: Some(Kv {
                value: b"baz".to_vec(),
                mod_revision: 8
            })
        })
    );
    let gone = r#"{"header":{"revision":"8"},"responses":[{"response_range":{"header":{"revision":"8"}}}]}"#;
    assert_eq!(
        parse_txn(Some(200), gone.as_bytes()),
        Ok(TxnOutcome::Failed { current: None })
    );
}

#[test]
fn answers_captured_from_a_real_etcd_3_4() {
    // etcd 3.4.23 (Debian etcd-server), key "fl/v1", value "hello", captured with curl from
    // the requests golden_txn_requests pins (snake_case in, snake_case out).
    let created = r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
    assert_eq!(
        parse_txn(Some(200), created.as_bytes()),
        Ok(TxnOutcome::Succeeded { revision: 2 })
    );
    let lost = r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"3","raft_term":"2"},"responses":[{"response_range":{"header":{"revision":"3"},"kvs":[{"key":"ZmwvdjE=","create_revision":"2","mod_revision":"3","version":"2","value":"aGVsbG8="}],"count":"1"}}]}"#;
    let current = Some(Kv {
        value: b"hello".to_vec(),
        mod_revision: 3,
    });
    assert_eq!(
        parse_txn(Some(200), lost.as_bytes()),
        Ok(TxnOutcome::Failed {
            current: current.clone()
        })
    );
    // The same answer in protobuf JSON's camelCase spelling.
    let camel = lost
        .replace("response_range", "responseRange")
        .replace("mod_revision", "modRevision");
    assert_eq!(
        parse_txn(Some(200), camel.as_bytes()),
        Ok(TxnOutcome::Failed { current })
    );
}

#[test]
fn errors_never_panic() {
    let auth = br#"{"error":"etcdserver: user name is empty","code":2,"message":"etcdserver: user name is empty"}"#;
    assert_eq!(
        parse_range(Some(401), auth),
        Err(EtcdError::Status {
            status: Some(401),
            message: "etcdserver: user name is empty".into()
        })
    );
    assert!(matches!(
        parse_txn(None, b""),
        Err(EtcdError::Status { status: None, .. })
    ));
    for bad in [
        &b""[..],
        b"[]",
        b"null",
        br#"{"kvs":7}"#,
        br#"{"kvs":[{"value":"YmFy"}]}"#,
        br#"{"kvs":[{"value":"!!","mod_revision":"1"}]}"#,
        br#"{"kvs":[{"value":"YmFy","mod_revision":"x"}]}"#,
        br#"{"kvs":[{"value":"YmFy","mod_revision":"0"}]}"#,
    ] {
        assert!(
            matches!(parse_range(Some(200), bad), Err(EtcdError::Shape(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [
        &br#"{"succeeded":true}"#[..],
        br#"{"succeeded":"yes"}"#,
        br#"{"responses":[]}"#,
        br#"{}"#,
    ] {
        assert!(
            matches!(parse_txn(Some(200), bad), Err(EtcdError::Shape(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80), status in proptest::option::of(100u16..600)) {
        let _ = parse_range(status, &bytes);
        let _ = parse_txn(status, &bytes);
    }

    #[test]
    fn what_we_put_is_what_we_read(value in proptest::collection::vec(any::<u8>(), 0..100), rev in 1i64..i64::MAX) {
        // A range answer carrying exactly what a txn put.
        let txn: serde_json::Value = serde_json::from_slice(&txn_request(KEY, Some(rev), &value)).unwrap();
        let put = &txn["success"][0]["request_put"];
        let answer = json!({"kvs":[{"key": put["key"], "value": put["value"], "mod_revision": rev.to_string()}]});
        let kv = parse_range(Some(200), answer.to_string().as_bytes()).unwrap().unwrap();
        prop_assert_eq!(kv, Kv { value, mod_revision: rev });
    }
}
