//! Real eBPF on this kernel (root) as if it had no system BTF: /sys/kernel/btf is hidden in a
//! private mount namespace, so the loader must use `<cache>/<release>.btf`, and the canary must
//! reject a cached BTF whose structure is valid but whose `dentry.d_name` offset is wrong.

mod ebpf_common;

use std::path::PathBuf;

use diffkeeper_sidecar::change::{self, ChangeQueue, Family};
use diffkeeper_sidecar::ebpf::{self, AttachMode, Cause, EbpfUnavailable, FamilyFailure};
use diffkeeper_tests::btf::system_btf;
use diffkeeper_tests::btf_edit::shift_member;
use diffkeeper_tests::mountns::hide_system_btf_in_this_thread;
use ebpf_common::*;

#[test]
fn tracepoint_with_cached_btf_when_system_btf_is_hidden() {
    capture_logs();
    let real = system_btf();
    hide_system_btf_in_this_thread();
    let scratch = Scratch::new("cache-btf");
    let root = scratch.dir("state");
    let outside = scratch.dir("outside");
    let cfg = config(AttachMode::Auto, &scratch, vec![root.clone()]);
    let cached = write_cached_btf(&cfg, &real);

    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    // auto with a cached BTF skips fentry; this kernel has no kprobes; tracepoint remains.
    assert_eq!(session.backend(), TRACEPOINT);
    assert_eq!(session.btf_source(), "cache");
    assert_eq!(session.btf_path(), cached);
    let line = format!("[eBPF] Loaded BTF spec from {}", cached.display());
    assert!(
        !logs_containing(&line).is_empty(),
        "log line {line:?} missing"
    );

    write_scenario(TRACEPOINT, &root, &outside, &rx, true);
    stop_and_check_unloaded(session);
}

#[test]
fn canary_rejects_a_cached_btf_with_a_wrong_member_offset() {
    capture_logs();
    let mut edited = system_btf().to_vec();
    // The programs read dentry.d_name.name; 64 bits further is another pointer (d_inode on
    // 6.x), so names come back as garbage while every load and attach succeeds.
    shift_member(&mut edited, "dentry", "d_name", 64).unwrap();
    let refused = start_refused("canary-btf", &edited, "a wrong d_name offset");
    let (err, failures) = (&refused.err, refused.failures());
    assert_eq!(failures[0].family, Family::Tracepoint, "{err}");
    assert!(
        matches!(failures[0].failure.cause, Cause::Canary(_)),
        "{err}"
    );
    assert!(
        failures[0]
            .to_string()
            .starts_with("tracepoint: canary check failed:"),
        "{err}"
    );
    assert!(
        failures[0]
            .to_string()
            .contains("(the BTF does not match this kernel"),
        "{err}"
    );
    let warned = logs_containing(&format!(
        "[eBPF] the BTF {} does not match this kernel",
        refused.cached.display()
    ));
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        refused.changes.try_iter().next().is_none(),
        "canary events must not reach the sink"
    );
}

/// Writes come back right with this BTF, creates do not: tracepoint mode decides "created" by
/// `file.f_mode`, which this BTF puts 32 bits early (onto `f_lock`, 0 while unlocked). A
/// canary that checked writes only passed it, and every create was then lost.
#[test]
fn canary_rejects_a_cached_btf_that_breaks_only_creates() {
    capture_logs();
    let mut edited = system_btf().to_vec();
    shift_member(&mut edited, "file", "f_mode", -32).unwrap();
    let refused = start_refused("canary-fmode", &edited, "a wrong file.f_mode offset");
    let failures = refused.failures();
    let text = failures[0].to_string();
    assert!(
        text.starts_with("tracepoint: canary check failed: no event for the canary's create of"),
        "{text}"
    );
}

/// A start that the canary refused, with what it left behind.
struct Refused {
    err: EbpfUnavailable,
    cached: PathBuf,
    changes: ChangeQueue,
    _scratch: Scratch,
}

impl Refused {
    /// The one family tried (tracepoint), which must be the only failure.
    fn failures(&self) -> &[FamilyFailure] {
        let EbpfUnavailable::Families(failures) = &self.err else {
            panic!("expected the tracepoint family to fail, got {}", self.err);
        };
        assert_eq!(failures.len(), 1, "{}", self.err);
        failures
    }
}

/// Starts tracepoint mode with `btf` as the cached BTF and sysfs BTF hidden; a BTF with `what`
/// must not pass the canary.
fn start_refused(tag: &str, btf: &[u8], what: &str) -> Refused {
    hide_system_btf_in_this_thread();
    let scratch = Scratch::new(tag);
    let root = scratch.dir("state");
    let cfg = config(AttachMode::Tracepoint, &scratch, vec![root]);
    let cached = write_cached_btf(&cfg, btf);
    let (tx, changes) = change::queue(change::QUEUE_CAPACITY);
    match ebpf::start(&cfg, tx) {
        Ok(session) => panic!(
            "a BTF with {what} passed the canary ({:?})",
            session.backend()
        ),
        Err(err) => Refused {
            err,
            cached,
            changes,
            _scratch: scratch,
        },
    }
}

#[test]
fn no_btf_anywhere_says_what_to_provide() {
    capture_logs();
    hide_system_btf_in_this_thread();
    let scratch = Scratch::new("no-btf");
    let cfg = config(AttachMode::Auto, &scratch, vec![scratch.dir("state")]);
    let (tx, _rx) = change::queue(change::QUEUE_CAPACITY);
    let err = ebpf::start(&cfg, tx)
        .err()
        .expect("no BTF: eBPF must be unavailable");
    let cached = cfg
        .btf_cache_dir
        .join(format!("{}.btf", cfg.kernel_release));
    let text = err.to_string();
    assert!(text.starts_with("btf: no usable BTF"), "{text}");
    assert!(
        text.contains(&format!(
            "provide {}: run diffkeeper-init",
            cached.display()
        )),
        "{text}"
    );
}
