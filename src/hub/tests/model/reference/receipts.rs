//! Sender receipts in the model (ipcfs(7) SENDER RECEIPTS): a `send`
//! descriptor opened read-write reads back one line `PID\n` per message sent
//! on it, in send order, naming the process that received it.

use super::*;

/// The receipts of one read-write `send` descriptor.
#[derive(Default)]
pub(in super::super) struct Book {
    next: u64,
    /// Messages sent on it, in send order, with their fate once known:
    /// the receiving pid, or the errno of their loss.
    outstanding: VecDeque<(u64, Option<std::result::Result<u32, i32>>)>,
    /// The rest of the line being read.
    line: Vec<u8>,
    /// Blocked receipt reads: (request, size), first come first.
    pub(in super::super) waiters: VecDeque<(u64, u32)>,
}

/// What a read of receipts finds now: `Pending` when it would block.
enum Found {
    Got(Got),
    Pending,
}

impl Book {
    /// Numbers a message written on the descriptor.
    pub(in super::super) fn issue(&mut self) -> u64 {
        self.next += 1;
        self.outstanding.push_back((self.next, None));
        self.next
    }

    /// "A read of a receipt blocks (interruptibly) until that message has
    /// been received; ... when no message sent on the descriptor is
    /// outstanding, the read returns 0 (end of file)." On a broker mount
    /// the line is `PID NODE\n` (ACROSS HOSTS): `node` is the receiver's.
    fn read(&mut self, size: u32, gone: bool, node: Option<&str>) -> Found {
        if self.line.is_empty() {
            match self.outstanding.front() {
                // EIDRM: "later I/O on old descriptors ... fail with it".
                None if gone => return Found::Got(err(libc::EIDRM)),
                None => return Found::Got(Got::Data(Vec::new())),
                Some((_, None)) => return Found::Pending,
                Some((_, Some(fate))) => {
                    let fate = *fate;
                    self.outstanding.pop_front();
                    match fate {
                        Ok(pid) => {
                            self.line = match node {
                                Some(node) => format!("{pid} {node}\n"),
                                None => format!("{pid}\n"),
                            }
                            .into_bytes()
                        }
                        Err(e) => return Found::Got(err(e)),
                    }
                }
            }
        }
        let n = (size as usize).min(self.line.len());
        Found::Got(Got::Data(self.line.drain(..n).collect()))
    }
}

impl Model {
    /// Message `tag` was received by `fate` (or lost with that errno); the
    /// first fate stands ("Of a broadcast message the receipt names the
    /// first process that took a copy").
    pub(in super::super) fn resolve(
        &mut self,
        tag: Option<Tag>,
        fate: std::result::Result<u32, i32>,
    ) {
        let Some((fd, seq)) = tag else {
            return;
        };
        if let Some(book) = &mut self.fds[fd].book
            && let Some(o) = book.outstanding.iter_mut().find(|(s, _)| *s == seq)
        {
            o.1.get_or_insert(fate);
        }
    }

    /// Message `tag` was never sent (its write failed): no receipt.
    pub(in super::super) fn cancel(&mut self, (fd, seq): Tag) {
        if let Some(book) = &mut self.fds[fd].book {
            book.outstanding.retain(|(s, _)| *s != seq);
        }
    }

    fn mailbox_gone(&self, fd: usize) -> bool {
        self.boxes[self.fds[fd].out].gone
    }

    /// A read of a read-write `send` descriptor.
    pub(in super::super) fn read_receipt(
        &mut self,
        fd: usize,
        size: u32,
        block: bool,
        req: u64,
    ) -> Got {
        let gone = self.mailbox_gone(fd);
        let node = self.node.as_deref();
        let book = self.fds[fd].book.as_mut().expect("receipts");
        match book.read(size, gone, node) {
            Found::Got(got) => got,
            Found::Pending if !block => err(libc::EAGAIN),
            Found::Pending => {
                book.waiters.push_back((req, size));
                Got::Parked
            }
        }
    }

    /// Answers the blocked receipt reads that can be answered now, in
    /// order.
    pub(in super::super) fn serve_receipts(&mut self) {
        for fd in 0..self.fds.len() {
            let gone = self.mailbox_gone(fd);
            let node = self.node.as_deref();
            let Some(book) = &mut self.fds[fd].book else {
                continue;
            };
            while let Some(&(req, size)) = book.waiters.front() {
                let Found::Got(got) = book.read(size, gone, node) else {
                    break;
                };
                book.waiters.pop_front();
                self.answered.push((req, got));
            }
        }
    }
}
