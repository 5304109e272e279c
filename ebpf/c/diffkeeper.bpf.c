// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * diffkeeper's kernel side: report writes, creates, deletes and renames of files, directory
 * creates and removals, and mode/owner changes below watched root directories. One CO-RE object per kind (dk_compat.bpf.h) and
 * architecture (dk_arch.bpf.h), three attach families:
 *
 *   kprobe     kprobe+kretprobe on vfs_write/vfs_writev, kprobes on security_inode_*
 *   fentry     fexit on vfs_write/vfs_writev, fentry on security_inode_*
 *   tracepoint tp_btf sys_exit with the system BTF, else raw_tracepoint sys_exit (attached
 *              by name: no tracefs, no kernel BTF ids); neither needs tracefs:
 *              write, pwrite64, writev, pwritev, pwritev2 by fd, files created by
 *              openat/openat2 and, on x86_64, open/creat (FMODE_CREATED), and new names from
 *              linkat/symlinkat and, on x86_64, link/symlink: the directory (dirfd or cwd)
 *              by its dentry, the name as the caller's string, for user space to place;
 *              truncate/ftruncate and opens with O_TRUNC of an existing file, as writes.
 *
 * Every family reports a write's bytes as the call's return value (kretprobe, fexit,
 * sys_exit); a truncation is a write of 0 bytes (the content changed, nothing was written).
 * Why these kernel functions (prototypes checked in the BTF of Debian 6.1.0-56,
 * 6.12.117 and the 6.18 build kernel; all identical and all non-inlined FUNCs):
 *   vfs_write(file, buf, count, pos)              write(2), pwrite64(2)
 *   vfs_writev(file, vec, vlen, pos, flags)        writev(2), pwritev(2), pwritev2(2)
 *   security_inode_create(dir, dentry, mode)       every regular-file create: vfs_create()
 *        and open(O_CREAT) (lookup_open() -> may_o_create()), which bypasses vfs_create()
 *   security_inode_unlink(dir, dentry)             unlink(2)/unlinkat(2) of a file
 *   security_inode_rename(odir, odentry, ndir, ndentry, flags)  rename(2) family
 *   security_inode_mkdir(dir, dentry, mode), security_inode_rmdir(dir, dentry)
 *   security_inode_setattr([idmap,] dentry, attr)  chmod/chown family, and truncate(2),
 *        ftruncate(2) and O_TRUNC opens (ATTR_SIZE, a write; see report_setattr)
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
 *   dk_vfs.bpf.h      the kprobe and fentry families (VFS calls and security hooks)
 *   dk_tracepoint.bpf.h the tracepoint family (dk_tp_names.bpf.h: its user names)
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
struct hlist_bl_node {
	void *next;
	void **pprev;
};
struct dentry {
	struct hlist_bl_node d_hash; /* pprev NULL: unhashed (no name: O_TMPFILE, deleted) */
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
/* x86_64: status & TS_COMPAT while a 32-bit (ia32) syscall runs (dk_arch.bpf.h). */
struct thread_info {
	__u32 status;
};
struct fs_struct {
	struct path pwd;
};
struct iattr {
	unsigned int ia_valid;
};
struct task_struct {
	struct thread_info thread_info;
	struct files_struct *files;
	struct fs_struct *fs;
};
#pragma clang attribute pop

/* Set in file->f_mode by open(2) when it created the file (include/linux/fs.h). */
#define DK_FMODE_CREATED (1u << 20)

/* iattr.ia_valid bits of an attribute change the journal reports (include/linux/fs.h). */
#define DK_ATTR_MODE 1u
#define DK_ATTR_UID 2u
#define DK_ATTR_GID 4u
#define DK_ATTR_SIZE 8u /* truncate(2), ftruncate(2), an O_TRUNC open: the content changed */

/* IS_ERR_VALUE() for a returned pointer (include/linux/err.h: MAX_ERRNO 4095). */
#define DK_IS_ERR(p) ((unsigned long)(p) >= (unsigned long)-4095)

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
	__u16 ended;   /* the walk reached the top of the file system (or a dentry without parent) */
};

/*
 * Which return delivers a pending report (kprobe and fentry families): the VFS call that
 * performs the operation whose security hook recorded it.
 */
enum dk_done {
	DK_DONE_CREATE = 1, /* vfs_create(), or do_filp_open() returning the file it created */
	DK_DONE_UNLINK,     /* vfs_unlink() */
	DK_DONE_RENAME,     /* vfs_rename() */
	DK_DONE_LINK,       /* vfs_link() */
	DK_DONE_SYMLINK,    /* vfs_symlink() */
	DK_DONE_MKDIR,      /* vfs_mkdir() */
	DK_DONE_RMDIR,      /* vfs_rmdir() */
	DK_DONE_SETATTR,    /* notify_change() */
};

/*
 * A report a security hook made, kept (dk_pending) until the VFS call returns: sent only if
 * the operation succeeded. Its first fields are dk_scratch's, so the scratch is stored as is.
 */
struct dk_pending {
	__u64 dentry; /* DK_DONE_CREATE: the dentry the open must have created */
	__u32 done;   /* enum dk_done */
	__u32 pad;
	struct dk_event ev;
	char data[2 * DK_PATH_MAX];
};

struct dk_scratch {
	__u64 dentry;
	__u32 done;
	__u32 pad;
	struct dk_event ev;
	char data[2 * DK_PATH_MAX + DK_NAME_BUF];
	struct dentry *chain[DK_MAX_DEPTH]; /* chain[i]: the dentry i links below the file */
	struct dk_walk w;
};

_Static_assert(__builtin_offsetof(struct dk_scratch, ev) == __builtin_offsetof(struct dk_pending, ev) &&
		       __builtin_offsetof(struct dk_scratch, data) ==
			       __builtin_offsetof(struct dk_pending, data) &&
		       sizeof(struct dk_pending) <= sizeof(struct dk_scratch),
	       "dk_pending is the start of dk_scratch: keep_pending() stores the scratch as is");

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

/* Changes not reported on purpose, by enum dk_stat (diffkeeper_event.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DK_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} dk_stats SEC(".maps");

/*
 * kprobe and fentry families: pid_tgid -> the report of a create, delete, rename or link whose
 * security hook ran, until the VFS call returns (struct dk_pending). LRU: an entry whose return
 * was never seen (kretprobe missed) cannot fill it up. Only operations below a watched root
 * get an entry, and a thread has one operation in flight (stacked file systems such as
 * overlayfs nest a second one on another device, which has no entry).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, struct dk_pending);
} dk_pending SEC(".maps");

/*
 * How many dk_pending entries exist: keep_pending() counts them in, forget_pending() out. With
 * none, a syscall's exit has nothing to look up (most writes on a node are outside the state
 * dirs and made none). Never below the real number: an entry the LRU evicts stays counted, which
 * only costs the lookups the count saves.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dk_pending_count SEC(".maps");

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

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&dk_lost, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline void count_stat(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&dk_stats, &stat);

	if (n)
		*n += 1;
}

#include "dk_compat.bpf.h"
#include "dk_arch.bpf.h"
#include "dk_direct.bpf.h"
#include "dk_walk.bpf.h"

/* Where submit() sends a report: out now, or kept in dk_pending until the call returns. */
enum dk_emit {
	DK_EMIT_NOW = 0,
	/* sys_exit (raw_tracepoint / tp_btf): sent now, unless the task made a 32-bit syscall */
	DK_EMIT_SYS_EXIT = 0x100,
	DK_EMIT_SYS_EXIT_BTF = 0x200,
	DK_EMIT_CREATE = DK_DONE_CREATE,
	DK_EMIT_UNLINK = DK_DONE_UNLINK,
	DK_EMIT_RENAME = DK_DONE_RENAME,
	DK_EMIT_LINK = DK_DONE_LINK,
	DK_EMIT_SYMLINK = DK_DONE_SYMLINK,
	DK_EMIT_MKDIR = DK_DONE_MKDIR,
	DK_EMIT_RMDIR = DK_DONE_RMDIR,
	DK_EMIT_SETATTR = DK_DONE_SETATTR,
};

static __always_inline void add_pending_count(__s64 delta)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&dk_pending_count, &zero);

	if (n)
		__sync_fetch_and_add(n, delta);
}

/* Whether any dk_pending entry may exist. */
static __always_inline int any_pending(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&dk_pending_count, &zero);

	return !n || *n;
}

/* A report whose `done` call never returned (its kretprobe missed) is still there when the
 * thread's next operation is recorded: count it, it is overwritten. Not missed: the create
 * hook of an O_CREAT | O_TRUNC open of an existing file (do_filp_open() has not returned yet)
 * followed by its truncation, which is the open's one change. */
static __always_inline void keep_pending(struct dk_scratch *s, __u32 done, __u64 dentry)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct dk_pending *old = bpf_map_lookup_elem(&dk_pending, &id);
	int replaces = old != 0;

	if (old && !(done == DK_DONE_SETATTR && old->done == DK_DONE_CREATE))
		count_stat(DK_STAT_MISSED_RETURN);
	s->done = done;
	s->dentry = dentry;
	if (bpf_map_update_elem(&dk_pending, &id, s, BPF_ANY))
		count_lost();
	else if (!replaces)
		add_pending_count(1);
}

static __always_inline void forget_pending(__u64 id)
{
	if (!bpf_map_delete_elem(&dk_pending, &id))
		add_pending_count(-1);
}


static __always_inline int submit(void *ctx, struct dk_scratch *s, __u16 op, __u64 bytes,
				  __u32 emit, __u64 dentry)
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
	if (emit == DK_EMIT_SYS_EXIT || emit == DK_EMIT_SYS_EXIT_BTF) {
		/* A 32-bit syscall's number means something else (dk_arch.bpf.h). Checked here, once
		 * the filter matched, so that writes outside the state dirs never pay for it. */
		if (dk_sys_compat(emit == DK_EMIT_SYS_EXIT_BTF))
			return 0;
	} else if (emit != DK_EMIT_NOW) {
		keep_pending(s, emit, dentry);
		return 0;
	}
	if (dk_output(ctx, &s->ev, size))
		count_lost();
	return 0;
}

/*
 * The return of the VFS call that performs a recorded operation: sends the report if `ok`
 * (the call succeeded) and it is this call's (`done`; for a create through open, the file's
 * dentry is the recorded one), and forgets it either way.
 */
static __always_inline int deliver_pending(void *ctx, __u32 done, int ok, __u64 dentry)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct dk_pending *p = bpf_map_lookup_elem(&dk_pending, &id);

	if (!p || p->done != done)
		return 0;
	if (ok && (!dentry || p->dentry == dentry)) {
		__u64 size = sizeof(struct dk_event) + p->ev.path_len + p->ev.from_len;

		if (size <= sizeof(struct dk_event) + 2 * DK_PATH_MAX && dk_output(ctx, &p->ev, size))
			count_lost();
	}
	forget_pending(id);
	return 0;
}

static __always_inline struct dk_scratch *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dk_scratch, &zero);
}

/*
 * After a new name's directory was put into `path`: the name as its caller passed it, read from
 * user memory into `from` (DK_F_NAME). User space places it, or counts it when it cannot
 * (absolute, `..`). Not read when the directory's path was cut (DK_F_TRUNCATED already set); a
 * name that cannot be read is flagged too, with from_len 0.
 */
static __always_inline void put_user_name(struct dk_scratch *s, const char *name)
{
	__u32 at = s->w.len;
	long n = 0;

	s->w.flags |= DK_F_NAME;
	/* at <= DK_PATH_MAX and a name < PATH_MAX: the read ends inside data[2 * DK_PATH_MAX]. */
	if (at <= DK_PATH_MAX && !(s->w.flags & DK_F_TRUNCATED))
		n = dk_probe_read_user_str(&s->data[at], DK_PATH_MAX, name);
	if (n <= 1) {
		s->w.flags |= DK_F_TRUNCATED;
		n = 1;
	}
	s->ev.from_len = n - 1;
}

/*
 * Reports `op` on `dentry` when it lies below a watched root. `named`: the dentry came from an
 * open file, which may have no name (O_TMPFILE, deleted): such a change is counted, never
 * reported under the name the dentry still carries. `emit`: now, or kept until the VFS call
 * returns (enum dk_emit). `name`: a new name in user memory relative to the directory `dentry`
 * (tracepoint mode's link calls), which may then be a watched root itself; NULL otherwise.
 */
static __always_inline int report_dentry(void *ctx, struct dentry *dentry, __u16 op, __u64 bytes,
					 bool named, __u32 emit, const char *name)
{
	__u32 dev;
	const struct dk_dev_roots *roots;

	if (!watched_device(dentry, &dev, &roots, false))
		return 0;
	struct dk_scratch *s = scratch();

	if (!s)
		return 0;
	int self = name ? root_id(roots, dentry, dev) : -1;

	if (self >= 0) {
		s->w.root_id = self;
		s->w.depth = 0;
	} else if (!find_root(s, roots, dentry, dev, false)) {
		return 0;
	}
	if (named && !BPF_CORE_READ(dentry, d_hash.pprev)) {
		count_stat(DK_STAT_UNLINKED);
		return 0;
	}
	s->w.flags = DK_F_PATH;
	s->ev.root_id = s->w.root_id;
	s->ev.from_root_id = 0;
	s->ev.from_len = 0;
	s->ev.path_len = put_path(s, 0);
	if (name)
		put_user_name(s, name);
	s->ev.flags = s->w.flags;
	return submit(ctx, s, op, bytes, emit, (__u64)dentry);
}

/* A change through an open file: reported now (`emit`: DK_EMIT_NOW or a sys_exit one), and
 * only while the file has a name. */
static __always_inline int report_file(void *ctx, struct file *file, __u16 op, __u64 bytes,
				       __u32 emit)
{
	return report_dentry(ctx, BPF_CORE_READ(file, f_path.dentry), op, bytes, true, emit, NULL);
}

/* A rename is reported when either end is watched; flags say which ends are. */
static __always_inline int report_rename(void *ctx, struct dentry *from, struct dentry *to)
{
	__u32 dev;
	const struct dk_dev_roots *roots;

	if (!watched_device(from, &dev, &roots, false))
		return 0;
	struct dk_scratch *s = scratch();

	if (!s)
		return 0;
	s->w.flags = 0;
	s->ev.path_len = 0;
	s->ev.from_len = 0;
	s->ev.root_id = 0;
	s->ev.from_root_id = 0;
	if (find_root(s, roots, to, dev, false)) {
		s->w.flags |= DK_F_PATH;
		s->ev.root_id = s->w.root_id;
		s->ev.path_len = put_path(s, 0);
	}
	if (find_root(s, roots, from, dev, false)) {
		s->w.flags |= DK_F_FROM;
		s->ev.from_root_id = s->w.root_id;
		s->ev.from_len = put_path(s, s->ev.path_len);
	}
	if (!(s->w.flags & (DK_F_PATH | DK_F_FROM)))
		return 0;
	s->ev.flags = s->w.flags;
	return submit(ctx, s, DK_OP_RENAME, 0, DK_EMIT_RENAME, 0);
}

#include "dk_vfs.bpf.h"
#include "dk_tracepoint.bpf.h"
