//! Which endpoint gets a request: priority groups in order, weighted choice inside a group,
//! never a parked endpoint for normal traffic, never one this request already tried.

use crate::config::{AllQueuedPolicy, Config, EndpointIdx};
use crate::state::Record;

/// The selection's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// A healthy endpoint.
    Endpoint(EndpointIdx),
    /// Every untried endpoint is parked and the policy is `least_recently_failed`: this one
    /// (parked longest ago) may get one trial request, if the caller can claim its trial slot.
    Trial(EndpointIdx),
    /// Every untried endpoint is parked and the policy is `reject`; the earliest moment one may
    /// be tried again, if known (ms since the epoch).
    Reject {
        /// Earliest next check among the parked endpoints.
        retry_at_ms: Option<u64>,
    },
    /// The request has tried every endpoint.
    Exhausted,
}

/// Chooses an endpoint. `random` is any random number (the weighted pick uses it modulo the
/// group's total weight).
pub fn choose(config: &Config, record: &Record, tried: &[EndpointIdx], random: u64) -> Choice {
    for group in &config.groups {
        let total: u64 = group
            .iter()
            .filter(|i| usable(config, record, tried, **i))
            .map(|i| u64::from(config.endpoint(*i).weight))
            .sum();
        if total == 0 {
            continue;
        }
        let mut pick = random % total;
        for idx in group
            .iter()
            .copied()
            .filter(|i| usable(config, record, tried, *i))
        {
            let w = u64::from(config.endpoint(idx).weight);
            if pick < w {
                return Choice::Endpoint(idx);
            }
            pick -= w;
        }
    }
    let untried: Vec<EndpointIdx> = config.indices().filter(|i| !tried.contains(i)).collect();
    if untried.is_empty() {
        return Choice::Exhausted;
    }
    let names = || untried.iter().map(|i| config.endpoint(*i).id.as_str());
    match config.when_all_queued {
        AllQueuedPolicy::LeastRecentlyFailed => match record.longest_parked(names()) {
            Some(name) => config
                .index_of(name)
                .map_or(Choice::Exhausted, Choice::Trial),
            None => Choice::Exhausted,
        },
        AllQueuedPolicy::Reject => Choice::Reject {
            retry_at_ms: record.earliest_next_check(names()),
        },
    }
}

fn usable(config: &Config, record: &Record, tried: &[EndpointIdx], idx: EndpointIdx) -> bool {
    !tried.contains(&idx) && !record.is_queued(config.endpoint(idx).id.as_str())
}

/// A small, fast PRNG (xorshift64*) for weighted choice: no dependency, no host call per
/// request. Seeded per VM from the clock.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds it; a zero seed is replaced (xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// Next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Failure;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"endpoints":[
                {{"name":"main","cluster":"c_main","group":"primary","weight":3}},
                {{"name":"spare","cluster":"c_spare","group":"primary","weight":1}},
                {{"name":"backup","cluster":"c_backup","group":"secondary"}}
            ]{extra}}}"#
        );
        Config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn park(r: &mut Record, id: &str, now: u64) {
        r.record_failure(&Failure {
            id,
            reason: "x",
            now_ms: now,
            threshold: 1,
            interval_ms: 1000,
            not_before_ms: None,
        });
    }

    fn idx(c: &Config, name: &str) -> EndpointIdx {
        c.index_of(name).unwrap()
    }

    #[test]
    fn weights_split_the_primary_group() {
        let c = config("");
        let r = Record::default();
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            match choose(&c, &r, &[], rng.next_u64()) {
                Choice::Endpoint(i) => counts[i.get()] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            counts[2], 0,
            "secondary is not used while primary is healthy"
        );
        let share = f64::from(counts[0]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "main share {share}");
    }

    #[test]
    fn parked_endpoints_are_never_chosen() {
        let c = config("");
        let mut r = Record::default();
        park(&mut r, "main", 1);
        for n in 0..1000 {
            assert_eq!(choose(&c, &r, &[], n), Choice::Endpoint(idx(&c, "spare")));
        }
        park(&mut r, "spare", 2);
        assert_eq!(choose(&c, &r, &[], 7), Choice::Endpoint(idx(&c, "backup")));
    }

    #[test]
    fn tried_endpoints_are_skipped_then_exhausted() {
        let c = config("");
        let r = Record::default();
        let all = [idx(&c, "main"), idx(&c, "spare")];
        assert_eq!(choose(&c, &r, &all, 3), Choice::Endpoint(idx(&c, "backup")));
        let every = [idx(&c, "main"), idx(&c, "spare"), idx(&c, "backup")];
        assert_eq!(choose(&c, &r, &every, 3), Choice::Exhausted);
    }

    #[test]
    fn all_parked_least_recently_failed_trials_the_oldest() {
        let c = config("");
        let mut r = Record::default();
        park(&mut r, "spare", 5);
        park(&mut r, "backup", 1);
        park(&mut r, "main", 9);
        assert_eq!(choose(&c, &r, &[], 0), Choice::Trial(idx(&c, "backup")));
        assert_eq!(
            choose(&c, &r, &[idx(&c, "backup")], 0),
            Choice::Trial(idx(&c, "spare"))
        );
    }

    #[test]
    fn all_parked_reject_gives_the_earliest_check() {
        let c = config(r#","when_all_queued":"reject""#);
        let mut r = Record::default();
        park(&mut r, "spare", 5);
        park(&mut r, "backup", 1);
        park(&mut r, "main", 9);
        assert_eq!(
            choose(&c, &r, &[], 0),
            Choice::Reject {
                retry_at_ms: Some(1001)
            }
        );
    }

    proptest! {
        #[test]
        fn never_a_parked_or_tried_endpoint(parked in proptest::collection::vec(any::<bool>(), 3), tried in proptest::collection::vec(any::<bool>(), 3), random: u64) {
            let c = config("");
            let mut r = Record::default();
            let names = ["main", "spare", "backup"];
            for (i, p) in parked.iter().enumerate() { if *p { park(&mut r, names[i], i as u64); } }
            let tried: Vec<EndpointIdx> = tried.iter().enumerate().filter(|(_, t)| **t).map(|(i, _)| idx(&c, names[i])).collect();
            match choose(&c, &r, &tried, random) {
                Choice::Endpoint(i) => {
                    prop_assert!(!tried.contains(&i));
                    prop_assert!(!r.is_queued(c.endpoint(i).id.as_str()));
                }
                Choice::Trial(i) => {
                    prop_assert!(!tried.contains(&i));
                    prop_assert!(r.is_queued(c.endpoint(i).id.as_str()));
                    // only when every untried endpoint is parked
                    prop_assert!(c.indices().filter(|j| !tried.contains(j)).all(|j| r.is_queued(c.endpoint(j).id.as_str())));
                }
                Choice::Reject { .. } => prop_assert!(false, "policy is least_recently_failed"),
                Choice::Exhausted => prop_assert_eq!(tried.len(), 3),
            }
        }
    }
}
