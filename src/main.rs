//! The `ipcfs` command: parses options, mounts, serves, and unmounts on a
//! signal.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fuser::{Config as FuseConfig, MountOption, PollHandle, Session, SessionACL, SessionUnmounter};
use log::{debug, error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use ipcfs::broker::RedisStore;
use ipcfs::broker_threads;
use ipcfs::fuse::adapter::IpcFs;
use ipcfs::hub::accounting::watch_cost;
use ipcfs::hub::store::Store;
use ipcfs::hub::{Config, Hub};
use ipcfs::options::{Cli, Settings, hard_max_message};
use ipcfs::os::mountinfo::{self, MountKey};
use ipcfs::os::processes::OsProcesses;
use ipcfs::os::rlimit;

/// How much must have been freed before the daemon gives memory back.
const TRIM_AFTER: usize = 8 << 20;

fn main() -> ExitCode {
    // First, before anything opens a descriptor: every process whose exit
    // the daemon watches holds one (a pidfd).
    let nofile = rlimit::raise_nofile();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("ipcfs=warn,fuser=off"),
    )
    .init();
    let nofile = match nofile {
        Ok(n) => {
            debug!("RLIMIT_NOFILE: {n} descriptors");
            n
        }
        Err(e) => {
            warn!("cannot read or raise RLIMIT_NOFILE: {e}; assuming 1024");
            1024
        }
    };
    let settings = match Settings::from_cli(Cli::parse(), hard_max_message()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipcfs: {e}");
            return ExitCode::from(2);
        }
    };
    match serve(&settings, nofile) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcfs: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(s: &Settings, nofile: u64) -> Result<(), String> {
    let mp = &s.mountpoint;
    if !mp.exists() {
        std::fs::create_dir_all(mp)
            .map_err(|e| format!("cannot create mountpoint {}: {e}", mp.display()))?;
    }
    if !mp.is_dir() {
        return Err(format!("cannot mount on {}: not a directory", mp.display()));
    }
    // Resolved before mounting: afterwards the path leads into the mount.
    let mp_path = mp
        .canonicalize()
        .map_err(|e| format!("cannot resolve mountpoint {}: {e}", mp.display()))?;
    let watch_cost = watch_cost(s.max_memory, nofile, s.threads);
    debug!("a watched process holds {watch_cost} bytes of --max-memory (its pidfd)");
    let hub = Arc::new(Hub::new(
        Config {
            default_policy: s.default_policy,
            hard_max_message: s.hard_max_message,
            max_memory: s.max_memory,
            user_share: s.user_share,
            watch_cost,
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        },
        Box::new(OsProcesses::default()),
    ));
    // On a broker: connect, register this node and load the tree before
    // mounting, so that an unreachable broker leaves nothing mounted
    // (ipcfs(1), EXIT STATUS).
    let store = match &s.broker {
        Some(b) => {
            let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&b.url, &b.node, b.lease)?);
            broker_threads::attach(&hub, Arc::clone(&store), b.lease)?;
            info!("node {} on the broker at {}", store.node(), store.url());
            Some(store)
        }
        None => None,
    };
    let mut config = FuseConfig::default();
    config.mount_options = s.mount_options.clone();
    config.acl = if s.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(s.threads);
    config.clone_fd = s.threads > 1;

    // Two ipcfs stacked on one path would serve only the top one, and
    // whoever unmounts by path would take the wrong one: refuse instead
    // (ipcfs(1), EXIT STATUS). Another filesystem on top of an ipcfs, or an
    // ipcfs on top of another filesystem, is fine.
    let names = fs_names(&s.mount_options);
    if let Ok(entries) = mountinfo::read()
        && mountinfo::topmost_at(&entries, &mp_path)
            .is_some_and(|top| names.iter().any(|n| top.is_fuse_named(n)))
    {
        return Err(format!(
            "cannot mount on {}: an ipcfs is already mounted there",
            mp.display()
        ));
    }

    // Signals are caught before mounting, so none is missed in between.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    let fs = IpcFs::new(Arc::clone(&hub));
    let inval = fs.notifier_slot();
    let mut session =
        Session::new(fs, mp, &config).map_err(|e| format!("cannot mount {}: {e}", mp.display()))?;
    let _ = inval.set(session.notifier());
    // Our mount, just made, is the topmost FUSE mount at the path. It is
    // read from mountinfo, not by stat(2) of the mountpoint, which would
    // wait for this very session to answer before it runs.
    let ours = mountinfo::read().ok().and_then(|entries| {
        mountinfo::topmost_at(&entries, &mp_path)
            .filter(|e| e.is_fuse())
            .map(|e| e.key())
    });
    if ours.is_none() {
        warn!(
            "cannot find the mount at {} in /proc/self/mountinfo: a lazy unmount will go unnoticed while descriptors stay open",
            mp_path.display()
        );
    }
    let notifier = session.notifier();
    hub.set_notifier(Box::new(move |kh| {
        let _ = notifier.poll(PollHandle(kh));
    }));
    let mut unmounter = session.unmount_callable();
    info!("mounted at {}", mp_path.display());

    let watcher = Arc::clone(&hub);
    std::thread::Builder::new()
        .name("ipcfs-watch".into())
        .spawn(move || {
            // Exits, and calls kept waiting after a signal; and memory given
            // back to the system once much of it has been freed (the
            // allocator keeps freed memory otherwise).
            let mut high = 0;
            loop {
                watcher.watch_once(std::time::Duration::from_millis(100));
                let used = watcher.memory_used();
                high = high.max(used);
                if high - used > TRIM_AFTER {
                    // SAFETY: malloc_trim only returns free heap memory.
                    unsafe { libc::malloc_trim(0) };
                    high = used;
                }
            }
        })
        .map_err(|e| format!("cannot start the watcher thread: {e}"))?;

    let on_signal = Arc::clone(&hub);
    let mp_name = mp_path.clone();
    std::thread::Builder::new()
        .name("ipcfs-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!("signal {sig}: stopping {}", mp_name.display());
                on_signal.shutdown();
                on_signal.stop_store();
                match ours {
                    Some(key) => unmount_ours(key, &mp_name, &mut unmounter),
                    // Not knowing which mount is ours, leave it to fuser,
                    // which unmounts only while our connection lives.
                    None => {
                        if let Err(e) = unmounter.unmount() {
                            error!("unmounting {}: {e}", mp_name.display());
                        }
                    }
                }
                // Descriptors still open on the detached (or covered) mount
                // are cut off when /dev/fuse closes with this process.
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    // A lazy unmount with descriptors still open does not end the session
    // until they close; blocked callers would wait for ever. Watch for it:
    // for our mount, not the path, where another may be mounted by now.
    if let Some(key) = ours {
        let on_unmount = Arc::clone(&hub);
        let mp_watch = mp_path.clone();
        std::thread::Builder::new()
            .name("ipcfs-mount".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    if !mountinfo::still_mounted(key) {
                        info!("{} was unmounted", mp_watch.display());
                        on_unmount.shutdown();
                        on_unmount.stop_store();
                        std::process::exit(0);
                    }
                }
            })
            .map_err(|e| format!("cannot start the mount watcher thread: {e}"))?;
    }

    let result = session.run();
    hub.shutdown();
    if let Some(store) = &store {
        store.stop();
    }
    result.map_err(|e| format!("serving {}: {e}", mp.display()))?;
    info!("{} was unmounted", mp.display());
    Ok(())
}

/// The names an ipcfs mount goes by in mountinfo: `ipcfs`, and the fsname
/// and subtype this one was given (`-o fsname=`, `-o subtype=`).
fn fs_names(options: &[MountOption]) -> Vec<String> {
    let mut names = vec![mountinfo::NAME.to_string()];
    for o in options {
        if let MountOption::FSName(n) | MountOption::Subtype(n) = o {
            names.push(n.clone());
        }
    }
    names
}

/// On a signal: unmounts our mount, `key`, and nothing else, once.
/// Gone already (an external unmount) is not an error. Covered by another
/// mount, it is left alone: a detach would take the mount on top with it.
/// (When the session ends by itself, fuser's teardown unmounts only while
/// our connection lives: see vendor/README.md.)
fn unmount_ours(key: MountKey, mp: &Path, unmounter: &mut SessionUnmounter) {
    let gone = || info!("{} was unmounted already", mp.display());
    let Ok(entries) = mountinfo::read() else {
        // Cannot tell what is on top: fuser unmounts only while our
        // connection lives.
        if let Err(e) = unmounter.unmount() {
            error!("unmounting {}: {e}", mp.display());
        }
        return;
    };
    let Some(entry) = mountinfo::find(&entries, key) else {
        return gone();
    };
    // Where it is now (a `mount --move` may have carried it elsewhere).
    let here = entry.path();
    if mountinfo::topmost_at(&entries, here).map(|e| e.key()) != Some(key) {
        warn!(
            "{} is covered by another mount: leaving both mounted; the ipcfs below stops answering (ENOTCONN) as the daemon exits",
            here.display()
        );
        return;
    }
    // Lazily: descriptors just answered may not be closed yet.
    match detach(here) {
        Ok(()) => {}
        // Not root: only fusermount3 may unmount, and it too works by path,
        // so it runs only when the first way was not permitted.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            if let Err(e) = unmounter.unmount() {
                error!("unmounting {}: {e}", here.display());
            }
        }
        // Unmounted from outside between our look and our unmount.
        Err(_) if !mountinfo::still_mounted(key) => gone(),
        Err(e) => error!("unmounting {}: {e}", here.display()),
    }
}

/// Lazily unmounts `path` (as root; others go through fusermount3).
fn detach(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
