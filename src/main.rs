//! The `ipcfs` command: parses options, mounts, serves, and unmounts on a
//! signal.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fuser::{Config as FuseConfig, PollHandle, Session, SessionACL};
use log::{error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use ipcfs::fuse::adapter::IpcFs;
use ipcfs::hub::{Config, Hub};
use ipcfs::options::{Cli, Settings, hard_max_message};
use ipcfs::os::mountinfo;
use ipcfs::os::processes::OsProcesses;

/// How much must have been freed before the daemon gives memory back.
const TRIM_AFTER: usize = 8 << 20;

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("ipcfs=warn,fuser=off"),
    )
    .init();
    let settings = match Settings::from_cli(Cli::parse(), hard_max_message()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipcfs: {e}");
            return ExitCode::from(2);
        }
    };
    match serve(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcfs: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(s: &Settings) -> Result<(), String> {
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
    let hub = Arc::new(Hub::new(
        Config {
            default_policy: s.default_policy,
            hard_max_message: s.hard_max_message,
            max_memory: s.max_memory,
            user_share: s.user_share,
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        },
        Box::new(OsProcesses::default()),
    ));
    let mut config = FuseConfig::default();
    config.mount_options = s.mount_options.clone();
    config.acl = if s.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(s.threads);
    config.clone_fd = s.threads > 1;

    // Signals are caught before mounting, so none is missed in between.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    let fs = IpcFs::new(Arc::clone(&hub));
    let inval = fs.notifier_slot();
    let mut session =
        Session::new(fs, mp, &config).map_err(|e| format!("cannot mount {}: {e}", mp.display()))?;
    let _ = inval.set(session.notifier());
    let notifier = session.notifier();
    hub.set_notifier(Box::new(move |kh| {
        let _ = notifier.poll(PollHandle(kh));
    }));
    let mut unmounter = session.unmount_callable();
    info!("mounted {} ({})", mp.display(), s.default_policy);

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
    let mp_name = mp.display().to_string();
    let mp_watch = mp_path.clone();
    std::thread::Builder::new()
        .name("ipcfs-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!("signal {sig}: unmounting {mp_name}");
                on_signal.shutdown();
                // Detach lazily: descriptors just answered may not be closed yet.
                if let Err(e) = detach(&mp_path).or_else(|_| unmounter.unmount()) {
                    error!("unmounting {mp_name}: {e}");
                }
                // Descriptors still open on the detached mount are cut off
                // when /dev/fuse closes with this process.
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    // A lazy unmount with descriptors still open does not end the session
    // until they close; blocked callers would wait for ever. Watch for it.
    let on_unmount = Arc::clone(&hub);
    std::thread::Builder::new()
        .name("ipcfs-mount".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if !mountinfo::still_mounted(&mp_watch) {
                    info!("{} was unmounted", mp_watch.display());
                    on_unmount.shutdown();
                    std::process::exit(0);
                }
            }
        })
        .map_err(|e| format!("cannot start the mount watcher thread: {e}"))?;

    let result = session.run();
    hub.shutdown();
    result.map_err(|e| format!("serving {}: {e}", mp.display()))?;
    info!("{} was unmounted", mp.display());
    Ok(())
}

/// Lazily unmounts `path` (as root; others go through fusermount3).
fn detach(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
