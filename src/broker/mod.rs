//! The broker of ipcfs(7), ACROSS HOSTS: [`RedisStore`] keeps the shared
//! tree of mailboxes on a Redis server (the Redis 7.0 command set) and
//! implements [`crate::hub::store::Store`] on it.
//!
//! Every operation is one Lua script (`lua/NAME.lua`, see [`scripts`]),
//! atomic on the server, that first checks this node's incarnation token
//! (fencing). Calls come from several broker threads of the core at once,
//! so connections come from a small pool; the pump ([`pump`]) has its own.
//! Every exchange has a timeout, so a broker that is gone or stopped fails
//! a call with `EHOSTUNREACH` rather than hanging it.
//!
//! A call that finds this node's lease lost answers `ESTALE` only if it
//! acts for a descriptor ([`RedisStore::run`]); any other call
//! ([`RedisStore::run_renewing`]) has a new incarnation registered and is
//! made again (ipcfs(7), Leases).

mod lease;
mod ops;
mod pump;
mod scripts;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use log::{debug, warn};
use redis::{Connection, ErrorKind, IntoConnectionInfo, RedisError, Value};

use crate::hub::errno::{Errno, Refusal, Result};
use crate::hub::store::Sink;

use scripts::Scripts;

/// How long connecting, or one exchange, may take before the broker is
/// taken for unreachable.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Idle connections kept for the core's broker threads.
const POOL_MAX: usize = 8;

/// A store of mailboxes on a Redis server, shared by every daemon (node)
/// pointed at it.
pub struct RedisStore {
    client: redis::Client,
    /// The URL without its password.
    url: String,
    node: String,
    lease: Duration,
    /// This incarnation's token: the value of `ipcfs:node:NODE`.
    token: Mutex<String>,
    /// Held while a new incarnation is registered and the core is told.
    registering: Mutex<()>,
    /// Where the pump reports [`crate::hub::store::Event`]s (set when it
    /// starts): the thread that registers a new incarnation reports
    /// `Event::Fenced` there itself, before any call uses the new token.
    sink: Mutex<Option<Sink>>,
    scripts: Scripts,
    pool: Mutex<Vec<Connection>>,
    reachable: AtomicBool,
    stopped: AtomicBool,
    /// A new incarnation was registered: the pump reads on from the entry
    /// that starts it ([`RedisStore::fence_mark`]).
    fenced: AtomicBool,
    /// The id of the inbox entry (`t=start`) the latest registration put
    /// first.
    fence_mark: Mutex<String>,
}

/// `redis://user:pw@h:p/db` -> `redis://user@h:p/db`: the URL as logs,
/// `status` and error messages show it.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth_end, host_start) = match rest.find(['/', '?']) {
        Some(end) => match rest[..end].rfind('@') {
            Some(at) => (at, at + 1),
            None => return url.to_string(),
        },
        None => match rest.rfind('@') {
            Some(at) => (at, at + 1),
            None => return url.to_string(),
        },
    };
    let user = rest[..auth_end].split(':').next().unwrap_or("");
    if user.is_empty() {
        format!("{scheme}://{}", &rest[host_start..])
    } else {
        format!("{scheme}://{user}@{}", &rest[host_start..])
    }
}

/// The client for `url`. `rediss://` trusts the public web roots, or,
/// when the environment names a PEM file in `SSL_CERT_FILE` (as for
/// OpenSSL), the certificates in it only: how a broker with a private CA
/// is reached.
/// Why a client could not be made: the URL, or the CA file it needs.
enum ClientError {
    Url(String),
    CaFile(String),
}

fn client(url: &str) -> std::result::Result<redis::Client, ClientError> {
    let ca = std::env::var_os("SSL_CERT_FILE").filter(|_| url.starts_with("rediss://"));
    // Small requests and answers one after the other: Nagle's algorithm
    // would hold each back until the last is acknowledged.
    let nodelay = |url: &str| {
        url.into_connection_info()
            .map(|i| i.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)))
    };
    let info = nodelay(url).map_err(|e| ClientError::Url(e.to_string()))?;
    match ca {
        None => redis::Client::open(info).map_err(|e| ClientError::Url(e.to_string())),
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| {
                ClientError::CaFile(format!(
                    "cannot read SSL_CERT_FILE {}: {e}",
                    path.to_string_lossy()
                ))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(info, certs).map_err(|e| ClientError::Url(e.to_string()))
        }
    }
}

/// Whether the broker refused the credentials.
fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// The reason of a script's refusal, kept for the life of the daemon: the
/// scripts give a fixed set of them, so this stays small.
fn intern(why: &str) -> &'static str {
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN.get_or_init(Default::default).lock().unwrap();
    if let Some(s) = seen.get(why) {
        return s;
    }
    if seen.len() >= 256 {
        return "refused by the broker";
    }
    let s: &'static str = Box::leak(why.to_string().into_boxed_str());
    seen.insert(s);
    s
}

/// The errno a script's `{err="ENAME why"}` names.
fn errno_named(name: &str) -> Option<Errno> {
    Some(match name {
        "ESTALE" => Errno::ESTALE,
        "EIDRM" => Errno::EIDRM,
        "ENOENT" => Errno::ENOENT,
        "EEXIST" => Errno::EEXIST,
        "ENOTEMPTY" => Errno::ENOTEMPTY,
        "EINVAL" => Errno::EINVAL,
        "EBUSY" => Errno::EBUSY,
        "EAGAIN" => Errno::EAGAIN,
        "EMSGSIZE" => Errno::EMSGSIZE,
        "EOPNOTSUPP" => Errno(libc::EOPNOTSUPP),
        _ => return None,
    })
}

/// What a failed exchange means to the caller: the script's own errno,
/// `ENOBUFS` when the broker is out of memory, `EHOSTUNREACH` when it
/// cannot be reached.
fn refusal(e: &RedisError) -> Refusal {
    if let Some(code) = e.code() {
        if let Some(errno) = errno_named(code) {
            return Refusal {
                errno,
                // Redis appends where the error was raised; the reason is
                // the text before that.
                why: intern(
                    e.detail()
                        .unwrap_or("")
                        .split(" script: ")
                        .next()
                        .unwrap_or(""),
                ),
            };
        }
        if code == "OOM" {
            warn!("the broker refused for lack of memory: {e}");
            return Errno::ENOBUFS.because("the broker is out of memory (maxmemory)");
        }
        if code == "LOADING" || code == "MASTERDOWN" {
            return Errno::EHOSTUNREACH.because("the broker is loading its data");
        }
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return Errno::EHOSTUNREACH.because("the broker cannot be reached");
    }
    warn!("unexpected answer from the broker: {e}");
    Errno(libc::EIO).because("unexpected answer from the broker")
}

impl RedisStore {
    /// Connects, loads scripts, registers this node's lease. Errors are
    /// whole sentences naming the URL without its password.
    pub fn connect(
        url: &str,
        node: &str,
        lease: Duration,
    ) -> std::result::Result<RedisStore, String> {
        let shown = redact(url);
        let client = client(url).map_err(|e| match e {
            ClientError::Url(e) => format!("the broker URL {shown} is not valid: {e}"),
            ClientError::CaFile(e) => format!("cannot reach the broker at {shown}: {e}"),
        })?;
        let store = RedisStore {
            client,
            url: shown.clone(),
            node: node.to_string(),
            lease,
            token: Mutex::new(String::new()),
            registering: Mutex::new(()),
            sink: Mutex::new(None),
            scripts: Scripts::new(),
            pool: Mutex::new(Vec::new()),
            reachable: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            fence_mark: Mutex::new(String::new()),
        };
        let mut conn = store.open_conn().map_err(|e| {
            if is_auth_error(&e) {
                format!("the broker at {shown} refused the password: {e}")
            } else {
                format!("cannot reach the broker at {shown}: {e}")
            }
        })?;
        // A server that wants a password, given none, says so only at the
        // first command (NOAUTH) — if it is small: a large one (the
        // library) it refuses as a protocol error.
        redis::cmd("PING")
            .query::<()>(&mut conn)
            .and_then(|()| scripts::load(&mut conn))
            .map_err(|e| {
                if is_auth_error(&e) {
                    format!("the broker at {shown} refused the password: {e}")
                } else {
                    format!("the broker at {shown} refused the scripts: {e}")
                }
            })?;
        match store.register(&mut conn) {
            Ok(Ok((token, _mark))) => *store.token.lock().unwrap() = token,
            Ok(Err(pttl)) => {
                let secs = pttl.as_millis().div_ceil(1000).max(1);
                return Err(format!(
                    "node {node:?} is already served by a live daemon on the broker at {shown} \
                     (its lease ends within {secs} s)"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "cannot register node {node:?} on the broker at {shown}: {e}"
                ));
            }
        }
        store.give(conn);
        Ok(store)
    }

    /// A new connection with every exchange bounded by [`TIMEOUT`].
    fn open_conn(&self) -> redis::RedisResult<Connection> {
        self.open_conn_with(TIMEOUT)
    }

    fn open_conn_with(&self, read: Duration) -> redis::RedisResult<Connection> {
        let c = self.client.get_connection_with_timeout(TIMEOUT)?;
        c.set_read_timeout(Some(read))?;
        c.set_write_timeout(Some(TIMEOUT))?;
        Ok(c)
    }

    fn take(&self) -> Result<Connection> {
        if let Some(c) = self.pool.lock().unwrap().pop() {
            return Ok(c);
        }
        self.open_conn().map_err(|e| {
            debug!("broker {}: cannot connect: {e}", self.url);
            self.reachable.store(false, Ordering::Relaxed);
            refusal(&e)
        })
    }

    fn give(&self, c: Connection) {
        let mut pool = self.pool.lock().unwrap();
        if pool.len() < POOL_MAX {
            pool.push(c);
        }
    }

    /// Forgets every pooled connection (after an outage they are dead).
    fn drain_pool(&self) {
        self.pool.lock().unwrap().clear();
    }

    fn token(&self) -> String {
        self.token.lock().unwrap().clone()
    }

    /// Runs `script` for a call that no descriptor depends on (the tree,
    /// mkdir, rmdir, rename, attributes, policy, opens, status). If this
    /// node's lease was lost, a new incarnation is registered — once,
    /// however many threads find it lost, and the core is told before the
    /// new token is used ([`RedisStore::reregister`]) — and the call is
    /// made again with it: the lease lost is no error of this call. A
    /// refused script changed nothing (fencing comes first), so making it
    /// again is safe.
    fn run_renewing(
        &self,
        script: &scripts::Function,
        args: impl Fn(&mut scripts::Call),
    ) -> Result<Value> {
        match self.run(script, &args) {
            Err(r) if r.errno == Errno::ESTALE && !lease::reporting() => {
                let mut conn = self.take()?;
                // A connection that failed is dropped, not pooled.
                self.reregister(&mut conn)?;
                self.give(conn);
                self.run(script, &args)
            }
            other => other,
        }
    }

    /// Runs `script` for a call on descriptors (send, receive, ack,
    /// close...), with this node and token first, then what `args` adds. A
    /// lost lease answers `ESTALE`: those descriptors belong to the
    /// incarnation that held it (ipcfs(7), Leases).
    fn run(
        &self,
        script: &scripts::Function,
        args: impl FnOnce(&mut scripts::Call),
    ) -> Result<Value> {
        let mut conn = self.take()?;
        let mut inv = script.call();
        inv.arg(&self.node).arg(self.token());
        args(&mut inv);
        match inv.invoke::<Value>(&mut conn) {
            Ok(v) => {
                self.reachable.store(true, Ordering::Relaxed);
                self.give(conn);
                Ok(v)
            }
            Err(e) => {
                let r = refusal(&e);
                if r.errno == Errno::EHOSTUNREACH {
                    debug!("broker {}: {e}", self.url);
                    self.reachable.store(false, Ordering::Relaxed);
                    self.drain_pool();
                } else {
                    self.give(conn);
                }
                Err(r)
            }
        }
    }
}
