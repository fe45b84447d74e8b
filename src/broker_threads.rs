//! The threads of a mount with `--broker` (ipcfs(7), ACROSS HOSTS): the
//! workers that make the store's calls for the core (so that no FUSE
//! event-loop thread waits on the network) and their timer, the pump that reads this
//! node's inbox, and the heartbeat that keeps its lease.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::hub::Hub;
use crate::hub::remote::{Job, Remote};
use crate::hub::store::Store;

/// Worker threads: calls to the broker run side by side, so that one slow
/// answer does not hold up the others.
const WORKERS: usize = 4;

/// Makes `hub` a mount of `store`: loads the tree and starts the threads.
pub fn attach(hub: &Arc<Hub>, store: Arc<dyn Store>, lease: Duration) -> Result<(), String> {
    let jobs = Arc::new(Jobs::default());
    for i in 0..WORKERS {
        let jobs = Arc::clone(&jobs);
        let hub = Arc::clone(hub);
        std::thread::Builder::new()
            .name(format!("ipcfs-broker-{i}"))
            .spawn(move || {
                loop {
                    let job = jobs.take();
                    job(&hub);
                }
            })
            .map_err(|e| format!("cannot start a broker thread: {e}"))?;
    }
    // Jobs due a moment from now (acknowledgements a next read did not
    // carry, interrupted writes the broker has not answered). The timer
    // runs them itself when due (they seldom call the broker: most find
    // their acknowledgement carried by a read already), and is woken only
    // when a job is due before all it has: a busy reader costs it one
    // wakeup per delay, not one per read.
    let timer = Arc::new(Timer::default());
    let timer_hub = Arc::clone(hub);
    let t = Arc::clone(&timer);
    std::thread::Builder::new()
        .name("ipcfs-broker-timer".into())
        .spawn(move || t.run(&timer_hub))
        .map_err(|e| format!("cannot start the broker's timer thread: {e}"))?;
    let run = Box::new(move |job: Job| jobs.add(job));
    let soon = Box::new(move |after, job: Job| timer.add(Instant::now() + after, job));
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

/// Jobs for the workers, first come first. Each job wakes one idle
/// worker and no other (a channel's receiver shared under a mutex would
/// wake a second worker to take the receiver over: a context switch per
/// call, on a path that costs little else).
#[derive(Default)]
struct Jobs {
    queue: Mutex<VecDeque<Job>>,
    added: Condvar,
}

impl Jobs {
    fn add(&self, job: Job) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(job);
        self.added.notify_one();
    }

    fn take(&self) -> Job {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = queue.pop_front() {
                return job;
            }
            queue = self.added.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Jobs due at a time, earliest first.
#[derive(Default)]
struct Timer {
    due: Mutex<VecDeque<(Instant, Job)>>,
    added: Condvar,
}

impl Timer {
    fn add(&self, at: Instant, job: Job) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let i = due.partition_point(|(t, _)| *t <= at);
        due.insert(i, (at, job));
        // Asleep with a time set, the timer wakes before a later one is due.
        if i == 0 {
            self.added.notify_one();
        }
    }

    fn run(&self, hub: &Hub) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            match due.front() {
                None => {
                    due = self.added.wait(due).unwrap_or_else(|e| e.into_inner());
                }
                Some((at, _)) if *at > now => {
                    let wait = *at - now;
                    due = self
                        .added
                        .wait_timeout(due, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                Some(_) => {
                    let (_, job) = due.pop_front().expect("a due job");
                    drop(due);
                    job(hub);
                    due = self.due.lock().unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}
