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
use super::handles::Cursor;
use super::message::Message;
use super::reply::Outcome;

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

/// How `msg`, the message a read of `size` bytes receives, becomes that
/// read's answer: the one place for every framing, used alike by a read
/// answered at once and by a parked read that a send answers later.
///
/// - `recv`: the message becomes the descriptor's current one (`cursor`),
///   served from its start; later reads get the rest, then the end of file;
/// - `packets`: the whole message;
/// - `batch`: its frame, followed by the frames of the messages `more`
///   gives while they fit (`more(room)` takes the next message only if its
///   frame fits in `room` bytes; a parked read is given none).
pub fn deliver(
    framing: Framing,
    cursor: Option<&mut Cursor>,
    msg: Message,
    size: u32,
    more: &mut dyn FnMut(usize) -> Option<Message>,
) -> Outcome {
    match framing {
        Framing::Stream => match cursor {
            Some(cursor) => {
                cursor.current = Some((msg, 0));
                cursor.serve(0, size).expect("a current message")
            }
            None => Outcome::Error(Errno::EBADF.because("its descriptor was closed")),
        },
        Framing::Packet => {
            let len = msg.len();
            Outcome::Slice(msg.payload, 0..len)
        }
        Framing::Batch => {
            let mut out = Vec::with_capacity(HEADER + msg.len());
            push_frame(&mut out, msg.payload.bytes());
            while let Some(next) = more((size as usize).saturating_sub(out.len())) {
                push_frame(&mut out, next.payload.bytes());
            }
            Outcome::Bytes(out)
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
