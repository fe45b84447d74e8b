//! Sender receipts: what a process that opened `send` read-write reads back,
//! one line per message it sent there, naming the process that received it.

use std::collections::VecDeque;

use crate::errno::Errno;
use crate::waiter::{Outcome, ReceiptWait, WaiterId};

#[derive(Default)]
pub struct ReceiptBook {
    next_seq: u64,
    /// Messages sent on this descriptor, oldest first, with their fate once known.
    outstanding: VecDeque<(u64, Option<Result<u32, Errno>>)>,
    /// The rest of the line being read.
    line: Vec<u8>,
    pub waiters: VecDeque<ReceiptWait>,
}

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
    /// Numbers a new message sent on this descriptor.
    pub fn issue(&mut self) -> u64 {
        self.next_seq += 1;
        self.outstanding.push_back((self.next_seq, None));
        self.next_seq
    }

    /// Forgets a message that was never sent (its write was interrupted).
    pub fn cancel(&mut self, seq: u64) {
        self.outstanding.retain(|(s, _)| *s != seq);
    }

    /// Records who received message `seq` (or why it was lost). The first
    /// fate recorded stands (a broadcast message is taken several times).
    pub fn resolve(&mut self, seq: u64, fate: Result<u32, Errno>) {
        if let Some((_, slot @ None)) = self.outstanding.iter_mut().find(|(s, _)| *s == seq) {
            *slot = Some(fate);
        }
    }

    pub fn ready(&self) -> bool {
        !self.line.is_empty() || matches!(self.outstanding.front(), Some((_, Some(_))))
    }

    pub fn read(&mut self, size: usize) -> ReceiptRead {
        if self.line.is_empty() {
            match self.outstanding.front() {
                None => return ReceiptRead::Eof,
                Some((_, None)) => return ReceiptRead::Pending,
                Some((_, Some(fate))) => {
                    let fate = *fate;
                    self.outstanding.pop_front();
                    match fate {
                        Ok(pid) => self.line = format!("{pid}\n").into_bytes(),
                        Err(e) => return ReceiptRead::Error(e),
                    }
                }
            }
        }
        let n = size.min(self.line.len());
        ReceiptRead::Data(self.line.drain(..n).collect())
    }

    pub fn remove_waiter(&mut self, id: WaiterId) -> Option<ReceiptWait> {
        let i = self.waiters.iter().position(|w| w.id == id)?;
        self.waiters.remove(i)
    }
}

impl ReceiptRead {
    pub fn into_outcome(self) -> Option<Outcome> {
        match self {
            ReceiptRead::Data(d) => Some(Outcome::Bytes(d)),
            ReceiptRead::Error(e) => Some(Outcome::Error(e)),
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
        let mut b = ReceiptBook::default();
        assert_eq!(b.read(64), ReceiptRead::Eof);
        let one = b.issue();
        let two = b.issue();
        assert_eq!(b.read(64), ReceiptRead::Pending);
        b.resolve(two, Ok(200));
        assert!(!b.ready());
        assert_eq!(b.read(64), ReceiptRead::Pending);
        b.resolve(one, Ok(100));
        b.resolve(one, Ok(999)); // a later copy does not change it
        assert!(b.ready());
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
        let mut b = ReceiptBook::default();
        let one = b.issue();
        let two = b.issue();
        b.cancel(one);
        b.resolve(two, Err(Errno::EIDRM));
        assert_eq!(b.read(64), ReceiptRead::Error(Errno::EIDRM));
        assert_eq!(b.read(64), ReceiptRead::Eof);
    }
}
