//! The threads of a mount with `--broker` (ipcfs(7), ACROSS HOSTS): the
//! workers that make the store's calls for the core (so that no FUSE
//! event-loop thread waits on the network) and their timer, the pump that reads this
//! node's inbox, and the heartbeat that keeps its lease.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::hub::Hub;
use crate::hub::remote::{ACK_DELAY, Job, Remote};
use crate::hub::store::Store;

/// Worker threads: calls to the broker run side by side, so that one slow
/// answer does not hold up the others.
const WORKERS: usize = 4;

/// Makes `hub` a mount of `store`: loads the tree and starts the threads.
pub fn attach(hub: &Arc<Hub>, store: Arc<dyn Store>, lease: Duration) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..WORKERS {
        let rx = Arc::clone(&rx);
        let hub = Arc::clone(hub);
        std::thread::Builder::new()
            .name(format!("ipcfs-broker-{i}"))
            .spawn(move || {
                loop {
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    job(&hub);
                }
            })
            .map_err(|e| format!("cannot start a broker thread: {e}"))?;
    }
    // Jobs due a moment from now (acknowledgements a next read did not
    // carry): kept in order of arrival, all with the same delay, and handed
    // to the workers when due.
    let (soon_tx, soon_rx) = mpsc::channel::<(Instant, Job)>();
    let to_workers = tx.clone();
    std::thread::Builder::new()
        .name("ipcfs-broker-timer".into())
        .spawn(move || {
            let mut due: VecDeque<(Instant, Job)> = VecDeque::new();
            loop {
                let got = match due.front() {
                    None => soon_rx.recv().map_err(|_| true),
                    Some((at, _)) => soon_rx
                        .recv_timeout(at.saturating_duration_since(Instant::now()))
                        .map_err(|e| e == mpsc::RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(item) => due.push_back(item),
                    Err(true) => return,
                    Err(false) => {}
                }
                while due.front().is_some_and(|(at, _)| *at <= Instant::now()) {
                    let (_, job) = due.pop_front().expect("a due job");
                    let _ = to_workers.send(job);
                }
            }
        })
        .map_err(|e| format!("cannot start the broker's timer thread: {e}"))?;
    let tx = Mutex::new(tx);
    let run = Box::new(move |job: Job| {
        let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(job);
    });
    let soon_tx = Mutex::new(soon_tx);
    let soon = Box::new(move |job: Job| {
        let at = Instant::now() + ACK_DELAY;
        let _ = soon_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((at, job));
    });
    hub.set_remote(Remote {
        store: Arc::clone(&store),
        run,
        soon,
    })
    .map_err(|e| {
        format!(
            "cannot read the mailboxes of the broker at {}: {e}",
            store.url()
        )
    })?;

    let pump_hub = Arc::clone(hub);
    let pump_store = Arc::clone(&store);
    std::thread::Builder::new()
        .name("ipcfs-pump".into())
        .spawn(move || pump_store.pump(Arc::new(move |ev| pump_hub.on_event(ev))))
        .map_err(|e| format!("cannot start the broker's pump thread: {e}"))?;

    let beat_store = Arc::clone(&store);
    std::thread::Builder::new()
        .name("ipcfs-lease".into())
        .spawn(move || {
            let every = lease / 3;
            loop {
                std::thread::sleep(every);
                match beat_store.heartbeat() {
                    Ok(()) => {}
                    Err(e) if e.errno == crate::hub::errno::Errno::EHOSTUNREACH => {
                        debug!("heartbeat: {e}")
                    }
                    Err(e) => warn!("heartbeat on the broker at {}: {e}", beat_store.url()),
                }
            }
        })
        .map_err(|e| format!("cannot start the lease thread: {e}"))?;
    Ok(())
}
