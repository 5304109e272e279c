//! Loading the CO-RE object with the selected BTF, filling the root maps, and attaching one
//! attach family. Failures carry a cause and a hint for the operator.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::mem::size_of;
use std::path::Path;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::{BtfTracePoint, FEntry, FExit, KProbe, Program, ProgramError, RawTracePoint};
use aya::{Ebpf, EbpfLoader};
use diffkeeper_ebpf::event::{DkAbsRoot, DkDevRoots, DkRootKey, DkSettings};
use diffkeeper_ebpf::object::{globals, maps, programs, ObjectKind};

use super::btf_select::{kernel_ids, relocation_btf, BtfSource, SelectedBtf};
use super::direct::{self, DirectIds};
use super::error::{Cause, Failure, Hint};
use super::explain::explain;
use super::kretprobe::Kretprobes;
use super::roots::RootTable;
use crate::change::Family;
use diffkeeper_btf::skeleton::TypeKind;

/// Creates the maps and relocates the programs of `object` against `btf`; no program is
/// loaded yet. The modern object takes its settings as read-only globals at load, the compat
/// object (no global data before 5.2) in the `dk_settings` map right after.
pub fn load(
    object: ObjectKind,
    btf: &SelectedBtf,
    roots: &RootTable,
    ringbuf_bytes: u32,
) -> Result<Ebpf, Failure> {
    let all_roots = roots.id_mask();
    let system_part;
    let (target, direct_ids) = match btf.for_relocation() {
        // A cached BTF's ids need not be the running kernel's: no direct loads.
        Some(cached) => (cached, None),
        None => {
            let (part, direct_ids) = system_relocation(object, btf)?;
            system_part = part;
            (&system_part, direct_ids)
        }
    };
    // Modern: the tp_btf programs' casts get the kernel's ids (direct.rs), or none.
    let (bytes, direct, ids) = if object == ObjectKind::Modern {
        let (bytes, casts) = direct::patch(object.bytes(), direct_ids)
            .map_err(|e| explain(&format!("preparing the {object} eBPF object"), &e))?;
        let direct = u32::from(direct_ids.is_some() && casts > 0);
        log::debug!("[eBPF] direct loads in tp_btf: {direct} ({casts} casts, {direct_ids:?})");
        (Cow::Owned(bytes), direct, direct_ids.unwrap_or_default())
    } else {
        (Cow::Borrowed(object.bytes()), 0, DirectIds::default())
    };
    let mut loader = EbpfLoader::new();
    loader.btf(target);
    if object == ObjectKind::Modern {
        loader
            .map_max_entries(maps::EVENTS, ringbuf_bytes)
            .override_global(globals::RING_BYTES, &ringbuf_bytes, true)
            .override_global(globals::ALL_ROOTS, &all_roots, true)
            .override_global(globals::DIRECT, &direct, true)
            .override_global(globals::BTF_DENTRY, &ids.dentry, true)
            .override_global(globals::BTF_FILE, &ids.file, true)
            .override_global(globals::BTF_TASK, &ids.task, true)
            .override_global(globals::BTF_KIOCB, &ids.kiocb, true);
    }
    let mut ebpf = loader.load(&bytes).map_err(|e| {
        explain(
            &format!(
                "loading the {object} eBPF object with BTF {}",
                btf.path.display()
            ),
            &e,
        )
    })?;
    if object == ObjectKind::Compat {
        fill_settings(&mut ebpf, DkSettings { all_roots })?;
    }
    fill_roots(&mut ebpf, roots)?;
    // The last root is the canary's (session.rs).
    let filter = match roots.paths.split_last() {
        Some((canary, state)) if !state.is_empty() => super::absolute::kernel_filter(state, canary),
        _ => super::absolute::kernel_filter(&roots.paths, std::path::Path::new("/")),
    };
    fill_absolute(&mut ebpf, filter)?;
    Ok(ebpf)
}

/// The part of the system BTF that relocating `object` needs (never the loader's default,
/// the whole system BTF parsed at load: its peak memory is several times the sidecar's). The
/// same read finds the direct loads' ids (returned) and the attach targets' (kept in `btf`).
fn system_relocation(
    object: ObjectKind,
    btf: &SelectedBtf,
) -> Result<(aya::Btf, Option<DirectIds>), Failure> {
    let attach_targets = attach_targets();
    let attach: Vec<_> = attach_targets
        .iter()
        .map(|(name, kind)| (name.as_str(), *kind))
        .collect();
    let wanted: Vec<_> = DirectIds::WANTED
        .into_iter()
        .chain(attach.iter().copied())
        .collect();
    let (part, ids) = relocation_btf(object.bytes(), &wanted)
        .map_err(|e| explain(&format!("relocating the {object} eBPF object"), &e))?;
    let (direct_ids, attach_ids) = ids.split_at(DirectIds::WANTED.len());
    btf.known_ids.remember(&attach, attach_ids);
    Ok((part, DirectIds::of(direct_ids)))
}

fn fill_settings(ebpf: &mut Ebpf, settings: DkSettings) -> Result<(), Failure> {
    let fill_err =
        |e: &(dyn StdError + 'static)| explain(&format!("filling {}", maps::SETTINGS), e);
    let map = ebpf
        .map_mut(maps::SETTINGS)
        .expect("the compat object defines dk_settings");
    let mut array: Array<&mut MapData, [u8; size_of::<DkSettings>()]> =
        Array::try_from(map).map_err(|e| fill_err(&e))?;
    array
        .set(0, &settings.to_bytes(), 0)
        .map_err(|e| fill_err(&e))
}

fn fill_absolute(ebpf: &mut Ebpf, value: DkAbsRoot) -> Result<(), Failure> {
    let fill_err = |e: &(dyn StdError + 'static)| explain(&format!("filling {}", maps::ABS), e);
    let map = ebpf.map_mut(maps::ABS).expect("the object defines dk_abs");
    let mut array: Array<&mut MapData, [u8; size_of::<DkAbsRoot>()]> =
        Array::try_from(map).map_err(|e| fill_err(&e))?;
    array.set(0, &value.to_bytes(), 0).map_err(|e| fill_err(&e))
}

fn fill_roots(ebpf: &mut Ebpf, roots: &RootTable) -> Result<(), Failure> {
    let fill_err =
        |what: &str, e: &(dyn StdError + 'static)| explain(&format!("filling {what}"), e);
    let map = ebpf
        .map_mut(maps::ROOTS)
        .expect("the object defines dk_roots");
    let mut root_map: HashMap<&mut MapData, [u8; size_of::<DkRootKey>()], u32> =
        HashMap::try_from(map).map_err(|e| fill_err(maps::ROOTS, &e))?;
    for (key, id) in &roots.keys {
        root_map
            .insert(&key.to_bytes(), id, 0)
            .map_err(|e| fill_err(maps::ROOTS, &e))?;
    }
    let map = ebpf
        .map_mut(maps::DEVS)
        .expect("the object defines dk_devs");
    let mut dev_map: HashMap<&mut MapData, u32, [u8; size_of::<DkDevRoots>()]> =
        HashMap::try_from(map).map_err(|e| fill_err(maps::DEVS, &e))?;
    for (dev, inos) in &roots.devs {
        dev_map
            .insert(dev, &inos.to_bytes(), 0)
            .map_err(|e| fill_err(maps::DEVS, &e))?;
    }
    Ok(())
}

/// Loads and attaches the programs of one family. kprobe mode's kretprobes come back: they stay
/// attached while the value lives.
pub fn attach(
    ebpf: &mut Ebpf,
    object: ObjectKind,
    family: Family,
    btf: &SelectedBtf,
    kretprobe_maxactive: u32,
    tracefs_dir: Option<&Path>,
) -> Result<Option<Kretprobes>, Failure> {
    match family {
        Family::Fentry if object == ObjectKind::Compat => Err(Failure::new(
            "",
            Cause::NoFentryInCompat,
            Hint::FentryNeedsModern,
        )),
        Family::Fentry => attach_fentry(ebpf, btf).map(|()| None),
        Family::Kprobe => attach_kprobe(ebpf, kretprobe_maxactive, tracefs_dir).map(Some),
        Family::Tracepoint => attach_tracepoint(ebpf, object, btf).map(|()| None),
    }
}

/// The kernel functions the fentry/fexit programs attach to.
fn fentry_targets() -> impl Iterator<Item = (&'static str, TypeKind)> {
    programs::FEXIT_WRITES
        .into_iter()
        .chain(programs::FEXIT_RETURNS)
        .chain(programs::FENTRY_HOOKS)
        .map(|(_, function)| (function, TypeKind::Func))
}

/// The `btf_trace_*` typedefs the tp_btf programs attach by, sys_exit's first.
fn tp_btf_targets() -> [String; 2] {
    [programs::SYS_EXIT_BTF, programs::SYS_ENTER_BTF]
        .map(|(_, tracepoint)| format!("btf_trace_{tracepoint}"))
}

/// Every kernel type a program of the modern object attaches by.
fn attach_targets() -> Vec<(String, TypeKind)> {
    fentry_targets()
        .map(|(name, kind)| (name.to_owned(), kind))
        .chain(tp_btf_targets().map(|name| (name, TypeKind::Typedef)))
        .collect()
}

fn attach_fentry(ebpf: &mut Ebpf, btf: &SelectedBtf) -> Result<(), Failure> {
    let functions: Vec<_> = fentry_targets().collect();
    let ids = system_ids("fentry/fexit", &functions, btf)?;
    // The returns before the hooks: a hook's record must never wait for a return that is not
    // attached yet.
    for (name, function) in programs::FEXIT_WRITES
        .into_iter()
        .chain(programs::FEXIT_RETURNS)
    {
        let step = format!("fexit {name} on {function}");
        with_program(ebpf, name, &step, |prog: &mut FExit| {
            prog.load(function, &ids)?;
            prog.attach().map(drop)
        })?;
    }
    for (name, function) in programs::FENTRY_HOOKS {
        let step = format!("fentry {name} on {function}");
        with_program(ebpf, name, &step, |prog: &mut FEntry| {
            prog.load(function, &ids)?;
            prog.attach().map(drop)
        })?;
    }
    Ok(())
}

/// The running kernel's ids of `wanted` (see [`kernel_ids`]), for attaching `what`.
fn system_ids(
    what: &str,
    wanted: &[(&str, TypeKind)],
    btf: &SelectedBtf,
) -> Result<aya::Btf, Failure> {
    kernel_ids(wanted, &btf.known_ids).map_err(|e| explain(&format!("attaching {what}"), &e))
}

/// The kretprobes through [`Kretprobes`] (tracefs, with `maxactive`), the kprobes through aya.
/// One kprobe and one kretprobe program serve both write functions: loaded once, attached
/// twice.
fn attach_kprobe(
    ebpf: &mut Ebpf,
    maxactive: u32,
    tracefs_dir: Option<&Path>,
) -> Result<Kretprobes, Failure> {
    let mut kretprobes = Kretprobes::new(maxactive, tracefs_dir);
    let writes = |name| programs::WRITE_FUNCTIONS.map(|function| (name, function));
    // The returns before the entries, as in attach_fentry: an entry's record must never wait
    // for a return that is not attached yet (it would be counted as a missed return).
    let returns = writes(programs::KRETPROBE_WRITE)
        .into_iter()
        .chain(programs::KRETPROBE_RETURNS);
    for (name, function) in returns {
        let step = format!("kretprobe {name} on {function}");
        with_program(ebpf, name, &step, |prog: &mut KProbe| {
            load_once(prog)?;
            kretprobes.attach(prog, function)
        })?;
    }
    let entries = writes(programs::KPROBE_WRITE)
        .into_iter()
        .chain(programs::KPROBE_HOOKS);
    for (name, function) in entries {
        let step = format!("kprobe {name} on {function}");
        with_program(ebpf, name, &step, |prog: &mut KProbe| {
            load_once(prog)?;
            prog.attach(function, 0).map(drop)
        })?;
    }
    Ok(kretprobes)
}

fn load_once(prog: &mut KProbe) -> Result<(), ProgramError> {
    if prog.fd().is_err() {
        prog.load()?;
    }
    Ok(())
}

/// The tp_btf programs when the object has them and the BTF is the system one (their ids are
/// the running kernel's), else or if that fails the raw tracepoints; the log says which ones
/// are attached. sys_exit first: a sys_enter slot is then always sent or dropped by its exit.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    object: ObjectKind,
    btf: &SelectedBtf,
) -> Result<(), Failure> {
    if object == ObjectKind::Modern && btf.source == BtfSource::System {
        let programs = [programs::SYS_EXIT_BTF, programs::SYS_ENTER_BTF];
        let typedefs = tp_btf_targets();
        let wanted = typedefs
            .each_ref()
            .map(|typedef| (typedef.as_str(), TypeKind::Typedef));
        let attached = system_ids("tp_btf", &wanted, btf).and_then(|ids| {
            programs.into_iter().try_for_each(|(name, tracepoint)| {
                let step = format!("tp_btf {name} on {tracepoint}");
                with_program(ebpf, name, &step, |prog: &mut BtfTracePoint| {
                    prog.load(tracepoint, &ids)?;
                    prog.attach().map(drop)
                })
            })
        });
        match attached {
            Ok(()) => {
                log::info!("[eBPF] tracepoint mode: tp_btf sys_enter+sys_exit attached");
                return Ok(());
            }
            Err(failure) => {
                log::info!("[eBPF] tracepoint mode: {failure}; using raw_tracepoint instead");
                unload_programs(ebpf);
            }
        }
    }
    if object == ObjectKind::Compat {
        super::tail_calls::fill(ebpf)?;
    }
    for (name, tracepoint) in [programs::SYS_EXIT, programs::SYS_ENTER] {
        let step = format!("raw tracepoint {name} on {tracepoint}");
        with_program(ebpf, name, &step, |prog: &mut RawTracePoint| {
            prog.load()?;
            prog.attach(tracepoint).map(drop)
        })?;
    }
    log::info!("[eBPF] tracepoint mode: raw_tracepoint sys_enter+sys_exit attached");
    Ok(())
}

/// Detaches and unloads every program, keeping the maps: after a mode fails to attach, the
/// next mode reuses the same object instead of relocating all programs again (~20 ms).
pub fn unload_programs(ebpf: &mut Ebpf) {
    for (name, prog) in ebpf.programs_mut() {
        let result = match prog {
            Program::FEntry(p) => p.unload(),
            Program::FExit(p) => p.unload(),
            Program::KProbe(p) => p.unload(),
            Program::RawTracePoint(p) => p.unload(),
            Program::BtfTracePoint(p) => p.unload(),
            _ => Ok(()),
        };
        // NotLoaded is the common case: only the failed family was ever loaded.
        if let Err(e) = result {
            if !matches!(e, ProgramError::NotLoaded) {
                log::debug!("[eBPF] unloading {name}: {e}");
            }
        }
    }
}

/// Runs `step` on the program `name` as type `P`, turning errors into a [`Failure`].
fn with_program<'a, P: 'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
    step: &str,
    run: impl FnOnce(&mut P) -> Result<(), ProgramError>,
) -> Result<(), Failure>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog: &mut P = program(ebpf, name)
        .try_into()
        .map_err(|e| explain(step, &e))?;
    run(prog).map_err(|e| explain(step, &e))
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Program {
    ebpf.program_mut(name)
        .unwrap_or_else(|| panic!("the eBPF object has no program {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The system BTF, as the sidecar selects it when /sys/kernel/btf/vmlinux exists.
    fn system_btf() -> SelectedBtf {
        SelectedBtf {
            source: BtfSource::System,
            path: PathBuf::from(diffkeeper_btf::SYSTEM_BTF_PATH),
            parsed: None,
            known_ids: Default::default(),
        }
    }

    /// This kernel has no kprobe PMU (attach fails) and refuses fentry, but kprobe programs
    /// still go through the verifier at load: all of them, of both objects, must pass it here.
    #[test]
    fn kprobe_programs_of_both_objects_pass_the_verifier() {
        let btf = system_btf();
        let roots = RootTable::build(vec![std::env::temp_dir()]).unwrap();
        for object in ObjectKind::ALL {
            let mut ebpf = load(object, &btf, &roots, 1 << 16).unwrap();
            let names = [programs::KPROBE_WRITE, programs::KRETPROBE_WRITE]
                .into_iter()
                .chain(programs::KPROBE_HOOKS.map(|(name, _)| name))
                .chain(programs::KRETPROBE_RETURNS.map(|(name, _)| name));
            for name in names {
                let prog: &mut KProbe = program(&mut ebpf, name).try_into().unwrap();
                prog.load()
                    .unwrap_or_else(|e| panic!("{object} {name}: {}", explain(name, &e)));
            }
        }
    }

    /// The tp_btf programs pass the verifier with the system BTF, through the ids kept from
    /// the relocation read. On 6.2+ (this machine) that is with their direct loads: the
    /// kernel's BTF has the kfunc (direct.rs checks which kernels do), and the modern object
    /// has casts for it, so the load sets dk_direct and the verifier walks those branches.
    /// tracepoint mode falls back to raw tracepoints silently, so only this test would see
    /// them refused.
    #[test]
    fn tp_btf_programs_pass_the_verifier_with_the_kept_ids() {
        let btf = system_btf();
        let roots = RootTable::build(vec![std::env::temp_dir()]).unwrap();
        let mut ebpf = load(ObjectKind::Modern, &btf, &roots, 1 << 16).unwrap();
        let typedefs = tp_btf_targets();
        let wanted = typedefs
            .each_ref()
            .map(|typedef| (typedef.as_str(), TypeKind::Typedef));
        assert!(
            btf.known_ids.get(&wanted).is_some(),
            "ids not kept: {:?}",
            btf.known_ids
        );
        let ids = system_ids("tp_btf", &wanted, &btf).unwrap();
        for (name, tracepoint) in [programs::SYS_EXIT_BTF, programs::SYS_ENTER_BTF] {
            let prog: &mut BtfTracePoint = program(&mut ebpf, name).try_into().unwrap();
            prog.load(tracepoint, &ids)
                .unwrap_or_else(|e| panic!("{name}: {}", explain(name, &e)));
        }
    }
}
