//! Where kernel events arrive: the modern object's one ring buffer, or the compat object's
//! per-CPU perf buffers (kernels before 5.8 have no ring buffer). The reader polls and drains
//! either the same way and never sees the difference: perf buffers are ordered only per CPU
//! (a create on one CPU and a write on another could be journaled write-first), so their
//! records go through a k-way merge by the kernel's timestamp ([`Reorder`]), which gives the
//! order the single ring has.

use std::os::fd::AsFd;

use aya::maps::perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer};
use aya::maps::{MapData, RingBuf};
use aya::Ebpf;
use diffkeeper_ebpf::event::DkEvent;
use diffkeeper_ebpf::object::{maps, ObjectKind};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::error::{Cause, Failure, Hint};
use super::explain::explain;
use super::reorder::{self, Reorder};

pub enum EventSource {
    Ring(RingBuf<MapData>),
    Perf(PerfBuffers),
}

pub struct PerfBuffers {
    /// One per online CPU; the index is the CPU's position in [`Reorder`].
    buffers: Vec<PerfEventArrayBuffer>,
    /// The map the buffers are stored in: dropping it would clear them from the kernel's side.
    _array: PerfEventArray<MapData>,
    /// A wrapped record made whole (one CPU: routed straight from its buffer).
    scratch: Vec<u8>,
    /// Several CPUs: records held until they can be released in stamp order.
    reorder: Reorder,
}

impl EventSource {
    /// Takes the object's event map out of `ebpf`. `bytes` is the ring size, or for the perf
    /// buffers the total shared out over the CPUs (see [`perf_pages_per_cpu`]).
    pub fn open(ebpf: &mut Ebpf, kind: ObjectKind, bytes: u32) -> Result<Self, Failure> {
        let map = ebpf
            .take_map(maps::EVENTS)
            .expect("both objects define dk_events");
        match kind {
            ObjectKind::Modern => RingBuf::try_from(map)
                .map(Self::Ring)
                .map_err(|e| explain("opening the dk_events ring buffer", &e)),
            ObjectKind::Compat => {
                let mut array = PerfEventArray::try_from(map)
                    .map_err(|e| explain("opening the dk_events perf event array", &e))?;
                let cpus = aya::util::online_cpus().map_err(|(file, source)| {
                    let cause = Cause::Syscall {
                        call: "read",
                        source,
                    };
                    Failure::new(
                        format!("reading the online CPUs from {file}"),
                        cause,
                        Hint::None,
                    )
                })?;
                let pages = perf_pages_per_cpu(bytes, cpus.len(), page_size());
                let buffers = cpus
                    .iter()
                    .map(|&cpu| {
                        let step = format!("opening the perf buffer of CPU {cpu}");
                        let buffer = PerfEventArrayBuffer::open(cpu, pages)
                            .map_err(|e| explain(&step, &e))?;
                        array.set(cpu, &buffer).map_err(|e| explain(&step, &e))?;
                        Ok(buffer)
                    })
                    .collect::<Result<_, Failure>>()?;
                Ok(Self::Perf(PerfBuffers {
                    reorder: Reorder::new(cpus.len(), reorder::WINDOW),
                    buffers,
                    _array: array,
                    scratch: Vec::new(),
                }))
            }
        }
    }

    /// Waits until a record may be ready, at most `timeout_ms`.
    pub fn wait(&self, timeout_ms: u16) -> nix::Result<()> {
        let timeout = PollTimeout::from(timeout_ms);
        match self {
            Self::Ring(ring) => poll(&mut [PollFd::new(ring.as_fd(), PollFlags::POLLIN)], timeout),
            Self::Perf(perf) => {
                let mut fds: Vec<PollFd> = perf
                    .buffers
                    .iter()
                    .map(|b| PollFd::new(b.as_fd(), PollFlags::POLLIN))
                    .collect();
                poll(&mut fds, timeout)
            }
        }
        .map(drop)
    }

    /// Hands every ready record to `route`; the perf buffers' only once every CPU has been seen
    /// past it or it is [`reorder::WINDOW`] old, or at once with `flush` (stopping). Drops are
    /// not counted here: the programs count every failed output in `dk_lost`, for both
    /// objects. (A full perf buffer also reports its drops as PERF_RECORD_LOST, but those are
    /// the same drops, and reported late: only once the buffer has room again.)
    pub fn drain(&mut self, flush: bool, mut route: impl FnMut(&[u8])) {
        match self {
            Self::Ring(ring) => {
                while let Some(record) = ring.next() {
                    route(&record);
                }
            }
            Self::Perf(perf) => perf.drain(flush, &mut route),
        }
    }
}

impl PerfBuffers {
    fn drain(&mut self, flush: bool, route: &mut impl FnMut(&[u8])) {
        let PerfBuffers {
            buffers,
            scratch,
            reorder,
            ..
        } = self;
        // One CPU's records are already in order: routed straight from its buffer.
        if let [buffer] = buffers.as_mut_slice() {
            buffer.for_each(|event| {
                if let PerfEvent::Sample { head, tail } = event {
                    route_sample(head, tail, scratch, route);
                }
            });
            return;
        }
        for (cpu, buffer) in buffers.iter_mut().enumerate() {
            if !buffer.readable() {
                continue;
            }
            buffer.for_each(|event| {
                if let PerfEvent::Sample { head, tail } = event {
                    let ts = record_ts(head, tail);
                    reorder.push(cpu, ts, [head, tail]);
                }
            });
        }
        reorder.release(monotonic_ns(), flush, route);
    }
}

/// CLOCK_MONOTONIC now, in ns: the compat object's stamps' clock.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// Routes one sample; a record that wraps around the buffer's end (`tail` non-empty) is made
/// whole in `scratch` first.
fn route_sample(head: &[u8], tail: &[u8], scratch: &mut Vec<u8>, route: &mut impl FnMut(&[u8])) {
    if tail.is_empty() {
        route(head);
    } else {
        scratch.clear();
        scratch.extend_from_slice(head);
        scratch.extend_from_slice(tail);
        route(scratch);
    }
}

/// A record's `ts_ns` (the sample may wrap around its buffer: `head`, then `tail`); 0 for a
/// record too short to hold one (the reader reports it as malformed).
fn record_ts(head: &[u8], tail: &[u8]) -> u64 {
    let at = std::mem::offset_of!(DkEvent, ts_ns);
    let mut stamp = [0u8; 8];
    for (i, byte) in stamp.iter_mut().enumerate() {
        let Some(b) = head.get(at + i).or_else(|| tail.get(at + i - head.len())) else {
            return 0;
        };
        *byte = *b;
    }
    u64::from_ne_bytes(stamp)
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as usize)
}

/// Data pages per CPU buffer: `total` bytes shared out over `cpus`, rounded down to a power of
/// two (the kernel requires one), and never below [`MIN_PERF_BUFFER`] so the largest record
/// fits. A 1 MiB total gives 2 CPUs 512 KiB each and 64 CPUs 16 KiB each: the memory pinned
/// stays near the configured size on big nodes.
pub fn perf_pages_per_cpu(total: u32, cpus: usize, page_size: usize) -> usize {
    let page_size = page_size.max(1);
    let floor = MIN_PERF_BUFFER.div_ceil(page_size).next_power_of_two();
    let per_cpu = total as usize / cpus.max(1) / page_size;
    let pages = if per_cpu == 0 {
        1
    } else {
        1 << per_cpu.ilog2()
    };
    pages.max(floor)
}

/// The largest record (header and two full paths) plus perf's own sample header, rounded up.
const MIN_PERF_BUFFER: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_ordered_by_its_kernel_stamp() {
        let mut record = vec![0u8; std::mem::size_of::<DkEvent>()];
        let at = std::mem::offset_of!(DkEvent, ts_ns);
        record[at..at + 8].copy_from_slice(&42u64.to_ne_bytes());
        assert_eq!(record_ts(&record, &[]), 42);
        assert_eq!(record_ts(&record[..at + 4], &[]), 0);
        // Wrapped around the buffer's end in the middle of the stamp.
        assert_eq!(record_ts(&record[..at + 3], &record[at + 3..]), 42);
    }

    #[test]
    fn perf_buffers_share_the_configured_size_in_powers_of_two() {
        assert_eq!(perf_pages_per_cpu(1 << 20, 2, 4096), 128);
        assert_eq!(perf_pages_per_cpu(1 << 20, 64, 4096), 4);
        assert_eq!(perf_pages_per_cpu(1 << 20, 3, 4096), 64);
        // Never below the 16 KiB the largest record (header + two 4 KiB paths) needs.
        assert_eq!(perf_pages_per_cpu(4096, 256, 4096), 4);
        assert!(
            MIN_PERF_BUFFER > std::mem::size_of::<diffkeeper_ebpf::event::DkEvent>() + 2 * 4096
        );
        assert_eq!(perf_pages_per_cpu(1 << 20, 1, 65536), 16);
    }
}
