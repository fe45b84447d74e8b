//! The Lua scripts, one per operation, each run atomically on the broker.
//! Every script starts with `lua/common.lua` (fencing, the reaper, hand-off
//! to waiting readers); `redis::Script` runs it by its SHA1 and loads it
//! again when the broker has forgotten it (a restart).

use redis::Script;

/// The operations that store more on the broker: refused with `OOM`
/// (`ENOBUFS`) when it is past its `maxmemory`.
const GROWING: [&str; 5] = ["send", "mkdir", "rename", "set_attrs", "set_policy"];

/// Every other operation runs also past `maxmemory` (`allow-oom`): it
/// takes messages out, releases holds or leases, or reads, so a full
/// broker can always be drained.
fn shebang(name: &str) -> &'static str {
    if GROWING.contains(&name) {
        ""
    } else {
        "#!lua flags=allow-oom\n"
    }
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        /// The scripts, by operation.
        pub struct Scripts {
            $(pub $name: Script,)*
        }

        impl Scripts {
            pub fn new() -> Scripts {
                const COMMON: &str = include_str!("lua/common.lua");
                Scripts {
                    $($name: Script::new(&format!(
                        "{}{COMMON}\n{}",
                        shebang(stringify!($name)),
                        include_str!(concat!("lua/", stringify!($name), ".lua"))
                    )),)*
                }
            }

            /// Every script (to load them at connect time).
            pub fn all(&self) -> Vec<&Script> {
                vec![$(&self.$name,)*]
            }
        }
    };
}

scripts!(
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
