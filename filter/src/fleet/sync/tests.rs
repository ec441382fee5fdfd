use super::model::ModelEtcd;
use super::*;
use crate::fleet::merge::{Observation, Verdict};

const KEY: &str = "/failover/v1";

/// A lock the model etcd runs under: std's for plain tests, shuttle's for model checking.
trait Lock: Send + Sync {
    fn with<R>(&self, f: impl FnOnce(&mut ModelEtcd) -> R) -> R;
}

impl Lock for std::sync::Mutex<ModelEtcd> {
    fn with<R>(&self, f: impl FnOnce(&mut ModelEtcd) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Lock for shuttle::sync::Mutex<ModelEtcd> {
    fn with<R>(&self, f: impl FnOnce(&mut ModelEtcd) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs one round against the model: each request is one atomic etcd operation, and a
/// scheduler may switch members between any two.
fn run_round<L: Lock>(
    etcd: &L,
    obs: Vec<Observation>,
    max_attempts: u32,
) -> Result<Round, SyncError> {
    let (mut round, mut req) = SyncRound::start(KEY, obs, max_attempts);
    loop {
        let (status, body) = etcd.with(|e| e.handle(req.path, &req.body));
        match round.on_answer(Some(status), &body) {
            Step::Send(next) => req = next,
            Step::Done(r) => return Ok(r),
            Step::Failed(e) => return Err(e),
        }
    }
}

/// Runs a member's rounds; a round lost to contention is retried (the next sync interval).
fn run_member<L: Lock>(etcd: &L, rounds: &[Vec<Observation>]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for obs in rounds {
        loop {
            match run_round(etcd, obs.clone(), 2) {
                Ok(r) => {
                    outcomes.extend(r.outcomes);
                    break;
                }
                Err(SyncError::Contention { .. }) => continue,
                Err(e) => panic!("the model etcd never fails: {e}"),
            }
        }
    }
    outcomes
}

fn park(id: &str, member: &str, at_ms: u64) -> Observation {
    Observation::Park {
        id: id.into(),
        member: member.into(),
        at_ms,
        reason: "status 503".into(),
        not_before_ms: 0,
        next_check_ms: 0,
    }
}

fn stored<L: Lock>(etcd: &L) -> FleetRecord {
    etcd.with(|e| e.get(KEY.as_bytes()))
        .map(|(v, _)| FleetRecord::decode(&v).expect("valid record"))
        .unwrap_or_default()
}

fn count(outcomes: &[Vec<Outcome>], f: impl Fn(&Outcome) -> bool) -> u64 {
    outcomes.iter().flatten().filter(|o| f(o)).count() as u64
}

/// The books of the fleet must balance: every count is an outcome exactly one member saw.
fn check_books(record: &FleetRecord, outcomes: &[Vec<Outcome>]) {
    let news = count(outcomes, |o| matches!(o, Outcome::NewOutage { .. }));
    let recovered = count(outcomes, |o| matches!(o, Outcome::Recovered { .. }));
    assert_eq!(
        record.stats.total_failed, news,
        "total_failed vs NewOutage seen"
    );
    let generations: u64 = record.endpoints.values().map(|e| e.generation).sum();
    assert_eq!(generations, news, "one generation per outage");
    assert_eq!(
        record.stats.total_recovered, recovered,
        "total_recovered vs Recovered seen"
    );
    let parked = record.endpoints.values().filter(|e| e.is_parked()).count() as u64;
    assert_eq!(
        news - recovered,
        parked,
        "parked vs outages minus recoveries"
    );
}

// ===== the state machine alone =====

#[test]
fn first_round_creates_then_an_unchanged_round_writes_nothing() {
    let etcd = std::sync::Mutex::new(ModelEtcd::default());
    let r = run_round(&etcd, vec![], 3).unwrap();
    assert!(!r.written && r.revision.is_none(), "nothing to write");
    let r = run_round(&etcd, vec![park("a", "m1", 10)], 3).unwrap();
    assert!(r.written);
    assert_eq!(r.outcomes, vec![Outcome::NewOutage { generation: 1 }]);
    assert_eq!(
        r.revision,
        etcd.with(|e| e.get(KEY.as_bytes())).map(|(_, rev)| rev)
    );
    let again = run_round(&etcd, vec![park("a", "m2", 20)], 3).unwrap();
    assert!(!again.written, "adopting changes nothing");
    assert_eq!(
        again.outcomes,
        vec![Outcome::AlreadyParked { generation: 1 }]
    );
    assert_eq!(again.attempts, 0);
}

#[test]
fn a_lost_race_retries_from_the_failure_branch() {
    let etcd = std::sync::Mutex::new(ModelEtcd::default());
    let (mut round, req) = SyncRound::start(KEY, vec![park("a", "m1", 10)], 3);
    let (s, b) = etcd.with(|e| e.handle(req.path, &req.body));
    let Step::Send(txn) = round.on_answer(Some(s), &b) else {
        panic!("a txn")
    };
    // Another member parks "a" first.
    run_round(&etcd, vec![park("a", "m2", 5)], 3).unwrap();
    let (s, b) = etcd.with(|e| e.handle(txn.path, &txn.body));
    // The failure branch carried the current record: merged again, nothing left to write.
    match round.on_answer(Some(s), &b) {
        Step::Done(r) => {
            assert_eq!(r.outcomes, vec![Outcome::AlreadyParked { generation: 1 }]);
            assert!(!r.written);
            assert_eq!(r.attempts, 1);
            assert_eq!(r.record.endpoint("a").unwrap().first_member, "m2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn contention_is_bounded_and_errors_end_the_round() {
    let etcd = std::sync::Mutex::new(ModelEtcd::default());
    let (mut round, mut req) = SyncRound::start(KEY, vec![park("a", "m1", 10)], 2);
    let mut n = 0;
    let err = loop {
        if req.path == crate::fleet::etcd::TXN_PATH {
            // Someone always writes just before our txn lands.
            n += 1;
            run_round(&etcd, vec![park(&format!("x{n}"), "m9", n)], 9).unwrap();
        }
        let (s, b) = etcd.with(|e| e.handle(req.path, &req.body));
        match round.on_answer(Some(s), &b) {
            Step::Send(next) => req = next,
            Step::Failed(e) => break e,
            Step::Done(r) => panic!("{r:?}"),
        }
    };
    assert_eq!(n, 2);
    assert_eq!(err, SyncError::Contention { attempts: 2 });
    assert_eq!(
        round.on_answer(Some(200), b"{}"),
        Step::Failed(SyncError::Finished)
    );

    let (mut round, _) = SyncRound::start(KEY, vec![], 1);
    assert!(matches!(
        round.on_answer(None, b""),
        Step::Failed(SyncError::Etcd(_))
    ));
    // A record this build cannot read is never written over.
    let etcd = std::sync::Mutex::new(ModelEtcd::default());
    etcd.with(|e| e.put_other(KEY.as_bytes(), br#"{"v":2}"#));
    assert_eq!(
        run_round(&etcd, vec![park("a", "m1", 1)], 3),
        Err(SyncError::Record(RecordError::Version(2)))
    );
}

// ===== model checks: several members, every interleaving =====

/// Runs `members` concurrently under shuttle against one model etcd, plus an outsider writing
/// another key (the global revision moves under everyone); checks the books and `extra`.
fn schedule(
    members: &'static [&'static [&'static [Obs]]],
    ignore_compares: bool,
    extra: fn(&FleetRecord, &[Vec<Outcome>]),
) {
    let mut model = ModelEtcd::default();
    model.ignore_compares = ignore_compares;
    let etcd = shuttle::sync::Arc::new(shuttle::sync::Mutex::new(model));
    let outsider = {
        let etcd = etcd.clone();
        shuttle::thread::spawn(move || etcd.with(|e| e.put_other(b"/other", b"x")))
    };
    let handles: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, rounds)| {
            let etcd = etcd.clone();
            shuttle::thread::spawn(move || {
                let member = format!("m{i}");
                let rounds: Vec<Vec<Observation>> = rounds
                    .iter()
                    .map(|r| r.iter().map(|o| o.build(&member)).collect())
                    .collect();
                run_member(&*etcd, &rounds)
            })
        })
        .collect();
    let outcomes: Vec<Vec<Outcome>> = handles
        .into_iter()
        .map(|h| h.join().expect("member"))
        .collect();
    outsider.join().expect("outsider");
    let record = stored(&*etcd);
    check_books(&record, &outcomes);
    extra(&record, &outcomes);
}

/// A compact observation for the static schedules (the member is filled in per thread).
#[derive(Debug, Clone, Copy)]
enum Obs {
    Park(&'static str, u64),
    Recover(&'static str, u64),
    Claim(&'static str, u64),
    /// A probe verdict "recovered" under the claim this member got at that time.
    Recovered(&'static str, u64),
}

impl Obs {
    fn build(self, member: &str) -> Observation {
        match self {
            Obs::Park(id, at) => park(id, member, at),
            Obs::Recover(id, at) => Observation::Recover {
                id: id.into(),
                at_ms: at,
            },
            Obs::Claim(id, now) => Observation::Claim {
                id: id.into(),
                member: member.into(),
                now_ms: now,
                until_ms: now + 100,
            },
            Obs::Recovered(id, claimed_at) => Observation::Verdict {
                id: id.into(),
                member: member.into(),
                claim_until_ms: claimed_at + 100,
                at_ms: claimed_at + 50,
                verdict: Verdict::Recovered,
            },
        }
    }
}

const SAME_ENDPOINT: &[&[&[Obs]]] = &[
    &[&[Obs::Park("a", 10)]],
    &[&[Obs::Park("a", 20)]],
    &[&[Obs::Park("a", 30)]],
];

fn one_outage(r: &FleetRecord, o: &[Vec<Outcome>]) {
    assert_eq!(r.stats.total_failed, 1);
    assert_eq!(count(o, |x| matches!(x, Outcome::NewOutage { .. })), 1);
    let e = r.endpoint("a").unwrap();
    assert_eq!(
        (e.since_ms, e.first_member.as_str()),
        (10, "m0"),
        "earliest park kept"
    );
}

#[test]
fn dfs_three_members_park_the_same_endpoint_one_new_outage() {
    shuttle::check_dfs(|| schedule(SAME_ENDPOINT, false, one_outage), Some(50_000));
}

const DISTINCT: &[&[&[Obs]]] = &[
    &[&[Obs::Park("a", 10)]],
    &[&[Obs::Park("b", 10)]],
    &[&[Obs::Park("c", 10)]],
];

fn no_lost_update(r: &FleetRecord, _: &[Vec<Outcome>]) {
    assert_eq!(r.stats.total_failed, 3);
    for id in ["a", "b", "c"] {
        assert!(r.is_parked(id), "{id} lost");
    }
}

#[test]
fn dfs_distinct_endpoints_no_lost_update() {
    shuttle::check_dfs(|| schedule(DISTINCT, false, no_lost_update), Some(50_000));
}

/// Parks, a recovery and a re-park, in two rounds per member: outages may be one or two
/// depending on the order, but each is counted once.
const MIXED: &[&[&[Obs]]] = &[
    &[&[Obs::Park("a", 10)], &[Obs::Park("b", 60)]],
    &[&[Obs::Park("a", 20), Obs::Park("b", 20)]],
    &[&[Obs::Recover("a", 50)], &[Obs::Park("a", 70)]],
];

fn nothing_more(_: &FleetRecord, _: &[Vec<Outcome>]) {}

#[test]
fn pct_parks_recoveries_and_reparks_count_once() {
    shuttle::check_pct(|| schedule(MIXED, false, nothing_more), 3_000, 3);
    shuttle::check_random(|| schedule(MIXED, false, nothing_more), 3_000);
}

const CLAIMS: &[&[&[Obs]]] = &[
    &[&[Obs::Park("a", 0)], &[Obs::Claim("a", 1000)]],
    &[&[Obs::Park("a", 0)], &[Obs::Claim("a", 1000)]],
    &[&[Obs::Park("a", 0)], &[Obs::Claim("a", 1000)]],
];

fn one_prober(r: &FleetRecord, o: &[Vec<Outcome>]) {
    assert_eq!(
        count(o, |x| matches!(x, Outcome::ClaimGranted { .. })),
        1,
        "one prober"
    );
    assert!(r.endpoint("a").unwrap().claim.is_some());
}

#[test]
fn pct_one_claim_granted_fleet_wide() {
    shuttle::check_pct(|| schedule(CLAIMS, false, one_prober), 3_000, 3);
}

const PROBE_AND_RECOVER: &[&[&[Obs]]] = &[
    &[
        &[Obs::Park("a", 0)],
        &[Obs::Claim("a", 1000)],
        &[Obs::Recovered("a", 1000)],
    ],
    &[&[Obs::Park("a", 5)], &[Obs::Recover("a", 2000)]],
];

fn recovered_once(r: &FleetRecord, o: &[Vec<Outcome>]) {
    assert!(!r.is_parked("a"));
    // The verdict may find the endpoint already recovered by traffic (stale), never twice.
    let verdicts = count(o, |x| matches!(x, Outcome::VerdictCounted));
    let direct = count(o, |x| matches!(x, Outcome::Recovered { .. }));
    assert_eq!(r.stats.total_recovered, verdicts + direct);
    assert_eq!(r.stats.total_recovered, 1);
}

#[test]
fn dfs_a_probe_verdict_and_a_traffic_recovery_recover_once() {
    // check_books counts only Recovered outcomes; here a verdict may recover instead.
    shuttle::check_dfs(
        || {
            let etcd = shuttle::sync::Arc::new(shuttle::sync::Mutex::new(ModelEtcd::default()));
            let handles: Vec<_> = PROBE_AND_RECOVER
                .iter()
                .enumerate()
                .map(|(i, rounds)| {
                    let etcd = etcd.clone();
                    shuttle::thread::spawn(move || {
                        let member = format!("m{i}");
                        let rounds: Vec<Vec<Observation>> = rounds
                            .iter()
                            .map(|r| r.iter().map(|o| o.build(&member)).collect())
                            .collect();
                        run_member(&*etcd, &rounds)
                    })
                })
                .collect();
            let o: Vec<Vec<Outcome>> = handles.into_iter().map(|h| h.join().expect("m")).collect();
            let r = stored(&*etcd);
            recovered_once(&r, &o);
            assert_eq!(r.stats.total_failed, 1);
        },
        Some(50_000),
    );
}

/// A model check that could not fail would prove nothing: an etcd that ignores the compare
/// (a blind put) must be caught double-counting or losing an update.
#[test]
fn the_model_check_catches_a_blind_put() {
    let same = std::panic::catch_unwind(|| {
        shuttle::check_dfs(|| schedule(SAME_ENDPOINT, true, one_outage), Some(50_000))
    });
    assert!(same.is_err(), "blind puts double-count in some schedule");
    let distinct = std::panic::catch_unwind(|| {
        shuttle::check_dfs(|| schedule(DISTINCT, true, no_lost_update), Some(50_000))
    });
    assert!(
        distinct.is_err(),
        "blind puts lose an update in some schedule"
    );
}

#[test]
fn many_threads_many_rounds_balance() {
    let etcd = std::sync::Arc::new(std::sync::Mutex::new(ModelEtcd::default()));
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let etcd = etcd.clone();
            std::thread::spawn(move || {
                let member = format!("m{t}");
                let rounds: Vec<Vec<Observation>> = (0..200u64)
                    .map(|i| {
                        let id = if (i + t) % 2 == 0 { "a" } else { "b" };
                        if (i + t) % 3 == 0 {
                            vec![Observation::Recover {
                                id: id.into(),
                                at_ms: i * 10 + 5,
                            }]
                        } else {
                            vec![park(id, &member, i * 10)]
                        }
                    })
                    .collect();
                run_member(&*etcd, &rounds)
            })
        })
        .collect();
    let outcomes: Vec<Vec<Outcome>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    check_books(&stored(&*etcd), &outcomes);
}

mod through_etcd {
    use super::*;
    use proptest::prelude::*;

    fn obs() -> impl Strategy<Value = Obs> {
        const IDS: [&str; 2] = ["a", "b"];
        (0u8..4, 0..IDS.len(), 0u64..3000).prop_map(|(k, i, t)| match k {
            0 => Obs::Park(IDS[i], t),
            1 => Obs::Recover(IDS[i], t),
            2 => Obs::Claim(IDS[i], t),
            _ => Obs::Recovered(IDS[i], t),
        })
    }

    proptest! {
        /// Rounds one after the other through the model etcd (codec, txn, decode) leave the
        /// same record and outcomes as applying the observations directly: the loop adds
        /// nothing and loses nothing.
        #[test]
        fn sequential_rounds_equal_the_pure_merge(
            rounds in proptest::collection::vec(proptest::collection::vec((obs(), 0usize..3), 0..4), 0..8),
        ) {
            let etcd = std::sync::Mutex::new(ModelEtcd::default());
            let mut direct = FleetRecord::default();
            for round in &rounds {
                let observations: Vec<Observation> =
                    round.iter().map(|(o, m)| o.build(&format!("m{m}"))).collect();
                let expected = apply_all(&mut direct, &observations);
                let r = run_round(&etcd, observations, 1).expect("no contention alone");
                prop_assert_eq!(r.outcomes, expected);
                prop_assert_eq!(&r.record, &direct);
            }
            if direct != FleetRecord::default() {
                prop_assert_eq!(stored(&etcd), direct);
            }
        }
    }
}

#[test]
fn rounds_stay_on_the_interval_grid_when_ticks_come_a_little_early_or_late() {
    // Ticks every 250 ms, the first round at 0, interval 1 000: a tick at 999 is not due yet,
    // the one at 1 249 is; the next round is still due at 2 000, not 2 249.
    assert_eq!(next_round_due(0, 0, 1000), 1000);
    assert_eq!(next_round_due(1000, 1249, 1000), 2000);
    // Over a minute of such ticks: exactly one round per interval.
    let (mut due, mut rounds) = (0u64, 0u32);
    for tick in 0..240u64 {
        let now = tick * 250 + 249; // always just after a grid point would be missed
        if now >= due {
            due = next_round_due(due, now, 1000);
            rounds += 1;
        }
    }
    assert_eq!(rounds, 60);
}

#[test]
fn a_syncer_far_behind_starts_a_fresh_grid_instead_of_catching_up() {
    assert_eq!(next_round_due(1000, 5000, 1000), 6000);
    assert_eq!(next_round_due(u64::MAX - 1, u64::MAX, 1000), u64::MAX);
}
