use super::*;
use proptest::prelude::*;

fn park(id: &str, member: &str, at_ms: u64) -> Observation {
    Observation::Park {
        id: id.into(),
        member: member.into(),
        at_ms,
        reason: "status 503".into(),
        not_before_ms: 0,
        next_check_ms: at_ms + 1000,
    }
}

fn recover(id: &str, at_ms: u64) -> Observation {
    Observation::Recover {
        id: id.into(),
        at_ms,
    }
}

fn claim(id: &str, member: &str, now_ms: u64) -> Observation {
    Observation::Claim {
        id: id.into(),
        member: member.into(),
        now_ms,
        until_ms: now_ms + 500,
    }
}

#[test]
fn first_park_is_the_new_outage_the_rest_adopt() {
    let mut r = FleetRecord::default();
    assert_eq!(
        apply(&mut r, &park("a", "m1", 10)),
        Outcome::NewOutage { generation: 1 }
    );
    assert_eq!(
        apply(&mut r, &park("a", "m2", 20)),
        Outcome::AlreadyParked { generation: 1 }
    );
    assert_eq!(r.stats.total_failed, 1);
    let e = r.endpoint("a").unwrap();
    assert_eq!((e.since_ms, e.first_member.as_str()), (10, "m1"));
    assert_eq!(e.next_check_ms, 1020, "the later next check wins");
}

#[test]
fn a_park_older_than_the_last_recovery_is_stale_a_newer_one_is_a_new_outage() {
    let mut r = FleetRecord::default();
    apply(&mut r, &park("a", "m1", 10));
    assert_eq!(
        apply(&mut r, &recover("a", 50)),
        Outcome::Recovered { generation: 1 }
    );
    assert_eq!(apply(&mut r, &park("a", "m2", 40)), Outcome::Stale);
    assert_eq!(apply(&mut r, &park("a", "m2", 50)), Outcome::Stale);
    assert_eq!(
        apply(&mut r, &park("a", "m2", 51)),
        Outcome::NewOutage { generation: 2 }
    );
    assert_eq!(r.stats.total_failed, 2);
    assert_eq!(r.stats.total_recovered, 1);
    // A recovery from before this outage began does not end it.
    assert_eq!(apply(&mut r, &recover("a", 45)), Outcome::Stale);
    assert!(r.is_parked("a"));
}

#[test]
fn one_prober_per_claim_and_the_verdict_counts_once() {
    let mut r = FleetRecord::default();
    assert_eq!(
        apply(&mut r, &claim("a", "m1", 0)),
        Outcome::ClaimDenied(Denied::NotParked)
    );
    apply(&mut r, &park("a", "m1", 0));
    assert_eq!(
        apply(&mut r, &claim("a", "m1", 10)),
        Outcome::ClaimDenied(Denied::NotDue { at_ms: 1000 })
    );
    assert_eq!(
        apply(&mut r, &claim("a", "m1", 1000)),
        Outcome::ClaimGranted { until_ms: 1500 }
    );
    assert_eq!(
        apply(&mut r, &claim("a", "m2", 1100)),
        Outcome::ClaimDenied(Denied::HeldBy {
            member: "m1".into(),
            until_ms: 1500
        })
    );
    let verdict = Observation::Verdict {
        id: "a".into(),
        member: "m1".into(),
        claim_until_ms: 1500,
        at_ms: 1200,
        verdict: Verdict::StillFailed {
            next_check_ms: 3000,
        },
    };
    assert_eq!(apply(&mut r, &verdict), Outcome::VerdictCounted);
    assert_eq!(apply(&mut r, &verdict), Outcome::Stale, "counted once");
    assert_eq!(r.stats.total_verified, 1);
    assert_eq!(r.stats.total_still_failed, 1);
    let e = r.endpoint("a").unwrap();
    assert_eq!(
        (e.failed_checks, e.next_check_ms, e.claim.clone()),
        (1, 3000, None)
    );
    // An expired claim of a dead member does not block another one.
    assert_eq!(
        apply(&mut r, &claim("a", "m2", 3000)),
        Outcome::ClaimGranted { until_ms: 3500 }
    );
    assert_eq!(
        apply(&mut r, &claim("a", "m3", 3500)),
        Outcome::ClaimGranted { until_ms: 4000 },
        "m2 died: its claim expired"
    );
    let ok = Observation::Verdict {
        id: "a".into(),
        member: "m3".into(),
        claim_until_ms: 4000,
        at_ms: 3600,
        verdict: Verdict::Recovered,
    };
    assert_eq!(apply(&mut r, &ok), Outcome::VerdictCounted);
    assert!(!r.is_parked("a"));
    assert_eq!(r.endpoint("a").unwrap().recovered_ms, 3600);
    assert_eq!(r.stats.total_recovered, 1);
}

#[test]
fn retry_after_deadlines_only_move_later() {
    let mut r = FleetRecord::default();
    let mut p = park("a", "m1", 10);
    if let Observation::Park { not_before_ms, .. } = &mut p {
        *not_before_ms = 9000;
    }
    apply(&mut r, &p);
    apply(&mut r, &park("a", "m2", 20));
    let e = r.endpoint("a").unwrap();
    assert_eq!((e.not_before_ms, e.next_check_ms), (9000, 9000));
}

// ===== properties =====

const IDS: [&str; 2] = ["a", "b"];
const MEMBERS: [&str; 3] = ["m1", "m2", "m3"];

fn observation() -> impl Strategy<Value = Observation> {
    let id = (0..IDS.len()).prop_map(|i| IDS[i].to_string());
    let member = (0..MEMBERS.len()).prop_map(|i| MEMBERS[i].to_string());
    prop_oneof![
        (
            id.clone(),
            member.clone(),
            0u64..100,
            "[a-c]{1,2}",
            0u64..200,
            0u64..200
        )
            .prop_map(
                |(id, member, at_ms, reason, not_before_ms, next_check_ms)| Observation::Park {
                    id,
                    member,
                    at_ms,
                    reason,
                    not_before_ms,
                    next_check_ms,
                }
            ),
        (id.clone(), 0u64..100).prop_map(|(id, at_ms)| Observation::Recover { id, at_ms }),
        (id.clone(), member.clone(), 0u64..300, 1u64..100).prop_map(|(id, member, now_ms, d)| {
            Observation::Claim {
                id,
                member,
                now_ms,
                until_ms: now_ms + d,
            }
        }),
        (id, member, 0u64..400, 0u64..300, 0u8..3, 0u64..400).prop_map(
            |(id, member, claim_until_ms, at_ms, v, next)| Observation::Verdict {
                id,
                member,
                claim_until_ms,
                at_ms,
                verdict: match v {
                    0 => Verdict::Recovered,
                    1 => Verdict::Healthy,
                    _ => Verdict::StillFailed {
                        next_check_ms: next
                    },
                },
            }
        ),
    ]
}

fn parks_of_one_endpoint() -> impl Strategy<Value = Vec<Observation>> {
    proptest::collection::vec(
        (
            0..MEMBERS.len(),
            0u64..100,
            "[a-c]{1,2}",
            0u64..200,
            0u64..200,
        ),
        1..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(
                |(m, at_ms, reason, not_before_ms, next_check_ms)| Observation::Park {
                    id: "a".into(),
                    member: MEMBERS[m].into(),
                    at_ms,
                    reason,
                    not_before_ms,
                    next_check_ms,
                },
            )
            .collect()
    })
}

fn start() -> impl Strategy<Value = FleetRecord> {
    proptest::collection::vec(observation(), 0..20).prop_map(|obs| {
        let mut r = FleetRecord::default();
        apply_all(&mut r, &obs);
        r
    })
}

proptest! {
    /// Applying the same observation twice is applying it once (a retried txn, a duplicate
    /// push after a reconnect).
    #[test]
    fn idempotent(mut r in start(), obs in observation()) {
        apply(&mut r, &obs);
        let once = r.clone();
        apply(&mut r, &obs);
        prop_assert_eq!(r, once);
    }

    /// Parks of one endpoint give the same record whatever order the members' txns land in,
    /// and exactly one of them is the NewOutage (when any is not stale).
    #[test]
    fn parks_commute(r in start(), parks in parks_of_one_endpoint(), seed in any::<u64>()) {
        let mut shuffled = parks.clone();
        // Fisher–Yates with a small LCG: a deterministic permutation per seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let (mut x, mut y) = (r.clone(), r.clone());
        let ox = apply_all(&mut x, &parks);
        let oy = apply_all(&mut y, &shuffled);
        prop_assert_eq!(&x, &y);
        let news = |o: &[Outcome]| o.iter().filter(|o| matches!(o, Outcome::NewOutage { .. })).count();
        prop_assert_eq!(news(&ox), news(&oy));
        prop_assert!(news(&ox) <= 1);
        prop_assert_eq!(news(&ox) as u64, x.stats.total_failed - r.stats.total_failed);
    }

    /// Observations of different endpoints commute.
    #[test]
    fn different_endpoints_commute(r in start(), a in observation(), b in observation()) {
        prop_assume!(a.id() != b.id());
        let (mut x, mut y) = (r.clone(), r);
        let ax = apply(&mut x, &a);
        let bx = apply(&mut x, &b);
        let by = apply(&mut y, &b);
        let ay = apply(&mut y, &a);
        prop_assert_eq!(x, y);
        prop_assert_eq!((ax, bx), (ay, by));
    }

    /// Generations and phases never go backwards, deadlines never shrink, counters only go up,
    /// and every outage is exactly one NewOutage.
    #[test]
    fn monotone_and_exactly_once(obs in proptest::collection::vec(observation(), 0..60)) {
        let mut r = FleetRecord::default();
        let mut news = 0u64;
        let mut recoveries = 0u64;
        for o in &obs {
            let before = r.clone();
            let outcome = apply(&mut r, o);
            match outcome {
                Outcome::NewOutage { .. } => news += 1,
                Outcome::Recovered { .. } => recoveries += 1,
                Outcome::VerdictCounted if before.is_parked(o.id()) && !r.is_parked(o.id()) => recoveries += 1,
                _ => {}
            }
            for (id, b) in &before.endpoints {
                let a = r.endpoint(id).expect("entries are never dropped");
                prop_assert!(a.generation >= b.generation);
                prop_assert!(a.phase() >= b.phase());
                prop_assert!(a.not_before_ms >= b.not_before_ms);
                prop_assert!(a.recovered_ms >= b.recovered_ms);
            }
            let (s0, s1) = (before.stats, r.stats);
            prop_assert!(s1.total_failed >= s0.total_failed);
            prop_assert!(s1.total_recovered >= s0.total_recovered);
            prop_assert!(s1.total_verified >= s0.total_verified);
            prop_assert!(s1.total_still_failed >= s0.total_still_failed);
        }
        let generations: u64 = r.endpoints.values().map(|e| e.generation).sum();
        prop_assert_eq!(r.stats.total_failed, news);
        prop_assert_eq!(generations, news, "one generation per outage");
        prop_assert_eq!(r.stats.total_recovered, recoveries);
        let parked = r.endpoints.values().filter(|e| e.is_parked()).count() as u64;
        prop_assert_eq!(news - recoveries, parked);
    }
}
