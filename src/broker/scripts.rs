//! The Lua scripts, one per operation, each run atomically on the broker.
//! They are one Redis function library (Redis 7 functions, which Valkey
//! has too): `lua/common.lua` (fencing, the reaper, hand-off to waiting
//! readers) runs once when the library is loaded, not at every call as a
//! script sent with EVALSHA would, and each operation is a function of it.
//! The library's name carries a hash of its text, so that daemons of
//! different versions on one broker each call their own; a broker that
//! has forgotten it (a restart without persistence) gets it again.

use std::sync::LazyLock;

use redis::{Connection, FromRedisValue, RedisResult, ToRedisArgs};

/// The operations that store more on the broker: refused with `OOM`
/// (`ENOBUFS`) when it is past its `maxmemory`.
const GROWING: [&str; 5] = ["send", "mkdir", "rename", "set_attrs", "set_policy"];

const COMMON: &str = include_str!("lua/common.lua");

/// Every operation and its Lua body.
const BODIES: [(&str, &str); 20] = [
    ("register", include_str!("lua/register.lua")),
    ("unregister", include_str!("lua/unregister.lua")),
    ("heartbeat", include_str!("lua/heartbeat.lua")),
    ("check", include_str!("lua/check.lua")),
    ("tree", include_str!("lua/tree.lua")),
    ("mkdir", include_str!("lua/mkdir.lua")),
    ("rmdir", include_str!("lua/rmdir.lua")),
    ("rename", include_str!("lua/rename.lua")),
    ("set_attrs", include_str!("lua/set_attrs.lua")),
    ("set_policy", include_str!("lua/set_policy.lua")),
    ("open", include_str!("lua/open.lua")),
    ("close", include_str!("lua/close.lua")),
    ("send", include_str!("lua/send.lua")),
    ("receive", include_str!("lua/receive.lua")),
    ("cancel_receive", include_str!("lua/cancel_receive.lua")),
    ("cancel_send", include_str!("lua/cancel_send.lua")),
    ("give_back", include_str!("lua/give_back.lua")),
    ("ack", include_str!("lua/ack.lua")),
    ("truncated", include_str!("lua/truncated.lua")),
    ("status", include_str!("lua/status.lua")),
];

/// The library: its name (`ipcfs_` and the hash of its text) and its code.
/// Every operation other than the growing ones runs also past
/// `maxmemory` (`allow-oom`): it takes messages out, releases holds or
/// leases, or reads, so a full broker can always be drained.
static LIBRARY: LazyLock<(String, String)> = LazyLock::new(|| {
    // The text with each function named `PREFIX` and its name.
    let text = |prefix: &str| {
        let mut body = String::from(COMMON);
        for (name, code) in BODIES {
            let flags = if GROWING.contains(&name) {
                ""
            } else {
                "'allow-oom'"
            };
            body.push_str(&format!(
                "\nredis.register_function{{function_name='{prefix}{name}', \
                 callback=function(_, ARGV)\nNODE, TOKEN = ARGV[1], ARGV[2]\n{code}\nend, \
                 flags={{{flags}}}}}\n"
            ));
        }
        body
    };
    // FNV-1a: a name for this text, the same in every daemon built from it.
    let hash = text("").bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let lib = format!("ipcfs_{hash:016x}");
    let code = format!("#!lua name={lib}\n{}", text(&format!("{lib}_")));
    (lib, code)
});

/// Loads the library on the broker (again).
pub fn load(conn: &mut Connection) -> RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&LIBRARY.1)
        .query(conn)
}

/// One operation of the library.
pub struct Function(&'static str);

impl Function {
    /// A call of it, its arguments to come.
    pub fn call(&self) -> Call {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(format!("{}_{}", LIBRARY.0, self.0)).arg(0);
        Call(cmd)
    }

    pub fn arg<T: ToRedisArgs>(&self, a: T) -> Call {
        let mut c = self.call();
        c.arg(a);
        c
    }
}

/// A call of a function of the library.
pub struct Call(redis::Cmd);

impl Call {
    pub fn arg<T: ToRedisArgs>(&mut self, a: T) -> &mut Call {
        self.0.arg(a);
        self
    }

    /// Makes the call; a broker that does not know the library gets it
    /// and the call is made again.
    pub fn invoke<T: FromRedisValue>(&self, conn: &mut Connection) -> RedisResult<T> {
        match self.0.query(conn) {
            Err(e) if e.to_string().contains("Function not found") => {
                load(conn)?;
                self.0.query(conn)
            }
            other => other,
        }
    }
}

macro_rules! functions {
    ($($name:ident),* $(,)?) => {
        /// The operations, by name.
        pub struct Scripts {
            $(pub $name: Function,)*
        }

        impl Scripts {
            pub fn new() -> Scripts {
                Scripts {
                    $($name: Function(stringify!($name)),)*
                }
            }
        }
    };
}

functions!(
    register,
    unregister,
    heartbeat,
    check,
    tree,
    mkdir,
    rmdir,
    rename,
    set_attrs,
    set_policy,
    open,
    close,
    send,
    receive,
    cancel_receive,
    cancel_send,
    give_back,
    ack,
    truncated,
    status,
);
