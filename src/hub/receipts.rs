//! Sender receipts: what a process that opened `send` read-write reads back,
//! one line per message it sent there, naming the process that received it.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::hub::accounting::MemoryBudget;
use crate::hub::errno::{Errno, Refusal, Result};
use crate::hub::reply::Outcome;
use crate::hub::waiters::{ReceiptWait, WaiterId};

/// What each receipt not yet read holds of `--max-memory`: a descriptor
/// that sends without ever reading its receipts cannot grow the daemon
/// without bound either.
pub const RECEIPT_COST: usize = 64;

pub struct ReceiptBook {
    budget: Arc<MemoryBudget>,
    next_seq: u64,
    /// Messages sent on this descriptor, oldest first (by `seq`), with their
    /// fate once known.
    outstanding: VecDeque<(u64, Option<Fate>)>,
    /// The rest of the line being read.
    line: Vec<u8>,
    pub waiters: VecDeque<ReceiptWait>,
}

/// Who took a message (its pid, and on a broker mount its node), or why
/// it was lost.
type Fate = std::result::Result<(u32, Option<Arc<str>>), Errno>;

/// What a read of receipts finds.
#[derive(Debug, PartialEq)]
pub enum ReceiptRead {
    Data(Vec<u8>),
    Error(Errno),
    /// Nothing sent on this descriptor is outstanding: end of file.
    Eof,
    /// The next message has not been received yet.
    Pending,
}

impl ReceiptBook {
    pub fn new(budget: &Arc<MemoryBudget>) -> ReceiptBook {
        ReceiptBook {
            budget: Arc::clone(budget),
            next_seq: 0,
            outstanding: VecDeque::new(),
            line: Vec::new(),
            waiters: VecDeque::new(),
        }
    }

    /// Numbers a new message sent on this descriptor, or fails with
    /// `ENOBUFS` when the daemon's memory bound would be passed.
    pub fn issue(&mut self) -> Result<u64> {
        self.budget.reserve(RECEIPT_COST)?;
        self.next_seq += 1;
        self.outstanding.push_back((self.next_seq, None));
        Ok(self.next_seq)
    }

    fn find(&self, seq: u64) -> Option<usize> {
        self.outstanding
            .binary_search_by_key(&seq, |(s, _)| *s)
            .ok()
    }

    fn forget(&mut self, i: usize) {
        self.outstanding.remove(i);
        self.budget.release(RECEIPT_COST);
    }

    /// Forgets a message that was never sent (its write failed).
    pub fn cancel(&mut self, seq: u64) {
        if let Some(i) = self.find(seq) {
            self.forget(i);
        }
    }

    /// Records who received message `seq` (or why it was lost). The first
    /// fate recorded stands (a broadcast message is taken several times).
    pub fn resolve(&mut self, seq: u64, fate: std::result::Result<u32, Errno>) {
        if let Some(i) = self.find(seq) {
            self.outstanding[i]
                .1
                .get_or_insert(fate.map(|pid| (pid, None)));
        }
    }

    /// Records that message `seq` was taken by process `pid` of `node`
    /// (ipcfs(7), ACROSS HOSTS: the line is `PID NODE`).
    pub fn resolve_on(&mut self, seq: u64, pid: u32, node: Arc<str>) {
        if let Some(i) = self.find(seq) {
            self.outstanding[i].1.get_or_insert(Ok((pid, Some(node))));
        }
    }

    /// Every message whose fate is not known yet was lost with `err`: on a
    /// broker mount, the messages an `rmdir` dropped, whose receipts no
    /// reader will ever send.
    pub fn fail_pending(&mut self, err: Errno) {
        for (_, fate) in self.outstanding.iter_mut() {
            fate.get_or_insert(Err(err));
        }
    }

    /// Whether a read returns at once: a line is ready, or nothing is
    /// outstanding (end of file).
    pub fn readable(&self) -> bool {
        !self.line.is_empty() || !matches!(self.outstanding.front(), Some((_, None)))
    }

    pub fn read(&mut self, size: usize) -> ReceiptRead {
        if self.line.is_empty() {
            match self.outstanding.front() {
                None => return ReceiptRead::Eof,
                Some((_, None)) => return ReceiptRead::Pending,
                Some((_, Some(fate))) => {
                    let fate = fate.clone();
                    self.forget(0);
                    match fate {
                        Ok((pid, None)) => self.line = format!("{pid}\n").into_bytes(),
                        Ok((pid, Some(node))) => self.line = format!("{pid} {node}\n").into_bytes(),
                        Err(e) => return ReceiptRead::Error(e),
                    }
                }
            }
        }
        let n = size.min(self.line.len());
        ReceiptRead::Data(self.line.drain(..n).collect())
    }

    /// Answers the blocked receipt reads that can now be answered.
    /// Answers the waiters whose read can be answered now. `ended`: the
    /// channel is gone, and receipts read to their end answer that error
    /// rather than end of file, like any other I/O on a descriptor opened
    /// before it went (ipcfs(7), SENDER RECEIPTS).
    pub fn serve_waiters(&mut self, ended: Option<Refusal>) -> Vec<(ReceiptWait, Outcome)> {
        let mut out = Vec::new();
        while let Some(w) = self.waiters.front() {
            let Some(outcome) = self.read(w.size as usize).into_outcome() else {
                break;
            };
            let outcome = match (outcome, ended) {
                (Outcome::Bytes(b), Some(e)) if b.is_empty() => Outcome::Error(e),
                (outcome, _) => outcome,
            };
            out.push((self.waiters.pop_front().expect("receipt waiter"), outcome));
        }
        out
    }

    pub fn remove_waiter(&mut self, id: WaiterId) -> Option<ReceiptWait> {
        let i = self.waiters.iter().position(|w| w.id == id)?;
        self.waiters.remove(i)
    }
}

impl Drop for ReceiptBook {
    fn drop(&mut self) {
        self.budget.release(RECEIPT_COST * self.outstanding.len());
    }
}

impl ReceiptRead {
    pub fn into_outcome(self) -> Option<Outcome> {
        match self {
            ReceiptRead::Data(d) => Some(Outcome::Bytes(d)),
            ReceiptRead::Error(e) => Some(Outcome::Error(e.into())),
            ReceiptRead::Eof => Some(Outcome::empty()),
            ReceiptRead::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_send_order_whatever_the_receive_order() {
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        let mut b = ReceiptBook::new(&budget);
        assert_eq!(b.read(64), ReceiptRead::Eof);
        let one = b.issue().unwrap();
        let two = b.issue().unwrap();
        assert_eq!(b.read(64), ReceiptRead::Pending);
        b.resolve(two, Ok(200));
        assert!(!b.readable());
        assert_eq!(b.read(64), ReceiptRead::Pending);
        b.resolve(one, Ok(100));
        b.resolve(one, Ok(999)); // a later copy does not change it
        assert!(b.readable());
        assert_eq!(b.read(64), ReceiptRead::Data(b"100\n".to_vec()));
        // One byte at a time, as bash's `read` does.
        assert_eq!(b.read(1), ReceiptRead::Data(b"2".to_vec()));
        assert_eq!(b.read(1), ReceiptRead::Data(b"0".to_vec()));
        assert_eq!(b.read(1), ReceiptRead::Data(b"0".to_vec()));
        assert_eq!(b.read(1), ReceiptRead::Data(b"\n".to_vec()));
        assert_eq!(b.read(1), ReceiptRead::Eof);
    }

    #[test]
    fn lost_and_cancelled_messages() {
        let budget = Arc::new(MemoryBudget::new(1 << 20));
        let mut b = ReceiptBook::new(&budget);
        let one = b.issue().unwrap();
        let two = b.issue().unwrap();
        b.cancel(one);
        b.resolve(two, Err(Errno::EIDRM));
        assert_eq!(b.read(64), ReceiptRead::Error(Errno::EIDRM));
        assert_eq!(b.read(64), ReceiptRead::Eof);
        assert!(b.readable(), "end of file is readable");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn unread_receipts_are_bounded_by_the_memory_budget() {
        let budget = Arc::new(MemoryBudget::new(3 * RECEIPT_COST));
        let mut b = ReceiptBook::new(&budget);
        for _ in 0..3 {
            b.issue().unwrap();
        }
        assert_eq!(b.issue(), Err(Errno::ENOBUFS.into()));
        b.resolve(1, Ok(7));
        assert_eq!(b.read(64), ReceiptRead::Data(b"7\n".to_vec()));
        assert!(b.issue().is_ok());
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
