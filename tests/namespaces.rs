//! Callers in a child pid namespace (a container): `proc/` speaks their pid
//! numbers, and processes they cannot see do not exist for them (ipcfs(7),
//! DIRECT LINKS, "Pid namespaces").
//!
//! Every blocking step has a deadline: the scripts' own `timeout`s, the
//! harness's deadline on each script, and polled conditions.

mod common;
use common::*;

use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// The first child of process `pid` (`unshare --fork` forks the namespace's
/// pid 1), waited for.
fn first_child(pid: u32) -> u32 {
    let mut child = None;
    wait_until(Duration::from_secs(10), "unshare's child", || {
        child = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|s| s.split_ascii_whitespace().next()?.parse().ok());
        child.is_some()
    });
    child.unwrap()
}

/// Inside `unshare --pid --fork --mount-proc`: `proc/self` is the caller's
/// pid as it sees it; the namespace's pid 1 and a child of it talk through
/// `proc/<their namespace pid>/send` and `recv` in both directions; a host
/// process (this test, which has sent to the namespace's pid 1, so it is
/// even a peer of it) is not in `proc/` and cannot be looked up.
#[test]
fn a_pid_namespace_sees_its_own_numbers() {
    let m = Mount::new();
    let d = tempfile::tempdir().unwrap();
    let host = std::process::id();
    // Pid 1 of the namespace is this bash: it starts a reader (a child,
    // so pid 2 or more), sends it "hi", gets "back" from it, then waits for
    // this test's message before looking at proc/.
    let script = format!(
        r#"set -e
        export D="{d}"
        [ $$ = 1 ] || {{ echo "not pid 1: $$"; exit 1; }}
        sh -c 'echo $$; exec readlink "$M/proc/self"' > "$D/self"
        timeout 10 bash -c 'echo $$ > "$D/r.tmp"; mv "$D/r.tmp" "$D/r.pid"
            read -r x < "$M/proc/1/recv"; echo "reader got $x"
            echo back > "$M/proc/1/send"' &
        for i in $(seq 1000); do [ -s "$D/r.pid" ] && break; sleep 0.01; done
        R=$(cat "$D/r.pid")
        echo hi > "$M/proc/$R/send"
        read -r y < "$M/proc/$R/recv"
        echo "init got $y from $R"
        wait
        # A child that sends and exits: its message keeps proc/<its pid>
        # there for pid 1, by the number pid 1 knows it by.
        timeout 10 sh -c 'echo $$ > "$D/w.pid"; echo late > "$M/proc/1/send"'
        W=$(cat "$D/w.pid")
        [ -e "$M/proc/$W" ] && echo "exited $W still listed"
        read -r z < "$M/proc/$W/recv"
        echo "init got $z from exited $W"
        touch "$D/ready"
        for i in $(seq 1000); do [ -e "$D/sent" ] && break; sleep 0.01; done
        [ -e "$D/sent" ]
        if [ -e "$M/proc/{host}" ]; then echo "host pid {host} visible"; fi
        echo "listed: $(ls "$M/proc" | tr '\n' ' ')"
        if echo x 2>/dev/null > "$M/proc/{host}/send"; then echo "sent to host {host}"; fi
        "#,
        d = d.path().display()
    );
    let mut ns = m.spawn_sh(&format!(
        "exec unshare --pid --fork --mount-proc bash -c '{}'",
        script.replace('\'', r#"'\''"#)
    ));
    let init = first_child(ns.pid());
    let ready = d.path().join("ready");
    wait_until(LONG, "the namespace's talk", || {
        ready.exists() || ns.try_wait().is_some()
    });
    if !ready.exists() {
        panic!("the namespace gave up:\n{}", show(&ns.wait_timeout(LONG)));
    }
    // The host sees the namespace's pid 1 by its host pid, and may send.
    std::fs::write(m.p(&format!("proc/{init}/send")), b"from host\n").expect("send to init");
    std::fs::write(d.path().join("sent"), b"").unwrap();
    let o = ns.wait_timeout(LONG);
    assert!(o.status.success(), "{}", show(&o));
    let out = out_str(&o);
    let self_lines = std::fs::read_to_string(d.path().join("self")).unwrap();
    let mut it = self_lines.lines();
    let (pid, link) = (it.next().unwrap(), it.next().unwrap_or(""));
    assert_eq!(link, pid, "proc/self inside the namespace is $$ there");
    assert!(pid.parse::<u32>().unwrap() < 100, "a namespace pid: {pid}");
    assert!(
        out.contains("reader got hi\n"),
        "pid 1 reached its child by its namespace pid:\n{out}"
    );
    assert!(
        out.contains("init got back from "),
        "the child reached the namespace's pid 1:\n{out}"
    );
    assert!(out.contains(" still listed\n"), "{out}");
    assert!(
        out.contains("init got late from exited "),
        "an exited sender's message is received by its namespace pid:\n{out}"
    );
    assert!(!out.contains("visible"), "{out}");
    assert!(!out.contains("sent to host"), "{out}");
    let listed = out
        .lines()
        .find_map(|l| l.strip_prefix("listed: "))
        .unwrap_or_else(|| panic!("no listing:\n{out}"));
    assert!(
        !listed.split_whitespace().any(|n| n == host.to_string()),
        "the host peer is not listed: {listed}"
    );
    assert!(listed.contains("self"), "{listed}");
}

/// As uid 65534 in `unshare -U -r -p -f`: a host process of the same uid,
/// which kill(2) could not reach from there (ESRCH), is not in `proc/`, and
/// a send to it fails with ENOENT.
#[test]
fn a_same_uid_host_process_is_invisible_from_a_user_and_pid_namespace() {
    let m = Mount::new();
    let sleeper = hold(&[], Some(NOBODY)).expect("a sleep as nobody");
    let pid = sleeper.pid();
    // The mount lets nobody in (its root is 1777), and nobody may send to a
    // process of its own from outside a namespace.
    let o = m.sh_as_nobody(
        &format!(r#"cd "$M" && echo x > proc/{pid}/send && echo ok"#),
        LONG,
    );
    assert_eq!(out_str(&o), "ok\n", "{}", show(&o));
    let script = format!(
        r#"cd "$M"
        [ $$ = 1 ] || {{ echo "not pid 1: $$"; exit 1; }}
        if [ -e proc/{pid} ]; then echo "probe: {pid} exists"; fi
        if kill -0 {pid} 2>/dev/null; then echo "kill reaches {pid}"; fi
        err=$( {{ echo x > proc/{pid}/send; }} 2>&1 ) && echo "sent to {pid}"
        echo "$err"
        echo "self $(sh -c 'echo $$; exec readlink proc/self' | tr '\n' ' ')"
        "#
    );
    let o = m.sh_as_nobody(
        &format!(
            "timeout 20 unshare -U -r -p -f --mount-proc bash -c '{}'",
            script.replace('\'', r#"'\''"#)
        ),
        LONG,
    );
    let out = out_str(&o);
    assert!(o.status.success(), "{}", show(&o));
    assert!(!out.contains("exists"), "{}", show(&o));
    assert!(!out.contains("kill reaches"), "{}", show(&o));
    assert!(!out.contains("sent to"), "{}", show(&o));
    assert!(out.contains("No such file or directory"), "{}", show(&o));
    let me = out
        .lines()
        .find_map(|l| l.strip_prefix("self "))
        .unwrap_or_else(|| panic!("{}", show(&o)));
    let v: Vec<&str> = me.split_whitespace().collect();
    assert_eq!(v.len(), 2, "{me}");
    assert_eq!(v[0], v[1], "proc/self is the namespace's $$");
    drop(sleeper);
}
