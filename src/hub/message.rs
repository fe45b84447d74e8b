//! A message: its bytes (shared between broadcast copies), who sent it, and
//! where its receipt goes.

use std::sync::Arc;

use crate::hub::accounting::{Charge, MESSAGE_OVERHEAD, MemoryBudget};
use crate::hub::errno::Result;
use crate::hub::process::Process;

/// Message bytes, charged to the sender's user in the daemon's
/// [`MemoryBudget`] (with [`MESSAGE_OVERHEAD`]) for as long as any copy of
/// the message exists.
#[derive(Debug)]
pub struct Payload {
    bytes: Box<[u8]>,
    _charge: Charge,
}

impl Payload {
    /// Copies `data`, sent by user `uid`, into a new payload, or fails with
    /// `ENOBUFS` when the memory bound, or the user's share, would be passed.
    pub fn new(data: &[u8], budget: &Arc<MemoryBudget>, uid: u32) -> Result<Arc<Payload>> {
        let charge = budget.charge(uid, data.len() + MESSAGE_OVERHEAD)?;
        Ok(Arc::new(Payload {
            bytes: data.into(),
            _charge: charge,
        }))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
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
