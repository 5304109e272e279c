use super::*;
use crate::object::{programs, Arch, ObjectKind};
use std::process::Command;

fn bytes(arch: Arch, kind: ObjectKind) -> &'static [u8] {
    kind.bytes_for(arch)
        .expect("tests embed every architecture")
}

fn check(arch: Arch, kind: ObjectKind) -> (Summary, Vec<Violation>) {
    check_4_18(bytes(arch, kind)).unwrap_or_else(|e| panic!("{arch} {kind}: {e}"))
}

/// Both compat objects: the aarch64 one promises the same as the x86_64 one.
#[test]
fn compat_objects_pass_every_check() {
    for arch in Arch::ALL {
        compat_object_passes_every_check(arch);
    }
}

fn compat_object_passes_every_check(arch: Arch) {
    let (summary, violations) = check(arch, ObjectKind::Compat);
    let list: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    assert!(
        list.is_empty(),
        "{arch} compat object:\n{}",
        list.join("\n")
    );
    for (program, (section, insns)) in &summary.programs {
        eprintln!("{arch} compat {program:<24} {section:<32} {insns:>5} instructions");
    }

    // The reader did find what there is to check (an empty summary passes trivially).
    let mut names: Vec<&str> = summary.programs.keys().map(String::as_str).collect();
    let mut expected = programs::all(ObjectKind::Compat);
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for (program, (section, insns)) in &summary.programs {
        assert!(*insns > 10, "{program} in {section}: {insns} instructions");
    }
    assert_eq!(summary.maps.get("dk_events"), Some(&4), "PERF_EVENT_ARRAY");
    assert_eq!(summary.maps.get("dk_settings"), Some(&2), "ARRAY");
    // Kernel and user memory through the split reads (the loader downgrades them before 5.5).
    for helper in [25, 113, 114, 115] {
        assert!(
            summary.helpers.contains(&helper),
            "helper {helper} not seen"
        );
    }
    for legacy in [4, 45] {
        assert!(
            !summary.helpers.contains(&legacy),
            "helper {legacy}: the address-guessing read, which arm64 kernels may lack"
        );
    }
}

/// Each rule fails on an object that breaks it: the modern ones break all but the size.
#[test]
fn modern_objects_fail_the_checks() {
    for arch in Arch::ALL {
        modern_object_fails_the_checks(arch);
    }
}

fn modern_object_fails_the_checks(arch: Arch) {
    let (summary, violations) = check(arch, ObjectKind::Modern);
    let has = |f: &dyn Fn(&Violation) -> bool| violations.iter().any(f);
    assert!(has(&|v| matches!(v, Violation::BackwardJump { .. })));
    for id in [125, 130, 134, 158, 181] {
        // ktime_get_boot_ns, ringbuf_output/query, get_current_task_btf, loop
        assert!(
            has(&|v| matches!(v, Violation::Helper { id: got, .. } if *got == id)),
            "{arch}: helper {id} not reported"
        );
    }
    assert!(has(
        &|v| matches!(v, Violation::RingBuf { map } if map == "dk_events")
    ));
    for section in [".bss", ".rodata"] {
        assert!(
            has(&|v| matches!(v, Violation::GlobalData { section: s } if s == section)),
            "{section} not reported"
        );
    }
    for program in [
        "dk_fexit_vfs_write",
        "dk_fentry_inode_rename",
        "dk_sys_exit_btf",
    ] {
        assert!(
            has(&|v| matches!(v, Violation::BtfTyped { program: p, .. } if p == program)),
            "{program} not reported"
        );
    }
    // The modern programs are below 4,096 instructions too; the size rule does measure
    // them (a limit below the largest one fails), and fails on a real oversized object
    // in `oversized_program_fails_the_size_check`.
    let largest = summary.programs.values().map(|p| p.1).max().unwrap();
    let (_, v) = check_with_limit(bytes(arch, ObjectKind::Modern), largest - 1).unwrap();
    assert!(v.iter().any(|v| matches!(v, Violation::TooLarge { .. })));
}

/// A straight-line program of more than 4,096 instructions, compiled by clang.
#[test]
fn oversized_program_fails_the_size_check() {
    let dir = std::env::temp_dir().join(format!("dk-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, obj) = (dir.join("big.c"), dir.join("big.o"));
    std::fs::write(
        &src,
        "#define R5(x) x x x x x\n#define R10(x) R5(x) R5(x)\n\
         __attribute__((section(\"kprobe/x\"), used)) int big(void *ctx)\n\
         { volatile long v = 0; R10(R10(R10(R5(v += 3;)))) return v; }\n\
         char LICENSE[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
    )
    .unwrap();
    let out = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("run clang (install it: scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&obj).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let (summary, violations) = check_4_18(&bytes).unwrap();
    let insns = summary.programs["big"].1;
    assert!(insns > MAX_INSNS_4_18, "{insns}");
    assert_eq!(
        violations,
        vec![Violation::TooLarge {
            program: "big".into(),
            insns
        }]
    );
}

#[test]
fn garbage_is_an_error_not_a_pass() {
    assert!(check_4_18(b"not an elf").is_err());
    let mut truncated = bytes(Arch::Aarch64, ObjectKind::Compat).to_vec();
    truncated.truncate(truncated.len() / 2);
    assert!(check_4_18(&truncated).is_err());
}
