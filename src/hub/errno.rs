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

    /// This error, with the reason the log gives for it.
    pub const fn because(self, why: &'static str) -> Refusal {
        Refusal { errno: self, why }
    }

    /// The symbolic name (`"EBUSY"`).
    pub fn name(self) -> &'static str {
        const NAMES: [(i32, &str); 22] = [
            (libc::EPERM, "EPERM"),
            (libc::ENOENT, "ENOENT"),
            (libc::ESRCH, "ESRCH"),
            (libc::EINTR, "EINTR"),
            (libc::EAGAIN, "EAGAIN"),
            (libc::EACCES, "EACCES"),
            (libc::EBUSY, "EBUSY"),
            (libc::EEXIST, "EEXIST"),
            (libc::ENOTDIR, "ENOTDIR"),
            (libc::EISDIR, "EISDIR"),
            (libc::EINVAL, "EINVAL"),
            (libc::ENOTEMPTY, "ENOTEMPTY"),
            (libc::ENAMETOOLONG, "ENAMETOOLONG"),
            (libc::EMSGSIZE, "EMSGSIZE"),
            (libc::EIDRM, "EIDRM"),
            (libc::ENOBUFS, "ENOBUFS"),
            (libc::ENOSPC, "ENOSPC"),
            (libc::ENOTCONN, "ENOTCONN"),
            (libc::EBADF, "EBADF"),
            (libc::EMFILE, "EMFILE"),
            (libc::ENFILE, "ENFILE"),
            (libc::ENOMEM, "ENOMEM"),
        ];
        NAMES
            .iter()
            .find(|(n, _)| *n == self.0)
            .map_or("errno", |(_, name)| name)
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
}
