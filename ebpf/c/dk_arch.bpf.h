/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Everything that differs between the x86_64 and the aarch64 objects (build.rs compiles each
 * kind once per architecture, with -D__TARGET_ARCH_x86 or -D__TARGET_ARCH_arm64):
 *
 *                  x86_64                                aarch64
 *   syscalls       syscall_64.tbl: open, creat, link,    asm-generic/unistd.h: only the *at
 *                  symlink, unlink, rmdir, mkdir,        forms (openat, linkat, unlinkat,
 *                  rename(at), chmod, chown too          mkdirat, renameat(2), fchmodat, ...)
 *   kprobe args    UAPI struct pt_regs (rdi, rsi, ...)   struct user_pt_regs (regs[0..7])
 *   sys_exit regs  orig_rax, rdi, rsi, rdx: one read;    syscallno, orig_x0 (x0 holds the return
 *                  r10 (argument 3, linkat only): one    value by then), regs[1..3]
 *                  more; tp_btf: direct loads, each
 *                  where it is used
 *   32-bit calls   ia32 syscalls skipped (TS_COMPAT in   AArch32 tasks skipped (pstate)
 *                  thread_info.status: int 0x80 from
 *                  64-bit code too)
 *
 * What the rest of the source uses:
 *   DK_SYSCALLS(X)    X(name, number, kind) for every syscall the tracepoints report; `cargo test`
 *                     compares each number with the kernel's own UAPI header (ebpf/src/arch.rs)
 *   struct dk_sys     the syscall number (and, but for x86_64's tp_btf, the first arguments),
 *                     read at once by dk_sys_read()
 *   dk_sys_arg()      at sys_exit: argument 0 (fstatfs's fd)
 *   dk_enter_arg()    at sys_enter: argument 0 to 4 (fds, names, flags)
 *   dk_enter_compat() at sys_enter: a 32-bit syscall (not reported)
 *   PT_REGS_PARMn     bpf_tracing.h's, given the register struct it casts a kprobe context to
 */
#ifndef DK_ARCH_BPF_H
#define DK_ARCH_BPF_H

/*
 * What the tracepoint programs do with a syscall (dk_tracepoint.bpf.h). sys_enter records what
 * the call names, sys_exit sends it if the call succeeded. Argument numbers are in the names:
 * FD0 is a file descriptor in argument 0, CWD a name relative to the working directory, AT01
 * a directory fd in argument 0 and a name relative to it in argument 1.
 */
enum dk_sys_kind {
	DK_SYS_NONE,
	DK_SYS_WRITE,      /* write family: fd in argument 0, bytes are the return value */
	DK_SYS_FATTRIB,    /* fchmod(fd, mode), fchown(fd, uid, gid): attrib of the open file */
	DK_SYS_FTRUNCATE,  /* ftruncate(fd, length): a write (of 0 bytes) to the open file */
	DK_SYS_FSTATFS,    /* fstatfs(fd): how the sidecar teaches the kernel side its roots */
	DK_SYS_OPEN_ARG1,  /* open(name, flags, mode): a create if O_CREAT and the file is new */
	DK_SYS_CREAT,      /* creat(name, mode): likewise, O_CREAT implied */
	DK_SYS_OPEN_ARG2,  /* openat(dirfd, name, flags, mode) */
	DK_SYS_OPENAT2,    /* openat2(dirfd, name, how): the flags are in user memory */
	DK_SYS_UNLINK,     /* unlink(name): delete */
	DK_SYS_RMDIR,      /* rmdir(name) */
	DK_SYS_MKDIR,      /* mkdir(name, mode) */
	DK_SYS_ATTRIB,     /* chmod(name, mode), chown/lchown(name, uid, gid) */
	DK_SYS_TRUNCATE,   /* truncate(name, length): a write (of 0 bytes) */
	DK_SYS_LINK,       /* link(old, new), symlink(target, new): the new name, argument 1 */
	DK_SYS_UNLINKAT,   /* unlinkat(dirfd, name, flags): rmdir with AT_REMOVEDIR */
	DK_SYS_MKDIRAT,    /* mkdirat(dirfd, name, mode) */
	DK_SYS_ATTRIBAT,   /* fchmodat(2), fchownat(dirfd, name, ...): "" (AT_EMPTY_PATH) is dirfd */
	DK_SYS_SYMLINKAT,  /* symlinkat(target, newdfd, new): newdfd, new in arguments 1, 2 */
	DK_SYS_LINKAT,     /* linkat(olddfd, old, newdfd, new, flags): newdfd, new in 2, 3 */
	DK_SYS_RENAME,     /* rename(old, new): both from the working directory */
	DK_SYS_RENAMEAT,   /* renameat(olddfd, old, newdfd, new) */
	DK_SYS_RENAMEAT2,  /* renameat2(olddfd, old, newdfd, new, flags): RENAME_EXCHANGE */
};

#if defined(__TARGET_ARCH_x86)

#include <asm/ptrace.h> /* UAPI struct pt_regs: what bpf_tracing.h reads kprobe arguments from */

/* arch/x86/entry/syscalls/syscall_64.tbl */
#define DK_SYSCALLS(X)                                                                \
	X(write, 1, WRITE)                                                            \
	X(open, 2, OPEN_ARG1)                                                         \
	X(pwrite64, 18, WRITE)                                                        \
	X(writev, 20, WRITE)                                                          \
	X(truncate, 76, TRUNCATE)                                                     \
	X(ftruncate, 77, FTRUNCATE)                                                   \
	X(rename, 82, RENAME)                                                         \
	X(mkdir, 83, MKDIR)                                                           \
	X(rmdir, 84, RMDIR)                                                           \
	X(creat, 85, CREAT)                                                           \
	X(link, 86, LINK)                                                             \
	X(unlink, 87, UNLINK)                                                         \
	X(symlink, 88, LINK)                                                          \
	X(chmod, 90, ATTRIB)                                                          \
	X(fchmod, 91, FATTRIB)                                                        \
	X(chown, 92, ATTRIB)                                                          \
	X(fchown, 93, FATTRIB)                                                        \
	X(lchown, 94, ATTRIB)                                                         \
	X(fstatfs, 138, FSTATFS)                                                      \
	X(openat, 257, OPEN_ARG2)                                                     \
	X(mkdirat, 258, MKDIRAT)                                                      \
	X(fchownat, 260, ATTRIBAT)                                                    \
	X(unlinkat, 263, UNLINKAT)                                                    \
	X(renameat, 264, RENAMEAT)                                                    \
	X(linkat, 265, LINKAT)                                                        \
	X(symlinkat, 266, SYMLINKAT)                                                  \
	X(fchmodat, 268, ATTRIBAT)                                                    \
	X(pwritev, 296, WRITE)                                                        \
	X(renameat2, 316, RENAMEAT2)                                                  \
	X(pwritev2, 328, WRITE)                                                       \
	X(openat2, 437, OPENAT2)                                                      \
	X(fchmodat2, 452, ATTRIBAT)

/* Ranges of numbers that split the list above into short runs (see dk_sys_kind). */
#define DK_SYS_RANGES(R) R(0, 76) R(76, 95) R(95, 257) R(257, 300) R(300, 1L << 31)

/* rdx, rsi, rdi, orig_rax: arguments 2, 1, 0 and the syscall number, adjacent in pt_regs. */
struct dk_sys {
	unsigned long rdx;
	unsigned long rsi;
	unsigned long rdi;
	unsigned long orig_rax;
};

_Static_assert(__builtin_offsetof(struct pt_regs, rsi) == __builtin_offsetof(struct pt_regs, rdx) + 8 &&
		       __builtin_offsetof(struct pt_regs, rdi) == __builtin_offsetof(struct pt_regs, rdx) + 16 &&
		       __builtin_offsetof(struct pt_regs, orig_rax) ==
			       __builtin_offsetof(struct pt_regs, rdx) + 24,
	       "one read fetches the arguments and the syscall number");

/*
 * `regs` is the kernel's pt_regs; the UAPI one has the same fixed layout under other member
 * names, which is what the tp_btf verifier checks the direct loads (btf) against. With btf
 * only the number is loaded here, the arguments where they are used (dk_sys_arg): a direct load
 * is cheaper than keeping them in registers, or spilled, across the helper calls in between.
 * Returns non-zero when there is nothing to report.
 */
static __always_inline int dk_sys_read(void *regs, bool btf, struct dk_sys *r)
{
	struct pt_regs *p = regs;

	if (!btf)
		return bpf_probe_read_kernel(r, sizeof(*r), &p->rdx);
	r->orig_rax = p->orig_rax;
	return 0;
}

static __always_inline long dk_sys_nr(const struct dk_sys *r)
{
	return (long)r->orig_rax;
}

/*
 * TS_COMPAT (arch/x86/include/asm/thread_info.h, 0x0002 from 4.x to 6.x): set while the task
 * runs a 32-bit syscall (ia32 entry, or int 0x80 from 64-bit code), still set at sys_exit.
 * Its numbers are the ia32 table's (getpid is 20 = writev here, eventfd2 328 = pwritev2), its
 * arguments in other registers: such calls are not reported (README: 32-bit processes).
 */
#define DK_TS_COMPAT 0x0002

static __always_inline int dk_sys_compat(bool btf)
{
	if (btf)
		return bpf_get_current_task_btf()->thread_info.status & DK_TS_COMPAT;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, thread_info.status) & DK_TS_COMPAT;
}

/* Argument n (0 to 3): a direct load (btf); else 0 to 2 were read with the number, and 3 (r10,
 * only linkat needs it) is read now. */
static __always_inline unsigned long dk_sys_arg(void *regs, bool btf, const struct dk_sys *r, int n)
{
	struct pt_regs *p = regs;
	unsigned long arg = 0;

	if (btf)
		return n == 0 ? p->rdi : n == 1 ? p->rsi : n == 2 ? p->rdx : p->r10;
	if (n != 3)
		return n == 0 ? r->rdi : n == 1 ? r->rsi : r->rdx;
	bpf_probe_read_kernel(&arg, sizeof(arg), &p->r10);
	return arg;
}

/* sys_enter: argument n (0 to 4: rdi, rsi, rdx, r10, r8) of the syscall about to run. */
static __always_inline unsigned long dk_enter_arg(void *regs, bool btf, int n)
{
	struct pt_regs *p = regs;
	unsigned long arg = 0;

	if (btf)
		return n == 0 ? p->rdi : n == 1 ? p->rsi : n == 2 ? p->rdx : n == 3 ? p->r10 : p->r8;
	bpf_probe_read_kernel(&arg, sizeof(arg),
			      n == 0 ? &p->rdi : n == 1 ? &p->rsi : n == 2 ? &p->rdx : n == 3 ? &p->r10 : &p->r8);
	return arg;
}

/* sys_enter: a 32-bit syscall, whose number means something else (TS_COMPAT, set on entry). */
static __always_inline int dk_enter_compat(void *regs, bool btf)
{
	return dk_sys_compat(btf);
}

#elif defined(__TARGET_ARCH_arm64)

/*
 * The UAPI register set (arch/arm64/include/uapi/asm/ptrace.h), which bpf_tracing.h casts a
 * kprobe context to (PT_REGS_PARMn: regs[0..4], PT_REGS_RC: regs[0]). Declared here so that
 * the arm64 objects need no arm64 UAPI headers on the build machine.
 */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

/*
 * The start of the kernel's struct pt_regs (arch/arm64/include/asm/ptrace.h): the UAPI set,
 * then orig_x0 (argument 0 as the syscall got it: x0 is overwritten by the return value) and
 * syscallno. Not UAPI, but laid out like this from 4.x to 6.x (Debian 6.1's BTF: 264, 272,
 * 280); the tp_btf verifier checks the direct loads against the running kernel's BTF.
 */
struct dk_pt_regs {
	struct user_pt_regs user_regs;
	__u64 orig_x0;
	__s32 syscallno;
};

/* asm-generic/unistd.h (arm64 has no open, creat, link, symlink, unlink, rmdir, mkdir, rename,
 * chmod or chown syscall; it has renameat, __ARCH_WANT_RENAMEAT, which musl's rename() uses;
 * fstatfs, truncate and ftruncate are __NR3264_*). */
#define DK_SYSCALLS(X)                                                                \
	X(mkdirat, 34, MKDIRAT)                                                       \
	X(unlinkat, 35, UNLINKAT)                                                     \
	X(symlinkat, 36, SYMLINKAT)                                                   \
	X(linkat, 37, LINKAT)                                                         \
	X(renameat, 38, RENAMEAT)                                                     \
	X(fstatfs, 44, FSTATFS)                                                       \
	X(truncate, 45, TRUNCATE)                                                     \
	X(ftruncate, 46, FTRUNCATE)                                                   \
	X(fchmod, 52, FATTRIB)                                                        \
	X(fchmodat, 53, ATTRIBAT)                                                     \
	X(fchownat, 54, ATTRIBAT)                                                     \
	X(fchown, 55, FATTRIB)                                                        \
	X(openat, 56, OPEN_ARG2)                                                      \
	X(write, 64, WRITE)                                                           \
	X(writev, 66, WRITE)                                                          \
	X(pwrite64, 68, WRITE)                                                        \
	X(pwritev, 70, WRITE)                                                         \
	X(renameat2, 276, RENAMEAT2)                                                  \
	X(pwritev2, 287, WRITE)                                                       \
	X(openat2, 437, OPENAT2)                                                      \
	X(fchmodat2, 452, ATTRIBAT)

/* Ranges of numbers that split the list above into short runs (see dk_sys_kind). */
#define DK_SYS_RANGES(R) R(0, 45) R(45, 57) R(57, 100) R(100, 1L << 31)

/* pstate, orig_x0, syscallno (and its padding): adjacent in pt_regs, so one read. */
struct dk_sys {
	__u64 pstate;
	__u64 orig_x0;
	__s32 syscallno;
	__u32 pad;
};

_Static_assert(__builtin_offsetof(struct dk_pt_regs, user_regs.pstate) == 264 &&
		       __builtin_offsetof(struct dk_pt_regs, orig_x0) == 272 &&
		       __builtin_offsetof(struct dk_pt_regs, syscallno) == 280,
	       "the kernel's arm64 pt_regs layout; one read fetches pstate, orig_x0, syscallno");

/* An AArch32 task (PSR_MODE32_BIT): its syscall numbers are arm's EABI ones, not these. */
#define DK_PSR_MODE32_BIT 0x10

/* Returns non-zero when there is nothing to report. */
static __always_inline int dk_sys_read(void *regs, bool btf, struct dk_sys *r)
{
	struct dk_pt_regs *p = regs;

	if (!btf) {
		if (bpf_probe_read_kernel(r, sizeof(*r), &p->user_regs.pstate))
			return 1;
	} else {
		r->pstate = p->user_regs.pstate;
		r->orig_x0 = p->orig_x0;
		r->syscallno = p->syscallno;
	}
	return r->pstate & DK_PSR_MODE32_BIT;
}

static __always_inline long dk_sys_nr(const struct dk_sys *r)
{
	return r->syscallno;
}

/* AArch32 tasks never get here: dk_sys_read() skips them by pstate. */
static __always_inline int dk_sys_compat(bool btf)
{
	return 0;
}

/* Argument n (0 to 3): orig_x0 (read with the number), or x1..x3, which still hold theirs (only
 * x0 is overwritten by the return value). */
static __always_inline unsigned long dk_sys_arg(void *regs, bool btf, const struct dk_sys *r, int n)
{
	struct dk_pt_regs *p = regs;
	unsigned long arg = 0;

	if (n == 0)
		return r->orig_x0;
	if (btf)
		return p->user_regs.regs[n & 7];
	bpf_probe_read_kernel(&arg, sizeof(arg), &p->user_regs.regs[n & 7]);
	return arg;
}

/* sys_enter: argument n (0 to 4) of the syscall about to run: x0..x4 (x0 still holds it). */
static __always_inline unsigned long dk_enter_arg(void *regs, bool btf, int n)
{
	struct dk_pt_regs *p = regs;
	unsigned long arg = 0;

	if (btf)
		return p->user_regs.regs[n & 7];
	bpf_probe_read_kernel(&arg, sizeof(arg), &p->user_regs.regs[n & 7]);
	return arg;
}

/* sys_enter: an AArch32 task, whose syscall numbers are arm's EABI ones. */
static __always_inline int dk_enter_compat(void *regs, bool btf)
{
	struct dk_pt_regs *p = regs;
	__u64 pstate = 0;

	if (btf)
		pstate = p->user_regs.pstate;
	else
		bpf_probe_read_kernel(&pstate, sizeof(pstate), &p->user_regs.pstate);
	return pstate & DK_PSR_MODE32_BIT;
}

#else
#error "diffkeeper's eBPF objects are built for __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/*
 * The kind of syscall number nr on this architecture. Written as compares: the modern object
 * lets clang turn them into a compare tree (every syscall runs this), compat keeps them in
 * order (dk_keep_compares, dk_compat.bpf.h). So that compat does not compare a number with
 * the whole list (most syscalls are none of these, and each runs both programs), the range
 * nr is in is found first, then only the numbers in it are compared: lo and hi are constants
 * where dk_sys_kind_in() is inlined, so the other numbers' compares fold away.
 */
#define DK_SYS_IF(name, n, kind)                                                      \
	if ((n) >= lo && (n) < hi) {                                                  \
		if (nr == (n))                                                        \
			return DK_SYS_##kind;                                         \
		dk_keep_compares(nr);                                                 \
	}
static __always_inline enum dk_sys_kind dk_sys_kind_in(long nr, long lo, long hi)
{
	DK_SYSCALLS(DK_SYS_IF)
	return DK_SYS_NONE;
}

#define DK_SYS_RANGE(lo, hi)                                                          \
	if (nr < (hi))                                                                \
		return dk_sys_kind_in(nr, lo, hi);                                    \
	dk_keep_compares(nr);
static __always_inline enum dk_sys_kind dk_sys_kind(long nr)
{
	DK_SYS_RANGES(DK_SYS_RANGE)
	return DK_SYS_NONE;
}
#undef DK_SYS_RANGE
#undef DK_SYS_IF

#endif /* DK_ARCH_BPF_H */
