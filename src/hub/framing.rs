//! How messages cross a read or a write, per file:
//!
//! - `recv` ([`Framing::Stream`]): one message per read, across as many
//!   reads as the buffer needs, then an end of file;
//! - `packets` ([`Framing::Packet`]): exactly one whole message per read, no
//!   end of file; a buffer too small for the next message gets `EMSGSIZE`;
//! - `batch` ([`Framing::Batch`]): frames, each a 4-byte little-endian
//!   length and that many bytes; a write carries one or more whole frames,
//!   a read as many whole messages as fit.

use super::errno::{Errno, Result};

/// The bytes of a frame's length.
pub const HEADER: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Stream,
    Packet,
    Batch,
}

impl Framing {
    /// Whether a read of `size` bytes can take a message of `len` bytes
    /// (a stream takes any, piece by piece).
    pub fn fits(self, len: usize, size: u32) -> bool {
        match self {
            Framing::Stream => true,
            Framing::Packet => len <= size as usize,
            Framing::Batch => HEADER + len <= size as usize,
        }
    }
}

/// The frames of a `batch` write, all or nothing: `EINVAL` for a write
/// that is empty, ends inside a header or a frame, or holds an empty frame
/// (a message has at least one byte, as on `send`).
pub fn parse(data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut frames = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some((head, body)) = rest.split_first_chunk::<HEADER>() else {
            return Err(Errno::EINVAL.because("batch: the write ends inside a frame header"));
        };
        let len = u32::from_le_bytes(*head) as usize;
        if len == 0 {
            return Err(Errno::EINVAL.because("batch: an empty frame"));
        }
        if body.len() < len {
            return Err(Errno::EINVAL.because("batch: the write ends inside a frame"));
        }
        frames.push(&body[..len]);
        rest = &body[len..];
    }
    if frames.is_empty() {
        return Err(Errno::EINVAL.because("batch: no frame"));
    }
    Ok(frames)
}

/// Appends `msg` as one frame.
pub fn push_frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            push_frame(&mut out, m);
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let data = framed(&[b"a", b"bc", &[0; 300]]);
        let frames = parse(&data).unwrap();
        assert_eq!(frames, vec![&b"a"[..], b"bc", &[0; 300][..]]);
    }

    #[test]
    fn malformed_batches_are_refused_whole() {
        let good = framed(&[b"one", b"two"]);
        for bad in [
            &b""[..],
            &good[..good.len() - 1],
            &good[..5],
            &good[..2],
            &[0, 0, 0, 0][..],
        ] {
            assert_eq!(parse(bad), Err(Errno::EINVAL.into()), "{bad:?}");
        }
    }

    #[test]
    fn what_fits_a_read() {
        assert!(Framing::Stream.fits(100, 1));
        assert!(Framing::Packet.fits(100, 100));
        assert!(!Framing::Packet.fits(101, 100));
        assert!(Framing::Batch.fits(96, 100));
        assert!(!Framing::Batch.fits(97, 100));
    }
}
