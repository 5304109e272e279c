//! perf_event_open(2) on a tracepoint, and the ioctls that attach a BPF program to it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: u64 = 8;
/// `attr.disabled`, the first bit of the flag word: enabled once the program is set.
const DISABLED: u64 = 1;
// _IO('$', 0) and _IOW('$', 8, __u32): the generic encoding, as on x86_64 and arm64.
const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;

/// `struct perf_event_attr` up to `config1` (PERF_ATTR_SIZE_VER0, 64 bytes): a tracepoint
/// needs nothing after it, and the kernel takes the rest as zero.
#[repr(C)]
struct Attr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// One event for all processes, on CPU 0: a kprobe event runs its BPF program on every
/// CPU whichever CPU the perf event is bound to (as aya and libbpf attach them).
pub(super) fn open_tracepoint(id: u64) -> Result<OwnedFd, Errno> {
    let attr = Attr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<Attr>() as u32,
        config: id,
        sample_period: 1,
        sample_type: 0,
        read_format: 0,
        flags: DISABLED,
        wakeup_events: 1,
        bp_type: 0,
        config1: 0,
    };
    let (pid, cpu, group_fd): (i32, i32, i32) = (-1, 0, -1);
    // SAFETY: `attr` is a valid perf_event_attr of the size it states, read by the kernel.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_perf_event_open,
            &attr as *const Attr,
            pid,
            cpu,
            group_fd,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: perf_event_open(2) returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub(super) fn set_bpf(perf: &OwnedFd, prog_fd: i32) -> Result<(), Errno> {
    ioctl(perf, PERF_EVENT_IOC_SET_BPF, prog_fd)
}

pub(super) fn enable(perf: &OwnedFd) -> Result<(), Errno> {
    ioctl(perf, PERF_EVENT_IOC_ENABLE, 0)
}

fn ioctl(perf: &OwnedFd, request: u64, arg: i32) -> Result<(), Errno> {
    // SAFETY: both requests take an int argument by value, not a pointer.
    let rc = unsafe { nix::libc::ioctl(perf.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
