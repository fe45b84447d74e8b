//! Meters of CPU time and the median and percentiles of samples.

use std::fs;
use std::path::Path;

use crate::sys::stat_ticks;

/// Whose CPU time a throughput run charges.
#[derive(Clone, Copy)]
pub(crate) enum Meter {
    Daemon(i32),
    Floor,
    Off,
}

impl Meter {
    pub(crate) fn ticks(self) -> Option<u64> {
        match self {
            Meter::Daemon(pid) => stat_ticks(Path::new(&format!("/proc/{pid}/stat"))),
            Meter::Floor => {
                // The floor's event loops: this process's threads named fuser-*.
                let mut sum = 0;
                for e in fs::read_dir("/proc/self/task").ok()?.flatten() {
                    let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                    if comm.starts_with("fuser") {
                        sum += stat_ticks(&e.path().join("stat")).unwrap_or(0);
                    }
                }
                Some(sum)
            }
            Meter::Off => None,
        }
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}
