//! kretprobes with an explicit maxactive, made through tracefs.
//!
//! A kretprobe takes one of its `maxactive` instances when the probed function is entered and
//! gives it back at the return; a call entered while all are taken has its return missed. aya
//! (0.15) makes kretprobes through the kprobe PMU, which cannot set maxactive: the kernel default
//! (max(10, 2 × possible CPUs)) is used up by a handful of threads blocked inside `vfs_write`
//! (pipes, sockets, NFS, dirty-page throttling), and every other write's return is lost. Here
//! each kretprobe is a tracefs event `r<N>:diffkeeper/<event> <function>` that the loaded
//! program is attached to with perf_event_open(2) and `PERF_EVENT_IOC_SET_BPF`; the kernel
//! counts its misses in `kprobe_profile`, which [`MissWatch`] reads. Where tracefs cannot be
//! used, aya's attach (kernel default) is the fallback, logged once and shown by the
//! `diffkeeper_kretprobe_maxactive` gauge (0).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::programs::{KProbe, ProgramError};
use nix::errno::Errno;

use super::tracefs::{errno_of, Tracefs, TracefsError};

/// The most the kernel accepts (`KRETPROBE_MAXACTIVE_MAX` in kernel/trace/trace_kprobe.c).
pub const MAXACTIVE_MAX: u32 = 4096;
/// The tracefs event group of every sidecar's kretprobes (stale ones are found by it).
const GROUP: &str = "diffkeeper";
/// An event of our group this much older than us whose removal does not fail with EBUSY (in
/// use by a live sidecar) was left by a sidecar that ended without removing it. The margin
/// keeps another sidecar's event alive between its creation and its perf_event_open(2).
const STALE_AFTER_SECS: u64 = 10;
/// At most one warning about missed returns per this long (the metric is always current).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What `/metrics` shows about the kretprobes (kprobe mode).
#[derive(Debug, Default)]
pub struct KretprobeStats {
    /// The maxactive of every kretprobe; 0 when any has the kernel's default (PMU fallback).
    pub maxactive: AtomicU32,
    /// Returns the kernel missed on them (`kprobe_profile`'s nmissed), refreshed with the
    /// reader's counters.
    pub missed: AtomicU64,
}

/// Why a kretprobe could not be made through tracefs.
#[derive(Debug)]
pub enum KretprobeError {
    Tracefs(TracefsError),
    /// Writing a command to a tracefs file.
    Write {
        path: PathBuf,
        command: String,
        errno: Errno,
    },
    Read {
        path: PathBuf,
        errno: Errno,
    },
    /// A system call on the event (perf_event_open, ioctl).
    Syscall {
        call: &'static str,
        event: String,
        errno: Errno,
    },
}

impl fmt::Display for KretprobeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tracefs(e) => e.fmt(f),
            Self::Write {
                path,
                command,
                errno,
            } => write!(
                f,
                "writing {command:?} to {} failed: {errno} (the kernel's reason, if any, is in \
                 error_log next to it; EACCES/EPERM: tracefs is read-only or the sidecar lacks \
                 root)",
                path.display()
            ),
            Self::Read { path, errno } => write!(f, "reading {} failed: {errno}", path.display()),
            Self::Syscall { call, event, errno } => write!(
                f,
                "{call} on tracefs event {GROUP}/{event} failed: {errno} (EACCES/EPERM: grant \
                 CAP_PERFMON, or CAP_SYS_ADMIN before Linux 5.8)"
            ),
        }
    }
}

impl std::error::Error for KretprobeError {}

/// One kretprobe made through tracefs, attached to a program while `perf` is open; dropping
/// it detaches it and removes the event.
struct TracefsKretprobe {
    event: String,
    /// The `kprobe_events` it was made in.
    events_file: PathBuf,
    perf: Option<OwnedFd>,
}

/// The kretprobes of one kprobe-mode attempt; dropping it detaches them and removes their
/// tracefs events.
pub struct Kretprobes {
    maxactive: u32,
    /// Where they are made (`None`: no usable tracefs, or a kernel without kprobes).
    tracefs: Option<Tracefs>,
    /// Cleared at the first failure: the rest go through aya.
    use_tracefs: bool,
    /// `dk_<pid>_<boot seconds>_<random>`: unique among the sidecars of a node, whose pids can
    /// repeat across pid namespaces.
    instance: String,
    made: Vec<TracefsKretprobe>,
    /// Why the kernel's default maxactive is used, until it is logged.
    fallback: Option<KretprobeError>,
    stats: Arc<KretprobeStats>,
}

impl Kretprobes {
    /// Ready to make kretprobes with `maxactive` (1..=[`MAXACTIVE_MAX`]) in the tracefs at
    /// `tracefs_dir` (`--tracefs-dir`), else in the one [`Tracefs::locate`] finds; events of
    /// crashed sidecars are removed first.
    pub fn new(maxactive: u32, tracefs_dir: Option<&Path>) -> Self {
        let mut fallback = None;
        // No kprobe PMU: no kprobes at all (the project's kernels are all >= 4.17); aya's
        // attach fails with the reason, and tracefs is neither looked for nor mounted.
        let tracefs = if Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            match Tracefs::locate(tracefs_dir) {
                Ok(tracefs) => Some(tracefs),
                Err(e) => {
                    fallback = Some(KretprobeError::Tracefs(e));
                    None
                }
            }
        } else {
            None
        };
        if let Some(tracefs) = &tracefs {
            remove_stale(tracefs, boot_secs());
        }
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            maxactive,
            use_tracefs: tracefs.is_some(),
            tracefs,
            instance: format!(
                "dk_{}_{}_{:04x}",
                std::process::id(),
                boot_secs(),
                random & 0xffff
            ),
            made: Vec::new(),
            fallback,
            stats: Arc::default(),
        }
    }

    /// Attaches the loaded `prog` as a kretprobe on `function`: through tracefs with
    /// maxactive, else (logged once) through aya with the kernel's default.
    pub fn attach(&mut self, prog: &mut KProbe, function: &str) -> Result<(), ProgramError> {
        if let Some(tracefs) = self.tracefs.as_ref().filter(|_| self.use_tracefs) {
            let prog_fd = prog.fd()?.as_fd().as_raw_fd();
            let event = format!("{}_{}", self.instance, event_safe(function));
            match TracefsKretprobe::make(tracefs, self.maxactive, event, function, prog_fd) {
                Ok(made) => {
                    self.made.push(made);
                    self.stats
                        .maxactive
                        .store(self.maxactive, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    self.fallback = Some(e);
                    self.use_tracefs = false;
                }
            }
        }
        prog.attach(function, 0)?;
        // Those made before keep their maxactive; the gauge shows the weakest.
        self.stats.maxactive.store(0, Ordering::Relaxed);
        // Logged only once aya's attach worked: on a kernel without kprobes the family fails
        // with its own reason.
        if let Some(why) = self.fallback.take() {
            log::warn!(
                "[eBPF] kretprobes from {function} on are attached through the kprobe PMU with \
                 the kernel's default maxactive: at most max(10, 2 × possible CPUs) calls in \
                 flight per function; more threads inside one (blocked on a pipe, socket or \
                 NFS) make the returns of the others missed, those changes lost, and the \
                 kernel does not count them where the sidecar can read them. Cause: {why}"
            );
        }
        Ok(())
    }

    pub fn stats(&self) -> Arc<KretprobeStats> {
        self.stats.clone()
    }

    /// What the reader needs to count the kernel's misses; `None` without tracefs events.
    pub fn miss_watch(&self) -> Option<MissWatch> {
        let tracefs = self.tracefs.as_ref().filter(|_| !self.made.is_empty())?;
        Some(MissWatch {
            profile: tracefs.kprobe_profile(),
            events: self.made.iter().map(|k| k.event.clone()).collect(),
            maxactive: self.maxactive,
            stats: self.stats.clone(),
            failed: false,
            warned_total: 0,
            warned_at: None,
        })
    }
}

impl TracefsKretprobe {
    fn make(
        tracefs: &Tracefs,
        maxactive: u32,
        event: String,
        function: &str,
        prog_fd: i32,
    ) -> Result<Self, KretprobeError> {
        let events = tracefs.kprobe_events();
        let command = format!("r{maxactive}:{GROUP}/{event} {function}");
        append_command(&events, &command).map_err(|e| KretprobeError::Write {
            path: events.clone(),
            command,
            errno: errno_of(&e),
        })?;
        // From here on, dropping `made` removes the event again.
        let mut made = Self {
            event,
            events_file: events,
            perf: None,
        };
        let id_path = tracefs.event_id(GROUP, &made.event);
        let id: u64 = fs::read_to_string(&id_path)
            .map_err(|e| errno_of(&e))
            .and_then(|text| text.trim().parse().map_err(|_| Errno::EINVAL))
            .map_err(|errno| KretprobeError::Read {
                path: id_path,
                errno,
            })?;
        let syscall = |call, errno| KretprobeError::Syscall {
            call,
            event: made.event.clone(),
            errno,
        };
        let perf = perf::open_tracepoint(id).map_err(|e| syscall("perf_event_open", e))?;
        perf::set_bpf(&perf, prog_fd).map_err(|e| syscall("ioctl(PERF_EVENT_IOC_SET_BPF)", e))?;
        perf::enable(&perf).map_err(|e| syscall("ioctl(PERF_EVENT_IOC_ENABLE)", e))?;
        made.perf = Some(perf);
        Ok(made)
    }
}

impl Drop for TracefsKretprobe {
    fn drop(&mut self) {
        // Closing the perf event detaches the program and releases the event at once; EBUSY
        // is retried all the same, for a slow release.
        drop(self.perf.take());
        let command = format!("-:{GROUP}/{}", self.event);
        let mut result = append_command(&self.events_file, &command);
        for _ in 0..20 {
            match &result {
                Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                    std::thread::sleep(Duration::from_millis(5));
                    result = append_command(&self.events_file, &command);
                }
                _ => break,
            }
        }
        if let Err(e) = result {
            log::warn!(
                "[eBPF] cannot remove kretprobe event {GROUP}/{}: writing {command:?} to {}: {}",
                self.event,
                self.events_file.display(),
                errno_of(&e)
            );
        }
    }
}

/// Counts the kernel's misses of our kretprobes (`kprobe_profile`: `name hits nmissed`).
pub struct MissWatch {
    profile: PathBuf,
    events: Vec<String>,
    maxactive: u32,
    stats: Arc<KretprobeStats>,
    /// The profile could not be read (logged once).
    failed: bool,
    /// The total at the last warning, and when it was logged.
    warned_total: u64,
    warned_at: Option<Instant>,
}

impl MissWatch {
    /// The misses counted at the last refresh.
    pub fn missed(&self) -> u64 {
        self.stats.missed.load(Ordering::Relaxed)
    }

    /// Re-reads the profile and warns when the misses grew.
    pub fn refresh(&mut self) {
        let text = match fs::read_to_string(&self.profile) {
            Ok(text) => text,
            Err(e) => {
                if !self.failed {
                    log::warn!(
                        "[eBPF] cannot read {} ({}): missed kretprobe returns are not counted",
                        self.profile.display(),
                        errno_of(&e)
                    );
                    self.failed = true;
                }
                return;
            }
        };
        let total = missed(&text, &self.events);
        self.stats.missed.store(total, Ordering::Relaxed);
        // While the instances stay used up, calls miss all the time: one warning per interval.
        let due = self.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if total > self.warned_total && due {
            log::warn!(
                "[eBPF] the kernel missed {} kretprobe returns ({total} in all; \
                 diffkeeper_kretprobe_missed_total): more than {} threads were inside a probed \
                 call at once, and the changes of those it missed are not journaled; raise \
                 --kretprobe-maxactive (at most {MAXACTIVE_MAX})",
                total - self.warned_total,
                self.maxactive
            );
            self.warned_total = total;
            self.warned_at = Some(Instant::now());
        }
    }
}

/// The sum of `events`' nmissed in a `kprobe_profile` text.
fn missed(profile: &str, events: &[String]) -> u64 {
    profile
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let nmissed = fields.nth(1)?.parse::<u64>().ok()?;
            events.iter().any(|e| e == name).then_some(nmissed)
        })
        .sum()
}

/// Removes the events of our group that no live sidecar uses (see [`STALE_AFTER_SECS`]).
fn remove_stale(tracefs: &Tracefs, now_secs: u64) {
    let events = tracefs.kprobe_events();
    let Ok(listing) = fs::read_to_string(&events) else {
        return;
    };
    let mut removed = 0;
    for event in stale_events(&listing, now_secs) {
        // EBUSY: a live sidecar's; ENOENT: another sidecar removed it first.
        match append_command(&events, &format!("-:{GROUP}/{event}")) {
            Ok(()) => removed += 1,
            Err(e) => log::debug!("[eBPF] kretprobe event {GROUP}/{event} kept: {e}"),
        }
    }
    if removed > 0 {
        log::info!(
            "[eBPF] removed {removed} kretprobe events of sidecars that ended without removing \
             them ({})",
            events.display()
        );
    }
}

/// Our group's events in a `kprobe_events` listing (`r4096:diffkeeper/<event> <function>`),
/// but those made less than [`STALE_AFTER_SECS`] ago.
fn stale_events(listing: &str, now_secs: u64) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| {
            let (_, probe) = line.split_whitespace().next()?.split_once(':')?;
            let event = probe.strip_prefix(GROUP)?.strip_prefix('/')?;
            let made = event.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
            let young =
                made.is_some_and(|made| made <= now_secs && now_secs - made < STALE_AFTER_SECS);
            (!young).then_some(event)
        })
        .collect()
}

/// A kernel function name as part of an event name (letters, digits and `_` only).
fn event_safe(function: &str) -> String {
    function
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// One command, in one write(2) and appended: opening `kprobe_events` with O_TRUNC would
/// remove every kprobe event of the node.
fn append_command(path: &Path, command: &str) -> io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(format!("{command}\n").as_bytes())
}

/// Seconds since boot (CLOCK_BOOTTIME: the same for every container of the node).
fn boot_secs() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map_or(0, |t| u64::try_from(t.tv_sec()).unwrap_or(0))
}

mod perf;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_groups_stale_events_are_removed() {
        let listing = "r4096:diffkeeper/dk_7_100_ab12_vfs_write vfs_write\n\
                       r4096:diffkeeper/dk_8_195_cd34_vfs_write vfs_write\n\
                       r:kprobes/aya_9_r_vfs_write_0x0_0 vfs_write\n\
                       p:diffkeeperx/dk_1_1_0000_f f\n\
                       r16:diffkeeper/odd_name vfs_unlink\n";
        // At boot second 200: the first is 100 s old, the second 5 s (kept), the odd name is
        // ours but undated (removed if unused).
        assert_eq!(
            stale_events(listing, 200),
            ["dk_7_100_ab12_vfs_write", "odd_name"]
        );
        // A stamp from the future (another time namespace): not young.
        assert_eq!(stale_events(listing, 150).len(), 3);
    }

    #[test]
    fn misses_are_summed_over_our_events_only() {
        let profile = "  dk_7_100_ab12_vfs_write                 12345          3\n\
                       \x20 dk_7_100_ab12_vfs_writev                  10          0\n\
                       \x20 dk_7_100_ab12_do_filp_open               500          4\n\
                       \x20 aya_9_r_vfs_write_0x0_0                  100         99\n";
        let ours = ["dk_7_100_ab12_vfs_write", "dk_7_100_ab12_do_filp_open"].map(String::from);
        assert_eq!(missed(profile, &ours), 7);
        assert_eq!(missed("", &ours), 0);
    }

    #[test]
    fn event_names_are_valid_tracefs_names() {
        let k = Kretprobes {
            maxactive: 1,
            tracefs: None,
            use_tracefs: false,
            instance: format!("dk_{}_{}_{:04x}", u32::MAX, u64::MAX, 0xffff),
            made: Vec::new(),
            fallback: None,
            stats: Arc::default(),
        };
        let event = format!("{}_{}", k.instance, event_safe("do_filp_open.isra.0"));
        // MAX_EVENT_NAME_LEN is 64; a name is a C identifier.
        assert!(event.len() < 64, "{event}");
        assert!(event.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(event.starts_with("dk_"));
    }

    /// Against a stand-in tracefs: stale events are removed by appending (never truncating),
    /// and the misses of our events are counted and published.
    #[test]
    fn stand_in_tracefs_gets_appended_commands_and_counts_misses() {
        let root = std::env::temp_dir().join(format!("dk-tracefs-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let tracefs = Tracefs::at(&root);
        let old = "r4096:diffkeeper/dk_7_1_ab12_vfs_write vfs_write\n";
        fs::write(tracefs.kprobe_events(), old).unwrap();
        remove_stale(&tracefs, 1000);
        assert_eq!(
            fs::read_to_string(tracefs.kprobe_events()).unwrap(),
            format!("{old}-:diffkeeper/dk_7_1_ab12_vfs_write\n")
        );

        let stats = Arc::new(KretprobeStats::default());
        let mut watch = MissWatch {
            profile: tracefs.kprobe_profile(),
            events: vec!["dk_1_2_0000_vfs_write".into()],
            maxactive: 4096,
            stats: stats.clone(),
            failed: false,
            warned_total: 0,
            warned_at: None,
        };
        watch.refresh(); // no profile yet: logged, nothing counted
        assert_eq!(stats.missed.load(Ordering::Relaxed), 0);
        fs::write(tracefs.kprobe_profile(), "  dk_1_2_0000_vfs_write  9  2\n").unwrap();
        watch.refresh();
        assert_eq!(stats.missed.load(Ordering::Relaxed), 2);
        // Growth within the warning interval: counted at once, warned about later.
        fs::write(tracefs.kprobe_profile(), "  dk_1_2_0000_vfs_write  9  5\n").unwrap();
        watch.refresh();
        assert_eq!(stats.missed.load(Ordering::Relaxed), 5);
        assert_eq!(watch.warned_total, 2);
        fs::remove_dir_all(&root).unwrap();
    }
}
