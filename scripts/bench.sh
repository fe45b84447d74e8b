#!/usr/bin/env bash
# ipcfs benchmark: ipcfs figures next to native IPC (pipe, SOCK_SEQPACKET).
#
#   bash scripts/bench.sh            (as root; finishes in well under 3 minutes)
#
# Builds the release binary, mounts it on a temporary directory in the
# background, runs a small C helper for each test and prints a table:
#   (a) one-way throughput, 64-byte messages, one writer -> one reader
#   (b) ping-pong round-trip latency
#   (c) ~1 MiB message throughput (the maximum message size, 1,044,480 B here)
#   (d) the daemon's VmRSS before and after
# Environment: BENCH_N (default 50000), BENCH_RT (10000), BENCH_BIG (1000),
# BENCH_TIMEOUT per test in seconds (default 40).
# Always unmounts and stops the daemon on exit.

set -u

N=${BENCH_N:-50000}
RT=${BENCH_RT:-10000}
BIG=${BENCH_BIG:-1000}
TMO=${BENCH_TIMEOUT:-40}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/ipcfs-bench.XXXXXX)
MNT="$WORK/mnt"
DAEMON_PID=""

log() { printf '%s\n' "$*" >&2; }

is_mounted() {
    # field 5 of mountinfo is the mount point
    awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

cleanup() {
    local i
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for i in $(seq 1 50); do
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            log "bench: daemon did not exit after SIGTERM; killing it"
            kill -KILL "$DAEMON_PID" 2>/dev/null
        fi
        wait "$DAEMON_PID" 2>/dev/null
    fi
    if is_mounted "$MNT"; then
        umount -l "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null
    fi
    if is_mounted "$MNT"; then
        log "bench: $MNT is still mounted; leaving $WORK in place"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- build
log "bench: cargo build --release"
(cd "$ROOT" && timeout 600 cargo build --release --quiet) || { log "bench: build failed"; exit 1; }
BIN="$ROOT/target/release/ipcfs"
[ -x "$BIN" ] || { log "bench: $BIN missing"; exit 1; }

# ---------------------------------------------------------------- C helper
cat > "$WORK/ipcbench.c" <<'CEOF'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { fprintf(stderr, "ipcbench: %s: %s\n", what, strerror(errno)); exit(1); }
static void fail(const char *what) { fprintf(stderr, "ipcbench: %s\n", what); exit(1); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *abuf(size_t n) {
    void *p;
    if (posix_memalign(&p, 4096, n + 4096)) fail("out of memory");
    memset(p, 0, n + 4096);
    return p;
}

static int xopen(const char *path, int flags) {
    int fd;
    do fd = open(path, flags); while (fd < 0 && errno == EINTR);
    if (fd < 0) { fprintf(stderr, "ipcbench: open %s: %s\n", path, strerror(errno)); exit(1); }
    return fd;
}

/* write one whole record; a message file must take it in one write(2) */
static void put(int fd, const char *buf, size_t n, int is_msg) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0) { if (errno == EINTR) continue; die("write"); }
        if (is_msg && (size_t)w != n) fail("short write on a message file");
        off += (size_t)w;
    }
}

/* stream (pipe): read exactly n bytes */
static void get_stream(int fd, char *buf, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, buf + off, n - off);
        if (r < 0) { if (errno == EINTR) continue; die("read"); }
        if (r == 0) fail("unexpected end of stream");
        off += (size_t)r;
    }
}

/* message file (ipcfs recv): read one message and its end of file; returns its size */
static size_t get_msg(int fd, char *buf, size_t cap) {
    size_t off = 0;
    for (;;) {
        ssize_t r = read(fd, buf + off, cap - off);
        if (r < 0) { if (errno == EINTR) continue; die("read"); }
        if (r == 0) { if (off == 0) fail("end of file before a message"); return off; }
        off += (size_t)r;
        if (off == cap) fail("message larger than expected");
    }
}

/* seqpacket: one record per recv */
static size_t get_pkt(int fd, char *buf, size_t cap) {
    for (;;) {
        ssize_t r = recv(fd, buf, cap, 0);
        if (r < 0) { if (errno == EINTR) continue; die("recv"); }
        if (r == 0) fail("socket closed");
        return (size_t)r;
    }
}

enum kind { MSG, STREAM, PKT };

static void receive(enum kind k, int fd, char *buf, size_t size) {
    size_t got;
    switch (k) {
    case MSG: got = get_msg(fd, buf, size + 4096); break;
    case PKT: got = get_pkt(fd, buf, size + 4096); break;
    default: get_stream(fd, buf, size); got = size; break;
    }
    if (got != size) { fprintf(stderr, "ipcbench: got %zu bytes, expected %zu\n", got, size); exit(1); }
}

/* sync: child says ready on rdy[1], waits for go[0] */
struct sync { int rdy[2], go[2]; };
static void sync_init(struct sync *s) { if (pipe(s->rdy) || pipe(s->go)) die("pipe"); }
static void child_ready(struct sync *s) {
    char c = 'r';
    if (write(s->rdy[1], &c, 1) != 1 || read(s->go[0], &c, 1) != 1) fail("sync (child)");
}
static void parent_go(struct sync *s) {
    char c;
    if (read(s->rdy[0], &c, 1) != 1) fail("child failed before starting");
    if (write(s->go[1], &c, 1) != 1) fail("sync (parent)");
}
static int reap(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) if (errno != EINTR) die("waitpid");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ---- one-way throughput: child writes n records, parent reads them */
static void throughput(enum kind k, int wfd_child, int rfd_parent,
                       const char *wpath, const char *rpath, long n, size_t size) {
    struct sync s; sync_init(&s);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int fd = wpath ? xopen(wpath, O_WRONLY) : wfd_child;
        char *buf = abuf(size);
        memset(buf, 'x', size);
        child_ready(&s);
        for (long i = 0; i < n; i++) {
            memcpy(buf, &i, sizeof i);
            put(fd, buf, size, k != STREAM);
        }
        _exit(0);
    }
    int fd = rpath ? xopen(rpath, O_RDONLY) : rfd_parent;
    char *buf = abuf(size + 4096);
    parent_go(&s);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        long seq;
        receive(k, fd, buf, size);
        memcpy(&seq, buf, sizeof seq);
        if (seq != i) { fprintf(stderr, "ipcbench: message %ld arrived as #%ld\n", seq, i); exit(1); }
    }
    double dt = now() - t0;
    if (!reap(pid)) fail("writer failed");
    /* elapsed_s  messages_per_s  MiB_per_s */
    printf("%.6f %.1f %.2f\n", dt, n / dt, n * (double)size / dt / 1048576.0);
}

/* ---- ping-pong: parent sends on (p_w), child answers on (c_w) */
static void pingpong(enum kind k, const char *ping_send, const char *ping_recv,
                     const char *pong_send, const char *pong_recv,
                     int pipe_fds[4], long n) {
    const size_t size = 64;
    struct sync s; sync_init(&s);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int rfd = ping_recv ? xopen(ping_recv, O_RDONLY) : pipe_fds[0];
        int wfd = pong_send ? xopen(pong_send, O_WRONLY) : pipe_fds[3];
        char *buf = abuf(size + 4096);
        child_ready(&s);
        for (long i = 0; i < n; i++) {
            receive(k, rfd, buf, size);
            put(wfd, buf, size, k != STREAM);
        }
        _exit(0);
    }
    int wfd = ping_send ? xopen(ping_send, O_WRONLY) : pipe_fds[1];
    int rfd = pong_recv ? xopen(pong_recv, O_RDONLY) : pipe_fds[2];
    char *buf = abuf(size + 4096);
    memset(buf, 'p', size);
    parent_go(&s);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        memcpy(buf, &i, sizeof i);
        put(wfd, buf, size, k != STREAM);
        receive(k, rfd, buf, size);
        long seq; memcpy(&seq, buf, sizeof seq);
        if (seq != i) fail("ping-pong out of order");
    }
    double dt = now() - t0;
    if (!reap(pid)) fail("ponger failed");
    /* elapsed_s  round_trips_per_s  us_per_round_trip */
    printf("%.6f %.1f %.2f\n", dt, n / dt, dt / n * 1e6);
}

/* ping-pong over a direct link: parent <-> child by pid under MNT/proc */
static void pingpong_link(const char *mnt, long n) {
    const size_t size = 64;
    struct sync s; sync_init(&s);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    char a[4096], b[4096];
    if (pid == 0) {
        snprintf(a, sizeof a, "%s/proc/%d/recv", mnt, (int)parent);
        snprintf(b, sizeof b, "%s/proc/%d/send", mnt, (int)parent);
        int rfd = xopen(a, O_RDONLY), wfd = xopen(b, O_WRONLY);
        char *buf = abuf(size + 4096);
        child_ready(&s);
        for (long i = 0; i < n; i++) { receive(MSG, rfd, buf, size); put(wfd, buf, size, 1); }
        _exit(0);
    }
    snprintf(a, sizeof a, "%s/proc/%d/send", mnt, (int)pid);
    snprintf(b, sizeof b, "%s/proc/%d/recv", mnt, (int)pid);
    int wfd = xopen(a, O_WRONLY), rfd = xopen(b, O_RDONLY);
    char *buf = abuf(size + 4096);
    memset(buf, 'p', size);
    parent_go(&s);
    double t0 = now();
    for (long i = 0; i < n; i++) { put(wfd, buf, size, 1); receive(MSG, rfd, buf, size); }
    double dt = now() - t0;
    if (!reap(pid)) fail("ponger failed");
    printf("%.6f %.1f %.2f\n", dt, n / dt, dt / n * 1e6);
}

int main(int argc, char **argv) {
    alarm(120); /* never hang, whatever happens */
    if (argc < 2) fail("usage: ipcbench MODE ARGS...");
    const char *m = argv[1];
    if (!strcmp(m, "thr-file") && argc == 6) {          /* SEND RECV N SIZE */
        throughput(MSG, -1, -1, argv[2], argv[3], atol(argv[4]), (size_t)atol(argv[5]));
    } else if (!strcmp(m, "thr-pipe") && argc == 4) {   /* N SIZE */
        int p[2]; if (pipe(p)) die("pipe");
        throughput(STREAM, p[1], p[0], NULL, NULL, atol(argv[2]), (size_t)atol(argv[3]));
    } else if (!strcmp(m, "thr-seqpacket") && argc == 4) {
        int sv[2]; if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv)) die("socketpair");
        throughput(PKT, sv[1], sv[0], NULL, NULL, atol(argv[2]), (size_t)atol(argv[3]));
    } else if (!strcmp(m, "pp-file") && argc == 7) {    /* PING_SEND PING_RECV PONG_SEND PONG_RECV N */
        pingpong(MSG, argv[2], argv[3], argv[4], argv[5], NULL, atol(argv[6]));
    } else if (!strcmp(m, "pp-pipe") && argc == 3) {    /* N */
        int fds[4]; if (pipe(fds) || pipe(fds + 2)) die("pipe");
        pingpong(STREAM, NULL, NULL, NULL, NULL, fds, atol(argv[2]));
    } else if (!strcmp(m, "pp-seqpacket") && argc == 3) {
        int a[2], b[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, a) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, b)) die("socketpair");
        int fds[4] = { a[0], a[1], b[0], b[1] };
        pingpong(PKT, NULL, NULL, NULL, NULL, fds, atol(argv[2]));
    } else if (!strcmp(m, "pp-link") && argc == 4) {    /* MNT N */
        pingpong_link(argv[2], atol(argv[3]));
    } else {
        fail("bad arguments");
    }
    return 0;
}
CEOF
cc -O2 -Wall -o "$WORK/ipcbench" "$WORK/ipcbench.c" || { log "bench: cannot compile the C helper"; exit 1; }
HELPER="$WORK/ipcbench"

# ---------------------------------------------------------------- mount
mkdir -p "$MNT"
"$BIN" "$MNT" 2> "$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 100); do
    is_mounted "$MNT" && break
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
done
if ! is_mounted "$MNT"; then
    log "bench: ipcfs did not mount on $MNT"
    cat "$WORK/daemon.log" >&2
    exit 1
fi

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status" 2>/dev/null; }

RSS_BEFORE=$(rss_kib)
MAXMSG=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^max-message-size=/) { sub(/.*=/, "", $i); print $i } }' "$MNT/policy" 2>/dev/null)
case "$MAXMSG" in ''|*[!0-9]*) MAXMSG=1044480 ;; esac
BIGSIZE=$(( MAXMSG < 1048576 ? MAXMSG : 1048576 ))

for box in thr big ping pong; do
    mkdir "$MNT/$box" || { log "bench: mkdir $MNT/$box failed"; exit 1; }
done
# big messages: a short queue keeps the writer within --max-memory (256M by default)
echo "capacity=16" > "$MNT/big/policy" 2>/dev/null || log "bench: could not set capacity of big/"

# run HELPER ARGS..., print its output line or "FAIL"
run() {
    local out
    if out=$(timeout -k 5 "$TMO" "$HELPER" "$@" 2> "$WORK/err"); then
        printf '%s\n' "$out"
    else
        log "bench: $1 failed: $(tr '\n' ' ' < "$WORK/err")"
        echo "FAIL"
    fi
}
field() { [ "$1" = FAIL ] && echo FAIL || awk -v i="$2" '{ print $i }' <<< "$1"; }

log "bench: (a) throughput, $N x 64 B"
A_FS=$(run thr-file "$MNT/thr/send" "$MNT/thr/recv" "$N" 64)
A_PIPE=$(run thr-pipe "$N" 64)
A_SEQ=$(run thr-seqpacket "$N" 64)

log "bench: (b) ping-pong, $RT round trips"
B_FS=$(run pp-file "$MNT/ping/send" "$MNT/ping/recv" "$MNT/pong/send" "$MNT/pong/recv" "$RT")
B_LINK=$(run pp-link "$MNT" "$RT")
B_PIPE=$(run pp-pipe "$RT")
B_SEQ=$(run pp-seqpacket "$RT")

log "bench: (c) throughput, $BIG x $BIGSIZE B"
C_FS=$(run thr-file "$MNT/big/send" "$MNT/big/recv" "$BIG" "$BIGSIZE")
C_PIPE=$(run thr-pipe "$BIG" "$BIGSIZE")

RSS_AFTER=$(rss_kib)
HWM=$(hwm_kib)

# ---------------------------------------------------------------- report
ratio() { # ipcfs / native
    case "$1$2" in *FAIL*|'') echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }' ;; esac
}
row() { printf '%-44s %14s %14s %9s\n' "$1" "$2" "$3" "$4"; }

echo
echo "ipcfs benchmark — $(uname -r), $(nproc) CPUs, fs.fuse.max_pages_limit=$(sysctl -n fs.fuse.max_pages_limit 2>/dev/null || echo '?')"
echo "ratio = ipcfs / native (throughput: below 1 is slower; latency: above 1 is slower)"
echo
row "test" "ipcfs" "native" "ratio"
row "----" "-----" "------" "-----"
x=$(field "$A_FS" 2); y=$(field "$A_PIPE" 2)
row "(a) 64 B msgs/s, 1 writer -> 1 reader, pipe" "$x" "$y" "$(ratio "$x" "$y")"
y=$(field "$A_SEQ" 2)
row "(a) 64 B msgs/s, vs SOCK_SEQPACKET" "$x" "$y" "$(ratio "$x" "$y")"
x=$(field "$B_FS" 3); y=$(field "$B_PIPE" 3)
row "(b) round trip us, mailbox pair vs pipe pair" "$x" "$y" "$(ratio "$x" "$y")"
x2=$(field "$B_LINK" 3)
row "(b) round trip us, proc/<pid> link vs pipe" "$x2" "$y" "$(ratio "$x2" "$y")"
y=$(field "$B_SEQ" 3)
row "(b) round trip us, mailbox vs SEQPACKET" "$x" "$y" "$(ratio "$x" "$y")"
x=$(field "$C_FS" 3); y=$(field "$C_PIPE" 3)
row "(c) $BIGSIZE B msgs, MiB/s, vs pipe" "$x" "$y" "$(ratio "$x" "$y")"
x=$(field "$C_FS" 2); y=$(field "$C_PIPE" 2)
row "(c) $BIGSIZE B msgs/s, vs pipe" "$x" "$y" "$(ratio "$x" "$y")"
row "(d) daemon VmRSS before, KiB" "${RSS_BEFORE:-?}" "-" "-"
row "(d) daemon VmRSS after, KiB" "${RSS_AFTER:-?}" "-" "-"
row "(d) daemon VmHWM (peak), KiB" "${HWM:-?}" "-" "-"
echo
echo "N=$N (a), $RT round trips (b), $BIG messages of $BIGSIZE B (c), mailbox capacity 16 for (c)."
echo "Pipes carry fixed-size records through their default 64 KiB buffer; every ipcfs"
echo "message is read as data plus a 0-byte end of file (two FUSE round trips)."

status=0
for v in "$A_FS" "$A_PIPE" "$A_SEQ" "$B_FS" "$B_LINK" "$B_PIPE" "$B_SEQ" "$C_FS" "$C_PIPE"; do
    [ "$v" = FAIL ] && status=1
done
exit $status
