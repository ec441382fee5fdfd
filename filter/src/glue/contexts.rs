//! Which context a context id — and an HTTP call's token — belongs to: the one registry the
//! exported callbacks (`glue::exports`) look a context up in.
//!
//! One map from context id to a [`Context`], an enum of boxes (one allocation per context, as
//! with the SDK, but no `dyn` and no hashing), and, through `calls`, the tokens of HTTP calls
//! in flight with the context that sent each: the host delivers every answer on the root
//! context (cpp-host runs `httpCall` on the root) and the filter hands it to the sender.
//!
//! The map is a `Vec` sorted by id, searched by bisection: a host hands out ids in increasing
//! order, so a new context is pushed at the end and a finished one leaves from near it, moving
//! 8-byte entries. A `BTreeMap<u32, Context>` (boxed or inline) cost ~1.2 k more instructions
//! per request and 7.5 KB more module (bench/PROFILE.md, "The floor (filter side)").
//!
//! Nothing here can panic: an id the host never created, or a token the filter never sent,
//! finds nothing and the callback does nothing (the stream passes on).

use std::cell::RefCell;

use super::abi::{self, Action};
use super::calls;
use super::http::FailoverHttp;
use super::root::FailoverRoot;

/// One context of this VM.
pub enum Context {
    /// A root context: the HTTP filter's plugin, or the singleton verifier service.
    Root(Box<FailoverRoot>),
    /// One request of a configured root context.
    Http(Box<FailoverHttp>),
    /// One request of a root context that has no configuration: everything passes through.
    Passthrough,
}

/// The live contexts, sorted by id (see the module docs).
struct Contexts(Vec<(u32, Context)>);

impl Contexts {
    /// Where `id` is, or where it would go.
    fn find(&self, id: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&id, |(k, _)| *k)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Context> {
        let at = self.find(id).ok()?;
        self.0.get_mut(at).map(|(_, c)| c)
    }

    fn insert(&mut self, id: u32, context: Context) {
        match self.find(id) {
            Ok(at) => {
                if let Some(slot) = self.0.get_mut(at) {
                    slot.1 = context;
                }
            }
            Err(at) => self.0.insert(at, (id, context)),
        }
    }

    fn remove(&mut self, id: u32) -> Option<Context> {
        let at = self.find(id).ok()?;
        Some(self.0.remove(at).1)
    }
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = const { RefCell::new(Contexts(Vec::new())) };
}

/// `proxy_on_context_create`: a root context when `root_id` is 0, else an HTTP context of
/// that root (nothing when the root does not exist).
pub fn create(id: u32, root_id: u32) {
    let context = if root_id == 0 {
        Context::Root(Box::new(FailoverRoot::new(id)))
    } else {
        match with_root(root_id, None, |root| Some(root.create_http_context(id))) {
            Some(Some(http)) => Context::Http(http),
            Some(None) => Context::Passthrough,
            None => return,
        }
    };
    CONTEXTS.with(|map| {
        if let Ok(mut map) = map.try_borrow_mut() {
            map.insert(id, context);
        }
    });
}

/// `proxy_on_delete`: forgets a context and the HTTP calls it still waits for (their answers,
/// if they come, find no one, as they did with the SDK).
pub fn delete(id: u32) {
    let removed = CONTEXTS.with(|map| map.try_borrow_mut().ok().and_then(|mut m| m.remove(id)));
    if matches!(removed, Some(Context::Http(_))) {
        calls::forget_owner(id);
    }
}

/// Runs `f` on root context `id`; `default` when there is none.
pub fn with_root<R>(id: u32, default: R, f: impl FnOnce(&mut FailoverRoot) -> R) -> R {
    CONTEXTS.with(|map| {
        let Ok(mut map) = map.try_borrow_mut() else {
            return default;
        };
        match map.get_mut(id) {
            Some(Context::Root(root)) => f(root),
            _ => default,
        }
    })
}

/// Runs an HTTP callback on context `id`; Continue for a pass-through or unknown context.
pub fn with_http(id: u32, f: impl FnOnce(&mut FailoverHttp) -> Action) -> Action {
    CONTEXTS.with(|map| {
        let Ok(mut map) = map.try_borrow_mut() else {
            return Action::Continue;
        };
        match map.get_mut(id) {
            Some(Context::Http(http)) => f(http),
            _ => Action::Continue,
        }
    })
}

/// `proxy_on_http_call_response`: hands the answer of `token` to the context that sent it,
/// made the effective context first so that its host calls act on it.
pub fn call_response(token: u32, num_headers: usize, body_size: usize) {
    let Some(owner) = calls::take_owner(token) else {
        return;
    };
    CONTEXTS.with(|map| {
        let Ok(mut map) = map.try_borrow_mut() else {
            return;
        };
        let Some(context) = map.get_mut(owner) else {
            return;
        };
        // A refusal leaves the root effective; the callback's host calls then say so.
        let _ = abi::set_effective_context(owner);
        match context {
            Context::Root(root) => root.on_http_call_response(token, num_headers, body_size),
            Context::Http(http) => http.on_http_call_response(token, num_headers, body_size),
            Context::Passthrough => {}
        }
    });
}
