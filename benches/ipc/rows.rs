//! The rows of the table: per message size, 4 senders x 4 receivers,
//! shell loops, many mailboxes and parked readers.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::STOP;
use crate::endpoints::{H, Kind, Rx, Tx, per_write};
use crate::plan::Plan;
use crate::remote::{Duplex, measure_rtt, measure_thr};
use crate::report::{
    EXTRA, Group, Lat, REG, Role, Row, Thr, fmt_num, fmt_ratio, push_row, size_label,
};
use crate::stats::{Meter, median};
use crate::sys::{clk_tck, lock, open_r, open_w, other, spawn};
use crate::vias::{Ctx, VIAS, Via};
use crate::watchdog::step;

pub(crate) fn row(name: &str, size: String, group: Group, role: Role) -> Row {
    Row {
        name: name.into(),
        size,
        group,
        role,
        rtt: None,
        thr: None,
        note: String::new(),
        cpu_us: None,
    }
}

pub(crate) fn na_row(mut r: Row, why: &str) -> Row {
    r.rtt = Some(Err(why.into()));
    r.thr = Some(Err(why.into()));
    r.note = format!("n/a ({why})");
    r
}

pub(crate) fn size_rows(ctx: &mut Ctx, plan: &Plan) {
    let mut link: Result<Duplex, String> = {
        let _s = step("start the link peer", Duration::from_secs(20));
        ctx.link().map_err(|e| e.to_string())
    };
    for &size in &plan.sizes {
        for via in VIAS {
            let eff = if via == Via::Batch && size + 4 > ctx.max_msg {
                ctx.max_msg - 4
            } else {
                size
            };
            let mut r = row(via.name(), size_label(size), Group::Size(size), via.role());
            let _s = step(format!("{} {}", via.name(), r.size), plan.step_limit);
            let mut fresh;
            let d = match via {
                Via::Link => match &mut link {
                    Ok(d) => d,
                    Err(e) => {
                        push_row(na_row(r, e));
                        continue;
                    }
                },
                _ => match ctx.duplex(via, eff) {
                    Ok(d) => {
                        fresh = d;
                        &mut fresh
                    }
                    Err(e) => {
                        push_row(na_row(r, &e.to_string()));
                        continue;
                    }
                },
            };
            if let Err(e) = d.probe(eff) {
                push_row(na_row(r, &e.to_string()));
                if via == Via::Link {
                    link = Err(format!("link peer unusable after: {e}"));
                }
                continue;
            }
            if via == Via::Batch {
                let per = per_write(Kind::Batch, eff, ctx.max_msg);
                r.note = if eff != size {
                    format!(
                        "1 frame of {} B a write (+ its 4 B header: the largest write)",
                        fmt_num(eff as f64)
                    )
                } else {
                    format!("{per} frames a write (RTT: 1)")
                };
            }
            if via == Via::PosixMq {
                r.note = ctx.mq_note.take().unwrap_or_default();
            }
            if via == Via::SendRecv || via == Via::Link {
                r.note = "each message: data + 0-byte EOF read".into();
            }
            r.rtt = Some(measure_rtt(d, eff, plan).map_err(|e| e.to_string()));
            match measure_thr(d, eff, plan) {
                Ok((t, cpu)) => {
                    r.thr = Some(Ok(t));
                    r.cpu_us = cpu;
                }
                Err(e) => r.thr = Some(Err(e.to_string())),
            }
            if via == Via::Link && (matches!(r.rtt, Some(Err(_))) || matches!(r.thr, Some(Err(_))))
            {
                link = Err("link peer unusable after an earlier failure".into());
            }
            push_row(r);
        }
    }
}

/// 4 senders x 4 receivers on one channel, 64-byte messages: messages/s.
pub(crate) fn fan_once(
    mk_tx: &mut dyn FnMut() -> io::Result<Tx>,
    mk_rx: &mut dyn FnMut() -> io::Result<Rx>,
    per_sender: usize,
    meter: Meter,
) -> io::Result<(f64, Option<u64>)> {
    const SIZE: usize = 64;
    const N: usize = 4;
    let total = N * per_sender;
    let got = Arc::new(AtomicUsize::new(0));
    let done: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let barrier = Arc::new(Barrier::new(2 * N + 1));
    let mut receivers = Vec::new();
    for _ in 0..N {
        let mut rx = mk_rx()?;
        let (got, done, barrier) = (got.clone(), done.clone(), barrier.clone());
        receivers.push(thread::spawn(move || -> io::Result<()> {
            rx.prepare(SIZE, 1);
            barrier.wait();
            loop {
                let n = rx.recv()?;
                if n != SIZE {
                    return Err(other(format!("received {n} bytes, expected {SIZE}")));
                }
                if rx.first_seq() == STOP {
                    return Ok(());
                }
                if got.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    *lock(&done) = Some(Instant::now());
                }
            }
        }));
    }
    let mut senders = Vec::new();
    for _ in 0..N {
        let mut tx = mk_tx()?;
        let barrier = barrier.clone();
        senders.push(thread::spawn(move || {
            barrier.wait();
            tx.send_seqs(0, per_sender, SIZE)
        }));
    }
    let c0 = meter.ticks();
    barrier.wait();
    let t0 = Instant::now();
    let mut result = Ok(());
    for s in senders {
        let r = s.join().unwrap_or_else(|_| Err(other("sender panicked")));
        result = result.and(r);
    }
    if result.is_ok() {
        while got.load(Ordering::SeqCst) < total {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let c1 = meter.ticks();
    let mut stop = mk_tx()?;
    for _ in 0..N {
        stop.send_seqs(STOP, 1, SIZE)?;
    }
    for r in receivers {
        let r = r.join().unwrap_or_else(|_| Err(other("receiver panicked")));
        result = result.and(r);
    }
    result?;
    let end = lock(&done).ok_or_else(|| other("no end time"))?;
    let ticks = c0.zip(c1).map(|(a, b)| b - a);
    Ok((total as f64 / (end - t0).as_secs_f64(), ticks))
}

pub(crate) fn fan_row(
    name: &str,
    role: Role,
    plan: &Plan,
    meter: Meter,
    mk_tx: &mut dyn FnMut() -> io::Result<Tx>,
    mk_rx: &mut dyn FnMut() -> io::Result<Rx>,
) {
    let mut r = row(name, "64 B".into(), Group::Fan, role);
    r.note = "4 senders x 4 receivers, aggregate".into();
    let _s = step(format!("4x4 {name}"), plan.step_limit);
    let res = (|| -> io::Result<(f64, Option<f64>)> {
        let warm = if plan.quick { 50 } else { 200 };
        let (rate, _) = fan_once(mk_tx, mk_rx, warm, Meter::Off)?;
        let per = ((rate * plan.fan_target.as_secs_f64() / 4.0) as usize).clamp(100, 1_000_000);
        let mut rates = Vec::new();
        let mut ticks = Some(0);
        for _ in 0..plan.fan_repeats {
            let (rate, t) = fan_once(mk_tx, mk_rx, per, meter)?;
            rates.push(rate);
            ticks = ticks.zip(t).map(|(a, b)| a + b);
        }
        let msgs = (4 * per * plan.fan_repeats) as f64;
        let cpu = ticks.map(|t| t as f64 / clk_tck() * 1e6 / msgs);
        Ok((median(&mut rates), cpu))
    })();
    match res {
        Ok((msgs, cpu)) => {
            r.thr = Some(Ok(Thr {
                msgs,
                mib: Some(msgs * 64.0 / (1 << 20) as f64),
            }));
            r.cpu_us = cpu;
        }
        Err(e) => r = na_row(r, &e.to_string()),
    }
    push_row(r);
}

pub(crate) fn fan_rows(ctx: &mut Ctx, plan: &Plan) {
    let max = ctx.max_msg;
    match ctx.new_box("fan") {
        Ok(b) => fan_row(
            "ipcfs send/recv 4x4",
            Role::Other,
            plan,
            Meter::Daemon(ctx.daemon_pid),
            &mut || Ok(Tx::new(Kind::Msg, H::Fd(open_w(&b.join("send"))?), max)),
            &mut || Ok(Rx::new(Kind::Msg, H::Fd(open_r(&b.join("recv"))?), max)),
        ),
        Err(e) => push_row(na_row(
            row(
                "ipcfs send/recv 4x4",
                "64 B".into(),
                Group::Fan,
                Role::Other,
            ),
            &e.to_string(),
        )),
    }
    let f = ctx.floor.join("2");
    fan_row(
        "floor (fuser) 4x4",
        Role::Floor,
        plan,
        Meter::Floor,
        &mut || Ok(Tx::new(Kind::Packet, H::Fd(open_w(&f)?), max)),
        &mut || Ok(Rx::new(Kind::Packet, H::Fd(open_r(&f)?), max)),
    );
    match ctx.channel(Via::Pipe, 64, "") {
        Ok((w, r)) => {
            let (H::Fd(wfd), H::Fd(rfd)) = (&w.h, &r.h) else {
                unreachable!("pipes are descriptors")
            };
            fan_row(
                "pipe 4x4",
                Role::Pipe,
                plan,
                Meter::Off,
                &mut || Ok(Tx::new(Kind::Stream, H::Fd(wfd.try_clone()?), max)),
                &mut || Ok(Rx::new(Kind::Stream, H::Fd(rfd.try_clone()?), max)),
            );
        }
        Err(e) => push_row(na_row(
            row("pipe 4x4", "64 B".into(), Group::Fan, Role::Pipe),
            &e.to_string(),
        )),
    }
}

/// Runs `sh -c SCRIPT sh A1 A2` with N=n; returns the seconds it took.
pub(crate) fn run_sh(
    script: &str,
    a1: &Path,
    a2: &Path,
    n: usize,
    errlog: &Path,
) -> io::Result<f64> {
    let err = fs::File::create(errlog)?;
    let t0 = Instant::now();
    let mut child = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(a1)
            .arg(a2)
            .env("N", n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0),
    )?;
    let pg = child.id() as i32;
    lock(&REG).pgroups.push(pg);
    let st = child.wait();
    let dt = t0.elapsed().as_secs_f64();
    unsafe { libc::killpg(pg, libc::SIGKILL) };
    lock(&REG).pgroups.retain(|&p| p != pg);
    let st = st?;
    if !st.success() {
        let msg = fs::read_to_string(errlog).unwrap_or_default();
        let first = msg.lines().next().unwrap_or("").to_string();
        return Err(other(format!("sh loop failed ({st}): {first}")));
    }
    Ok(dt)
}

pub(crate) fn shell_rows(ctx: &mut Ctx, plan: &Plan) {
    const ECHO_CAT: &str =
        r#"i=0; while [ $i -lt $N ]; do echo x > "$1"; cat "$2" > /dev/null; i=$((i+1)); done"#;
    const FIFO: &str = r#"i=0; while [ $i -lt $N ]; do cat "$2" > /dev/null & echo x > "$1"; wait; i=$((i+1)); done"#;
    const FLOOR: &str = r#"i=0; while [ $i -lt $N ]; do echo x > "$1"; head -c 2 "$2" > /dev/null; i=$((i+1)); done"#;
    let errlog = ctx.work.path().join("sh.err");
    let shm = PathBuf::from(format!("/dev/shm/ipcfs-bench.{}", std::process::id()));
    lock(&REG).files.push(shm.clone());
    let fifo = ctx.work.path().join("fifo");
    let fifo_ok = CString::new(fifo.as_os_str().as_bytes())
        .ok()
        .is_some_and(|c| unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0);
    let shell_box = ctx.new_box("sh");
    let floor_file = ctx.floor.join("3");
    type Case = (
        &'static str,
        Role,
        &'static str,
        Result<(PathBuf, PathBuf), String>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "shell: ipcfs",
            Role::Other,
            ECHO_CAT,
            shell_box
                .map(|b| (b.join("send"), b.join("recv")))
                .map_err(|e| e.to_string()),
            "echo x > box/send; cat box/recv",
        ),
        (
            "shell: tmpfs file",
            Role::Other,
            ECHO_CAT,
            Ok((shm.clone(), shm.clone())),
            "echo x > /dev/shm/f; cat /dev/shm/f",
        ),
        (
            "shell: FIFO",
            Role::Pipe,
            FIFO,
            if fifo_ok {
                Ok((fifo.clone(), fifo.clone()))
            } else {
                Err(format!("mkfifo: {}", io::Error::last_os_error()))
            },
            "cat fifo & echo x > fifo; wait",
        ),
        (
            "shell: floor",
            Role::Floor,
            FLOOR,
            Ok((floor_file.clone(), floor_file)),
            "echo x > floor/f; head -c 2 floor/f",
        ),
    ];
    for (name, role, script, paths, what) in cases {
        let mut r = row(name, "2 B".into(), Group::Shell, role);
        r.note = format!("sh -c loop: {what}");
        let _s = step(name, plan.step_limit);
        let res = paths.map_err(other).and_then(|(a1, a2)| {
            run_sh(script, &a1, &a2, 20.min(plan.shell_n), &errlog)?;
            let mut per = Vec::new();
            for _ in 0..plan.shell_repeats {
                per.push(
                    run_sh(script, &a1, &a2, plan.shell_n, &errlog)? * 1e6 / plan.shell_n as f64,
                );
            }
            Ok(median(&mut per))
        });
        match res {
            Ok(us) => {
                r.rtt = Some(Ok(Lat { med: us, p99: None }));
                r.thr = Some(Ok(Thr {
                    msgs: 1e6 / us,
                    mib: None,
                }));
            }
            Err(e) => r = na_row(r, &e.to_string()),
        }
        push_row(r);
    }
    let _ = fs::remove_file(&shm);
    lock(&REG).files.retain(|f| f != &shm);
}

/// Round trips with many mailboxes and parked readers present, against none.
pub(crate) fn many_rows(ctx: &mut Ctx, plan: &Plan) {
    let (nb, nr) = (plan.many_boxes, plan.many_readers);
    let label = format!(
        "{} mailboxes, {} parked readers",
        fmt_num(nb as f64),
        fmt_num(nr as f64)
    );
    let name = "ipcfs send/recv, none present";
    let loaded = format!(
        "ipcfs send/recv + {} boxes, {} readers",
        fmt_num(nb as f64),
        fmt_num(nr as f64)
    );
    let mut d = match ctx.duplex(Via::SendRecv, 64) {
        Ok(d) => d,
        Err(e) => {
            push_row(na_row(
                row(name, "64 B".into(), Group::Many, Role::Other),
                &e.to_string(),
            ));
            return;
        }
    };
    let base = {
        let _s = step("many: baseline round trips", plan.step_limit);
        measure_rtt(&mut d, 64, plan).map_err(|e| e.to_string())
    };
    let mut r = row(name, "64 B".into(), Group::Many, Role::Other);
    r.note = "RTT, no extra mailboxes or parked readers".into();
    r.rtt = Some(base.clone());
    push_row(r);

    let mut r = row(&loaded, "64 B".into(), Group::Many, Role::Other);
    let prefix = format!("many.{}", std::process::id());
    let boxes: Vec<PathBuf> = (0..nb)
        .map(|i| ctx.mnt.join(format!("{prefix}.{i:05}")))
        .collect();
    let mut made = 0;
    let mut readers: Vec<Child> = Vec::new();
    let mut pg = 0;
    let res = (|| -> io::Result<(Lat, String)> {
        {
            let _s = step(format!("many: mkdir {nb} mailboxes"), plan.step_limit);
            let t = Instant::now();
            for b in &boxes {
                fs::create_dir(b).map_err(|e| other(format!("mkdir {}: {e}", b.display())))?;
                made += 1;
            }
            progress!(
                "created {nb} mailboxes in {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
        {
            let _s = step(format!("many: start {nr} readers"), plan.step_limit);
            for b in boxes.iter().take(nr) {
                let mut cmd = Command::new("cat");
                cmd.arg(b.join("recv"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(pg);
                let c = spawn(&mut cmd)?;
                if pg == 0 {
                    pg = c.id() as i32;
                    lock(&REG).pgroups.push(pg);
                }
                readers.push(c);
            }
        }
        let parked = {
            let _s = step("many: wait for the readers to park", plan.step_limit);
            let end = Instant::now() + Duration::from_secs(30);
            let mut pending: Vec<&PathBuf> = boxes.iter().take(nr).collect();
            while !pending.is_empty() && Instant::now() < end {
                pending.retain(|b| {
                    !fs::read_to_string(b.join("status"))
                        .unwrap_or_default()
                        .lines()
                        .any(|l| l == "receivers-waiting: 1")
                });
                if !pending.is_empty() {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            nr - pending.len()
        };
        // What idling with parked readers costs the daemon.
        let idle = if plan.quick { 0.5 } else { 2.0 };
        let c0 = Meter::Daemon(ctx.daemon_pid).ticks();
        thread::sleep(Duration::from_secs_f64(idle));
        let c1 = Meter::Daemon(ctx.daemon_pid).ticks();
        if let (Some(a), Some(b)) = (c0, c1) {
            lock(&EXTRA).push(format!(
                "ipcfs daemon CPU while idle with {label}: {:.1} % of one core (over {idle} s)",
                (b - a) as f64 / clk_tck() / idle * 100.0
            ));
        }
        let _s = step("many: round trips", plan.step_limit);
        let lat = measure_rtt(&mut d, 64, plan)?;
        let mut note = format!("RTT with {label} present");
        note = note.replace("mailboxes, ", "mailboxes and ");
        if parked < nr {
            let _ = write!(note, " (only {parked} seen parked)");
        }
        if let Ok(b) = &base {
            let _ = write!(note, "; ×{} vs none", fmt_ratio(lat.med / b.med));
        }
        Ok((lat, note))
    })();
    match res {
        Ok((lat, note)) => {
            r.rtt = Some(Ok(lat));
            r.note = note;
        }
        Err(e) => r = na_row(r, &format!("{label}: {e}")),
    }
    push_row(r);
    // rmdir wakes the parked readers with EIDRM.
    let _s = step("many: clean up", plan.step_limit);
    let t = Instant::now();
    let mut failed = 0;
    for b in boxes.iter().take(made) {
        if fs::remove_dir(b).is_err() {
            failed += 1;
        }
    }
    let end = Instant::now() + Duration::from_secs(20);
    let mut left = readers.len();
    while left > 0 && Instant::now() < end {
        left = readers
            .iter_mut()
            .map(|c| matches!(c.try_wait(), Ok(Some(_))))
            .filter(|exited| !exited)
            .count();
        if left > 0 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let woke = readers.len() - left;
    if pg != 0 {
        unsafe { libc::killpg(pg, libc::SIGKILL) };
        lock(&REG).pgroups.retain(|&p| p != pg);
    }
    for c in &mut readers {
        let _ = c.wait();
    }
    lock(&EXTRA).push(format!(
        "rmdir of {made} mailboxes ({failed} failed) ended {woke} of {} parked readers in {:.2} s",
        readers.len(),
        t.elapsed().as_secs_f64()
    ));
}
