//! diffkeeper's tracepoint program with a filter that lets every write on one file system
//! through, loaded from the very object the sidecar embeds.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aya::maps::{HashMap, MapData, RingBuf};
use aya::{Btf, EbpfLoader};
use diffkeeper_ebpf::event::{kernel_dev, DkDevRoots, DkRootKey};
use diffkeeper_ebpf::object::{self, maps, programs};
use nix::sys::stat::{major, minor};

use crate::{attach, hold};

pub fn run(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
    let dev = kernel_dev(major(meta.dev()), minor(meta.dev()));
    let btf = Btf::from_sys_fs().map_err(|e| format!("cannot read the system BTF: {e}"))?;
    let mut ebpf = EbpfLoader::new()
        .btf(&btf)
        .load(object::object())
        .map_err(|e| format!("loading diffkeeper's eBPF object: {e}"))?;

    let key = DkRootKey {
        dev,
        pad: 0,
        ino: meta.ino(),
    };
    let mut roots: HashMap<&mut MapData, [u8; size_of::<DkRootKey>()], u32> = HashMap::try_from(
        ebpf.map_mut(maps::ROOTS)
            .expect("the object defines dk_roots"),
    )
    .map_err(|e| format!("{}: {e}", maps::ROOTS))?;
    roots
        .insert(&key.to_bytes(), &0, 0)
        .map_err(|e| format!("filling {}: {e}", maps::ROOTS))?;
    let mut dev_roots = DkDevRoots {
        count: 1,
        ..Default::default()
    };
    dev_roots.ino[0] = meta.ino();
    let mut devs: HashMap<&mut MapData, u32, [u8; size_of::<DkDevRoots>()]> = HashMap::try_from(
        ebpf.map_mut(maps::DEVS)
            .expect("the object defines dk_devs"),
    )
    .map_err(|e| format!("{}: {e}", maps::DEVS))?;
    devs.insert(&dev, &dev_roots.to_bytes(), 0)
        .map_err(|e| format!("filling {}: {e}", maps::DEVS))?;

    // Both halves of the tracepoint mode: sys_enter resolves the write's file, sys_exit sends it.
    let mut ids = Vec::new();
    for (name, tracepoint) in [programs::SYS_ENTER, programs::SYS_EXIT] {
        ids.push(attach::raw_tracepoint(&mut ebpf, name, tracepoint)?);
    }

    let mut ring = RingBuf::try_from(
        ebpf.take_map(maps::EVENTS)
            .expect("the object defines dk_events"),
    )
    .map_err(|e| format!("{}: {e}", maps::EVENTS))?;
    // Drain while attached, so the ring never fills and every event is really submitted
    // (the cost being measured), not dropped.
    hold::until_stdin_closes(&ids, || ring.next().is_some());
    Ok(())
}
