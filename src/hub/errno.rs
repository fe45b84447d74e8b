//! Error numbers the core answers with, kept free of FUSE types.

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
}

pub type Result<T> = std::result::Result<T, Errno>;
