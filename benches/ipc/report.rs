//! Results: the rows measured so far, and the table printed at the end
//! (also of a partial run).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::sys::lock;
use crate::watchdog::halt_if_aborting;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Group {
    Size(usize),
    Fan,
    Shell,
    Many,
    /// Through a Redis broker: the baseline and two broker mounts.
    Broker,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Role {
    Floor,
    Pipe,
    Other,
}

/// Microseconds per round trip (or per shell iteration).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lat {
    pub(crate) med: f64,
    pub(crate) p99: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Thr {
    pub(crate) msgs: f64,
    pub(crate) mib: Option<f64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) size: String,
    pub(crate) group: Group,
    pub(crate) role: Role,
    pub(crate) rtt: Option<Result<Lat, String>>,
    pub(crate) thr: Option<Result<Thr, String>>,
    pub(crate) note: String,
    /// CPU time of the ipcfs daemon (or of the floor's threads) per message.
    pub(crate) cpu_us: Option<f64>,
}

#[derive(Default)]
pub(crate) struct Registry {
    /// The ipcfs daemons running now (the main mount, broker mounts).
    pub(crate) daemons: Vec<i32>,
    pub(crate) mounts: Vec<PathBuf>,
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) pids: Vec<i32>,
    pub(crate) pgroups: Vec<i32>,
    pub(crate) sysctl_restore: Vec<(PathBuf, String)>,
}

pub(crate) static REG: Mutex<Registry> = Mutex::new(Registry {
    daemons: Vec::new(),
    mounts: Vec::new(),
    dirs: Vec::new(),
    files: Vec::new(),
    pids: Vec::new(),
    pgroups: Vec::new(),
    sysctl_restore: Vec::new(),
});
pub(crate) static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());
pub(crate) static HEADER: Mutex<Vec<String>> = Mutex::new(Vec::new());
pub(crate) static EXTRA: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The current step and its deadline (between steps: the end of the last
/// one plus `IDLE_LIMIT`, so no blocking call is ever without a deadline).
pub(crate) static STEP: Mutex<Option<(String, Instant)>> = Mutex::new(None);
pub(crate) static IDLE_LIMIT: Mutex<Duration> = Mutex::new(Duration::from_secs(60));
pub(crate) static REPORTED: Mutex<bool> = Mutex::new(false);
/// Set when the run is being ended: the main thread then stops at its next
/// step or row instead of racing the clean-up.
pub(crate) static ABORTING: AtomicBool = AtomicBool::new(false);

pub(crate) fn push_row(row: Row) {
    halt_if_aborting();
    let mut line = format!("{} {}", row.name, row.size);
    match &row.rtt {
        Some(Ok(l)) => {
            let _ = write!(line, ": RTT {} µs", fmt_num(l.med));
            if let Some(p) = l.p99 {
                let _ = write!(line, " (p99 {})", fmt_num(p));
            }
        }
        Some(Err(e)) => line.push_str(&format!(": RTT n/a ({e})")),
        None => {}
    }
    match &row.thr {
        Some(Ok(t)) => {
            let _ = write!(line, "; {} msgs/s", fmt_num(t.msgs));
            if let Some(m) = t.mib {
                let _ = write!(line, ", {} MiB/s", fmt_num(m));
            }
        }
        Some(Err(e)) => line.push_str(&format!("; throughput n/a ({e})")),
        None => {}
    }
    progress!("{line}");
    lock(&ROWS).push(row);
}

pub(crate) fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        let s = format!("{:.0}", x);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}

pub(crate) fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        fmt_num(x)
    }
}

pub(crate) fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1_000_000 => "1 MiB".into(),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

pub(crate) fn report(partial: bool) {
    {
        let mut done = lock(&REPORTED);
        if *done {
            return;
        }
        *done = true;
    }
    let rows = lock(&ROWS).clone();
    let mut out = String::new();
    for h in lock(&HEADER).iter() {
        out.push_str(h);
        out.push('\n');
    }
    if partial {
        out.push_str("\n(partial results: the run was cut short)\n");
    }
    out.push('\n');
    let reference = |group: Group, role: Role| {
        let g = if group == Group::Many {
            Group::Size(64)
        } else {
            group
        };
        rows.iter().find(|r| r.group == g && r.role == role)
    };
    let head = [
        "channel",
        "size",
        "RTT median µs",
        "RTT p99 µs",
        "RTT ×floor",
        "RTT ×pipe",
        "msgs/s",
        "MiB/s",
        "thr ×floor",
        "thr ×pipe",
        "notes",
    ];
    let mut table: Vec<Vec<String>> = Vec::new();
    for r in &rows {
        let mut cells = vec![r.name.clone(), r.size.clone()];
        let ratio_rtt = |role| {
            let base = reference(r.group, role).and_then(|b| match &b.rtt {
                Some(Ok(l)) => Some(l.med),
                _ => None,
            });
            match (&r.rtt, base) {
                (Some(Ok(l)), Some(b)) => fmt_ratio(l.med / b),
                _ => "—".into(),
            }
        };
        let ratio_thr = |role| {
            let base = reference(r.group, role).and_then(|b| match &b.thr {
                Some(Ok(t)) => Some(t.msgs),
                _ => None,
            });
            match (&r.thr, base) {
                (Some(Ok(t)), Some(b)) => fmt_ratio(t.msgs / b),
                _ => "—".into(),
            }
        };
        match &r.rtt {
            Some(Ok(l)) => {
                cells.push(fmt_num(l.med));
                cells.push(l.p99.map_or("—".into(), fmt_num));
            }
            Some(Err(_)) => cells.extend(["n/a".into(), "n/a".into()]),
            None => cells.extend(["—".into(), "—".into()]),
        }
        cells.push(ratio_rtt(Role::Floor));
        cells.push(ratio_rtt(Role::Pipe));
        match &r.thr {
            Some(Ok(t)) => {
                cells.push(fmt_num(t.msgs));
                cells.push(t.mib.map_or("—".into(), fmt_num));
            }
            Some(Err(_)) => cells.extend(["n/a".into(), "n/a".into()]),
            None => cells.extend(["—".into(), "—".into()]),
        }
        cells.push(ratio_thr(Role::Floor));
        cells.push(ratio_thr(Role::Pipe));
        cells.push(r.note.clone());
        table.push(cells);
    }
    let width = |i: usize| {
        table
            .iter()
            .map(|c| c[i].chars().count())
            .chain([head[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let left = |i: usize| i < 2 || i == head.len() - 1;
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if left(i) {
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{c} |", " ".repeat(pad));
            }
        }
        s
    };
    out.push_str(&line(&head.map(String::from)));
    out.push('\n');
    let mut sep = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        if left(i) {
            let _ = write!(sep, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(sep, " {}: |", "-".repeat(w - 1));
        }
    }
    out.push_str(&sep);
    out.push('\n');
    for cells in &table {
        out.push_str(&line(cells));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(
        "×floor, ×pipe: this row's figure divided by the floor's and the pipe's for the same \
         size (RTT: above 1 is slower; throughput: below 1 is slower). Shell rows compare with \
         the same loop through the floor and through a FIFO; 4x4 rows with the floor and a pipe \
         under 4x4; the many-mailbox rows with the 64 B round trips. Shell rows: \
         \"RTT\" is the time of one loop iteration, msgs/s iterations per second.\n",
    );
    // CPU per message, grouped by channel in order of appearance.
    let mut names: Vec<&str> = Vec::new();
    for r in &rows {
        if r.cpu_us.is_some() && !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    if !names.is_empty() {
        out.push_str(
            "\nCPU time per message (utime+stime of the ipcfs daemon from /proc/PID/stat over the \
             timed throughput repeats, divided by the messages; for the floor, its fuser \
             threads):\n",
        );
        for n in names {
            let parts: Vec<String> = rows
                .iter()
                .filter(|r| r.name == n)
                .filter_map(|r| r.cpu_us.map(|c| format!("{} {} µs", r.size, fmt_num(c))))
                .collect();
            let _ = writeln!(out, "  {n}: {}", parts.join(", "));
        }
    }
    let extra = lock(&EXTRA);
    if !extra.is_empty() {
        out.push('\n');
        for e in extra.iter() {
            out.push_str(e);
            out.push('\n');
        }
    }
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}
