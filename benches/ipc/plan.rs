//! What a run measures: message sizes, repeats and warm-up counts, quick or full.

use std::time::Duration;

pub(crate) struct Plan {
    pub(crate) quick: bool,
    pub(crate) sizes: Vec<usize>,
    pub(crate) repeats: usize,
    /// Length of one timed repeat.
    pub(crate) target: Duration,
    /// Warm-up volume in bytes (message counts are clamped to [lo, hi]).
    pub(crate) thr_warm: (usize, usize, usize),
    pub(crate) rtt_warm: (usize, usize, usize),
    pub(crate) rtt_n: (usize, usize),
    pub(crate) thr_n: (usize, usize),
    pub(crate) fan_target: Duration,
    pub(crate) fan_repeats: usize,
    pub(crate) shell_n: usize,
    pub(crate) shell_repeats: usize,
    pub(crate) many_boxes: usize,
    pub(crate) many_readers: usize,
    pub(crate) step_limit: Duration,
    pub(crate) total_limit: Duration,
}

impl Plan {
    pub(crate) fn new(quick: bool, max_msg: usize) -> Plan {
        if quick {
            Plan {
                quick,
                sizes: vec![64, max_msg],
                repeats: 3,
                target: Duration::from_millis(30),
                thr_warm: (2 << 20, 5, 500),
                rtt_warm: (256 << 10, 5, 200),
                rtt_n: (50, 100_000),
                thr_n: (10, 1_000_000),
                fan_target: Duration::from_millis(80),
                fan_repeats: 2,
                shell_n: 100,
                shell_repeats: 2,
                many_boxes: 1_000,
                many_readers: 100,
                step_limit: Duration::from_secs(45),
                total_limit: Duration::from_secs(170),
            }
        } else {
            Plan {
                quick,
                sizes: vec![64, 4 << 10, 64 << 10, max_msg],
                repeats: 7,
                target: Duration::from_millis(200),
                thr_warm: (8 << 20, 10, 2000),
                rtt_warm: (1 << 20, 10, 500),
                rtt_n: (200, 1_000_000),
                thr_n: (20, 5_000_000),
                fan_target: Duration::from_millis(400),
                fan_repeats: 3,
                shell_n: 500,
                shell_repeats: 3,
                many_boxes: 10_000,
                many_readers: 1_000,
                step_limit: Duration::from_secs(120),
                total_limit: Duration::from_secs(900),
            }
        }
    }
}

pub(crate) fn warm_count((bytes, lo, hi): (usize, usize, usize), size: usize) -> usize {
    (bytes / size.max(1)).clamp(lo, hi)
}
