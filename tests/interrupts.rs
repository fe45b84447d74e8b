//! Blocked calls behave like a pipe's (ipcfs(7) BLOCKING AND INTERRUPTS): the kernel's
//! `FUSE_INTERRUPT` ends a parked read or write at once with `EINTR` (or
//! lets the signal kill the process), senders never queue in the kernel
//! behind a blocked sender, and nobody sleeps in state D; `timeout -s INT`,
//! SIGKILL and a handled signal end a reader parked in `recv` at once and
//! leave the next message for the next reader.
//!
//! Every blocking step has a deadline; the deadlines guard against hangs and
//! are not latency assertions (latency is measured in `scripts/bench.sh`).

mod common;
use common::*;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// `cat <box>/recv` with every signal at its default action (the test
/// harness may ignore some), in its own process group.
fn cat_recv(b: &Path) -> Bg {
    let mut cmd = Command::new("cat");
    cmd.arg(b.join("recv"));
    default_signals(&mut cmd);
    Bg::spawn(cmd, "cat recv")
}

/// The message a reader was waiting for is still there for the next one.
fn message_stays(b: &Path) {
    wait_status(&b.join("status"), "receivers-waiting", "0");
    send_nb(&b.join("send"), b"for the next reader").expect("send");
    assert_eq!(
        recv_nb(&b.join("recv")).expect("receive"),
        b"for the next reader",
        "the interrupted reader consumed nothing"
    );
}

fn parked_reader_ends_on(sig: i32) {
    let m = Mount::new();
    let b = m.mailbox("sig", "");
    let cat = cat_recv(&b);
    wait_status(&b.join("status"), "receivers-waiting", "1");
    assert_eq!(
        proc_state(cat.pid()),
        'S',
        "a parked reader sleeps interruptibly"
    );
    cat.signal(sig);
    let o = cat.wait_timeout(DEADLINE);
    assert_eq!(o.status.signal(), Some(sig), "{}", show(&o));
    message_stays(&b);
}

#[test]
fn parked_reader_ends_on_sigint() {
    parked_reader_ends_on(libc::SIGINT);
}

#[test]
fn parked_reader_ends_on_sigterm() {
    parked_reader_ends_on(libc::SIGTERM);
}

#[test]
fn parked_reader_ends_on_sigquit() {
    parked_reader_ends_on(libc::SIGQUIT);
}

#[test]
fn parked_reader_ends_on_sigkill() {
    parked_reader_ends_on(libc::SIGKILL);
}

/// A traced reader (strace) is ended by a fatal signal too: the kernel
/// interrupts it for the tracer's signal-delivery stop.
#[test]
fn traced_parked_reader_ends_on_sigterm() {
    let m = Mount::new();
    let b = m.mailbox("traced", "");
    let mut cmd = Command::new("strace");
    cmd.args(["-qq", "-o", "/dev/null", "cat"])
        .arg(b.join("recv"));
    default_signals(&mut cmd);
    let strace = Bg::spawn(cmd, "strace cat recv");
    wait_status(&b.join("status"), "receivers-waiting", "1");
    // The traced cat is strace's only child.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.pid()))
        .expect("strace's children");
    let cat: i32 = children.trim().parse().expect("one traced child");
    // SAFETY: kill(2) of our grandchild, alive while strace waits for it.
    unsafe { libc::kill(cat, libc::SIGTERM) };
    let o = strace.wait_timeout(DEADLINE);
    // strace exits with the signal its tracee died of.
    assert_eq!(o.status.signal(), Some(libc::SIGTERM), "{}", show(&o));
    message_stays(&b);
}

/// `strace -p` attaches to a reader parked in `read` of `recv` at once, as
/// it does to a pipe reader: the attach interrupts the call with no signal
/// pending, and a traced thread's call ends with `EINTR` (never kept
/// waiting in state D until the next message). `cat` retries the read
/// (gnulib's safe_read), parks again, and still gets the message.
#[test]
fn strace_attaches_to_a_parked_reader_at_once() {
    let m = Mount::new();
    let b = m.mailbox("attach", "");
    let cat = cat_recv(&b);
    wait_status(&b.join("status"), "receivers-waiting", "1");
    let trace = tempfile::NamedTempFile::new().expect("trace file");
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "strace", "-o"])
        .arg(trace.path())
        .args(["-p", &cat.pid().to_string()]);
    let strace = Bg::spawn(cmd, "strace -p");
    // strace writes the read it sees once it has attached: the retried one.
    wait_until(DEADLINE, "strace attached and saw the read", || {
        std::fs::read_to_string(trace.path()).is_ok_and(|t| t.contains("read("))
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", cat.pid())).unwrap();
    assert!(
        !status.contains("TracerPid:\t0\n"),
        "cat is traced: {status}"
    );
    wait_status(&b.join("status"), "receivers-waiting", "1");
    assert_eq!(proc_state(cat.pid()), 'S', "the traced reader parked again");
    send_nb(&b.join("send"), b"hello\n").expect("send");
    let o = cat.wait_timeout(DEADLINE);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(out_str(&o), "hello\n", "the traced reader got the message");
    let o = strace.wait_timeout(DEADLINE);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("attached"),
        "{}",
        show(&o)
    );
    let t = std::fs::read_to_string(trace.path()).unwrap();
    assert!(t.contains("read(3, \"hello\\n\""), "trace:\n{t}");
}

/// A burst of interrupts while hundreds of readers are parked: each
/// interrupted reader ends, the others keep waiting in state S (not D, as
/// once the kernel gave up on interrupts), and still get a message each.
#[test]
fn burst_of_interrupts_among_hundreds_of_parked_readers() {
    let m = Mount::new();
    let b = m.mailbox("crowd", "");
    let mut cats: Vec<Bg> = (0..200).map(|_| cat_recv(&b)).collect();
    wait_until(DEADLINE, "200 readers parked", || {
        count(&b, "receivers-waiting") == 200
    });
    let rest = cats.split_off(100);
    for c in &cats {
        c.signal(libc::SIGINT);
    }
    for c in cats {
        let o = c.wait_timeout(DEADLINE);
        assert_eq!(o.status.signal(), Some(libc::SIGINT), "{}", show(&o));
    }
    wait_status(&b.join("status"), "receivers-waiting", "100");
    // New readers after the burst sleep interruptibly as well.
    let late: Vec<Bg> = (0..20).map(|_| cat_recv(&b)).collect();
    wait_status(&b.join("status"), "receivers-waiting", "120");
    for c in rest.iter().chain(&late) {
        assert_eq!(
            proc_state(c.pid()),
            'S',
            "reader {} after the burst",
            c.pid()
        );
    }
    let sender = m.sh(
        "for i in $(seq 1 120); do echo \"m$i\" > \"$M/crowd/send\" || exit 1; done",
        DEADLINE,
    );
    assert!(sender.status.success(), "{}", show(&sender));
    let mut got: Vec<String> = rest
        .into_iter()
        .chain(late)
        .map(|c| out_str(&c.wait_timeout(DEADLINE)))
        .collect();
    got.sort();
    let mut want: Vec<String> = (1..=120).map(|i| format!("m{i}\n")).collect();
    want.sort();
    assert_eq!(got, want, "one message for each parked reader");
}

/// bash's SIGCHLD (a background job ends) reaches a blocked builtin `read`
/// and `echo >`: the calls wait on and complete, as they would on a pipe.
#[test]
fn background_job_ending_does_not_break_blocked_shell_calls() {
    let m = Mount::new();
    let b = m.mailbox("job", "");
    let reader = m.spawn_sh(r#"sleep 0.3 & read -r line < "$M/job/recv"; echo "rc=$? line=$line""#);
    wait_status(&b.join("status"), "receivers-waiting", "1");
    // The job has ended (and bash got its SIGCHLD) when bash has no child.
    let children = format!("/proc/{0}/task/{0}/children", reader.pid());
    wait_until(DEADLINE, "the background job ended", || {
        job_ended(&children)
    });
    assert_eq!(count(&b, "receivers-waiting"), 1, "still waiting");
    send_nb(&b.join("send"), b"after the job\n").expect("send");
    let o = reader.wait_timeout(DEADLINE);
    assert_eq!(out_str(&o), "rc=0 line=after the job\n", "{}", show(&o));

    // The same for a sender blocked on a rendezvous.
    set_policy(&b.join("policy"), "capacity=0");
    let sender = m.spawn_sh(r#"sleep 0.3 & echo hello > "$M/job/send"; echo "rc=$?""#);
    wait_status(&b.join("status"), "senders-waiting", "1");
    let children = format!("/proc/{0}/task/{0}/children", sender.pid());
    wait_until(DEADLINE, "the background job ended", || {
        job_ended(&children)
    });
    assert_eq!(count(&b, "senders-waiting"), 1, "still waiting");
    assert_eq!(recv(&b), b"hello\n");
    let o = sender.wait_timeout(DEADLINE);
    assert_eq!(out_str(&o), "rc=0\n", "{}", show(&o));
}

/// After a SIGCHLD kept it waiting, the kernel sends no second interrupt:
/// a later SIGTERM still ends the call (the daemon looks for itself).
#[test]
fn a_call_kept_waiting_after_sigchld_still_ends_on_sigterm() {
    let m = Mount::new();
    let b = m.mailbox("later", "");
    let reader = m.spawn_sh(r#"sleep 0.2 & read -r line < "$M/later/recv""#);
    wait_status(&b.join("status"), "receivers-waiting", "1");
    let children = format!("/proc/{0}/task/{0}/children", reader.pid());
    wait_until(DEADLINE, "the background job ended", || {
        job_ended(&children)
    });
    reader.signal(libc::SIGTERM);
    let o = reader.wait_timeout(DEADLINE);
    assert_eq!(o.status.signal(), Some(libc::SIGTERM), "{}", show(&o));
    message_stays(&b);
}

/// Whether every child listed in `children` (a `/proc/…/children` file) has
/// exited: a zombie, which bash reaps in its SIGCHLD handler once its
/// blocked call returns.
fn job_ended(children: &str) -> bool {
    std::fs::read_to_string(children).is_ok_and(|c| {
        c.split_whitespace()
            .all(|pid| proc_state(pid.parse().unwrap_or(0)) == 'Z')
    })
}

/// 100 senders blocked on one full `send` file: each reaches the daemon
/// (counted, state S), an `O_NONBLOCK` send gets `EAGAIN` at once, even
/// one that truncates on open like `echo >` does, and SIGKILL ends them all.
#[test]
fn a_hundred_blocked_senders_never_wait_in_the_kernel() {
    let m = Mount::new();
    let b = m.mailbox("full", "");
    set_policy(&b.join("policy"), "capacity=0");
    let senders: Vec<Bg> = (0..100)
        .map(|i| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(format!("exec /bin/echo s{i} > \"$1\""))
                .arg("sh")
                .arg(b.join("send"));
            default_signals(&mut cmd);
            Bg::spawn(cmd, "echo > send")
        })
        .collect();
    wait_until(DEADLINE, "100 senders parked in the daemon", || {
        count(&b, "senders-waiting") == 100
    });
    for s in &senders {
        assert_eq!(
            proc_state(s.pid()),
            'S',
            "sender {} sleeps interruptibly",
            s.pid()
        );
    }
    let send = b.join("send");
    for trunc in [0, libc::O_TRUNC] {
        let p = send.clone();
        let r = within(DEADLINE, "O_NONBLOCK send", move || {
            open_with(&p, false, true, libc::O_NONBLOCK | trunc)
                .and_then(|mut f| f.write(b"no room"))
        });
        assert_errno(r, libc::EAGAIN, "O_NONBLOCK send into a full mailbox");
    }
    for s in &senders {
        s.signal(libc::SIGKILL);
    }
    for s in senders {
        let o = s.wait_timeout(DEADLINE);
        assert_eq!(o.status.signal(), Some(libc::SIGKILL));
    }
    wait_status(&b.join("status"), "senders-waiting", "0");
    assert_eq!(count(&b, "messages"), 0, "killed senders sent nothing");
}

/// One user's full link to a process does not hold up another user's send
/// to the same process (`proc/P/send` is one path for every sender).
#[test]
fn a_full_link_does_not_block_another_users_send_to_the_same_process() {
    let m = Mount::with_args(&["--capacity", "1"]);
    let p = hold(&[], Some(NOBODY)).expect("a process of nobody's");
    let send = m.p(&format!("proc/{}/send", p.pid()));
    // A root shell fills its link to P and blocks on the next message.
    let root = m.spawn_sh(&format!(
        "echo first > \"$M/proc/{0}/send\"; echo second > \"$M/proc/{0}/send\"",
        p.pid()
    ));
    wait_until(DEADLINE, "root's second send is parked", || {
        num(&status_map(&m.p("proc/status")), "parked") == 1
    });
    // Another user sends to P at once, truncating on open as `echo >` does.
    let o = m.sh_as_nobody(
        &format!("echo from-nobody > \"{}\" && echo ok", send.display()),
        DEADLINE,
    );
    assert_eq!(out_str(&o), "ok\n", "{}", show(&o));
    drop(root);
    drop(p);
}

/// A plain `echo > send` while another sender is parked on the same
/// mailbox: it reaches the daemon and parks too (its open truncates, which
/// would wait for the kernel's inode lock if both shared one inode).
#[test]
fn echo_into_a_mailbox_with_a_parked_sender_parks_in_the_daemon() {
    let m = Mount::new();
    let b = m.mailbox("two", "");
    set_policy(&b.join("policy"), "capacity=0");
    let first = m.spawn_sh(r#"echo a > "$M/two/send""#);
    wait_status(&b.join("status"), "senders-waiting", "1");
    let second = m.spawn_sh(r#"exec /bin/echo b > "$M/two/send""#);
    wait_status(&b.join("status"), "senders-waiting", "2");
    assert_eq!(proc_state(second.pid()), 'S');
    second.signal(libc::SIGKILL);
    second.wait_timeout(DEADLINE);
    wait_status(&b.join("status"), "senders-waiting", "1");
    assert_eq!(recv(&b), b"a\n");
    assert!(first.wait_timeout(DEADLINE).status.success());
    assert_eq!(count(&b, "messages"), 0, "the killed sender sent nothing");
}

// ------------------------------------------- signals at a reader parked in recv

#[test]
fn timeout_sigint_ends_blocked_cat_quickly_and_message_is_not_lost() {
    let m = Mount::new();
    let b = m.mailbox("int", "");
    let start = Instant::now();
    let o = m.sh(
        "timeout -s INT 1 cat \"$M/int/recv\"; echo \"rc=$?\"",
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "timeout -s INT 1 cat took {took:?} (must end within 0.5 s of the signal): {}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("rc=124"),
        "timeout should report the command timed out: {}",
        show(&o)
    );
    wait_status(&b.join("status"), "receivers-waiting", "0");
    send(&b, b"after the interrupt");
    assert_eq!(
        status_of(&b, "messages"),
        "1",
        "the interrupted reader must not consume the next message"
    );
    assert_eq!(recv(&b), b"after the interrupt");
}

#[test]
fn sigkill_of_blocked_cat_takes_effect_quickly() {
    let m = Mount::new();
    let b = m.mailbox("kill", "");
    let cat = m.spawn_sh("exec cat \"$M/kill/recv\"");
    wait_status(&b.join("status"), "receivers-waiting", "1");
    let start = Instant::now();
    cat.signal(libc::SIGKILL);
    let o = cat.wait_timeout(Duration::from_millis(1500));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "SIGKILL took {:?}",
        start.elapsed()
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(libc::SIGKILL)
    );
    wait_status(&b.join("status"), "receivers-waiting", "0");
    send(&b, b"for the next one");
    assert_eq!(status_of(&b, "messages"), "1");
    assert_eq!(recv(&b), b"for the next one");
}

#[test]
fn handled_signal_ends_blocked_read_with_eintr() {
    let m = Mount::new();
    let b = m.mailbox("eintr", "");
    // perl's sysread is one read(2); with a handler installed, an interrupted read
    // returns undef with $! = EINTR instead of killing the process.
    let reader = m.spawn_sh(
        r#"exec perl -e '
            $SIG{USR1} = sub {};
            open(my $f, "<", $ARGV[0]) or die "open: $!";
            my $r = sysread($f, my $buf, 100);
            if (defined $r) { print "read $r\n" } else { print "errno ", $!+0, "\n" }
        ' "$M/eintr/recv""#,
    );
    wait_status(&b.join("status"), "receivers-waiting", "1");
    let start = Instant::now();
    reader.signal(libc::SIGUSR1);
    let o = reader.wait_timeout(Duration::from_secs(3));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "EINTR took {:?}",
        start.elapsed()
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("errno {}", libc::EINTR),
        "{}",
        show(&o)
    );
    send(&b, b"kept");
    assert_eq!(recv(&b), b"kept");
}
