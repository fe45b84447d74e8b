//! What the store's pump reports (ipcfs(7), ACROSS HOSTS): messages for
//! parked readers, blocked senders whose messages went in, receipts, changes of the
//! tree, removals, and the broker going away, coming back, or fencing this
//! node.

use log::{debug, info, warn};

use super::super::errno::Errno;
use super::super::reply::{Effects, Outcome};
use super::super::store::{Event, Reader, Wid};
use super::super::{Hub, MailboxId, State};
use super::calls::{Call, give_back_job, receive_job, send_job, withdraw_job};
use super::stale;

impl Hub {
    /// What the store's pump reports. Called on the pump's thread, which
    /// may ask the store (with the lock released).
    pub fn on_event(&self, ev: Event) {
        let Some(store) = self.store() else {
            return;
        };
        debug!("broker event: {ev:?}");
        let mut st = self.lock();
        let mut fx = Effects::default();
        match ev {
            Event::Deliver {
                mailbox,
                wid,
                msgs,
                flight,
            } => {
                let live = st.calls.get(&wid).is_some_and(Call::live);
                match st.calls.remove(&wid) {
                    Some(call) if live => self.hand_over(&mut st, &mut fx, call, msgs, flight),
                    _ => fx.remote().later.push(give_back_job(mailbox, flight)),
                }
            }
            Event::TooBig { wid, len, .. } => {
                if let Some(call) = st.calls.remove(&wid) {
                    debug!("a message of {len} bytes does not fit reader {wid}");
                    let e = Errno::EMSGSIZE.because("the next message is larger than the buffer");
                    self.end_call(&mut st, &mut fx, call, Outcome::Error(e));
                }
            }
            Event::Sent { wid, .. } => self.went_in(&mut st, &mut fx, wid),
            Event::Busy { wid, .. } => {
                if let Some(call) = st.calls.remove(&wid) {
                    let e = Errno::EBUSY.because("the new rule refuses this call");
                    self.end_call(&mut st, &mut fx, call, Outcome::Error(e));
                }
            }
            Event::Receipt { tag, pid, node } => {
                fx.remote().receipts_on.push((tag, pid, node.into()));
            }
            Event::TreeChanged => {
                drop(st);
                self.reload(store.as_ref());
                return;
            }
            Event::Removed { mailbox } => {
                let gone: Vec<Wid> = st
                    .calls
                    .iter()
                    .filter(|(_, c)| c.mailbox == mailbox)
                    .map(|(w, _)| *w)
                    .collect();
                for wid in gone {
                    let call = st.calls.remove(&wid).expect("call");
                    let e = Errno::EIDRM.because("the mailbox was removed");
                    self.end_call(&mut st, &mut fx, call, Outcome::Error(e));
                }
                // What was queued is gone with it: receipts not yet in
                // will never come (ipcfs(7), SENDER RECEIPTS: EIDRM).
                let State {
                    handles, waiters, ..
                } = &mut *st;
                for book in handles.receipts_on(mailbox) {
                    book.fail_pending(Errno::EIDRM);
                    let ended = Errno::EIDRM.because("the mailbox was removed");
                    for (w, out) in book.serve_waiters(Some(ended)) {
                        waiters.unpark(w.id);
                        fx.reply(w.reply, out);
                    }
                }
                drop(st);
                self.reload(store.as_ref());
                st = self.lock();
            }
            Event::Unreachable => {
                warn!("the broker at {} cannot be reached", store.url());
            }
            Event::Reachable => {
                info!("the broker at {} is reachable again", store.url());
                // Calls the store listed are listed anew (a restarted
                // broker without persistence has forgotten them).
                let listed: Vec<(Wid, MailboxId, Option<Reader>)> = st
                    .calls
                    .iter()
                    .filter(|(_, c)| c.listed)
                    .map(|(w, c)| (*w, c.mailbox, c.reader(*w)))
                    .collect();
                for (wid, mailbox, reader) in listed {
                    // Not listed until the store answers: an interrupt
                    // meanwhile waits for that answer.
                    st.calls.get_mut(&wid).expect("call").listed = false;
                    fx.remote().later.push(match reader {
                        Some(r) => receive_job(mailbox, r, Vec::new()),
                        None => send_job(mailbox, wid, true),
                    });
                }
                // Blocked senders interrupted during the outage.
                for (mailbox, wid) in std::mem::take(&mut st.withdraw) {
                    fx.remote().later.push(withdraw_job(mailbox, wid));
                }
                drop(st);
                self.reload(store.as_ref());
                st = self.lock();
            }
            Event::Fenced => {
                warn!(
                    "node {}: lost its lease on the broker at {}; descriptors opened before now fail with ESTALE",
                    store.node(),
                    store.url()
                );
                st.fenced_below = st.handles.last();
                let all: Vec<Wid> = st.calls.keys().copied().collect();
                for wid in all {
                    let call = st.calls.remove(&wid).expect("call");
                    self.end_call(&mut st, &mut fx, call, Outcome::Error(stale()));
                }
            }
        }
        self.finish(st, fx);
    }
}
