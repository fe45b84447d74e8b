//! Endpoints: descriptors that carry messages (ipcfs files, a pipe, a
//! socketpair, POSIX mq, the floor), and the sending and receiving ends
//! built on them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::{ABuf, is_interrupted, other, sys_read, sys_write};

/// How a descriptor carries messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// ipcfs `send`/`recv`: a write is a message; a read returns it, then 0.
    Msg,
    /// ipcfs `packets` and the floor: a write is a message, a read returns one.
    Packet,
    /// ipcfs `batch`: frames of 4-byte LE length + bytes.
    Batch,
    /// A pipe: bytes; the reader knows the size.
    Stream,
    /// `SOCK_SEQPACKET`.
    Seq,
    /// POSIX message queue.
    Mq,
}

pub(crate) fn frame_len(kind: Kind, size: usize) -> usize {
    if kind == Kind::Batch { size + 4 } else { size }
}

/// Messages per write: up to 64 frames in one write of at most `cap` bytes.
pub(crate) fn per_write(kind: Kind, size: usize, cap: usize) -> usize {
    if kind == Kind::Batch {
        (cap / (size + 4)).clamp(1, 64)
    } else {
        1
    }
}

pub(crate) struct Mq(pub(crate) libc::mqd_t);

impl Drop for Mq {
    fn drop(&mut self) {
        unsafe { libc::mq_close(self.0) };
    }
}

pub(crate) enum H {
    Fd(OwnedFd),
    Mq(Mq),
}

/// Writes one message (or one batch) whole.
pub(crate) fn write_wire(h: &H, kind: Kind, data: &[u8]) -> io::Result<()> {
    match h {
        H::Mq(q) => loop {
            let r = unsafe { libc::mq_send(q.0, data.as_ptr().cast(), data.len(), 0) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if !is_interrupted(&e) {
                return Err(e);
            }
        },
        H::Fd(fd) if kind == Kind::Stream => {
            let mut off = 0;
            while off < data.len() {
                off += sys_write(fd.as_raw_fd(), &data[off..])?;
            }
            Ok(())
        }
        H::Fd(fd) => {
            let w = sys_write(fd.as_raw_fd(), data)?;
            if w != data.len() {
                return Err(other(format!("short write: {w} of {} bytes", data.len())));
            }
            Ok(())
        }
    }
}

pub(crate) struct Tx {
    pub(crate) kind: Kind,
    pub(crate) h: H,
    /// Largest write (the ipcfs maximum message size): bounds a batch.
    pub(crate) cap: usize,
    pub(crate) scratch: ABuf,
}

impl Tx {
    pub(crate) fn new(kind: Kind, h: H, cap: usize) -> Tx {
        Tx {
            kind,
            h,
            cap,
            scratch: ABuf::new(0),
        }
    }

    pub(crate) fn write_wire(&self, data: &[u8]) -> io::Result<()> {
        write_wire(&self.h, self.kind, data)
    }

    /// Sends `count` messages of `size` bytes numbered from `first`, as many
    /// a write as the kind allows (batch: up to 64 frames).
    pub(crate) fn send_seqs(&mut self, first: u64, count: usize, size: usize) -> io::Result<()> {
        let per = per_write(self.kind, size, self.cap);
        let flen = frame_len(self.kind, size);
        if self.scratch.len() < per * flen {
            self.scratch = ABuf::new(per * flen);
        }
        let mut i = 0;
        while i < count {
            let m = per.min(count - i);
            for j in 0..m {
                let off = j * flen;
                let payload = if self.kind == Kind::Batch {
                    self.scratch[off..off + 4].copy_from_slice(&(size as u32).to_le_bytes());
                    off + 4
                } else {
                    off
                };
                let seq = first.wrapping_add((i + j) as u64);
                self.scratch[payload..payload + 8].copy_from_slice(&seq.to_le_bytes());
            }
            write_wire(&self.h, self.kind, &self.scratch[..m * flen])?;
            i += m;
        }
        Ok(())
    }
}

pub(crate) struct Rx {
    pub(crate) kind: Kind,
    pub(crate) h: H,
    pub(crate) buf: ABuf,
    pub(crate) read_len: usize,
    pub(crate) expect: usize,
}

impl Rx {
    pub(crate) fn new(kind: Kind, h: H, max_msg: usize) -> Rx {
        Rx {
            kind,
            h,
            buf: ABuf::new(max_msg + 8192),
            read_len: 4096,
            expect: 64,
        }
    }

    /// Sets how much one read asks for, for messages of `size` bytes.
    pub(crate) fn prepare(&mut self, size: usize, per: usize) {
        let flen = frame_len(self.kind, size);
        self.expect = flen;
        self.read_len = match self.kind {
            Kind::Batch => per * flen,
            Kind::Stream => flen,
            _ => size + 4096,
        }
        .min(self.buf.len());
    }

    /// Receives one message (batch: one read of frames); returns its bytes.
    pub(crate) fn recv(&mut self) -> io::Result<usize> {
        let Rx {
            kind,
            h,
            buf,
            read_len,
            expect,
        } = self;
        let len = *read_len;
        match (h, *kind) {
            (H::Mq(q), _) => loop {
                let r = unsafe {
                    libc::mq_receive(q.0, buf.as_mut_ptr().cast(), len, std::ptr::null_mut())
                };
                if r >= 0 {
                    return Ok(r as usize);
                }
                let e = io::Error::last_os_error();
                if !is_interrupted(&e) {
                    return Err(e);
                }
            },
            (H::Fd(fd), Kind::Stream) => {
                let mut off = 0;
                while off < *expect {
                    let r = sys_read(fd.as_raw_fd(), &mut buf[off..*expect])?;
                    if r == 0 {
                        return Err(other("end of stream"));
                    }
                    off += r;
                }
                Ok(off)
            }
            (H::Fd(fd), Kind::Msg) => {
                // The message, then its end of file.
                let mut off = 0;
                loop {
                    let r = sys_read(fd.as_raw_fd(), &mut buf[off..len])?;
                    if r == 0 {
                        if off == 0 {
                            return Err(other("end of file before a message"));
                        }
                        return Ok(off);
                    }
                    off += r;
                    if off >= len {
                        return Err(other("message larger than expected"));
                    }
                }
            }
            (H::Fd(fd), _) => {
                let r = sys_read(fd.as_raw_fd(), &mut buf[..len])?;
                if r == 0 {
                    return Err(other("end of file"));
                }
                Ok(r)
            }
        }
    }

    /// Checks the `n` bytes just received (sizes, sequence numbers from
    /// `*next`) and returns how many messages they hold.
    pub(crate) fn take(&self, n: usize, next: &mut u64, size: usize) -> io::Result<usize> {
        let seq_at = |off: usize| u64::from_le_bytes(self.buf[off..off + 8].try_into().unwrap());
        let mut check = |seq: u64| {
            if seq != *next {
                return Err(other(format!("message #{seq} arrived, #{next} expected")));
            }
            *next += 1;
            Ok(())
        };
        if self.kind != Kind::Batch {
            if n != size {
                return Err(other(format!("received {n} bytes, expected {size}")));
            }
            check(seq_at(0))?;
            return Ok(1);
        }
        let (mut pos, mut count) = (0, 0);
        while pos < n {
            if pos + 4 > n {
                return Err(other("truncated frame header"));
            }
            let len = u32::from_le_bytes(self.buf[pos..pos + 4].try_into().unwrap()) as usize;
            if len != size || pos + 4 + len > n {
                return Err(other(format!("bad frame of {len} bytes")));
            }
            check(seq_at(pos + 4))?;
            pos += 4 + len;
            count += 1;
        }
        Ok(count)
    }

    pub(crate) fn first_seq(&self) -> u64 {
        let off = if self.kind == Kind::Batch { 4 } else { 0 };
        u64::from_le_bytes(self.buf[off..off + 8].try_into().unwrap())
    }
}
