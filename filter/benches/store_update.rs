//! `store::update` throughput under 1, 2, 4, 8 and 16 VMs on threads, against a store with
//! Envoy's shared-data rules behind one `std::sync::Mutex` (as proxy-wasm-cpp-host keeps its
//! shared data: one process-wide map under one mutex, values copied in and out).
//!
//! Every update is a write that must land: a failure of the same endpoint recorded with a
//! threshold nobody reaches, so each call adds one strike. After every sample the stored strike
//! count must equal the number of updates made — a lost update (the CAS loop's only way to be
//! wrong under contention) stops the bench.
//!
//! `cargo bench -p failover-filter --bench store_update` (criterion; elements/s = updates/s in
//! total over all threads). After criterion, a short fixed run prints the scaling table the
//! issue's goal talks about: throughput(N threads) / throughput(1 thread) and per added thread.
//! `-- --table` prints only the table (bench/run puts it in bench/RESULTS.md); `-- --quick`
//! a short table (CI smoke run).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use failover_filter::state::{Failure, FailureOutcome, Record};
use failover_filter::store::{read, update, SetResult, SharedStore, StoreError};

const THREADS: [usize; 5] = [1, 2, 4, 8, 16];
const ENDPOINT: &str = "main";

/// One process-wide map under one lock, with Envoy's CAS rules: a missing key inserts whatever
/// the cas, cas 0 overwrites, otherwise the cas must match; every successful set takes the next
/// value of one global counter (never 0).
#[derive(Default)]
struct EnvoyStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl SharedStore for EnvoyStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(inner.map.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<SetResult, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let allowed = match inner.map.get(key) {
            None => true,
            Some((_, stored)) => cas == 0 || cas == *stored,
        };
        if !allowed {
            return Ok(SetResult::CasMismatch);
        }
        inner.last_cas = inner.last_cas.wrapping_add(1).max(1);
        let cas = inner.last_cas;
        inner.map.insert(key.to_string(), (value.to_vec(), cas));
        Ok(SetResult::Stored)
    }
}

/// A store holding the record as a worker would find it: one endpoint parked, stats non-zero,
/// so encode/decode work on a realistic document, not on `{}`.
fn seeded_store() -> EnvoyStore {
    let store = EnvoyStore::default();
    let seeded = update(&store, |r: &mut Record| {
        r.record_failure(&failure("spare", 1));
        r.lease.owner = "worker 0".into();
        r.lease.until_ms = 1_700_000_180_000;
    });
    if let Err(e) = seeded {
        panic!("seeding the model store failed: {e}");
    }
    store
}

fn failure(id: &str, threshold: u32) -> Failure<'_> {
    Failure {
        id,
        reason: "status 503 via_upstream",
        now_ms: 1_700_000_000_000,
        threshold,
        interval_ms: 60_000,
        not_before_ms: None,
    }
}

/// The measured operation: one strike of `ENDPOINT`, always a write.
#[inline(never)]
fn one_update(store: &EnvoyStore) -> u32 {
    let f = failure(ENDPOINT, u32::MAX);
    match update(store, |r| r.record_failure(&f)) {
        Ok(u) => {
            if !matches!(u.outcome, FailureOutcome::Struck(_)) || !u.written {
                panic!("expected a strike that was written, got {:?}", u.outcome);
            }
            u.attempts
        }
        Err(e) => panic!("model store failed: {e}"),
    }
}

fn strikes(store: &EnvoyStore) -> u64 {
    match read(store) {
        Ok((r, _, _)) => u64::from(r.strikes.get(ENDPOINT).copied().unwrap_or(0)),
        Err(e) => panic!("model store failed: {e}"),
    }
}

/// Runs `per_thread` updates on each of `threads` threads, started together. Returns the wall
/// time from the barrier to the last thread's end, and the attempts made in total. Checks that
/// no update was lost.
fn run(threads: usize, per_thread: u64) -> (Duration, u64) {
    let store = Arc::new(seeded_store());
    let barrier = Arc::new(Barrier::new(threads + 1));
    let attempts = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, barrier, attempts) = (store.clone(), barrier.clone(), attempts.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = 0u64;
                for _ in 0..per_thread {
                    mine += u64::from(black_box(one_update(&store)));
                }
                attempts.fetch_add(mine, Ordering::Relaxed);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        if h.join().is_err() {
            panic!("an updating thread panicked");
        }
    }
    let elapsed = start.elapsed();
    let expected = threads as u64 * per_thread;
    let got = strikes(&store);
    assert_eq!(
        got, expected,
        "lost updates with {threads} threads: {got} of {expected} strikes stored"
    );
    (elapsed, attempts.load(Ordering::Relaxed))
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_update");
    for &threads in &THREADS {
        // One criterion "iteration" = one update on every thread at once.
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| run(threads, iters.max(1)).0);
            },
        );
    }
    group.finish();
}

/// Throughput (updates/s in total) of a fixed-length run, median of `reps`.
fn table(run_for: Duration, reps: usize) {
    // Calibrate: updates per thread that take about `run_for` alone.
    let (t, _) = run(1, 2_000);
    let per_thread_1 = ((2_000.0 * run_for.as_secs_f64() / t.as_secs_f64()) as u64).max(1_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nstore::update scaling (Envoy-rules model store, std Mutex, {cores} cores; every update a write)");
    println!(
        "| threads | updates/s (median of {reps}) | × 1 thread | × previous | attempts/update |"
    );
    println!("|---|---|---|---|---|");
    let mut first = None;
    let mut previous: Option<f64> = None;
    for &threads in &THREADS {
        // Same total work at every thread count, so each run lasts about `run_for`.
        let per_thread = (per_thread_1 / threads as u64).max(100);
        let mut rates = Vec::with_capacity(reps);
        let mut tries = 0.0;
        for _ in 0..reps {
            let (elapsed, attempts) = run(threads, per_thread);
            let total = (threads as u64 * per_thread) as f64;
            rates.push(total / elapsed.as_secs_f64());
            tries = attempts as f64 / total;
        }
        rates.sort_by(f64::total_cmp);
        let rate = rates[rates.len() / 2];
        let base = *first.get_or_insert(rate);
        let step = previous.map_or("—".to_string(), |p| format!("{:.2}", rate / p));
        println!(
            "| {threads} | {rate:.0} | {:.2} | {step} | {tries:.2} |",
            rate / base
        );
        previous = Some(rate);
    }
    println!("(no update lost at any thread count: the stored strike count matched every run)");
}

fn main() {
    if std::env::args().any(|a| a == "--quick") {
        table(Duration::from_millis(100), 1);
        return;
    }
    if std::env::args().any(|a| a == "--table") {
        table(Duration::from_millis(500), 5);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    // `cargo bench -- <filter>` or `--list`: criterion did what was asked; the table is extra.
    if std::env::args().skip(1).any(|a| !a.starts_with('-'))
        || std::env::args().any(|a| a == "--list")
    {
        return;
    }
    table(Duration::from_millis(500), 5);
}
