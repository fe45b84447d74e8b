//! A real `redis-server` for broker tests: started on 127.0.0.1 on a free
//! port, in its own temporary directory, killed by pid on drop (also on
//! panic). A test that needs one fails loudly when `redis-server` is not
//! installed (`apt-get install redis-server`): it is never skipped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a redis-server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// What a [`Redis`] starts with.
#[derive(Clone, Default)]
pub struct RedisConfig {
    /// `appendonly yes` with `appendfsync always`: queued messages survive
    /// a SIGKILL of the server.
    pub aof: bool,
    /// `maxmemory` in bytes, with `maxmemory-policy noeviction`.
    pub maxmemory: Option<u64>,
    /// `requirepass`: the default user's password.
    pub password: Option<String>,
}

pub struct Redis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    config: RedisConfig,
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

impl Redis {
    /// A server with no persistence, no password, no memory bound.
    pub fn start() -> Redis {
        Redis::with(RedisConfig::default())
    }

    pub fn with(config: RedisConfig) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("ipcfs-redis-")
            .tempdir()
            .expect("temporary directory for redis-server");
        let mut r = Redis {
            child: None,
            dir,
            port: free_port(),
            config,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        for _ in 0..5 {
            if self.try_launch() {
                return;
            }
            self.port = free_port();
        }
        panic!(
            "redis-server could not listen on a free port in 5 tries; its log:\n{}",
            self.log()
        );
    }

    /// Starts the server on `self.port`; false if the port was taken
    /// meanwhile (tests run in parallel: a port seen free may be bound by
    /// another test's server before ours). Only a server that answers with
    /// our child's pid counts as started.
    fn try_launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if self.config.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(m) = self.config.maxmemory {
            cmd.args(["--maxmemory", &m.to_string()])
                .args(["--maxmemory-policy", "noeviction"]);
        }
        if let Some(p) = &self.config.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): broker tests need it installed \
                 (apt-get install redis-server)"
            )
        });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                if self.log().contains("Address already in use") {
                    return false;
                }
                panic!(
                    "redis-server exited with {st} at start; its log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self
                    .cli(&["INFO", "server"])
                    .contains(&format!("process_id:{pid}\r"))
            {
                return true;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server did not listen on port {} within {START_DEADLINE:?}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `redis://127.0.0.1:PORT` (with the password when there is one).
    pub fn url(&self) -> String {
        match &self.config.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// SIGKILLs the server and reaps it (its AOF, if any, stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (and AOF).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs `redis-cli` against the server with `args`; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(p) = &self.config.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli ({e}): apt-get install redis-server"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The path of the server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
