//! The one polling helper: tests wait for a condition to hold, bounded in time, instead of
//! sleeping a guessed amount.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it returns `Some`, at most `limit`; `None` on time-out.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually`] for synchronous tests and a synchronous `f` (runs it on a small runtime of
/// its own; do not call from inside one).
pub fn eventually_blocking<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("eventually_blocking: no runtime: {e}"),
    };
    rt.block_on(eventually(limit, || std::future::ready(f())))
}
