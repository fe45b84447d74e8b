//! "The floor": a minimal fuser filesystem served by the benchmark itself,
//! one FUSE write and one FUSE read per message.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    BackgroundSession, BsdFileFlags, Config as FuseConfig, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyWrite, Request, Session, SessionACL,
    TimeOrNow, WriteFlags,
};

use crate::report::REG;
use crate::sys::{detach, lock, other};
use crate::{FLOOR_CAPACITY, FLOOR_FILES};

/// One floor file: messages waiting, reads waiting, writes waiting for room.
#[derive(Default)]
pub(crate) struct FloorChan {
    pub(crate) queue: VecDeque<Vec<u8>>,
    pub(crate) readers: VecDeque<(ReplyData, usize)>,
    pub(crate) writers: VecDeque<(Vec<u8>, ReplyWrite)>,
}

/// "The floor": each write is handed to a parked read (or queued); each read
/// takes a queued message (or parks). One write request and one read request
/// per message, nothing else.
pub(crate) struct FloorFs {
    pub(crate) chans: Vec<Mutex<FloorChan>>,
    pub(crate) started: SystemTime,
}

pub(crate) const FLOOR_TTL: Duration = Duration::from_secs(60);

impl FloorFs {
    pub(crate) fn attr(&self, ino: u64) -> FileAttr {
        let dir = ino == 1;
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o666 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    pub(crate) fn chan(&self, ino: INodeNo) -> Option<&Mutex<FloorChan>> {
        self.chans.get(ino.0.checked_sub(2)? as usize)
    }

    pub(crate) fn valid(&self, ino: u64) -> bool {
        ino == 1 || (2..2 + self.chans.len() as u64).contains(&ino)
    }
}

impl Filesystem for FloorFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let idx = std::str::from_utf8(name.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&i| parent.0 == 1 && i < self.chans.len() as u64);
        match idx {
            Some(i) => reply.entry(&FLOOR_TTL, &self.attr(i + 2), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if self.valid(ino.0) {
            reply.attr(&FLOOR_TTL, &self.attr(ino.0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    // Only for the shell row: `echo x > file` truncates on open.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.getattr(_req, ino, None, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.chan(ino).is_none() {
            return reply.error(Errno::EISDIR);
        }
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE | FopenFlags::FOPEN_STREAM,
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(chan) = self.chan(ino) else {
            return reply.error(Errno::EISDIR);
        };
        let mut c = lock(chan);
        let Some(msg) = c.queue.pop_front() else {
            c.readers.push_back((reply, size as usize));
            return;
        };
        let woken = c.writers.pop_front().map(|(data, w)| {
            let n = data.len();
            c.queue.push_back(data);
            (w, n)
        });
        drop(c);
        reply.data(&msg[..msg.len().min(size as usize)]);
        if let Some((w, n)) = woken {
            w.written(n as u32);
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(chan) = self.chan(ino) else {
            return reply.error(Errno::EISDIR);
        };
        let mut c = lock(chan);
        if let Some((r, size)) = c.readers.pop_front() {
            drop(c);
            r.data(&data[..data.len().min(size)]);
            reply.written(data.len() as u32);
        } else if c.queue.len() < FLOOR_CAPACITY {
            c.queue.push_back(data.to_vec());
            drop(c);
            reply.written(data.len() as u32);
        } else {
            c.writers.push_back((data.to_vec(), reply));
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (1, FileType::Directory, ".".to_string()),
            (1, FileType::Directory, "..".to_string()),
        ];
        for i in 0..self.chans.len() as u64 {
            entries.push((i + 2, FileType::RegularFile, i.to_string()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

pub(crate) struct FloorMount {
    pub(crate) session: Option<BackgroundSession>,
    pub(crate) mnt: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

impl FloorMount {
    pub(crate) fn mount() -> io::Result<FloorMount> {
        let dir = tempfile::Builder::new().prefix("ipcfs-floor.").tempdir()?;
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt)?;
        let fs = FloorFs {
            chans: (0..FLOOR_FILES).map(|_| Mutex::default()).collect(),
            started: SystemTime::now(),
        };
        let mut config = FuseConfig::default();
        config.mount_options = vec![
            MountOption::FSName("ipcfs-floor".into()),
            MountOption::Subtype("floor".into()),
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(2);
        config.clone_fd = true;
        {
            let mut reg = lock(&REG);
            reg.mounts.push(mnt.clone());
            reg.dirs.push(dir.path().to_path_buf());
        }
        let session = Session::new(fs, &mnt, &config)?.spawn()?;
        let end = Instant::now() + Duration::from_secs(10);
        while !mnt.join("0").exists() {
            if Instant::now() > end {
                return Err(other("the floor did not appear"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(FloorMount {
            session: Some(session),
            mnt,
            _dir: dir,
        })
    }
}

impl Drop for FloorMount {
    fn drop(&mut self) {
        detach(&self.mnt);
        if let Some(s) = self.session.take() {
            // The lazy unmount ends the session once nothing holds it open;
            // do not wait for ever if something still does.
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let _ = thread::Builder::new()
                .name("bench-floor-join".into())
                .spawn(move || {
                    let _ = s.join();
                    let _ = done_tx.send(());
                });
            let _ = done_rx.recv_timeout(Duration::from_secs(3));
        }
        let mut reg = lock(&REG);
        reg.mounts.retain(|m| m != &self.mnt);
        reg.dirs.retain(|d| !self.mnt.starts_with(d));
    }
}
