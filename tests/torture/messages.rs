//! The messages of the suite and their record: self-checking messages
//! (sender, destination, sequence, checksum), the log a receiver keeps of
//! what it received, and the tally of a run from those logs.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use crate::harness::{Rng, mix};

/// Every test message: a 24-byte header (magic, sender id, destination, sequence
/// number, payload length, FNV-1a checksum of the rest), then a payload whose
/// length and bytes follow from (sender, destination, sequence).
pub(crate) const MAGIC: u32 = 0x5a7e_1bcf;
pub(crate) const HDR: usize = 24;
/// The sender id of the message that tells a receiver to exit.
pub(crate) const STOP: u32 = u32::MAX;
/// The largest payload: rare messages are between half of it and all of it.
pub(crate) const BIG: usize = 64 << 10;
/// A receiver's buffer: larger than any test message, so one read takes one.
pub(crate) const RBUF: usize = 256 << 10;

pub(crate) const F_SHORT: u32 = 1;
pub(crate) const F_MAGIC: u32 = 2;
pub(crate) const F_LEN: u32 = 4;
pub(crate) const F_SUM: u32 = 8;
pub(crate) const F_CONTENT: u32 = 16;
pub(crate) const F_DEST: u32 = 32;

pub(crate) fn key(sender: u32, dest: u32, seq: u32) -> u64 {
    (u64::from(sender) << 32 | u64::from(seq)) ^ mix(u64::from(dest))
}

pub(crate) fn payload_len(sender: u32, dest: u32, seq: u32) -> usize {
    if sender == STOP {
        return 0;
    }
    let h = mix(key(sender, dest, seq));
    let r = (h >> 16) as usize;
    match h % 1000 {
        0..=1 => BIG / 2 + r % (BIG / 2 + 1),
        2..=60 => 256 + r % 3840,
        _ => r % 200,
    }
}

pub(crate) const FNV0: u32 = 0x811c_9dc5;

pub(crate) fn fnv(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

pub(crate) fn encode(sender: u32, dest: u32, seq: u32) -> Vec<u8> {
    let len = payload_len(sender, dest, seq);
    let mut v = Vec::with_capacity(HDR + len + 8);
    for w in [MAGIC, sender, dest, seq, len as u32, 0] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    let mut r = Rng::new(key(sender, dest, seq) ^ 0x00c0_ffee);
    while v.len() < HDR + len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(HDR + len);
    let sum = fnv(fnv(FNV0, &v[..20]), &v[HDR..]);
    v[20..24].copy_from_slice(&sum.to_le_bytes());
    v
}

/// What a receiver saw: (sender, destination, sequence, flags); flags 0 is a
/// whole, uncorrupted message.
pub(crate) fn check(msg: &[u8]) -> (u32, u32, u32, u32) {
    if msg.len() < HDR {
        return (0, 0, 0, F_SHORT);
    }
    let w = |i: usize| u32::from_le_bytes(msg[i * 4..i * 4 + 4].try_into().unwrap());
    let (magic, sender, dest, seq, len, sum) = (w(0), w(1), w(2), w(3), w(4), w(5));
    let mut flags = 0;
    if magic != MAGIC {
        flags |= F_MAGIC;
    }
    if len as usize != msg.len() - HDR {
        flags |= F_LEN;
    }
    if fnv(fnv(FNV0, &msg[..20]), &msg[HDR..]) != sum {
        flags |= F_SUM;
    }
    if flags == 0 && encode(sender, dest, seq) != msg {
        flags |= F_CONTENT;
    }
    (sender, dest, seq, flags)
}

/// The payload length a message's header announces (0 if it has no header).
pub(crate) fn payload_field(msg: &[u8]) -> usize {
    msg.get(16..20)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
}

/// One entry of a receiver's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) sender: u32,
    pub(crate) seq: u32,
    pub(crate) flags: u32,
}

pub(crate) const REC: usize = 12;

pub(crate) fn rec_bytes(r: Rec) -> [u8; REC] {
    let mut b = [0u8; REC];
    b[..4].copy_from_slice(&r.sender.to_le_bytes());
    b[4..8].copy_from_slice(&r.seq.to_le_bytes());
    b[8..].copy_from_slice(&r.flags.to_le_bytes());
    b
}

pub(crate) fn read_log(path: &Path) -> Vec<Rec> {
    let data = fs::read(path).unwrap_or_default();
    data.chunks_exact(REC)
        .map(|c| Rec {
            sender: u32::from_le_bytes(c[..4].try_into().unwrap()),
            seq: u32::from_le_bytes(c[4..8].try_into().unwrap()),
            flags: u32::from_le_bytes(c[8..].try_into().unwrap()),
        })
        .collect()
}

/// How many messages a sender has written whole (its counter file).
pub(crate) fn sender_done(path: &Path) -> u32 {
    let data = fs::read(path).unwrap_or_default();
    data.get(..4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
}

/// Read one message from a persistent recv descriptor: data, then the 0 that
/// ends it. An end of file with no message before it is an error.
pub(crate) fn read_one(f: &mut File, buf: &mut [u8]) -> io::Result<Vec<u8>> {
    let mut msg = Vec::new();
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            if msg.is_empty() {
                return Err(io::Error::other("end of file with no message before it"));
            }
            return Ok(msg);
        }
        msg.extend_from_slice(&buf[..n]);
    }
}

/// What the senders of a run did: id -> (messages written whole, killed).
pub(crate) type Senders = HashMap<u32, (u32, bool)>;

#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Data messages in the logs.
    pub(crate) received: u64,
    pub(crate) stops: u64,
    pub(crate) duplicated: u64,
    pub(crate) corrupted: u64,
    /// A receiver saw a sender's sequence numbers go backwards.
    pub(crate) out_of_order: u64,
    /// Messages never written (past the sender's last write + its in-flight one).
    pub(crate) phantom: u64,
    pub(crate) unknown_sender: u64,
    /// Written whole (the sender saw its write return) and never received.
    pub(crate) lost: u64,
    /// The in-flight message of a killed sender, received (whole).
    pub(crate) in_flight_delivered: u64,
}

pub(crate) fn tally(senders: &Senders, logs: &[Vec<Rec>]) -> Tally {
    let mut t = Tally::default();
    let mut seen: HashMap<(u32, u32), u32> = HashMap::new();
    for log in logs {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for r in log {
            if r.flags != 0 {
                t.corrupted += 1;
                continue;
            }
            if r.sender == STOP {
                t.stops += 1;
                continue;
            }
            let Some(&(done, killed)) = senders.get(&r.sender) else {
                t.unknown_sender += 1;
                continue;
            };
            t.received += 1;
            if r.seq > done || (r.seq == done && !killed) {
                t.phantom += 1;
            } else if r.seq == done {
                t.in_flight_delivered += 1;
            }
            if last.get(&r.sender).is_some_and(|&l| r.seq <= l) {
                t.out_of_order += 1;
            }
            last.insert(r.sender, r.seq);
            *seen.entry((r.sender, r.seq)).or_default() += 1;
        }
    }
    t.duplicated = seen.values().map(|&c| u64::from(c) - 1).sum();
    for (&id, &(done, _)) in senders {
        t.lost += (0..done).filter(|s| !seen.contains_key(&(id, *s))).count() as u64;
    }
    t
}

pub(crate) fn assert_clean(what: &str, t: &Tally) {
    assert!(
        t.duplicated == 0
            && t.corrupted == 0
            && t.out_of_order == 0
            && t.phantom == 0
            && t.unknown_sender == 0,
        "{what}: {t:?}"
    );
}
