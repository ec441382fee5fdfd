//! The demo's client: a few concurrent loops posting LLM-style requests through the proxy and
//! counting what came back (status, which mock answered, failovers).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Client-side counts.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers.
    pub failed: u64,
    /// Transport errors (no answer at all).
    pub errors: u64,
    /// Mock name → answers.
    pub answered_by: BTreeMap<String, u64>,
    /// Answers from a mock other than the preferred one (`flaky`) while it was queued or
    /// failing: the filter moved the request.
    pub failovers: u64,
}

/// Sends requests from `concurrency` loops, one every `pace` per loop, until dropped. Loop `i`
/// sends to `proxies[i % proxies.len()]`, so traffic is spread evenly over the proxies.
pub async fn run(
    proxies: Vec<SocketAddr>,
    concurrency: usize,
    pace: Duration,
    tally: Arc<Mutex<Tally>>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut loops = Vec::new();
    for proxy in proxies
        .iter()
        .copied()
        .cycle()
        .take(concurrency.max(proxies.len()))
    {
        let client = client.clone();
        let tally = tally.clone();
        loops.push(async move {
            loop {
                let body = Bytes::from_static(br#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hello"}]}"#);
                let req = http::Request::post(format!("http://{proxy}/v1/messages"))
                    .header("content-type", "application/json")
                    .body(Full::new(body));
                let Ok(req) = req else { return };
                let result = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
                let answer = match result {
                    Ok(Ok(resp)) => {
                        let status = resp.status();
                        let tried = resp.headers().get("x-failover-tried").and_then(|v| v.to_str().ok()).map(str::to_string);
                        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        Some((status, tried, mock_name(&body)))
                    }
                    _ => None,
                };
                {
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    t.sent += 1;
                    match answer {
                        None => t.errors += 1,
                        Some((status, _tried, name)) => {
                            if status.is_success() {
                                t.ok += 1;
                            } else {
                                t.failed += 1;
                            }
                            if let Some(name) = name {
                                if name != "flaky" {
                                    t.failovers += 1;
                                }
                                *t.answered_by.entry(name).or_default() += 1;
                            }
                        }
                    }
                }
                tokio::time::sleep(pace).await;
            }
        });
    }
    futures_util::future::join_all(loops).await;
}

/// The `mock.name` field of a mock's healthy answer.
fn mock_name(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("mock")?.get("name")?.as_str().map(str::to_string)
}
