// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * diffkeeper's kernel side: report writes, creates, deletes and renames of files
 * below watched root directories. One CO-RE object per kind (dk_compat.bpf.h) and
 * architecture (dk_arch.bpf.h), three attach families:
 *
 *   kprobe     kprobe+kretprobe on vfs_write/vfs_writev, kprobes on security_inode_*
 *   fentry     fexit on vfs_write/vfs_writev, fentry on security_inode_*
 *   tracepoint tp_btf sys_exit with the system BTF, else raw_tracepoint sys_exit (attached
 *              by name: no tracefs, no kernel BTF ids); neither needs tracefs:
 *              write, pwrite64, writev, pwritev, pwritev2 by fd, and files created by
 *              openat/openat2 and, on x86_64, open/creat (FMODE_CREATED). unlink/rename are
 *              not seen: their paths are user strings relative to a cwd/dirfd/root that BPF
 *              cannot look up.
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
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "diffkeeper_event.h"
/*
 * The source is one translation unit in a few files, by concern:
 *   dk_compat.bpf.h   what differs between the modern and the compat object
 *   dk_arch.bpf.h     what differs between x86_64 and aarch64 (syscalls, registers)
 *   dk_walk.bpf.h     the parent walk and path assembly
 *   dk_sys_exit.bpf.h the tracepoint family
 */

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
#include "dk_arch.bpf.h"
#include "dk_walk.bpf.h"

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&dk_lost, &zero);

	if (lost)
		*lost += 1;
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

#include "dk_sys_exit.bpf.h"
