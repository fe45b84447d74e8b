#!/usr/bin/env bash
# ipcfs benchmark: builds the release binary, then runs the bench binary
# benches/ipc/ (main.rs), which mounts ipcfs and "the floor" (a minimal fuser mount
# built into the benchmark) on temporary directories and prints one table:
# ping-pong round trips and one-way throughput for 64 B, 4 KiB, 64 KiB and
# 1 MiB messages through ipcfs (send/recv, packets, batch, proc/<pid> links),
# a pipe, SOCK_SEQPACKET, POSIX mq and the floor; shell loops; 4 senders x
# 4 receivers; round trips with many mailboxes and parked readers; the
# daemon's CPU time per message and its memory; and, through a redis-server it
# starts on a free port (tests/common's harness; `apt-get install redis-server`),
# the broker rows: a baseline with the redis crate alone (Lua capacity check +
# XADD, XREAD BLOCK: round trips, one-way latency, 100-send pipelines) next to
# two mounts `--broker URL --node a|b` (packets a->b->a, one-way, batch).
# A broker mount that fails to start makes its rows "n/a (broker mount failed:
# REASON)"; the rest of the table is unchanged.
#
#   bash scripts/bench.sh            full run (about a minute or two on 2 cores)
#   bash scripts/bench.sh --quick    64 B and 1 MiB only, fewer repeats: under a minute
#
# Run as root with /dev/fuse. Figures are printed, never asserted. The bench
# keeps a deadline on every step and always unmounts what it mounted.

set -euo pipefail

usage() {
    echo "usage: bash scripts/bench.sh [--quick]" >&2
}

for arg in "$@"; do
    case "$arg" in
        --quick | --full) ;;
        -h | --help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: run as root: it mounts FUSE filesystems" >&2
    exit 1
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "bench: cargo build --release" >&2
cargo build --release --quiet
exec cargo bench --quiet --bench ipc -- "$@"
