/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Kernel pointers read with plain loads instead of bpf_probe_read_kernel() (a helper call and
 * a fault-checked copy each): the tp_btf programs on kernels with the bpf_rdonly_cast() kfunc
 * (6.2+). The cast turns any address into a read-only, untrusted BTF-typed pointer whose loads
 * the JIT makes fault-safe (a bad address reads 0, as a failed probe read does); the verifier
 * then rewrites the call itself into a register move, so it costs nothing at run time.
 *
 * The call is written as a raw instruction with a placeholder id (DK_CAST_INSN) instead of an
 * extern __ksym: the loader relocates against a cut-down BTF whose ids are not the kernel's,
 * and a kfunc call must carry the kernel's own id. The loader (sidecar/src/ebpf/direct.rs)
 * finds that id in the system BTF and writes it into every such instruction, or, without the
 * system BTF or the kfunc, turns each into `r0 = r1`; it sets dk_direct only in the first case.
 * Every use is behind `direct && dk_direct`: a read-only global, so the verifier drops the
 * branch it cannot take, and `direct` is a constant true only in the tp_btf programs' copies,
 * so the raw tracepoint, kprobe and fentry programs never contain the call.
 */
#ifndef DK_DIRECT_BPF_H
#define DK_DIRECT_BPF_H

#if DK_HAVE_BTF_PROGS
/* Set at load: the cast is resolved, and the running kernel's type ids it casts to. */
const volatile __u32 dk_direct = 0;
const volatile __u32 dk_btf_dentry = 0;
const volatile __u32 dk_btf_file = 0;
const volatile __u32 dk_btf_task = 0;
const volatile __u32 dk_btf_kiocb = 0;

/* The loader's marker: call (0x85), src_reg 2 (BPF_PSEUDO_KFUNC_CALL), imm 0x7dca57ed. */
#define DK_CAST_INSN 0x7dca57ed00002085
#define DK_STR_(x) #x
#define DK_STR(x) DK_STR_(x)

/* bpf_rdonly_cast(p, id): r1 and r2 in, r0 out, r1-r5 clobbered as by any call. */
static __always_inline void *dk_cast(const void *p, __u32 type_id)
{
	register __u64 r1 asm("r1") = (__u64)p;
	register __u64 r2 asm("r2") = type_id;
	register __u64 r0 asm("r0");

	asm volatile(".quad " DK_STR(DK_CAST_INSN)
		     : "=r"(r0), "+r"(r1), "+r"(r2)
		     :
		     : "r3", "r4", "r5", "memory");
	return (void *)r0;
}
#define DK_AS(type, p, id) ((type *)dk_cast(p, id))
#endif

/* d->d_parent */
static __always_inline struct dentry *parent_of(struct dentry *d, bool direct)
{
#if DK_HAVE_BTF_PROGS
	if (direct && dk_direct)
		return DK_AS(struct dentry, d, dk_btf_dentry)->d_parent;
#endif
	return BPF_CORE_READ(d, d_parent);
}

/* d->d_sb */
static __always_inline struct super_block *sb_of(struct dentry *d, bool direct)
{
#if DK_HAVE_BTF_PROGS
	if (direct && dk_direct)
		return DK_AS(struct dentry, d, dk_btf_dentry)->d_sb;
#endif
	return BPF_CORE_READ(d, d_sb);
}

/*
 * The current task, for BTF-typed loads (`btf`: only the tp_btf programs ask). Through the
 * cast when it is there: a pointer loaded from bpf_get_current_task_btf()'s trusted one makes
 * the verifier (6.4+) look its field up in the kernel's "safe" lists, a search of the whole
 * kernel BTF by name per load it checks, which was most of the tp_btf programs' load time
 * (6.18: 25 of 46 ms for dk_sys_enter_btf). The cast's pointer is untrusted, not checked so.
 * Either way the loads are the same fault-safe loads at run time.
 */
static __always_inline struct task_struct *current_task(bool btf)
{
#if DK_HAVE_BTF_PROGS
	if (btf && dk_direct)
		return DK_AS(struct task_struct, (void *)bpf_get_current_task(), dk_btf_task);
#endif
	return bpf_get_current_task_btf();
}

/* file->f_path.dentry */
static __always_inline struct dentry *dentry_of(struct file *file, bool direct)
{
#if DK_HAVE_BTF_PROGS
	if (direct && dk_direct)
		return DK_AS(struct file, file, dk_btf_file)->f_path.dentry;
#endif
	return BPF_CORE_READ(file, f_path.dentry);
}

/*
 * One slot of an fd array, fds[fd], is a `struct file *` at an address no BTF type describes:
 * read through the cast as a struct whose first member is one (kiocb's ki_filp, at 0 on every
 * kernel; the CO-RE offset says so). `slot` is a plain number to the verifier (fdtable's fd is
 * a pointer to pointers), and the load is as fault-safe as a probe read.
 */
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct kiocb___dk {
	struct file *ki_filp;
};
#pragma clang attribute pop

static __always_inline struct file *file_at(struct file **slot, bool direct)
{
	struct file *file = NULL;

#if DK_HAVE_BTF_PROGS
	if (direct && dk_direct)
		return DK_AS(struct kiocb___dk, slot, dk_btf_kiocb)->ki_filp;
#endif
	bpf_probe_read_kernel(&file, sizeof(file), slot);
	return file;
}

#endif /* DK_DIRECT_BPF_H */
