//! The ways a duplex is built (mailbox files, direct links, pipe,
//! socketpair, mq, the floor) and the context that builds them.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::endpoints::{H, Kind, Mq, Rx, Tx};
use crate::remote::{Duplex, PeerRemote, ThreadRemote};
use crate::report::{REG, Role, fmt_num};
use crate::stats::Meter;
use crate::sys::{cvt, lock, open_r, open_w, other, spawn};
use crate::{MQ_MAXMSG, PEER_CMD};

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Via {
    SendRecv,
    Packets,
    Batch,
    Link,
    Pipe,
    Seq,
    PosixMq,
    Floor,
}

pub(crate) const VIAS: [Via; 8] = [
    Via::SendRecv,
    Via::Packets,
    Via::Batch,
    Via::Link,
    Via::Pipe,
    Via::Seq,
    Via::PosixMq,
    Via::Floor,
];

impl Via {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Via::SendRecv => "ipcfs send/recv",
            Via::Packets => "ipcfs packets",
            Via::Batch => "ipcfs batch",
            Via::Link => "ipcfs proc/PID link",
            Via::Pipe => "pipe",
            Via::Seq => "SOCK_SEQPACKET",
            Via::PosixMq => "POSIX mq",
            Via::Floor => "floor (fuser)",
        }
    }

    pub(crate) fn role(self) -> Role {
        match self {
            Via::Floor => Role::Floor,
            Via::Pipe => Role::Pipe,
            _ => Role::Other,
        }
    }
}

pub(crate) struct Ctx {
    pub(crate) mnt: PathBuf,
    pub(crate) floor: PathBuf,
    pub(crate) daemon_pid: i32,
    pub(crate) max_msg: usize,
    pub(crate) boxes: usize,
    pub(crate) mq_seq: usize,
    pub(crate) mq_note: Option<String>,
    pub(crate) work: tempfile::TempDir,
}

impl Ctx {
    pub(crate) fn new_box(&mut self, tag: &str) -> io::Result<PathBuf> {
        self.boxes += 1;
        let p = self.mnt.join(format!("{tag}.{}", self.boxes));
        fs::create_dir(&p).map_err(|e| io::Error::new(e.kind(), format!("mkdir: {e}")))?;
        Ok(p)
    }

    pub(crate) fn fd(&self, kind: Kind, fd: OwnedFd) -> (Tx, Rx) {
        let dup = fd.try_clone().expect("dup");
        (
            Tx::new(kind, H::Fd(fd), self.max_msg),
            Rx::new(kind, H::Fd(dup), self.max_msg),
        )
    }

    pub(crate) fn tx(&self, kind: Kind, fd: OwnedFd) -> Tx {
        Tx::new(kind, H::Fd(fd), self.max_msg)
    }

    pub(crate) fn rx(&self, kind: Kind, fd: OwnedFd) -> Rx {
        Rx::new(kind, H::Fd(fd), self.max_msg)
    }

    /// A one-way channel, as (sending end, receiving end).
    pub(crate) fn channel(&mut self, via: Via, size: usize, tag: &str) -> io::Result<(Tx, Rx)> {
        match via {
            Via::SendRecv | Via::Packets | Via::Batch => {
                let b = self.new_box(tag)?;
                let (w, r, kind) = match via {
                    Via::SendRecv => ("send", "recv", Kind::Msg),
                    Via::Packets => ("packets", "packets", Kind::Packet),
                    _ => ("batch", "batch", Kind::Batch),
                };
                if !b.join(w).exists() {
                    return Err(other(format!("no {w} file")));
                }
                Ok((
                    self.tx(kind, open_w(&b.join(w))?),
                    self.rx(kind, open_r(&b.join(r))?),
                ))
            }
            Via::Pipe => {
                let mut fds = [0; 2];
                cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
                let (r, w) =
                    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                Ok((self.tx(Kind::Stream, w), self.rx(Kind::Stream, r)))
            }
            Via::PosixMq => {
                self.mq_seq += 1;
                let name = format!("/ipcfs-bench.{}.{}", std::process::id(), self.mq_seq);
                let maxmsg = mq_maxmsg(size).map_err(other)?;
                if maxmsg < MQ_MAXMSG {
                    self.mq_note = Some(format!("mq_maxmsg {maxmsg} (RLIMIT_MSGQUEUE)"));
                }
                let (w, r) = mq_pair(&name, size, maxmsg).map_err(other)?;
                Ok((
                    Tx::new(Kind::Mq, H::Mq(w), self.max_msg),
                    Rx::new(Kind::Mq, H::Mq(r), self.max_msg),
                ))
            }
            Via::Floor | Via::Seq | Via::Link => Err(other("not a one-way channel")),
        }
    }

    pub(crate) fn duplex(&mut self, via: Via, size: usize) -> io::Result<Duplex> {
        let meter = match via {
            Via::SendRecv | Via::Packets | Via::Batch | Via::Link => Meter::Daemon(self.daemon_pid),
            Via::Floor => Meter::Floor,
            _ => Meter::Off,
        };
        let (tx, rx, remote) = match via {
            Via::Floor => {
                let ab = self.floor.join("0");
                let ba = self.floor.join("1");
                (
                    self.tx(Kind::Packet, open_w(&ab)?),
                    self.rx(Kind::Packet, open_r(&ba)?),
                    ThreadRemote::boxed(
                        self.rx(Kind::Packet, open_r(&ab)?),
                        self.tx(Kind::Packet, open_w(&ba)?),
                    ),
                )
            }
            Via::Seq => {
                let mut fds = [0; 2];
                cvt(unsafe {
                    libc::socketpair(
                        libc::AF_UNIX,
                        libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                        0,
                        fds.as_mut_ptr(),
                    )
                })?;
                let (a, b) =
                    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                // A datagram must fit in the sender's buffer: as root, force
                // a larger one (wmem_max does not apply) for big messages.
                let want = (4 * size + (256 << 10)) as libc::c_int;
                for s in [&a, &b] {
                    unsafe {
                        libc::setsockopt(
                            s.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_SNDBUFFORCE,
                            (&want as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                }
                let (tx, rx) = self.fd(Kind::Seq, a);
                let (rtx, rrx) = self.fd(Kind::Seq, b);
                (tx, rx, ThreadRemote::boxed(rrx, rtx))
            }
            Via::Link => return Err(other("links are built once, with their peer")),
            _ => {
                let tag = match via {
                    Via::SendRecv => "sr",
                    Via::Packets => "pk",
                    Via::Batch => "bt",
                    _ => "x",
                };
                let (tx, rrx) = self.channel(via, size, tag)?;
                let (rtx, rx) = self.channel(via, size, tag)?;
                (tx, rx, ThreadRemote::boxed(rrx, rtx))
            }
        };
        Ok(Duplex {
            tx,
            rx,
            remote,
            meter,
        })
    }

    /// A direct link with a child process (identity is the process, so the
    /// far end cannot be a thread of this one).
    pub(crate) fn link(&mut self) -> io::Result<Duplex> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg(PEER_CMD)
            .arg(&self.mnt)
            .arg(std::process::id().to_string())
            .arg(self.max_msg.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = spawn(&mut cmd)?;
        let pid = child.id();
        lock(&REG).pids.push(pid as i32);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut peer = PeerRemote {
            child,
            stdin,
            stdout,
        };
        let mut line = String::new();
        peer.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(other(format!("link peer did not start: {}", line.trim())));
        }
        let base = self.mnt.join("proc").join(pid.to_string());
        Ok(Duplex {
            tx: self.tx(Kind::Msg, open_w(&base.join("send"))?),
            rx: self.rx(Kind::Msg, open_r(&base.join("recv"))?),
            remote: Box::new(peer),
            meter: Meter::Daemon(self.daemon_pid),
        })
    }
}

/// How many messages each of two queues of `size`-byte messages may hold
/// within RLIMIT_MSGQUEUE (at most `MQ_MAXMSG`).
pub(crate) fn mq_maxmsg(size: usize) -> Result<usize, String> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut r) };
    if r.rlim_cur == libc::RLIM_INFINITY {
        return Ok(MQ_MAXMSG);
    }
    // The kernel charges a queue maxmsg x (msgsize + about 100 bytes).
    match r.rlim_cur as usize / (2 * (size + 128)) {
        0 => Err(format!(
            "2 queues of {} B > RLIMIT_MSGQUEUE {} B; raising it needs CAP_SYS_RESOURCE",
            fmt_num(size as f64),
            fmt_num(r.rlim_cur as f64)
        )),
        n => Ok(n.min(MQ_MAXMSG)),
    }
}

/// Opens a new POSIX queue for `size`-byte messages twice (a sending and a
/// receiving descriptor) and unlinks its name.
pub(crate) fn mq_pair(name: &str, size: usize, maxmsg: usize) -> Result<(Mq, Mq), String> {
    let cname = CString::new(name).expect("mq name");
    let open = |create: bool| -> io::Result<Mq> {
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = maxmsg as _;
        attr.mq_msgsize = size as _;
        let flags = libc::O_RDWR
            | libc::O_CLOEXEC
            | if create {
                libc::O_CREAT | libc::O_EXCL
            } else {
                0
            };
        let q = unsafe {
            libc::mq_open(
                cname.as_ptr(),
                flags,
                0o600 as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        if q < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Mq(q))
        }
    };
    let first = match open(true) {
        Ok(q) => q,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // msgsize above fs.mqueue.msgsize_max: raise it (as root) and retry.
            let path = PathBuf::from("/proc/sys/fs/mqueue/msgsize_max");
            let old = fs::read_to_string(&path).unwrap_or_default();
            let cur: usize = old.trim().parse().unwrap_or(0);
            if cur >= size {
                return Err(format!("mq_open: {e}"));
            }
            fs::write(&path, size.to_string()).map_err(|w| {
                format!("mq_open: {e} (msgsize {size} > msgsize_max {cur}; raising it: {w})")
            })?;
            let mut reg = lock(&REG);
            if !reg.sysctl_restore.iter().any(|(p, _)| p == &path) {
                reg.sysctl_restore.push((path.clone(), old.clone()));
            }
            drop(reg);
            progress!("raised fs.mqueue.msgsize_max from {} to {size}", old.trim());
            open(true).map_err(|e| format!("mq_open after raising msgsize_max: {e}"))?
        }
        Err(e) => return Err(format!("mq_open: {e}")),
    };
    let second = open(false).map_err(|e| format!("mq_open: {e}"));
    unsafe { libc::mq_unlink(cname.as_ptr()) };
    Ok((first, second?))
}
