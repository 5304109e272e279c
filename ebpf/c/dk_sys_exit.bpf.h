/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The tracepoint family: sys_exit sees every syscall's return. Included once, at the end of
 * diffkeeper.bpf.c (it reports through report_dentry()); the syscall numbers and the register
 * access are the architecture's, from dk_arch.bpf.h.
 *
 * Every syscall on the machine runs this, so the order is cheapest test first: the return
 * value, then the syscall number, and the file only for the few calls we report. A new name
 * from link/linkat/symlink/symlinkat is a user path relative to a directory (dirfd or cwd):
 * the program reports that directory's path and the name as passed (DK_F_NAME), and user
 * space decides whether the name can be placed below it (ebpf/src/event.rs). Two
 * programs share the body: tp_btf (BTF-typed: regs and task->files->fdt->fd are direct
 * loads, ~30 ns/write cheaper; needs the running kernel's own BTF ids, so only with the
 * system BTF) and raw_tracepoint (any BTF: every kernel pointer is a bpf_probe_read_kernel).
 */

/* The current task's fd array: direct loads through BTF-typed pointers when `btf`. */
static __always_inline struct file **task_fds(bool btf)
{
	if (btf)
		return bpf_get_current_task_btf()->files->fdt->fd;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, files, fdt, fd);
}

static __always_inline struct file *fd_file(struct file **fds, long fd)
{
	struct file *file = NULL;

	/* The syscall just succeeded on fd, so it is below max_fds; the read is fault-safe anyway. */
	if (fd < 0 || fd > 0xfffff || !fds)
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* The current task's working directory: where link(2)/symlink(2) and AT_FDCWD names start. */
static __always_inline struct dentry *cwd_dentry(bool btf)
{
	if (btf)
		return bpf_get_current_task_btf()->fs->pwd.dentry;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, fs, pwd.dentry);
}

/* AT_FDCWD (fcntl.h): the *at() calls' "relative to the working directory". */
#define DK_AT_FDCWD -100

/* fstatfs(fd) by anyone on a watched root directory teaches the kernel side its dentry. */
static __always_inline int learn_from_fd(struct file **fds, long fd)
{
	struct dentry *dentry = BPF_CORE_READ(fd_file(fds, fd), f_path.dentry);
	struct dk_root_key key = {
		.dev = BPF_CORE_READ(dentry, d_sb, s_dev),
		.ino = BPF_CORE_READ(dentry, d_inode, i_ino),
	};
	__u32 *id = bpf_map_lookup_elem(&dk_roots, &key);

	if (id)
		learn_root(*id, dentry);
	return 0;
}


/* O_CREAT (asm-generic/fcntl.h, the same on x86_64 and arm64): an open without it cannot
 * create a file. */
#define DK_O_CREAT 0100

/*
 * Every reported kind only picks its descriptor (a file's, or a new name's directory's) and
 * arguments; one fd lookup and one report_dentry() call follow, so the walk and path assembly
 * are inlined once (a call site per kind had the compat program verify four walks: 75,041 steps
 * on 5.10, against the pre-5.2 budget of 131,072). Modern gives writes their own call
 * (DK_WRITES_SHARE_REPORT). A chain of ifs, not a switch: clang lays a
 * switch's cases out around the shared tail, some after it, jumping back (compat has no
 * backward jump); dk_keep_compares() keeps compat's ifs in order. Argument numbers stay
 * constants: tp_btf loads registers directly, at fixed offsets.
 */
/* How a sys_exit report is sent: now, after the 32-bit syscall check of this attach type. */
static __always_inline __u32 sys_exit_emit(bool btf)
{
	return btf ? DK_EMIT_SYS_EXIT_BTF : DK_EMIT_SYS_EXIT;
}

static __always_inline int on_sys_exit(void *ctx, void *regs, long ret, bool btf)
{
	struct dk_sys r;
	struct dentry *dentry;
	const char *name = NULL; /* a new name: fd is its directory's (or AT_FDCWD) */
	long fd = ret;           /* the opens: the file they returned */
	__u16 op = DK_OP_CREATE;
	__u64 bytes = 0;

	if (ret < 0) /* failed calls change nothing; costs no memory read */
		return 0;
	if (dk_sys_read(regs, btf, &r))
		return 0;
	enum dk_sys_kind kind = dk_sys_kind(dk_sys_nr(&r));

	/* A 32-bit syscall (whose numbers mean something else) is dropped only by submit(), once
	 * the filter matched: its garbage arguments are read fault-safely and lead nowhere else. */
	if (kind == DK_SYS_NONE)
		return 0;
	if (kind == DK_SYS_WRITE) {
		if (ret == 0)
			return 0;
		if (!DK_WRITES_SHARE_REPORT) /* dk_compat.bpf.h: modern's fast path */
			return report_file(ctx, fd_file(task_fds(btf), (int)dk_sys_arg(regs, btf, &r, 0)),
					   DK_OP_WRITE, ret, sys_exit_emit(btf));
		op = DK_OP_WRITE;
		bytes = ret;
		fd = (int)dk_sys_arg(regs, btf, &r, 0);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_OPEN_ARG1 && !(dk_sys_arg(regs, btf, &r, 1) & DK_O_CREAT))
		return 0;
	dk_keep_compares(kind);
	if (kind == DK_SYS_OPEN_ARG2 && !(dk_sys_arg(regs, btf, &r, 2) & DK_O_CREAT))
		return 0;
	dk_keep_compares(kind);
	if (kind == DK_SYS_LINK) {
		fd = DK_AT_FDCWD;
		name = (const char *)dk_sys_arg(regs, btf, &r, 1);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_SYMLINKAT) {
		fd = (int)dk_sys_arg(regs, btf, &r, 1);
		name = (const char *)dk_sys_arg(regs, btf, &r, 2);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_LINKAT) {
		fd = (int)dk_sys_arg(regs, btf, &r, 2);
		name = (const char *)dk_sys_arg(regs, btf, &r, 3);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_FSTATFS) /* nothing left to learn: one global load */
		return all_roots_learned() ? 0 : learn_from_fd(task_fds(btf), (long)(int)dk_sys_arg(regs, btf, &r, 0));
	if (name && fd == DK_AT_FDCWD) {
		dentry = cwd_dentry(btf);
	} else {
		struct file *file = fd_file(task_fds(btf), fd);

		/* A successful open reports a create only when it created the file. */
		if (!name && op == DK_OP_CREATE && !(BPF_CORE_READ(file, f_mode) & DK_FMODE_CREATED))
			return 0;
		dentry = BPF_CORE_READ(file, f_path.dentry);
	}
	/* A file must still have a name (report_dentry's `named`); a new name's directory had one
	 * when the call succeeded (and may be its file system's top, which never has). */
	return report_dentry(ctx, dentry, op, bytes, !name, sys_exit_emit(btf), name);
}

#if DK_HAVE_BTF_PROGS
SEC("tp_btf/sys_exit")
int BPF_PROG(dk_sys_exit_btf, struct pt_regs *regs, long ret)
{
	return on_sys_exit(ctx, regs, ret, true);
}

#endif

SEC("raw_tracepoint/sys_exit")
int dk_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sys_exit(ctx, (void *)ctx->args[0], (long)ctx->args[1], false);
}
