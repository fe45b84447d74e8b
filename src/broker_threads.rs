//! The threads of a mount with `--broker` (ipcfs(7), ACROSS HOSTS): the
//! workers that make the store's calls for the core (so that no FUSE
//! event-loop thread waits on the network), the pump that reads this
//! node's inbox, and the heartbeat that keeps its lease.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, warn};

use crate::hub::Hub;
use crate::hub::remote::{Job, Remote};
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
    let tx = Mutex::new(tx);
    let run = Box::new(move |job: Job| {
        let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(job);
    });
    hub.set_remote(Remote {
        store: Arc::clone(&store),
        run,
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
        .spawn(move || pump_store.pump(&mut |ev| pump_hub.on_event(ev)))
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
