//! The HTTP calls in flight and the context that sent each.
//!
//! The host delivers every call's answer on the root context (cpp-host runs `httpCall` on the
//! root); the filter hands it to the sender. Kept apart from `contexts` so that the code that
//! sends a call (below the contexts) and the code that dispatches its answer (the contexts)
//! both reach it without depending on each other.

use std::cell::RefCell;

thread_local! {
    /// (token, context id) of every HTTP call in flight; a few at a time.
    static CALLS: RefCell<Vec<(u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Remembers that the HTTP call `token` was sent by context `owner`.
pub fn register(token: u32, owner: u32) {
    CALLS.with(|calls| {
        if let Ok(mut calls) = calls.try_borrow_mut() {
            calls.push((token, owner));
        }
    });
}

/// The context that sent `token`, forgotten from here on (`None`: a token this VM never sent,
/// or one whose sender is gone).
pub fn take_owner(token: u32) -> Option<u32> {
    CALLS.with(|calls| {
        let mut calls = calls.try_borrow_mut().ok()?;
        let at = calls.iter().position(|(t, _)| *t == token)?;
        Some(calls.swap_remove(at).1)
    })
}

/// Forgets every call context `owner` still waits for (it is gone; their answers, if they
/// come, find no one).
pub fn forget_owner(owner: u32) {
    CALLS.with(|calls| {
        if let Ok(mut calls) = calls.try_borrow_mut() {
            calls.retain(|(_, o)| *o != owner);
        }
    });
}
