//! [`Store`] on the scripts: arguments in, answers out.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::Ordering;

use redis::Value;

use super::RedisStore;
use super::pump::payload;
use crate::hub::MailboxId;
use crate::hub::errno::{Errno, Result};
use crate::hub::framing::Framing;
use crate::hub::policy::{Policy, Rule};
use crate::hub::receiver_rule::Role;
use crate::hub::store::{
    FlightId, MailboxMeta, OpenId, Outgoing, Reader, Received, RemoteStatus, Sent, Sink, Store,
    Wid, Withdrawn, Writer,
};
use crate::hub::tree::{Attr, file_modes};

fn odd(why: &'static str) -> crate::hub::errno::Refusal {
    log::warn!("unexpected answer from the broker: {why}");
    Errno(libc::EIO).because(why)
}

fn attr_text(a: &Attr) -> String {
    format!("{} {} {}", a.mode, a.uid, a.gid)
}

fn files_text(files: &[Attr; 6]) -> String {
    files.iter().map(attr_text).collect::<Vec<_>>().join(" ")
}

fn attrs(text: &str) -> Option<Vec<Attr>> {
    let n: Vec<u32> = text
        .split(' ')
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    if !n.len().is_multiple_of(3) {
        return None;
    }
    Some(
        n.chunks(3)
            .map(|c| Attr {
                mode: c[0],
                uid: c[1],
                gid: c[2],
            })
            .collect(),
    )
}

fn capacity_text(p: &Policy) -> String {
    match p.capacity {
        Some(n) => n.to_string(),
        None => "-1".into(),
    }
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Send => "s",
        Role::Recv => "r",
    }
}

fn framing_text(f: Framing) -> &'static str {
    match f {
        Framing::Stream => "s",
        Framing::Packet => "p",
        Framing::Batch => "b",
    }
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn as_str(v: &Value) -> Option<&str> {
    std::str::from_utf8(as_bytes(v)?).ok()
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => as_str(v)?.parse().ok(),
    }
}

fn array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(odd("an array was expected")),
    }
}

/// One mailbox of the `tree` script's answer (8 values).
fn meta(v: &[Value]) -> Option<MailboxMeta> {
    let id = as_int(&v[0])? as MailboxId;
    let parent = as_int(&v[1])? as MailboxId;
    let name = OsString::from_vec(as_bytes(&v[2])?.to_vec());
    let dir = *attrs(as_str(&v[3])?)?.first()?;
    let files: [Attr; 6] = attrs(as_str(&v[4])?)?.try_into().ok()?;
    let rule = Rule::from_name(as_str(&v[5])?)?;
    let capacity = as_int(&v[6])?;
    let max_message_size = as_int(&v[7])? as usize;
    Some(MailboxMeta {
        id,
        parent,
        name,
        dir,
        files,
        policy: Policy {
            rule,
            capacity: (capacity >= 0).then_some(capacity as usize),
            max_message_size,
        },
    })
}

/// A queued message as the broker keeps it: "SENDERNODE\nTAG\nBYTES".
fn raw(node: &str, m: &Outgoing) -> Vec<u8> {
    let tag = match m.receipt {
        Some(t) => format!("{}:{}", t.handle, t.seq),
        None => String::new(),
    };
    let mut out = Vec::with_capacity(node.len() + tag.len() + 2 + m.bytes.len());
    out.extend_from_slice(node.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(tag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&m.bytes);
    out
}

impl Store for RedisStore {
    fn node(&self) -> &str {
        &self.node
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn tree(&self) -> Result<Vec<MailboxMeta>> {
        let v = array(self.run_renewing(&self.scripts.tree, |_| {})?)?;
        v.chunks(8)
            .map(|c| {
                (c.len() == 8)
                    .then(|| meta(c))
                    .flatten()
                    .ok_or_else(|| odd("a malformed mailbox in the tree"))
            })
            .collect()
    }

    fn mkdir(
        &self,
        parent: MailboxId,
        name: &OsStr,
        dir: Attr,
        policy: &Policy,
    ) -> Result<MailboxId> {
        // As a local mkdir does (hub::tree): the files' modes follow the
        // directory's.
        let dir = Attr {
            mode: dir.mode & 0o7777,
            ..dir
        };
        let files = file_modes(dir.mode).map(|mode| Attr { mode, ..dir });
        let v = self.run_renewing(&self.scripts.mkdir, |inv| {
            inv.arg(parent)
                .arg(name.as_bytes())
                .arg(attr_text(&dir))
                .arg(files_text(&files))
                .arg(policy.rule.name())
                .arg(capacity_text(policy))
                .arg(policy.max_message_size)
                .arg(policy.to_string());
        })?;
        as_int(&v)
            .map(|n| n as MailboxId)
            .ok_or_else(|| odd("mkdir: no id"))
    }

    fn rmdir(&self, parent: MailboxId, name: &OsStr) -> Result<MailboxId> {
        let v = self.run_renewing(&self.scripts.rmdir, |inv| {
            inv.arg(parent).arg(name.as_bytes());
        })?;
        as_int(&v)
            .map(|n| n as MailboxId)
            .ok_or_else(|| odd("rmdir: no id"))
    }

    fn rename(
        &self,
        parent: MailboxId,
        name: &OsStr,
        new_parent: MailboxId,
        new_name: &OsStr,
    ) -> Result<()> {
        self.run_renewing(&self.scripts.rename, |inv| {
            inv.arg(parent)
                .arg(name.as_bytes())
                .arg(new_parent)
                .arg(new_name.as_bytes());
        })
        .map(drop)
    }

    fn set_attrs(&self, id: MailboxId, dir: Attr, files: [Attr; 6]) -> Result<()> {
        self.run_renewing(&self.scripts.set_attrs, |inv| {
            inv.arg(id).arg(attr_text(&dir)).arg(files_text(&files));
        })
        .map(drop)
    }

    fn set_policy(&self, id: MailboxId, policy: &Policy) -> Result<()> {
        self.run_renewing(&self.scripts.set_policy, |inv| {
            inv.arg(id)
                .arg(policy.rule.name())
                .arg(capacity_text(policy))
                .arg(policy.max_message_size)
                .arg(policy.to_string());
        })
        .map(drop)
    }

    fn open(&self, id: MailboxId, pid: u32, role: Role) -> Result<OpenId> {
        let v = self.run_renewing(&self.scripts.open, |inv| {
            inv.arg(id).arg(pid).arg(role_text(role));
        })?;
        as_int(&v)
            .map(|n| n as OpenId)
            .ok_or_else(|| odd("open: no number"))
    }

    fn close(
        &self,
        id: MailboxId,
        pid: u32,
        role: Role,
        open: Option<OpenId>,
        exited: bool,
    ) -> Result<()> {
        self.run(&self.scripts.close, |inv| {
            inv.arg(id)
                .arg(pid)
                .arg(role_text(role))
                .arg(u8::from(exited))
                .arg(open.unwrap_or(0));
        })
        .map(drop)
    }

    fn send(&self, id: MailboxId, writer: &Writer, msgs: &[Outgoing]) -> Result<Sent> {
        let v = self.run(&self.scripts.send, |inv| {
            inv.arg(id)
                .arg(writer.wid)
                .arg(writer.pid)
                .arg(u8::from(writer.nonblock))
                .arg(u8::from(writer.again));
            for m in msgs {
                inv.arg(raw(&self.node, m));
            }
        })?;
        match as_str(&v) {
            Some("ok") => Ok(Sent::Accepted),
            Some("full") => Ok(Sent::Full),
            _ => Err(odd("send: an unknown answer")),
        }
    }

    fn cancel_send(&self, id: MailboxId, wid: Wid) -> Result<Withdrawn> {
        let v = self.run(&self.scripts.cancel_send, |inv| {
            inv.arg(id).arg(wid);
        })?;
        match as_str(&v) {
            Some("cancelled") => Ok(Withdrawn::Cancelled),
            Some("sent") => Ok(Withdrawn::WentIn),
            Some("gone") => Ok(Withdrawn::Unknown),
            _ => Err(odd("cancel_send: an unknown answer")),
        }
    }

    fn receive(&self, id: MailboxId, reader: &Reader) -> Result<Received> {
        self.ack_and_receive(id, reader, &[])
    }

    fn ack_and_receive(
        &self,
        id: MailboxId,
        reader: &Reader,
        acks: &[FlightId],
    ) -> Result<Received> {
        let v = array(self.run(&self.scripts.receive, |inv| {
            inv.arg(id)
                .arg(reader.wid)
                .arg(reader.pid)
                .arg(framing_text(reader.framing))
                .arg(reader.size)
                .arg(u8::from(reader.nonblock));
            for f in acks {
                inv.arg(f.as_str());
            }
        })?)?;
        match v.first().and_then(as_str) {
            Some("msgs") => {
                let flight = v
                    .get(1)
                    .and_then(as_str)
                    .ok_or_else(|| odd("receive: no flight"))?
                    .to_string();
                let msgs = v[2..]
                    .iter()
                    .map(|r| as_bytes(r).map(payload))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| odd("receive: a malformed message"))?;
                Ok(Received::Messages { msgs, flight })
            }
            Some("toobig") => Ok(Received::TooBig(
                v.get(1).and_then(as_int).unwrap_or(0) as usize
            )),
            Some("parked") => Ok(Received::Parked),
            Some("empty") => Ok(Received::Empty),
            _ => Err(odd("receive: an unknown answer")),
        }
    }

    fn cancel_receive(&self, id: MailboxId, wid: Wid) -> Result<()> {
        self.run(&self.scripts.cancel_receive, |inv| {
            inv.arg(id).arg(wid);
        })
        .map(drop)
    }

    fn give_back(&self, _id: MailboxId, flight: &FlightId) -> Result<()> {
        self.run(&self.scripts.give_back, |inv| {
            inv.arg(flight.as_str());
        })
        .map(drop)
    }

    fn ack(&self, flight: &FlightId) -> Result<()> {
        self.ack_all(std::slice::from_ref(flight))
    }

    fn ack_all(&self, flights: &[FlightId]) -> Result<()> {
        if flights.is_empty() {
            return Ok(());
        }
        self.run(&self.scripts.ack, |inv| {
            for f in flights {
                inv.arg(f.as_str());
            }
        })
        .map(drop)
    }

    fn truncated(&self, id: MailboxId) -> Result<()> {
        self.run(&self.scripts.truncated, |inv| {
            inv.arg(id);
        })
        .map(drop)
    }

    fn status(&self, id: MailboxId) -> Result<RemoteStatus> {
        let v = array(self.run_renewing(&self.scripts.status, |inv| {
            inv.arg(id);
        })?)?;
        if v.len() < 9 {
            return Err(odd("status: too short"));
        }
        let n = |i: usize| as_int(&v[i]).unwrap_or(0).max(0) as u64;
        let holders = v[9..]
            .iter()
            .filter_map(as_str)
            .filter_map(|who| {
                let (pid, node) = who.split_once(' ')?;
                Some((pid.parse().ok()?, node.to_string()))
            })
            .collect();
        Ok(RemoteStatus {
            messages: n(0) as usize,
            bytes: n(1) as usize,
            receivers: n(2) as usize,
            receivers_waiting: n(3) as usize,
            senders_waiting: n(4) as usize,
            sent: n(5),
            received: n(6),
            dropped: n(7),
            truncated: n(8),
            holders,
        })
    }

    /// Renews this node's lease and reaps nodes whose lease ran out. If
    /// the lease was lost, registers a new incarnation (reporting
    /// [`crate::hub::store::Event::Fenced`], what the core acts on: descriptors opened before
    /// fail) and returns `ESTALE`.
    fn heartbeat(&self) -> Result<()> {
        self.beat()
    }

    fn pump(&self, on: Sink) {
        self.run_pump(on)
    }

    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.leave();
        }
    }
}
