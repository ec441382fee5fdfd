//! The fleet record: the one value under `<key_prefix>/v1` in etcd that every member of a fleet
//! reads and writes with compare-and-swap. It is the fleet-wide counterpart of
//! [`crate::state::Record`]: per endpoint an outage generation and state, and the seed's four
//! counters, now counted once for the whole fleet.
//!
//! Stored as JSON, versioned (`"v": 1`): a member that meets a version it does not know refuses
//! to write over it (a newer member's record is never downgraded).

use std::collections::BTreeMap;

use crate::json::{self, Kind, Path, Reader, Shape, Value, Writer};

/// The layout version this code reads and writes.
pub const RECORD_VERSION: u32 = 1;

/// Fleet-wide counters, with the seed's meaning: each moves exactly once per event fleet-wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Healthy→parked transitions (outages), fleet-wide.
    pub total_failed: u64,
    /// Parked→healthy transitions, fleet-wide.
    pub total_recovered: u64,
    /// Probe verdicts recorded (one per claimed probe).
    pub total_verified: u64,
    /// Probe verdicts that found the endpoint still failing.
    pub total_still_failed: u64,
}

/// Whether an endpoint is in the fleet's failure queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointState {
    /// In rotation.
    #[default]
    Healthy,
    /// Parked fleet-wide: no member sends normal traffic to it.
    Parked,
}

/// The right to probe a parked endpoint, so that one member probes per interval, not N. It
/// expires at `until_ms`, so a member that dies while holding it blocks nobody for long.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The member holding it.
    pub member: String,
    /// Expiry, ms since the Unix epoch.
    pub until_ms: u64,
}

/// One endpoint's fleet-wide state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetEndpoint {
    /// Outages so far: each healthy→parked transition adds one. Never goes backwards, so
    /// `(generation, state)` orders every version of an entry (see [`FleetEndpoint::phase`]).
    pub generation: u64,
    /// Parked or healthy.
    pub state: EndpointState,
    /// When the current (or last) outage began, ms since the epoch.
    pub since_ms: u64,
    /// Why it was parked (the first failure of the outage).
    pub reason: String,
    /// The member whose observation began the outage.
    pub first_member: String,
    /// When the last outage ended (0: never recovered). A local park observed at or before this
    /// moment is stale: it belongs to an outage the fleet already closed.
    pub recovered_ms: u64,
    /// Latest Retry-After deadline an upstream asked for; only ever moves later.
    pub not_before_ms: u64,
    /// Earliest next probe.
    pub next_check_ms: u64,
    /// Failed probes in the current outage (drives the back-off).
    pub failed_checks: u32,
    /// Who may probe now, if anyone.
    pub claim: Option<Claim>,
}

impl FleetEndpoint {
    /// A single number that orders the entry's versions: `2g − 1` while parked in outage `g`,
    /// `2g` once it ended. It never decreases under [`super::merge::apply`].
    pub fn phase(&self) -> u64 {
        let parked = u64::from(self.state == EndpointState::Parked);
        self.generation.saturating_mul(2).saturating_sub(parked)
    }

    /// True when parked.
    pub fn is_parked(&self) -> bool {
        self.state == EndpointState::Parked
    }
}

/// The whole fleet record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRecord {
    /// Layout version, [`RECORD_VERSION`].
    pub v: u32,
    /// Endpoints by name (only those ever parked appear).
    pub endpoints: BTreeMap<String, FleetEndpoint>,
    /// The fleet counters.
    pub stats: FleetStats,
}

impl Default for FleetRecord {
    fn default() -> Self {
        Self {
            v: RECORD_VERSION,
            endpoints: BTreeMap::new(),
            stats: FleetStats::default(),
        }
    }
}

// ===== JSON =====

const RECORD: Shape = Shape {
    name: "struct FleetRecord",
    fields: &["v", "endpoints", "stats"],
    required: 0b1,
    deny_unknown: true,
};

const STATS: Shape = Shape {
    name: "struct FleetStats",
    fields: &[
        "total_failed",
        "total_recovered",
        "total_verified",
        "total_still_failed",
    ],
    required: 0,
    deny_unknown: false,
};

const ENDPOINT: Shape = Shape {
    name: "struct FleetEndpoint",
    fields: &[
        "generation",
        "state",
        "since_ms",
        "reason",
        "first_member",
        "recovered_ms",
        "not_before_ms",
        "next_check_ms",
        "failed_checks",
        "claim",
    ],
    required: 0,
    deny_unknown: false,
};

const CLAIM: Shape = Shape {
    name: "struct Claim",
    fields: &["member", "until_ms"],
    required: 0,
    deny_unknown: false,
};

impl FleetStats {
    /// Reads the counters (missing ones are 0, unknown keys skipped).
    ///
    /// # Errors
    /// Not an object (or array) of unsigned integers.
    pub fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<FleetStats, json::Error> {
        let mut s = FleetStats::default();
        r.fields(v, path, &STATS, &mut |i, v, p| {
            let n = r.u64(v, p)?;
            match i {
                0 => s.total_failed = n,
                1 => s.total_recovered = n,
                2 => s.total_verified = n,
                _ => s.total_still_failed = n,
            }
            Ok(())
        })?;
        Ok(s)
    }

    /// Writes the counters as an object, in declaration order.
    pub fn write(&self, w: &mut Writer) {
        w.begin_object();
        w.field_u64("total_failed", self.total_failed);
        w.field_u64("total_recovered", self.total_recovered);
        w.field_u64("total_verified", self.total_verified);
        w.field_u64("total_still_failed", self.total_still_failed);
        w.end_object();
    }
}

impl EndpointState {
    /// The name stored in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Parked => "parked",
        }
    }
}

impl FleetEndpoint {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<FleetEndpoint, json::Error> {
        let mut e = FleetEndpoint::default();
        r.fields(v, path, &ENDPOINT, &mut |i, v, p| {
            match i {
                0 => e.generation = r.u64(v, p)?,
                1 => {
                    e.state = match r.variant(v, p, &["healthy", "parked"])? {
                        0 => EndpointState::Healthy,
                        _ => EndpointState::Parked,
                    }
                }
                2 => e.since_ms = r.u64(v, p)?,
                3 => e.reason = r.string(v, p)?,
                4 => e.first_member = r.string(v, p)?,
                5 => e.recovered_ms = r.u64(v, p)?,
                6 => e.not_before_ms = r.u64(v, p)?,
                7 => e.next_check_ms = r.u64(v, p)?,
                8 => e.failed_checks = r.u32(v, p)?,
                _ => {
                    e.claim = if v.is_null() {
                        None
                    } else {
                        Some(Claim::read(r, v, p)?)
                    }
                }
            }
            Ok(())
        })?;
        Ok(e)
    }

    fn write(&self, w: &mut Writer) {
        w.begin_object();
        w.field_u64("generation", self.generation);
        w.field_str("state", self.state.as_str());
        w.field_u64("since_ms", self.since_ms);
        w.field_str("reason", &self.reason);
        w.field_str("first_member", &self.first_member);
        w.field_u64("recovered_ms", self.recovered_ms);
        w.field_u64("not_before_ms", self.not_before_ms);
        w.field_u64("next_check_ms", self.next_check_ms);
        w.field_u64("failed_checks", u64::from(self.failed_checks));
        w.key("claim");
        match &self.claim {
            Some(c) => c.write(w),
            None => w.null(),
        }
        w.end_object();
    }
}

impl Claim {
    fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<Claim, json::Error> {
        let mut c = Claim::default();
        r.fields(v, path, &CLAIM, &mut |i, v, p| {
            match i {
                0 => c.member = r.string(v, p)?,
                _ => c.until_ms = r.u64(v, p)?,
            }
            Ok(())
        })?;
        Ok(c)
    }

    /// Writes the claim as an object.
    pub fn write(&self, w: &mut Writer) {
        w.begin_object();
        w.field_str("member", &self.member);
        w.field_u64("until_ms", self.until_ms);
        w.end_object();
    }
}

/// Why stored bytes are not a fleet record this code may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of our shape (corrupt, or someone else's value under our key).
    #[error("the fleet record is not valid: {0}")]
    Invalid(String),
    /// A layout this code does not know (written by a newer member): never overwritten.
    #[error("the fleet record has version {0}, this filter knows only {RECORD_VERSION}")]
    Version(u64),
}

impl FleetRecord {
    /// Decodes stored bytes. Never panics; a bad value is an error the syncer reports instead of
    /// writing over it.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for bytes that are not our JSON object, [`RecordError::Version`]
    /// for an unknown version.
    pub fn decode(bytes: &[u8]) -> Result<FleetRecord, RecordError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(RecordError::Invalid("not a JSON object".into()));
        }
        let invalid = |e: json::Error| RecordError::Invalid(e.to_string());
        let (doc, trailing) = json::parse_with_tail(bytes).map_err(invalid)?;
        let r = Reader::new(bytes);
        // The version first, whatever else the object holds: a newer layout is refused as
        // such, not as unknown fields. (A repeated `v` is an error, as it was for serde.)
        let mut versions = match &doc.kind {
            Kind::Object(members) => members.iter().filter(|m| m.key == "v").collect(),
            _ => Vec::new(),
        };
        if let Some(second) = versions.get(1) {
            return Err(invalid(r.error(
                &Path::ROOT,
                second.key_end,
                "duplicate field `v`".into(),
            )));
        }
        if let Some(e) = trailing {
            return Err(invalid(e));
        }
        match versions.pop().and_then(|m| m.value.as_u64()) {
            Some(v) if v == u64::from(RECORD_VERSION) => {}
            Some(v) => return Err(RecordError::Version(v)),
            None => return Err(RecordError::Invalid("no numeric \"v\" field".into())),
        }
        FleetRecord::read(&r, &doc, &Path::ROOT).map_err(invalid)
    }

    /// Reads the record's fields as serde's derive did (`v` required, unknown keys refused),
    /// without the version check of [`FleetRecord::decode`].
    ///
    /// # Errors
    /// A value not of the record's shape.
    pub fn read(r: &Reader<'_>, v: &Value, path: &Path<'_>) -> Result<FleetRecord, json::Error> {
        let mut out = FleetRecord::default();
        r.fields(v, path, &RECORD, &mut |i, v, p| {
            match i {
                0 => out.v = r.u32(v, p)?,
                1 => {
                    out.endpoints = BTreeMap::new();
                    for m in r.map(v, p)? {
                        let e = FleetEndpoint::read(r, &m.value, &p.key(&m.key))?;
                        out.endpoints.insert(m.key.clone(), e);
                    }
                }
                _ => out.stats = FleetStats::read(r, v, p)?,
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Encodes for etcd.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Writes the record as serde wrote it: fields in declaration order, `"claim":null` when
    /// there is none.
    pub fn write(&self, w: &mut Writer) {
        w.begin_object();
        w.field_u64("v", u64::from(self.v));
        w.key("endpoints");
        w.begin_object();
        for (name, e) in &self.endpoints {
            w.key(name);
            e.write(w);
        }
        w.end_object();
        w.key("stats");
        self.stats.write(w);
        w.end_object();
    }

    /// The entry of `id`, if it was ever parked.
    pub fn endpoint(&self, id: &str) -> Option<&FleetEndpoint> {
        self.endpoints.get(id)
    }

    /// True when `id` is parked fleet-wide.
    pub fn is_parked(&self, id: &str) -> bool {
        self.endpoint(id).is_some_and(FleetEndpoint::is_parked)
    }
}

#[cfg(test)]
mod differential;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact bytes of a record with one parked endpoint holding a claim: the layout other
    /// members (older or newer builds) read, so a change here is a change of the wire format.
    pub(crate) const GOLDEN: &str = concat!(
        r#"{"v":1,"endpoints":{"main":{"generation":2,"state":"parked","since_ms":1000,"#,
        r#""reason":"status 503","first_member":"pod-a","recovered_ms":500,"#,
        r#""not_before_ms":4000,"next_check_ms":4000,"failed_checks":1,"#,
        r#""claim":{"member":"pod-b","until_ms":5000}}},"#,
        r#""stats":{"total_failed":2,"total_recovered":1,"total_verified":3,"total_still_failed":2}}"#
    );

    fn golden_record() -> FleetRecord {
        let mut r = FleetRecord::default();
        r.endpoints.insert(
            "main".into(),
            FleetEndpoint {
                generation: 2,
                state: EndpointState::Parked,
                since_ms: 1000,
                reason: "status 503".into(),
                first_member: "pod-a".into(),
                recovered_ms: 500,
                not_before_ms: 4000,
                next_check_ms: 4000,
                failed_checks: 1,
                claim: Some(Claim {
                    member: "pod-b".into(),
                    until_ms: 5000,
                }),
            },
        );
        r.stats = FleetStats {
            total_failed: 2,
            total_recovered: 1,
            total_verified: 3,
            total_still_failed: 2,
        };
        r
    }

    #[test]
    fn golden_bytes() {
        assert_eq!(String::from_utf8(golden_record().encode()).unwrap(), GOLDEN);
        assert_eq!(
            FleetRecord::decode(GOLDEN.as_bytes()).unwrap(),
            golden_record()
        );
        assert_eq!(
            String::from_utf8(FleetRecord::default().encode()).unwrap(),
            r#"{"v":1,"endpoints":{},"stats":{"total_failed":0,"total_recovered":0,"total_verified":0,"total_still_failed":0}}"#
        );
    }

    #[test]
    fn phase_orders_versions() {
        let mut e = FleetEndpoint::default();
        assert_eq!(e.phase(), 0);
        e.generation = 1;
        e.state = EndpointState::Parked;
        assert_eq!(e.phase(), 1);
        e.state = EndpointState::Healthy;
        assert_eq!(e.phase(), 2);
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{}",
            b"null",
            b"{\"v\":\"1\"}",
            b"{\"v\":1,\"endpoints\":42}",
            b"{\"v\":1,\"surprise\":true}",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(FleetRecord::decode(bad), Err(RecordError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            FleetRecord::decode(br#"{"v":2,"whatever":[]}"#),
            Err(RecordError::Version(2))
        );
        // Minimal valid record: defaults fill the rest.
        assert_eq!(
            FleetRecord::decode(br#"{"v":1}"#),
            Ok(FleetRecord::default())
        );
    }

    pub(crate) fn endpoint() -> impl Strategy<Value = FleetEndpoint> {
        (
            (
                0u64..5,
                any::<bool>(),
                0u64..10_000,
                "[a-z 0-9]{0,8}",
                "[a-z-]{0,6}",
            ),
            (0u64..10_000, 0u64..10_000, 0u64..10_000, 0u32..9),
            proptest::option::of(("[a-z-]{1,6}", 0u64..10_000)),
        )
            .prop_map(
                |((g, parked, since, reason, first), (rec, nb, next, fc), claim)| FleetEndpoint {
                    generation: g,
                    state: if parked && g > 0 {
                        EndpointState::Parked
                    } else {
                        EndpointState::Healthy
                    },
                    since_ms: since,
                    reason,
                    first_member: first,
                    recovered_ms: rec,
                    not_before_ms: nb,
                    next_check_ms: next,
                    failed_checks: fc,
                    claim: claim.map(|(member, until_ms)| Claim { member, until_ms }),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(
            endpoints in proptest::collection::btree_map("[a-z]{1,5}", endpoint(), 0..5),
            stats in (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        ) {
            let r = FleetRecord {
                v: RECORD_VERSION,
                endpoints,
                stats: FleetStats {
                    total_failed: stats.0,
                    total_recovered: stats.1,
                    total_verified: stats.2,
                    total_still_failed: stats.3,
                },
            };
            prop_assert_eq!(FleetRecord::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = FleetRecord::decode(&bytes);
        }
    }
}
