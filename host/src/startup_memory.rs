//! Give the compiler's memory back to the OS once start-up is over (issue 16).
//!
//! Compiling the filter's module with Cranelift peaks at 55–80 MiB; the proxy needs ~38 MiB
//! once it runs. mimalloc returns freed pages to the OS only after `purge_delay` (1 s by
//! default) *and* only when the thread that owns them calls into the allocator again; wasmtime
//! compiles on rayon's pool, whose threads then sit idle for the life of the process, and the
//! main thread waits for signals. Measured: 80 MiB at `/ready` (2 workers), unchanged after
//! 30 s idle. So while modules compile, freed memory is purged at once, and at the end every
//! pool thread and this one run a forced `mi_collect` (which also settles blocks other threads
//! freed into their pages). The default delay then comes back for serving, where purging at once
//! costs ~13 % more CPU per request (27.6 vs 31.1 µs median, 6 rounds side by side, wrk -c64:
//! pages emptied and refilled between requests). bench/run reports the RSS at start.

use libmimalloc_sys::{mi_collect, mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h): the Rust
/// bindings name only the options both major versions share, and this one moved between them.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Purges freed memory at once until dropped; then collects every compile thread's heap and
/// restores the delay it found.
pub struct EagerPurge {
    previous: std::ffi::c_long,
}

impl EagerPurge {
    /// From now until the guard is dropped, freed pages go back to the OS as they are freed.
    pub fn begin() -> Self {
        // SAFETY: both calls only read or write one entry of mimalloc's option table (atomic
        // per option); any value is valid for purge_delay (-1 never, 0 at once, N ms).
        let previous = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
        Self { previous }
    }
}

impl Drop for EagerPurge {
    fn drop(&mut self) {
        // SAFETY: `mi_collect` only works on the calling thread's own heap (and the pages it
        // owns); every thread calls it for itself.
        rayon::broadcast(|_| unsafe { mi_collect(true) });
        unsafe { mi_collect(true) };
        // SAFETY: as in `begin`.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, self.previous) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads one option.
        unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn purges_at_once_inside_the_guard_and_restores_the_default_after() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("SKIPPED: MIMALLOC_PURGE_DELAY is set in the environment");
            return;
        }
        // 1000 ms is v3's default for purge_delay and for no neighbouring option: a mimalloc
        // that renumbered its options fails here instead of silently tuning something else.
        assert_eq!(purge_delay(), 1000);
        {
            let _guard = EagerPurge::begin();
            assert_eq!(purge_delay(), 0);
        }
        assert_eq!(purge_delay(), 1000);
    }
}
