//! Refusals: what the core answers when it will not do what was asked — an
//! error number and why, kept free of FUSE types. The adapter logs the
//! reason (at `debug`, in one place) and turns it into the errno the caller
//! sees.

use std::fmt;

/// A positive `errno` value (`libc::EAGAIN`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const EMSGSIZE: Errno = Errno(libc::EMSGSIZE);
    pub const EIDRM: Errno = Errno(libc::EIDRM);
    pub const ENOBUFS: Errno = Errno(libc::ENOBUFS);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EMFILE: Errno = Errno(libc::EMFILE);
    pub const ENFILE: Errno = Errno(libc::ENFILE);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    /// The broker cannot be reached (ipcfs(7), ACROSS HOSTS).
    pub const EHOSTUNREACH: Errno = Errno(libc::EHOSTUNREACH);
    /// This daemon lost its lease on the broker: descriptors opened before
    /// fail until reopened (ipcfs(7), ACROSS HOSTS).
    pub const ESTALE: Errno = Errno(libc::ESTALE);

    /// This error, with the reason the log gives for it.
    pub const fn because(self, why: &'static str) -> Refusal {
        Refusal { errno: self, why }
    }

    /// The symbolic name (`"EBUSY"`), or `"errno"` for a number not listed.
    /// Also names errors the core never gives but callers of a mount meet
    /// (ESPIPE from lseek, ECONNABORTED and EIO once the daemon is gone),
    /// so that tests and logs print one spelling.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::EXDEV => "EXDEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::ENFILE => "ENFILE",
            libc::EMFILE => "EMFILE",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ESPIPE => "ESPIPE",
            libc::EPIPE => "EPIPE",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::EIDRM => "EIDRM",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EMSGSIZE => "EMSGSIZE",
            libc::ECONNABORTED => "ECONNABORTED",
            libc::ENOBUFS => "ENOBUFS",
            libc::ENOTCONN => "ENOTCONN",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            libc::ESTALE => "ESTALE",
            _ => "errno",
        }
    }
}

/// What was refused and why: an errno for the caller, a reason for the log.
/// Two refusals are equal when their errnos are: the reason is for people.
#[derive(Clone, Copy, Debug)]
pub struct Refusal {
    pub errno: Errno,
    pub why: &'static str,
}

impl PartialEq for Refusal {
    fn eq(&self, other: &Refusal) -> bool {
        self.errno == other.errno
    }
}

impl Eq for Refusal {}

impl From<Errno> for Refusal {
    fn from(errno: Errno) -> Refusal {
        Refusal { errno, why: "" }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.why {
            "" => f.write_str(self.errno.name()),
            why => write!(f, "{} ({why})", self.errno.name()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Refusal>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_errno_and_reason() {
        assert_eq!(
            Errno::EBUSY.because("pair: both places taken").to_string(),
            "EBUSY (pair: both places taken)"
        );
        assert_eq!(Refusal::from(Errno::ENOENT).to_string(), "ENOENT");
        assert_eq!(Errno(9999).name(), "errno");
    }

    #[test]
    fn every_errno_a_caller_of_the_mount_meets_has_its_name() {
        let named = [
            (Errno::EPERM, "EPERM"),
            (Errno::ENOENT, "ENOENT"),
            (Errno::ESRCH, "ESRCH"),
            (Errno::EINTR, "EINTR"),
            (Errno::EAGAIN, "EAGAIN"),
            (Errno::EACCES, "EACCES"),
            (Errno::EBUSY, "EBUSY"),
            (Errno::EEXIST, "EEXIST"),
            (Errno::ENOTDIR, "ENOTDIR"),
            (Errno::EISDIR, "EISDIR"),
            (Errno::EINVAL, "EINVAL"),
            (Errno::ENOTEMPTY, "ENOTEMPTY"),
            (Errno::ENAMETOOLONG, "ENAMETOOLONG"),
            (Errno::EMSGSIZE, "EMSGSIZE"),
            (Errno::EIDRM, "EIDRM"),
            (Errno::ENOBUFS, "ENOBUFS"),
            (Errno::ENOSPC, "ENOSPC"),
            (Errno::ENOTCONN, "ENOTCONN"),
            (Errno::EBADF, "EBADF"),
            (Errno::EMFILE, "EMFILE"),
            (Errno::ENFILE, "ENFILE"),
            (Errno::ENOMEM, "ENOMEM"),
            // Not the core's own answers: what callers of a mount also meet.
            (Errno(libc::ESPIPE), "ESPIPE"),
            (Errno(libc::ECONNABORTED), "ECONNABORTED"),
            (Errno(libc::EIO), "EIO"),
            (Errno(libc::EPIPE), "EPIPE"),
            (Errno(libc::EXDEV), "EXDEV"),
            (Errno(libc::EFAULT), "EFAULT"),
            (Errno(libc::EFBIG), "EFBIG"),
            (Errno(libc::ENOSYS), "ENOSYS"),
            (Errno(libc::EOPNOTSUPP), "EOPNOTSUPP"),
        ];
        for (errno, name) in named {
            assert_eq!(errno.name(), name, "errno {}", errno.0);
        }
    }
}
