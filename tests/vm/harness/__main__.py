"""diffkeeper VM matrix: boots the newest Debian 5.10, 6.1 and 6.12 cloud kernels (x86_64) and the
6.1 cloud-arm64 kernel (arm64, qemu-system-aarch64) under qemu (TCG) and runs the sidecar/init
cases in each; prints a summary table, writes target/vm/results.json and per-case logs, and exits
1 if any case differs from its expectation (XFAIL rows do not count; XPASS does), 2: setup
problem."""

import argparse
import dataclasses
import fnmatch
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import arm64, btrfs, bundle, image, kernels, matrix, qemu, report
from .util import HarnessError, log, run

REPO = Path(__file__).resolve().parents[3]
BOOT_ALLOWANCE = 60  # seconds of the outer timeout for boot and shutdown


def parse_args(argv):
    ids = " ".join(c.id for c in [matrix.sanity_case(), *arm64.cases(matrix.all_cases(), True)])
    p = argparse.ArgumentParser(prog="tests/vm/run.sh", description=__doc__, epilog=f"case ids: {ids}")
    p.add_argument(
        "bin_dir",
        type=Path,
        help="dir with the static (musl) diffkeeper-init, diffkeeper-sidecar, diffkeeper-scenario, "
        "diffkeeper-btf-edit",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("DIFFKEEPER_VM_CACHE", "/var/cache/diffkeeper-vm")),
        help="kernel package cache kept between runs (env DIFFKEEPER_VM_CACHE)",
    )
    p.add_argument("--out", type=Path, default=REPO / "target" / "vm", help="results and logs")
    p.add_argument(
        "--kernel",
        action="append",
        choices=sorted({*kernels.SERIES, *arm64.SERIES}),
        help="only this kernel series (repeatable; default: all)",
    )
    p.add_argument(
        "--arch",
        action="append",
        choices=list(ARCHES),
        help="only guests of this architecture (repeatable; default: both)",
    )
    p.add_argument(
        "--arm64-bin-dir",
        type=Path,
        help="dir with the static aarch64 diffkeeper-init, diffkeeper-sidecar, diffkeeper-scenario "
        "(default: BIN_DIR/../../aarch64-unknown-linux-musl/release)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="only cases whose id matches (repeatable; sanity always runs)",
    )
    # The guests wait much of the time (sidecar start-up, canary timeouts): three TCG guests in
    # parallel on 2 cores finish in about the time of one (measured: 87 s for all three, against
    # 145 s with two at a time).
    p.add_argument("--jobs", type=int, default=3, help="VMs booted in parallel")
    p.add_argument(
        "--vm-timeout",
        type=float,
        help="outer limit per VM in seconds (default: sum of the case timeouts + 60)",
    )
    p.add_argument(
        "--bpf-object",
        type=Path,
        action="append",
        help="an eBPF object the minimised BTF is made for (repeatable; default: both committed "
        "objects of the guest's architecture, as `just min-btf` does)",
    )
    return p.parse_args(argv)


ARCHES = ("x86_64", "arm64")
HOST_TOOLS = {"diffkeeper-btf-edit"}  # run on the host (always from BIN_DIR), not in the guest


@dataclasses.dataclass
class Target:
    """One guest: a kernel of one architecture and what its initramfs and qemu need."""

    arch: str
    kernel: kernels.Kernel
    name: str  # its directory under --out: the series (x86_64) or arm64-<series>
    cases: list
    common: bytes  # shared initramfs segment of the architecture
    extra: bytes = b""  # per-kernel architecture part (arm64: modules, /vm/arch.sh)
    btfhub_arch: str = "x86_64"
    command: object = qemu.x86_command
    bpf_objects: list = dataclasses.field(default_factory=lambda: image.bpf_objects("x86_64"))


def select_cases(args, all_cases: list[matrix.Case]) -> list[matrix.Case]:
    cases = [matrix.sanity_case()]
    selected = [c for c in all_cases if not args.only or any(fnmatch.fnmatch(c.id, g) for g in args.only)]
    return cases + selected


def check_inputs(args, cases, guest_bin_dir: Path, bpf_objects: list[Path]) -> None:
    needed = {b for c in cases for b in c.needs}
    missing = [
        str((args.bin_dir if b in HOST_TOOLS else guest_bin_dir) / b)
        for b in sorted(needed)
        if not ((args.bin_dir if b in HOST_TOOLS else guest_bin_dir) / b).exists()
    ]
    if any("min" in c.btf_variants for c in cases):
        missing += [str(o) for o in args.bpf_object or bpf_objects if not o.exists()]
    if missing:
        raise HarnessError(
            "missing: " + ", ".join(missing) + ". `just vm-test` builds them all; by hand: `just build` "
            "and `cargo build --release --target x86_64-unknown-linux-musl -p diffkeeper-tests "
            "--bin diffkeeper-scenario --bin diffkeeper-btf-edit` (arm64: `cargo zigbuild --release "
            "--target aarch64-unknown-linux-musl -p diffkeeper-tests --bin diffkeeper-scenario`)"
        )


def host_btf_variants(t: Target, args, work: Path) -> dict[str, Path]:
    """BTF files made on the host from the kernel's BTF: "min" with the very command of
    `just min-btf` (for the guest architecture's objects), "broken" with dentry.d_name moved by
    64 bits (still structurally valid)."""
    kernel = t.kernel
    wanted = {v for c in t.cases for v in c.btf_variants}
    made = {}
    if "min" in wanted:
        made["min"] = work / f"{kernel.release}.min.btf"
        run(
            [str(REPO / "tests/vm/min-btf.sh"), str(kernel.btf), str(made["min"]), *map(str, args.bpf_object or t.bpf_objects)],
            capture=True,
        )
    if "bundle" in wanted:
        made["bundle"] = bundle.make(kernel, work)
    if "disk" in wanted:
        made["disk"] = btrfs.make(kernel, work)
    if "broken" in wanted:
        made["broken"] = work / f"{kernel.release}.broken.btf"
        run(
            [
                str(args.bin_dir / "diffkeeper-btf-edit"),
                str(kernel.btf),
                str(made["broken"]),
                *matrix.BROKEN_EDIT,
            ],
            capture=True,
        )
    return made


def run_kernel(t: Target, args) -> tuple[qemu.VmRun, list[report.Row]]:
    kernel = t.kernel
    cases = [c for c in t.cases if c.runs_on is None or c.runs_on(kernel.release)]
    work = args.out / t.name
    logs = work / "cases"
    shutil.rmtree(work, ignore_errors=True)
    logs.mkdir(parents=True)
    variants = host_btf_variants(t, args, work)
    case_list = "".join(c.list_line(kernel.release) + "\n" for c in cases)
    segment = image.kernel_segment(kernel, case_list, variants, t.btfhub_arch)
    initrd = image.write_initrd(work / "initrd.img", t.common, segment + t.extra)
    timeout = args.vm_timeout or BOOT_ALLOWANCE + sum(c.timeout for c in cases)
    log(f"{kernel.release}: booting with {len(cases)} cases (outer timeout {timeout} s)")
    vm = qemu.boot(kernel.release, kernel.vmlinux, initrd, work, timeout, t.command)
    log(f"{kernel.release}: guest finished in {vm.secs:.0f} s (done={vm.done})")
    rows = [report.judge(kernel.release, c, vm, logs) for c in cases]
    return vm, rows


def main(argv) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    arches = args.arch or list(ARCHES)
    targets = []
    if "x86_64" in arches:
        series = [s for s in args.kernel or kernels.SERIES if s in kernels.SERIES]
        cases = select_cases(args, matrix.all_cases())
        if series:
            check_inputs(args, cases, args.bin_dir, image.bpf_objects("x86_64"))
        refreshed = [False]
        kernel_list = [kernels.prepare(s, args.cache, refreshed) for s in series]
        common = (
            image.common_segment(
                args.bin_dir, "x86_64", verifier_stats=image.build_verifier_stats(args.out)
            )
            if kernel_list
            else b""
        )
        targets += [Target("x86_64", k, k.series, cases, common) for k in kernel_list]
    if "arm64" in arches:
        series = [s for s in args.kernel or arm64.SERIES if s in arm64.SERIES]
        bin_dir = (args.arm64_bin_dir or args.bin_dir / "../../aarch64-unknown-linux-musl/release").resolve()
        if series:
            check_inputs(
                args,
                select_cases(args, arm64.cases(matrix.all_cases(), True)),
                bin_dir,
                image.bpf_objects("aarch64"),
            )
            apt = arm64.Apt(args.cache)
            common = image.common_segment(
                bin_dir,
                "aarch64",
                arm64.userland(apt, args.cache),
                arm64.build_verifier_stats(apt, args.cache, args.out),
            )
        for s in series:
            k = arm64.prepare_kernel(apt, s, args.cache)
            targets.append(
                Target(
                    "arm64",
                    k.kernel,
                    f"arm64-{s}",
                    select_cases(args, arm64.cases(matrix.all_cases(), k.fentry)),
                    common,
                    arm64.arch_segment(k),
                    arm64.BTFHUB_ARCH,
                    arm64.qemu_command,
                    image.bpf_objects("aarch64"),
                )
            )
    if not targets:
        raise HarnessError(f"no kernel series {args.kernel} for the architectures {arches}")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda t: run_kernel(t, args), targets))
    runs = [vm for vm, _ in results]
    rows = [row for _, rows in results for row in rows]
    summary = report.write(args.out, rows, runs, time.monotonic() - start)
    print(summary)
    if not (args.kernel or args.arch or args.only):
        git = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
        revision = run(git, capture=True, check=False).strip()
        report.publish(REPO / "docs" / "results" / "vm-matrix.md", summary, runs, revision or "unknown")
        log("the full matrix: results written to docs/results/vm-matrix.md")
    for r in rows:
        if r.result == "XFAIL":
            print(f"XFAIL {r.kernel} {r.case}: {r.note} (log: {r.log})", file=sys.stderr)
    failed = [r for r in rows if r.result not in ("PASS", "XFAIL")]
    for r in failed:
        print(f"FAILED ({r.result}) {r.kernel} {r.case}: {r.note} (log: {r.log})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (HarnessError, OSError) as e:  # OSError: names the path, e.g. an unwritable --cache
        print(f"vm-test: {e}", file=sys.stderr)
        sys.exit(2)
