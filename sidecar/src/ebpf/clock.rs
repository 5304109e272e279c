//! Kernel event time to wall-clock time.
//!
//! The modern object stamps each event with `bpf_ktime_get_boot_ns()` (`CLOCK_BOOTTIME`),
//! the compat object with `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`: older kernels have no boot
//! clock helper). Wall time is the stamp plus `CLOCK_REALTIME` minus that kernel clock. Both
//! clocks are advanced and NTP-slewed by the same timekeeper, so this offset only moves when
//! the wall clock is *stepped* (settimeofday, an NTP/chrony step, a leap second) or, for the
//! monotonic clock, after a suspend. The reader re-samples it every few hundred milliseconds (three vDSO reads, no
//! syscall) and adopts a new value only when it differs by more than [`STEP`]: sampling
//! jitter then never reorders the timestamps of consecutive events, and a real step is
//! followed within one refresh period.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diffkeeper_ebpf::object::Clock;
use nix::time::{clock_gettime, ClockId};

/// Offset changes smaller than this are sampling noise, not a step of the wall clock.
const STEP: Duration = Duration::from_millis(1);

/// A sample is trusted only if both boot-time reads around the wall-clock read were closer
/// than this (the thread was not preempted in between).
const MAX_SAMPLE_WINDOW_NS: i128 = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// `CLOCK_REALTIME` minus the kernel clock, in nanoseconds.
    offset_ns: i128,
    /// The clock the object stamps events with.
    kernel: ClockId,
}

impl WallClock {
    pub fn new(kernel: Clock) -> Self {
        let kernel = match kernel {
            Clock::Boottime => ClockId::CLOCK_BOOTTIME,
            Clock::Monotonic => ClockId::CLOCK_MONOTONIC,
        };
        // No previous value to keep yet: take the tightest of a few samples.
        let (offset_ns, _) = (0..4)
            .map(|_| sample(kernel))
            .min_by_key(|&(_, window)| window)
            .expect("four samples");
        Self { offset_ns, kernel }
    }

    /// Re-reads the offset and adopts it when the wall clock was stepped.
    pub fn refresh(&mut self) {
        if let Some(offset) = sample_offset(self.kernel) {
            if (offset - self.offset_ns).unsigned_abs() > STEP.as_nanos() {
                self.offset_ns = offset;
            }
        }
    }

    /// The wall-clock time of a kernel stamp.
    pub fn wall_time(&self, kernel_ns: u64) -> SystemTime {
        let unix_ns = i128::from(kernel_ns) + self.offset_ns;
        if unix_ns <= 0 {
            return UNIX_EPOCH;
        }
        let secs = (unix_ns / 1_000_000_000) as u64;
        let nanos = (unix_ns % 1_000_000_000) as u32;
        UNIX_EPOCH + Duration::new(secs, nanos)
    }
}

fn kernel_ns(clock: ClockId) -> i128 {
    let t = clock_gettime(clock).expect("CLOCK_BOOTTIME and CLOCK_MONOTONIC exist on Linux");
    i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
}

fn real_ns() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// Wall minus kernel time, read between two kernel-clock reads, and how far apart those were.
fn sample(clock: ClockId) -> (i128, i128) {
    let before = kernel_ns(clock);
    let real = real_ns();
    let after = kernel_ns(clock);
    (real - (before + after) / 2, after - before)
}

/// A sample, unless the thread was preempted while taking it.
fn sample_offset(clock: ClockId) -> Option<i128> {
    let (offset, window) = sample(clock);
    (window <= MAX_SAMPLE_WINDOW_NS).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_time_now_maps_to_wall_time_now_for_both_clocks() {
        for (kind, id) in [
            (Clock::Boottime, ClockId::CLOCK_BOOTTIME),
            (Clock::Monotonic, ClockId::CLOCK_MONOTONIC),
        ] {
            let clock = WallClock::new(kind);
            let now = clock.wall_time(kernel_ns(id) as u64);
            let wall = SystemTime::now();
            let diff = match wall.duration_since(now) {
                Ok(d) => d,
                Err(e) => e.duration(),
            };
            assert!(diff < Duration::from_millis(5), "{kind:?}: {diff:?}");
        }
    }

    #[test]
    fn small_offset_changes_are_noise_and_steps_are_adopted() {
        let real = WallClock::new(Clock::Boottime);
        let mut clock = WallClock {
            offset_ns: real.offset_ns + 200_000, // 0.2 ms: jitter, kept
            ..real
        };
        clock.refresh();
        assert_eq!(clock.offset_ns, real.offset_ns + 200_000);
        clock.offset_ns = real.offset_ns - 5_000_000_000; // a 5 s step: adopted
                                                          // A sample may be refused when the thread is preempted; a few tries are plenty.
        for _ in 0..100 {
            clock.refresh();
        }
        assert!((clock.offset_ns - real.offset_ns).abs() < 1_000_000);
    }

    #[test]
    fn converts_nanoseconds_exactly() {
        let kernel = ClockId::CLOCK_BOOTTIME;
        let clock = WallClock {
            offset_ns: 10,
            kernel,
        };
        assert_eq!(
            clock.wall_time(1_999_999_995),
            UNIX_EPOCH + Duration::new(2, 5)
        );
        let early = WallClock {
            offset_ns: -100,
            kernel,
        };
        assert_eq!(early.wall_time(5), UNIX_EPOCH);
    }
}
