//! Answers the filter gives itself (the status page, the all-parked rejection) and the routing
//! of the original request.

use crate::json::Value;
use log::{debug, warn};

use super::FailoverHttp;
use crate::config::EndpointIdx;
use crate::glue::abi::{self, Action, MapType};
use crate::glue::host::{now_ms, property_string};
use crate::status_page;

impl FailoverHttp {
    /// Local answer; the stream ends here.
    pub(super) fn answer(
        &mut self,
        status: u32,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Action {
        self.answered = true;
        self.checked(
            "sending a local answer",
            abi::send_response(status, headers, body),
        );
        Action::Pause
    }

    pub(super) fn answer_status_page(&mut self, method: &[u8]) -> Action {
        let cfg = &self.plugin.config;
        let source = property_string(&["source", "address"]);
        if !status_page::allowed(cfg, source.as_deref()) {
            // As if the path did not exist: no hint that there is something here.
            return self.answer(404, &[], None);
        }
        if method != b"GET" && method != b"HEAD" {
            return self.answer(405, &[("allow", "GET, HEAD")], None);
        }
        let record = self.plugin.record();
        let fleet = cfg
            .fleet
            .as_ref()
            .and_then(|_| super::super::syncer::read_status());
        let doc = status_page::render(cfg, &record, now_ms(), fleet.as_ref()).to_string();
        self.answer(
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            Some(doc.as_bytes()),
        )
    }

    /// Every endpoint is parked and none may be tried: 503 with `retry-after`.
    pub(super) fn reject(&mut self) -> Action {
        let cfg = &self.plugin.config;
        let record = self.plugin.record();
        let now = now_ms();
        let names = cfg.endpoints.iter().map(|e| e.id.as_str());
        let retry_at = record.earliest_next_check(names).unwrap_or(now);
        let secs = retry_at.saturating_sub(now).div_ceil(1000).max(1);
        // Keys print sorted, as they did from serde_json's `json!`.
        let body = Value::object(vec![
            ("type", Value::str("error")),
            (
                "error",
                Value::object(vec![
                    ("type", Value::str("all_endpoints_parked")),
                    (
                        "message",
                        Value::str(&format!(
                            "every upstream endpoint is in the failure queue; retry after {secs} s"
                        )),
                    ),
                ]),
            ),
            ("retry_after_s", Value::u64(secs)),
        ])
        .to_string();
        self.plugin.metrics.rejected.inc();
        debug!(
            "#{} all endpoints parked: rejected, retry after {secs} s",
            self.ctx
        );
        let secs = secs.to_string();
        self.answer(
            503,
            &[
                ("content-type", "application/json"),
                ("retry-after", secs.as_str()),
            ],
            Some(body.as_bytes()),
        )
    }

    /// Points the router at `idx`.
    pub(super) fn route(&mut self, idx: EndpointIdx) {
        let plugin = self.plugin.clone();
        let cfg = &plugin.config;
        let e = cfg.endpoint(idx);
        self.checked(
            "setting the route header",
            abi::set_header(
                MapType::HttpRequestHeaders,
                &cfg.route_header,
                Some(&e.cluster),
            ),
        );
        for (name, value) in &e.request_headers {
            self.checked(
                "setting an endpoint header",
                abi::set_header(MapType::HttpRequestHeaders, name, Some(value.expose())),
            );
        }
        // Envoy ≥ 1.2x: re-run route matching now that the header is set; older Envoy clears the
        // route cache itself for ABI 0.2.1 modules and answers NOT_FOUND here.
        match abi::call_foreign_function("clear_route_cache", None) {
            Ok(_) => {}
            Err(status) if status.is_not_found() => {}
            Err(status) => warn!(
                "#{} clear_route_cache: the host answered {status}",
                self.ctx
            ),
        }
        self.attempts.attempted(idx);
    }
}
