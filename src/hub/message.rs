//! A message: its bytes (shared between broadcast copies), who sent it, and
//! where its receipt goes.

use std::sync::Arc;

use crate::hub::accounting::MemoryBudget;
use crate::hub::errno::Result;
use crate::hub::process::Process;

/// Message bytes, accounted in the daemon's [`MemoryBudget`] for as long as
/// any copy of the message exists.
#[derive(Debug)]
pub struct Payload {
    bytes: Box<[u8]>,
    budget: Arc<MemoryBudget>,
}

impl Payload {
    /// Copies `data` into a new payload, or fails with `ENOBUFS` when the
    /// daemon's memory bound would be passed.
    pub fn new(data: &[u8], budget: &Arc<MemoryBudget>) -> Result<Arc<Payload>> {
        budget.reserve(data.len())?;
        Ok(Arc::new(Payload {
            bytes: data.into(),
            budget: Arc::clone(budget),
        }))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.budget.release(self.bytes.len());
    }
}

/// Where the receipt of a message sent on a read-write `send` descriptor goes:
/// the descriptor's handle and the message's number on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptTag {
    pub handle: u64,
    pub seq: u64,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub payload: Arc<Payload>,
    pub sender: Process,
    pub receipt: Option<ReceiptTag>,
    /// Its place in its channel's send order (set when the channel takes it in).
    pub order: u64,
}

impl Message {
    pub fn len(&self) -> usize {
        self.payload.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
