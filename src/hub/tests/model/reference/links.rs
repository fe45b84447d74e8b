//! Direct links in the model (ipcfs(7) DIRECT LINKS): one channel per
//! direction between two processes, made when a descriptor needs it and
//! reclaimed, counters and all, once idle; what an exit does to them; and
//! the `proc/<pid>/status` and `proc/status` texts.

use super::super::operations::Kind;
use super::*;

impl Model {
    /// The channel `from` → `to`, made if need be.
    fn link(&mut self, from: u32, to: u32) -> usize {
        if let Some(&c) = self.links.get(&(from, to)) {
            return c;
        }
        let mut ch = Mbox::new(self.mount);
        ch.link = Some((from, to));
        self.boxes.push(ch);
        let c = self.boxes.len() - 1;
        self.links.insert((from, to), c);
        c
    }

    /// `pid` opens `proc/<peer>/<kind>` (not `status`: see
    /// [`Model::link_status`]).
    pub(in super::super) fn open_link(
        &mut self,
        pid: u32,
        peer: u32,
        kind: Kind,
    ) -> std::result::Result<usize, i32> {
        let alive = !self.dead.contains(&peer);
        // "While such messages wait, proc/<pid> of the exited process stays
        // visible to their receiver".
        if !alive && !self.links.contains_key(&(peer, pid)) {
            return Err(libc::ESRCH);
        }
        if kind.sends() {
            // "Sending to a peer that has exited fails with ESRCH."
            let refused = self
                .links
                .get(&(pid, peer))
                .is_some_and(|c| self.boxes[*c].receiver_gone);
            if !alive || refused {
                return Err(libc::ESRCH);
            }
        }
        let out = if kind.sends() {
            self.link(pid, peer)
        } else {
            usize::MAX
        };
        let mbox = if kind.receives() {
            let c = self.link(peer, pid);
            self.boxes[c].open_recv(pid);
            c
        } else {
            out
        };
        let out = if out == usize::MAX { mbox } else { out };
        Ok(self.push_fd(pid, kind, mbox, out, Some(peer), BTreeMap::new()))
    }

    /// `pid` has exited: "Messages queued for a process that exits are
    /// dropped, counted in dropped-on-exit"; blocked senders to it get
    /// ESRCH (nothing sent; the receipts of dropped messages fail with
    /// ESRCH, SENDER RECEIPTS); what it sent is still delivered, then
    /// ESRCH instead of blocking (so its blocked readers, when nothing is
    /// left, get ESRCH at once).
    pub(in super::super) fn link_exited(&mut self, pid: u32) {
        let ends: Vec<((u32, u32), usize)> = self
            .links
            .iter()
            .filter(|((from, to), _)| *from == pid || *to == pid)
            .map(|(k, c)| (*k, *c))
            .collect();
        for ((from, to), c) in ends {
            if to == pid {
                self.boxes[c].receiver_gone = true;
                self.dropped_on_exit += self.fail_senders_and_drop(c, libc::ESRCH);
            }
            if from == pid {
                self.boxes[c].sender_gone = true;
                if self.boxes[c].queued().next().is_none() {
                    for w in std::mem::take(&mut self.boxes[c].waiters) {
                        self.end_wait(w, libc::ESRCH);
                    }
                }
            }
        }
    }

    /// "The daemon keeps a link's state only while it carries something: an
    /// open descriptor, a queued message or a blocked call. Once it is idle
    /// it is reclaimed (its counters with it)".
    pub(in super::super) fn reclaim(&mut self) {
        let idle: Vec<(u32, u32)> = self
            .links
            .iter()
            .filter(|(_, c)| {
                let b = &self.boxes[**c];
                b.queued().next().is_none()
                    && b.waiters.is_empty()
                    && b.senders.is_empty()
                    && !self.fds.iter().any(|f| f.holds(**c))
            })
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            let c = self.links.remove(&k).expect("link");
            self.boxes[c].gone = true;
        }
    }

    /// `proc/<peer>/status` as `me` sees it (STATUS FILES, Link status).
    pub(in super::super) fn link_status(&self, me: u32, peer: u32) -> BTreeMap<String, String> {
        let get = |from, to| self.links.get(&(from, to)).map(|c| &self.boxes[*c]);
        let (to, from) = (get(me, peer), get(peer, me));
        let queued = |c: Option<&Mbox>| {
            c.map_or((0, 0), |c| {
                c.queued()
                    .fold((0, 0), |(n, b), m| (n + 1, b + m.bytes.len()))
            })
        };
        let ((tm, tb), (fm, fb)) = (queued(to), queued(from));
        let alive = if self.dead.contains(&peer) {
            "no"
        } else {
            "yes"
        };
        [
            ("peer", peer.to_string()),
            ("peer-alive", alive.to_string()),
            ("to-peer-messages", tm.to_string()),
            ("to-peer-bytes", tb.to_string()),
            ("from-peer-messages", fm.to_string()),
            ("from-peer-bytes", fb.to_string()),
            ("sent", to.map_or(0, |c| c.sent).to_string()),
            ("received", from.map_or(0, |c| c.received).to_string()),
            (
                "dropped",
                (to.map_or(0, |c| c.dropped) + from.map_or(0, |c| c.dropped)).to_string(),
            ),
            (
                "receivers-waiting",
                from.map_or(0, |c| c.waiters.len()).to_string(),
            ),
            (
                "senders-waiting",
                to.map_or(0, |c| c.senders.len()).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Is `proc/<peer>` there for `me`: a live process, or one that exited
    /// leaving messages for `me`?
    pub(in super::super) fn visible(&self, me: u32, peer: u32) -> bool {
        !self.dead.contains(&peer)
            || self
                .links
                .get(&(peer, me))
                .is_some_and(|c| self.boxes[*c].queued().next().is_some())
    }

    /// `proc/status`, but the memory figures.
    pub(in super::super) fn daemon_status(&self) -> BTreeMap<String, String> {
        let processes: BTreeSet<u32> = self.links.keys().flat_map(|(a, b)| [*a, *b]).collect();
        [
            ("mailboxes", self.by_name.len()),
            ("links", self.links.len()),
            ("processes", processes.len()),
            ("dropped-on-exit", self.dropped_on_exit as usize),
            ("parked", self.parked().len()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}
