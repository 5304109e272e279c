// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * diffkeeper's kernel side: report writes, creates, deletes and renames of files
 * below watched root directories. One CO-RE object, three attach families:
 *
 *   kprobe     kprobe+kretprobe on vfs_write/vfs_writev, kprobes on security_inode_*
 *   fentry     fexit on vfs_write/vfs_writev, fentry on security_inode_*
 *   tracepoint tp_btf sys_exit with the system BTF, else raw_tracepoint sys_exit (attached
 *              by name: no tracefs, no kernel BTF ids); neither needs tracefs:
 *              write, pwrite64, writev, pwritev, pwritev2 by fd, and files created by
 *              open/openat/creat/openat2 (FMODE_CREATED). unlink/rename are not seen: their
 *              paths are user strings relative to a cwd/dirfd/root that BPF cannot look up.
 *
 * Every family reports bytes as the call's return value (kretprobe, fexit, sys_exit).
 * Why these kernel functions (prototypes checked in the BTF of Debian 6.1.0-56,
 * 6.12.117 and the 6.18 build kernel; all identical and all non-inlined FUNCs):
 *   vfs_write(file, buf, count, pos)              write(2), pwrite64(2)
 *   vfs_writev(file, vec, vlen, pos, flags)        writev(2), pwritev(2), pwritev2(2)
 *   security_inode_create(dir, dentry, mode)       every regular-file create: vfs_create()
 *        and open(O_CREAT) (lookup_open() -> may_o_create()), which bypasses vfs_create()
 *   security_inode_unlink(dir, dentry)             unlink(2)/unlinkat(2) of a file
 *   security_inode_rename(odir, odentry, ndir, ndentry, flags)  rename(2) family
 * The vfs_create/vfs_unlink/vfs_rename prototypes changed (user_namespace -> mnt_idmap
 * in 6.3, renamedata struct in 6.0); the security_inode_* hooks did not.
 *
 * Filter cost matters most for writes outside watched roots (every write on the
 * machine runs this code): the first test is the file's device against dk_devs, a
 * hash of the few devices holding watched roots. Only files on such a device walk
 * up to DK_MAX_DEPTH parents, comparing each parent with the learned root dentries
 * (see dk_root_dentry), or, until every root is learned, its inode number with that
 * device's roots.
 *
 * Struct layouts: only the members read below are declared, under
 * preserve_access_index, so libbpf-style CO-RE relocations bind them by name to the
 * running kernel's BTF (system or cached).
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/ptrace.h> /* UAPI struct pt_regs: fixed x86_64 syscall register layout */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "diffkeeper_event.h"
/* The differences between the modern and the compat object are all in dk_compat.bpf.h. */

char LICENSE[] SEC("license") = "GPL";

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct qstr {
	const unsigned char *name;
};
struct dentry;
struct super_block {
	__u32 s_dev;
	struct dentry *s_root;
};
struct inode {
	unsigned long i_ino;
};
struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	struct super_block *d_sb;
};
struct path {
	struct dentry *dentry;
};
struct file {
	struct path f_path;
	unsigned int f_mode;
};
struct fdtable {
	struct file **fd;
};
struct files_struct {
	struct fdtable *fdt;
};
struct task_struct {
	struct files_struct *files;
};
#pragma clang attribute pop

/* Set in file->f_mode by open(2) when it created the file (include/linux/fs.h). */
#define DK_FMODE_CREATED (1u << 20)

/* x86_64 syscall numbers of the calls the tracepoint program reports. */
#define DK_NR_write 1
#define DK_NR_open 2
#define DK_NR_pwrite64 18
#define DK_NR_writev 20
#define DK_NR_creat 85
#define DK_NR_fstatfs 138
#define DK_NR_openat 257
#define DK_NR_pwritev 296
#define DK_NR_pwritev2 328
#define DK_NR_openat2 437

/* path goes to data[0..), from right after it; masks keep every access in bounds. */
#define DK_DATA_MASK (2 * DK_PATH_MAX - 1)

/* The state of one parent walk and path assembly (bpf_loop callbacks share it here). */
struct dk_walk {
	struct dentry *cur;
	__u32 dev;
	__u32 depth;   /* links from the file up to its watched root; 0: not watched */
	__u32 root_id;
	__u32 base;    /* where put_path writes in data[] */
	__u32 len;
	__u16 flags;
};

struct dk_scratch {
	struct dk_event ev;
	char data[2 * DK_PATH_MAX + DK_NAME_BUF];
	struct dentry *chain[DK_MAX_DEPTH]; /* chain[i]: the dentry i links below the file */
	struct dk_walk w;
};

/* (dev, ino) of each watched root -> root id (user space numbers them). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct dk_root_key);
	__type(value, __u32);
} dk_roots SEC(".maps");

/* dev -> inode numbers of the roots on it: the cheap first filter. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct dk_dev_roots);
} dk_devs SEC(".maps");

/* Events dropped because the ring buffer (or dk_inflight) was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dk_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dk_scratch);
} dk_scratch SEC(".maps");

/*
 * kprobe mode: pid_tgid -> file of a vfs_write(v) in progress on a watched device. LRU, so
 * entries whose kretprobe never ran (maxactive exhausted, thread gone) cannot fill it up.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} dk_inflight SEC(".maps");

#include "dk_compat.bpf.h"

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&dk_lost, &zero);

	if (lost)
		*lost += 1;
}

/*
 * The first filter: is `dentry` on a file system holding a watched root? Once every root is
 * learned that is a compare with their super_block pointers, and *roots is NULL (walks then
 * compare dentry pointers); before, the device number is looked up in dk_devs.
 */
static __always_inline int watched_device(struct dentry *dentry, __u32 *dev,
					  const struct dk_dev_roots **roots)
{
	*dev = 0;
	*roots = NULL;
	if (all_roots_learned())
		return learned_root_id(DK_T_SB, BPF_CORE_READ(dentry, d_sb)) >= 0;
	*dev = BPF_CORE_READ(dentry, d_sb, s_dev);
	*roots = bpf_map_lookup_elem(&dk_devs, dev);
	return *roots != NULL;
}

/* No early exit: a shared "return 1" gets laid out before some of the compares, which would
 * jump back to it (the compat object has no backward jump). */
static __always_inline int is_root_ino(const struct dk_dev_roots *roots, __u64 ino)
{
	__u32 count = roots->count;
	int hit = 0;

#pragma unroll
	for (int k = 0; k < DK_MAX_ROOTS_PER_DEV; k++)
		if (k < count && roots->ino[k] == ino)
			hit = 1;
	return hit;
}

/*
 * The walk and the path assembly run as steps called by dk_loop(): bpf_loop() callbacks in
 * modern (kernel >= 5.17; the verifier inlines the loop), functions called from an unrolled
 * sequence in compat. Their state lives in the per-CPU scratch map, so each callback is
 * verified once instead of once per iteration and per exit path, which kept the rename
 * programs (two walks, two paths) far below the verifier's instruction limit.
 */
struct dk_loop {
	struct dk_scratch *s;
	const struct dk_dev_roots *roots; /* NULL: compare learned dentry pointers instead */
};

/* One step up from s->w.cur: records it in chain[i]; stops at a watched root or the top. */
DK_STEP find_step(__u32 i, void *data)
{
	struct dk_loop *l = data;
	struct dk_scratch *s = l->s;
	struct dentry *d = s->w.cur;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);

	if (!parent || parent == d)
		return 1;
	s->chain[i & (DK_MAX_DEPTH - 1)] = d;
	if (!l->roots) {
		int id = learned_root_id(DK_T_DENTRY, parent);

		if (id >= 0) {
			s->w.root_id = id;
			s->w.depth = i + 1;
			return 1;
		}
		s->w.cur = parent;
		/* The top has no parent: stop without reading its d_parent. */
		return learned_root_id(DK_T_TOP, parent) >= 0;
	}
	__u64 ino = BPF_CORE_READ(parent, d_inode, i_ino);

	if (is_root_ino(l->roots, ino)) {
		struct dk_root_key key = { .dev = s->w.dev, .ino = ino };
		__u32 *id = bpf_map_lookup_elem(&dk_roots, &key);

		if (id) {
			learn_root(*id, parent);
			s->w.root_id = *id;
			s->w.depth = i + 1;
			return 1;
		}
	}
	s->w.cur = parent;
	return 0;
}

/* Finds the watched root above `leaf` within DK_MAX_DEPTH links; returns the depth or 0. */
static __always_inline __u32 find_root(struct dk_scratch *s, const struct dk_dev_roots *roots,
				       struct dentry *leaf, __u32 dev)
{
	struct dk_loop l = { .s = s, .roots = roots };

	s->w.cur = leaf;
	s->w.dev = dev;
	s->w.depth = 0;
	s->w.root_id = 0;
	dk_loop(DK_MAX_DEPTH, find_step, &l);
	return s->w.depth;
}

/* Appends the j-th name from the root down (chain[depth-1-j]) and a '/' between names. */
DK_STEP put_step(__u32 j, void *data)
{
	struct dk_loop *l = data;
	struct dk_scratch *s = l->s;
	int i = (int)s->w.depth - 1 - (int)j;

	if (i < 0)
		return 1;
	if (s->w.len > DK_PATH_MAX - DK_NAME_BUF - 1) {
		s->w.flags |= DK_F_TRUNCATED;
		return 1;
	}
	struct dentry *d = s->chain[i & (DK_MAX_DEPTH - 1)];
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long n = bpf_probe_read_kernel_str(&s->data[(s->w.base + s->w.len) & DK_DATA_MASK],
					   DK_NAME_BUF, name);

	if (n <= 1)
		return 1;
	s->w.len += n - 1;
	if (i > 0) {
		s->data[(s->w.base + s->w.len) & DK_DATA_MASK] = '/';
		s->w.len += 1;
	}
	return 0;
}

/* Writes "a/b/c" for the last find_root() at data[base..]; returns its length. */
static __always_inline __u32 put_path(struct dk_scratch *s, __u32 base)
{
	struct dk_loop l = { .s = s };

	s->w.base = base;
	s->w.len = 0;
	dk_loop(DK_MAX_DEPTH, put_step, &l);
	return s->w.len;
}

static __always_inline int submit(void *ctx, struct dk_scratch *s, __u16 op, __u64 bytes)
{
	__u64 id = bpf_get_current_pid_tgid();

	s->ev.pid = id >> 32;
	s->ev.tid = (__u32)id;
	s->ev.op = op;
	s->ev.bytes = bytes;
	s->ev.ts_ns = dk_now_ns();
	bpf_get_current_comm(s->ev.comm, sizeof(s->ev.comm));

	__u64 size = sizeof(struct dk_event) + s->ev.path_len + s->ev.from_len;

	if (size > sizeof(struct dk_event) + 2 * DK_PATH_MAX)
		return 0;
	if (dk_output(ctx, s, size))
		count_lost();
	return 0;
}

static __always_inline struct dk_scratch *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dk_scratch, &zero);
}

/* Reports `op` on `dentry` when it lies below a watched root. */
static __always_inline int report_dentry(void *ctx, struct dentry *dentry, __u16 op, __u64 bytes)
{
	__u32 dev;
	const struct dk_dev_roots *roots;

	if (!watched_device(dentry, &dev, &roots))
		return 0;
	struct dk_scratch *s = scratch();

	if (!s || !find_root(s, roots, dentry, dev))
		return 0;
	s->w.flags = DK_F_PATH;
	s->ev.root_id = s->w.root_id;
	s->ev.from_root_id = 0;
	s->ev.from_len = 0;
	s->ev.path_len = put_path(s, 0);
	s->ev.flags = s->w.flags;
	return submit(ctx, s, op, bytes);
}

static __always_inline int report_file(void *ctx, struct file *file, __u16 op, __u64 bytes)
{
	return report_dentry(ctx, BPF_CORE_READ(file, f_path.dentry), op, bytes);
}

/* A rename is reported when either end is watched; flags say which ends are. */
static __always_inline int report_rename(void *ctx, struct dentry *from, struct dentry *to)
{
	__u32 dev;
	const struct dk_dev_roots *roots;

	if (!watched_device(from, &dev, &roots))
		return 0;
	struct dk_scratch *s = scratch();

	if (!s)
		return 0;
	s->w.flags = 0;
	s->ev.path_len = 0;
	s->ev.from_len = 0;
	s->ev.root_id = 0;
	s->ev.from_root_id = 0;
	if (find_root(s, roots, to, dev)) {
		s->w.flags |= DK_F_PATH;
		s->ev.root_id = s->w.root_id;
		s->ev.path_len = put_path(s, 0);
	}
	if (find_root(s, roots, from, dev)) {
		s->w.flags |= DK_F_FROM;
		s->ev.from_root_id = s->w.root_id;
		s->ev.from_len = put_path(s, s->ev.path_len);
	}
	if (!(s->w.flags & (DK_F_PATH | DK_F_FROM)))
		return 0;
	s->ev.flags = s->w.flags;
	return submit(ctx, s, DK_OP_RENAME, 0);
}

/* ---- fentry family writes: typed arguments, fexit sees the return value directly ---- */

#if DK_HAVE_BTF_PROGS

SEC("fexit/vfs_write")
int BPF_PROG(dk_fexit_vfs_write, struct file *file, const char *buf, __u64 count, void *pos,
	     long ret)
{
	return ret > 0 ? report_file(ctx, file, DK_OP_WRITE, ret) : 0;
}

SEC("fexit/vfs_writev")
int BPF_PROG(dk_fexit_vfs_writev, struct file *file, const void *vec, unsigned long vlen,
	     void *pos, int flags, long ret)
{
	return ret > 0 ? report_file(ctx, file, DK_OP_WRITE, ret) : 0;
}

#endif

/* ---- kprobe family writes: the entry remembers a watched-device file, the return reports ---- */

SEC("kprobe/vfs_write")
int BPF_KPROBE(dk_kprobe_write, struct file *file)
{
	__u32 dev;
	const struct dk_dev_roots *roots;

	if (!watched_device(BPF_CORE_READ(file, f_path.dentry), &dev, &roots))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ptr = (__u64)file;

	if (bpf_map_update_elem(&dk_inflight, &id, &ptr, BPF_ANY))
		count_lost();
	return 0;
}

SEC("kretprobe/vfs_write")
int BPF_KRETPROBE(dk_kretprobe_write, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *ptr = bpf_map_lookup_elem(&dk_inflight, &id);

	if (!ptr)
		return 0;
	struct file *file = (struct file *)*ptr;

	bpf_map_delete_elem(&dk_inflight, &id);
	return ret > 0 ? report_file(ctx, file, DK_OP_WRITE, ret) : 0;
}

/* ---- security hooks: one body, an fentry and a kprobe program per hook ---- */

#if DK_HAVE_BTF_PROGS
#define DK_FENTRY_HOOK(hook, report, ...)                                             \
	SEC("fentry/security_inode_" #hook)                                           \
	int BPF_PROG(dk_fentry_inode_##hook, __VA_ARGS__) { return report; }
#else
#define DK_FENTRY_HOOK(hook, report, ...)
#endif
#define DK_HOOK(hook, report, ...)                                                    \
	DK_FENTRY_HOOK(hook, report, __VA_ARGS__)                                     \
	SEC("kprobe/security_inode_" #hook)                                           \
	int BPF_KPROBE(dk_kprobe_inode_##hook, __VA_ARGS__) { return report; }

DK_HOOK(create, report_dentry(ctx, dentry, DK_OP_CREATE, 0), struct inode *dir, struct dentry *dentry)
DK_HOOK(unlink, report_dentry(ctx, dentry, DK_OP_DELETE, 0), struct inode *dir, struct dentry *dentry)
DK_HOOK(rename, report_rename(ctx, old_dentry, new_dentry), struct inode *old_dir,
	struct dentry *old_dentry, struct inode *new_dir, struct dentry *new_dentry)

/*
 * ---- tracepoint family: sys_exit sees every syscall's return ----
 *
 * Every syscall on the machine runs this, so the order is cheapest test first: the return
 * value, then the syscall number, and the file only for the few calls we report. Two
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

/* A successful open reports a create only when it created the file. */
static __always_inline int report_open(void *ctx, struct file **fds, long fd)
{
	struct file *file = fd_file(fds, fd);
	unsigned int mode = BPF_CORE_READ(file, f_mode);

	return (mode & DK_FMODE_CREATED) ? report_file(ctx, file, DK_OP_CREATE, 0) : 0;
}

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

/* O_CREAT on x86_64 (asm-generic/fcntl.h): an open without it cannot create a file. */
#define DK_O_CREAT 0100

/* rdx, rsi, rdi, orig_rax: the first three syscall arguments and the syscall number. */
struct dk_sys_regs {
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
 * `regs` is the UAPI x86_64 pt_regs: the kernel's has the same fixed layout under other
 * member names, which is what the tp_btf verifier checks the direct loads against.
 */
static __always_inline int sys_regs(struct pt_regs *regs, bool btf, struct dk_sys_regs *r)
{
	if (!btf)
		return bpf_probe_read_kernel(r, sizeof(*r), &regs->rdx);
	r->rdx = regs->rdx;
	r->rsi = regs->rsi;
	r->rdi = regs->rdi;
	r->orig_rax = regs->orig_rax;
	return 0;
}

static __always_inline int on_sys_exit(void *ctx, struct pt_regs *regs, long ret, bool btf)
{
	struct dk_sys_regs r;

	if (ret < 0) /* failed calls change nothing; costs no memory read */
		return 0;
	if (sys_regs(regs, btf, &r))
		return 0;
	switch (r.orig_rax) {
	case DK_NR_write:
	case DK_NR_pwrite64:
	case DK_NR_writev:
	case DK_NR_pwritev:
	case DK_NR_pwritev2:
		if (ret == 0)
			return 0;
		return report_file(ctx, fd_file(task_fds(btf), (long)(int)r.rdi), DK_OP_WRITE, ret);
	case DK_NR_open: /* open(path, flags, mode) */
		return (r.rsi & DK_O_CREAT) ? report_open(ctx, task_fds(btf), ret) : 0;
	case DK_NR_openat: /* openat(dirfd, path, flags, mode) */
		return (r.rdx & DK_O_CREAT) ? report_open(ctx, task_fds(btf), ret) : 0;
	case DK_NR_creat:
	case DK_NR_openat2: /* flags live in user memory (struct open_how): check the file */
		return report_open(ctx, task_fds(btf), ret);
	case DK_NR_fstatfs: /* nothing left to learn: one global load */
		return all_roots_learned() ? 0 : learn_from_fd(task_fds(btf), (long)(int)r.rdi);
	default:
		return 0;
	}
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
	return on_sys_exit(ctx, (struct pt_regs *)ctx->args[0], (long)ctx->args[1], false);
}
