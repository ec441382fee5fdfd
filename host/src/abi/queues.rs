//! The process-wide store behind `proxy_{register,resolve,enqueue,dequeue}_shared_queue`:
//! (vm_id, name) → id → FIFO of messages. A store of its own so the per-VM state can hold it
//! without depending on the host functions that use it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::AbiStatus;

/// Process-wide shared queues: (vm_id, name) → id → FIFO of messages.
#[derive(Default)]
pub(crate) struct SharedQueues {
    inner: Mutex<QueuesInner>,
}

#[derive(Default)]
struct QueuesInner {
    ids: HashMap<(String, String), u32>,
    queues: Vec<VecDeque<Vec<u8>>>,
}

impl SharedQueues {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueuesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn register(&self, vm_id: &str, name: &str) -> u32 {
        let mut inner = self.lock();
        if let Some(id) = inner.ids.get(&(vm_id.to_string(), name.to_string())) {
            return *id;
        }
        let id = inner.queues.len() as u32 + 1;
        inner.queues.push(VecDeque::new());
        inner.ids.insert((vm_id.to_string(), name.to_string()), id);
        id
    }

    pub(super) fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.lock()
            .ids
            .get(&(vm_id.to_string(), name.to_string()))
            .copied()
    }

    pub(super) fn enqueue(&self, id: u32, value: Vec<u8>) -> Result<(), AbiStatus> {
        let mut inner = self.lock();
        let q = id
            .checked_sub(1)
            .and_then(|i| inner.queues.get_mut(i as usize))
            .ok_or(AbiStatus::NotFound)?;
        q.push_back(value);
        Ok(())
    }

    pub(super) fn dequeue(&self, id: u32) -> Result<Vec<u8>, AbiStatus> {
        let mut inner = self.lock();
        let q = id
            .checked_sub(1)
            .and_then(|i| inner.queues.get_mut(i as usize))
            .ok_or(AbiStatus::NotFound)?;
        q.pop_front().ok_or(AbiStatus::Empty)
    }
}
