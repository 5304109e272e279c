/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The tracepoint family: sys_enter records what a call names, sys_exit reports it if the call
 * succeeded. Included once, at the end of diffkeeper.bpf.c; the syscall numbers and the
 * register access are the architecture's, from dk_arch.bpf.h.
 *
 * Why both ends: at sys_exit the descriptor table and the caller's memory say what they say
 * *now*, not what the kernel used (another thread may have pointed the fd elsewhere with
 * dup2(), or rewritten the name). sys_enter resolves the fd to its dentry and copies the names
 * before the kernel reads them, walks the path to the watched root, and keeps the report in
 * the thread's slot (dk_pending, as the kprobe family does); sys_exit sends the slot only when
 * the call returned >= 0 (a write: > 0, with that byte count), and drops it either way. A
 * delete, rmdir or rename names what exists only before the call, which is another reason the
 * walk must run at sys_enter.
 *
 * A name is a user path relative to a directory (dirfd, the cwd, or for an absolute name the
 * caller's root): the program walks that directory and sends "dir NUL name" (DK_F_NAME); user
 * space places the name below it (sidecar/src/ebpf/names.rs). An absolute name is sent only
 * when the caller's root is the sidecar's and the name starts with the watched roots' common
 * prefix (dk_abs), with root id DK_ROOT_ABS and an empty directory.
 *
 * Every syscall on the machine runs both programs, so the order is cheapest test first: the
 * syscall number (sys_enter gets it as an argument), then the device of the file or directory
 * (watched_device) before any walk. sys_exit looks up the slot only for the numbers sys_enter
 * may have recorded. Two programs each share the bodies: tp_btf (BTF-typed: register and
 * task->files->fdt->fd are direct loads, and on 6.2+ the file, its dentry and the parent walk
 * too (dk_direct.bpf.h); needs the running kernel's own BTF ids, so only with the system BTF)
 * and raw_tracepoint (any BTF: every kernel pointer is a bpf_probe_read_kernel).
 *
 * What remains racy: the kernel copies a name and looks up an fd a few instructions after
 * sys_enter; a thread that changes them in exactly that window is not detected.
 */

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
/* Members only this family reads; the flavour suffix binds them to the kernel's types. */
struct inode___dk_tp {
	long long i_size;
};
struct fs_struct___dk_tp {
	struct path root;
};
#pragma clang attribute pop

/* fcntl.h, the same on x86_64 and arm64 (asm-generic). */
#define DK_AT_FDCWD -100
#define DK_NO_DIRFD -1 /* on_sys_enter: the end is an open file, not a name */
#define DK_O_CREAT 0100
#define DK_O_TRUNC 01000
#define DK_AT_REMOVEDIR 0x200
#define DK_AT_EMPTY_PATH 0x1000
#define DK_RENAME_EXCHANGE 2

/* dk_pending.done of a tracepoint slot (the kprobe family's enum dk_done stays below 0x10);
 * dk_pending.dentry holds the syscall number, so a slot is only sent by its own call's exit. */
enum dk_tp_done {
	DK_TP_DONE = 0x10,       /* sent if the call returned >= 0 */
	DK_TP_DONE_WRITE = 0x11, /* sent if it returned > 0: the byte count */
	DK_TP_DONE_OPEN = 0x12,  /* sent if the descriptor it returned is a file it created */
	DK_TP_DONE_OPEN_TRUNC = 0x13, /* O_TRUNC: sent as a create if it created the file, else
				       * as a write of 0 bytes (it truncated an existing one) */
};

/* What an open's exit reports: a create (O_CREAT), a create or a truncation (O_TRUNC). */
static __always_inline __u32 open_done(__u64 flags)
{
	return flags & DK_O_TRUNC ? DK_TP_DONE_OPEN_TRUNC : DK_TP_DONE_OPEN;
}

/* The current task's fd array: direct loads through BTF-typed pointers when `btf`. */
static __always_inline struct file **task_fds(bool btf)
{
	if (btf)
		return current_task(btf)->files->fdt->fd;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, files, fdt, fd);
}

static __always_inline struct file *fd_file(struct file **fds, long fd, bool direct)
{
	/* fds beyond max_fds fail the call anyway; the read is fault-safe. */
	if (fd < 0 || fd > 0xfffff || !fds)
		return NULL;
	return file_at(&fds[fd], direct);
}

/* The current task's working directory: where AT_FDCWD names start. */
static __always_inline struct dentry *cwd_dentry(bool btf)
{
	if (btf)
		return current_task(btf)->fs->pwd.dentry;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, fs, pwd.dentry);
}

/* The current task's root directory: where absolute names start. */
static __always_inline struct dentry *root_dentry(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct___dk_tp *fs = (void *)BPF_CORE_READ(task, fs);

	return BPF_CORE_READ(fs, root.dentry);
}

/* fstatfs(fd) by anyone on a watched root directory teaches the kernel side its dentry. */
static __always_inline int learn_from_fd(struct file **fds, long fd, bool btf)
{
	return learn_from_dentry(BPF_CORE_READ(fd_file(fds, fd, btf), f_path.dentry));
}

#include "dk_tp_names.bpf.h"

/*
 * One end of a report at data[base..]: `dir` walked to its watched root ("a/b", or "" for the
 * root itself), then, with a name, NUL and the name as the caller passed it. Without a name,
 * `dir` is a file's dentry, which must still have a name (O_TMPFILE, deleted: counted, not
 * reported). Returns the end's length, or -1 when it is not watched; sets *root to its root id.
 */
static __always_inline int put_end(struct dk_scratch *s, struct dentry *dir, const char *name,
				   __u32 base, __u32 *root, struct dk_tp_names *nm, int end,
				   bool direct)
{
	__u32 dev;
	const struct dk_dev_roots *roots;
	char first[2] = {};
	long n;

	if (name && dk_probe_read_user_str(first, sizeof(first), name) == 2 && first[0] == '/') {
		/* Absolute: no directory to walk; placed from the sidecar's root, if it is the
		 * caller's (the name is read at base + 1, after the empty directory and NUL). */
		s->data[base & DK_DATA_MASK] = 0;
		n = read_name(s, (base + 1) & DK_DATA_MASK, name, end);
		if (!n || !absolute_placeable(s, base + 1, n))
			return -1;
		*root = DK_ROOT_ABS;
		s->w.flags |= DK_F_NAME;
		nm->ptr[end & 1] = (__u64)name;
		nm->at[end & 1] = base + 1;
		nm->len[end & 1] = n;
		return n;
	}
	if (!watched_device(dir, &dev, &roots, direct))
		return -1;
	int self = name ? root_id(roots, dir, dev) : -1;
	int found = 1;

	if (self >= 0) {
		s->w.root_id = self;
		s->w.depth = 0;
	} else {
		found = find_root(s, roots, dir, dev, direct) > 0;
	}
	dk_keep_compares(found); /* compat: one path on from here (no jump back into it) */
	if (!found)
		return -1;
	if (!name && !BPF_CORE_READ(dir, d_hash.pprev)) {
		count_stat(DK_STAT_UNLINKED);
		return -1;
	}
	*root = s->w.root_id;
	__u32 len = put_path(s, base);

	if (!name)
		return len;
	s->w.flags |= DK_F_NAME;
	if (s->w.flags & DK_F_TRUNCATED)
		return len; /* the directory was cut: no name after it */
	s->data[(base + len) & DK_DATA_MASK] = 0;
	n = read_name(s, (base + len + 1) & DK_DATA_MASK, name, end);
	if (!n || len + n > DK_PATH_MAX) {
		s->w.flags |= DK_F_TRUNCATED;
		return len;
	}
	nm->ptr[end & 1] = (__u64)name;
	nm->at[end & 1] = base + len + 1;
	nm->len[end & 1] = n;
	return len + n; /* dir, NUL, name (its NUL is not sent) */
}

/* The directory a name is relative to: the caller's cwd or dirfd's (absolute names: put_end). */
static __always_inline struct dentry *name_dir(long dirfd, bool btf)
{
	if (dirfd == DK_AT_FDCWD)
		return cwd_dentry(btf);
	return dentry_of(fd_file(task_fds(btf), dirfd, btf), btf);
}

/*
 * What sys_enter found: `op` on the end `dir`/`name` (or a file's dentry), for a rename also
 * the source end; kept in the thread's slot until sys_exit. `bytes`: a linkat of an unnamed
 * (O_TMPFILE) file, its size, so the journal shows its content written (DK_F_CONTENT).
 */
struct dk_tp_call {
	struct dentry *dir, *from_dir;
	const char *name, *from_name;
	__u64 bytes;
	__u16 op;
	__u16 flags;
	__u32 done;
	/* Filled as the ends are walked (record_path, record_from). */
	struct dk_tp_names nm;
	__u32 root, from_root;
	__u32 path_len;
	__u32 pad;
	long nr; /* modern: the syscall number, laundered with the rest (on_sys_enter) */
};

#if DK_TP_TAIL
/* Compat: the steps of record(), which dk_sys_enter_path and dk_sys_enter_from run apart. */

/* The path end into data[0..]; the slot's flags start here. Returns the end's length. */
static __always_inline __u32 record_path(struct dk_scratch *s, struct dk_tp_call *c)
{
	s->w.flags = 0;
	int path_len = put_end(s, c->dir, c->name, 0, &c->root, &c->nm, 0, false);

	/* Compat: the verdict materialised before the test, else clang threads put_end's failure
	 * paths straight to the block below, laid out before them (a backward jump). */
	dk_keep_compares(path_len);
	if (path_len >= 0)
		s->w.flags |= DK_F_PATH;
	else
		path_len = 0;
	c->path_len = path_len;
	s->ev.from_len = 0;
	return path_len;
}

/* A rename's source end, after the path end (`base` bytes). */
static __always_inline void record_from(struct dk_scratch *s, struct dk_tp_call *c, __u32 base)
{
	if (base > DK_PATH_MAX) /* put_end never returns more; bounds it for the verifier */
		return;
	int from_len = put_end(s, c->from_dir, c->from_name, base, &c->from_root, &c->nm, 1, false);

	dk_keep_compares(from_len);
	if (from_len >= 0) {
		s->w.flags |= DK_F_FROM;
		s->ev.from_len = from_len;
	}
}

/* Keeps the report in the thread's slot for sys_exit, if an end is watched. */
static __always_inline int record_finish(void *ctx, struct dk_scratch *s, struct dk_tp_call *c,
					 long nr, void *regs, bool btf)
{
	/* A tail program reads `done` from a map: picked among constants, it lets clang drop
	 * submit()'s other families' branches (and their helpers, newer than compat's kernels). */
	__u32 done = c->done == DK_TP_DONE_WRITE      ? DK_TP_DONE_WRITE :
		     c->done == DK_TP_DONE_OPEN       ? DK_TP_DONE_OPEN :
		     c->done == DK_TP_DONE_OPEN_TRUNC ? DK_TP_DONE_OPEN_TRUNC :
							DK_TP_DONE;

	if (!(s->w.flags & (DK_F_PATH | DK_F_FROM)))
		return 0;
	/* Only once something is watched: a 32-bit syscall's number means something else. */
	if (dk_enter_compat(regs, btf))
		return 0;
	s->ev.path_len = c->path_len;
	s->ev.root_id = c->root;
	s->ev.from_root_id = c->from_root;
	s->ev.flags = s->w.flags | c->flags;
	if (s->ev.flags & DK_F_NAME) { /* always: no stale entry is ever compared at exit */
		__u64 id = bpf_get_current_pid_tgid();
		struct dk_tp_names nm = c->nm; /* from the stack: older kernels take no map value */

		if (bpf_map_update_elem(&dk_tp_names, &id, &nm, BPF_ANY))
			return 0; /* cannot check the names at exit: not sent (counted lost) */
	}
	return submit(ctx, s, c->op, c->bytes, done, nr);
}

static __always_inline int record(void *ctx, long nr, struct dk_tp_call *c, void *regs, bool btf)
{
	struct dk_scratch *s = scratch();

	if (!s)
		return 0;
	__u32 path_len = record_path(s, c);

	if (c->op == DK_OP_RENAME)
		record_from(s, c, path_len);
	return record_finish(ctx, s, c, nr, regs, btf);
}
#else
/* Modern: the same steps in one program, the names and ids on the stack (the compat steps'
 * form, through the call struct, is refused by 6.18's verifier: "R2 unbounded memory access"). */
static __always_inline int record(void *ctx, long nr, struct dk_tp_call *c, void *regs, bool btf)
{
	struct dk_scratch *s = scratch();
	struct dk_tp_names nm = {};
	__u32 root = 0, from_root = 0;

	if (!s)
		return 0;
	s->w.flags = 0;
	int path_len = put_end(s, c->dir, c->name, 0, &root, &nm, 0, btf);

	if (path_len >= 0)
		s->w.flags |= DK_F_PATH;
	else
		path_len = 0;
	s->ev.from_len = 0;
	if (c->op == DK_OP_RENAME) {
		int from_len = put_end(s, c->from_dir, c->from_name, path_len, &from_root, &nm, 1, btf);

		if (from_len >= 0) {
			s->w.flags |= DK_F_FROM;
			s->ev.from_len = from_len;
		}
	}
	if (!(s->w.flags & (DK_F_PATH | DK_F_FROM)))
		return 0;
	/* Only once something is watched: a 32-bit syscall's number means something else. */
	if (dk_enter_compat(regs, btf))
		return 0;
	s->ev.path_len = path_len;
	s->ev.root_id = root;
	s->ev.from_root_id = from_root;
	s->ev.flags = s->w.flags | c->flags;
	if (s->ev.flags & DK_F_NAME) { /* always: no stale entry is ever compared at exit */
		__u64 id = bpf_get_current_pid_tgid();

		if (bpf_map_update_elem(&dk_tp_names, &id, &nm, BPF_ANY))
			return 0; /* cannot check the names at exit: not sent (counted lost) */
	}
	return submit(ctx, s, c->op, c->bytes, c->done, nr);
}
#endif

/* A linkat(olddfd, "", ..., AT_EMPTY_PATH) of a file without a name (O_TMPFILE): its size,
 * whose writes were counted (DK_STAT_UNLINKED) instead of reported. 0 for a named file. */
static __always_inline __u64 unnamed_size(long fd, bool btf)
{
	struct dentry *d = BPF_CORE_READ(fd_file(task_fds(btf), fd, btf), f_path.dentry);
	struct inode___dk_tp *inode = (void *)BPF_CORE_READ(d, d_inode);

	if (!d || BPF_CORE_READ(d, d_hash.pprev))
		return 0;
	return BPF_CORE_READ(inode, i_size);
}

/* The call sys_enter picked: for the program it tail-calls (compat; same CPU, same run), or
 * passed through it to record() so the verifier walks record() once (modern, launder()). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dk_tp_call);
} dk_tp_call SEC(".maps");

#if DK_TP_TAIL

/* The programs dk_sys_enter tail-calls, by index; the loader fills it before attaching it. */
enum { DK_TP_TAIL_PATH, DK_TP_TAIL_FROM, DK_TP_TAILS };
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, DK_TP_TAILS);
	__type(key, __u32);
	__type(value, __u32);
} dk_tp_tail SEC(".maps");

/* Hands `c` to dk_sys_enter_path; returns only if the tail call failed (the loader did not
 * fill dk_tp_tail, or the tail-call limit was reached): the call is not reported, counted. */
static __always_inline int record_in_tail(void *ctx, struct dk_tp_call *c)
{
	__u32 zero = 0;
	struct dk_tp_call *slot = bpf_map_lookup_elem(&dk_tp_call, &zero);

	if (!slot)
		return 0;
	*slot = *c;
	bpf_tail_call(ctx, &dk_tp_tail, DK_TP_TAIL_PATH);
	count_lost();
	return 0;
}
#endif

#define ARG(n) dk_enter_arg(regs, btf, n)

/*
 * Each kind only picks its ends and op; one record() call follows, so the walks are inlined
 * once per program (compat verifies within the pre-5.2 budget). A chain of ifs, not a switch:
 * clang lays a switch's cases out around the shared tail, some after it, jumping back (compat
 * has no backward jump); dk_keep_compares() keeps compat's ifs in order. Argument numbers stay
 * constants: tp_btf loads registers directly, at fixed offsets.
 */
static __always_inline int on_sys_enter(void *ctx, void *regs, long nr, bool btf)
{
	enum dk_sys_kind kind = dk_sys_kind(nr);
	struct dk_tp_call c = { .op = DK_OP_CREATE, .done = DK_TP_DONE };
	long dirfd = DK_AT_FDCWD;

	if (kind == DK_SYS_NONE || kind == DK_SYS_FSTATFS)
		return 0;
	if (kind == DK_SYS_WRITE || kind == DK_SYS_FATTRIB || kind == DK_SYS_FTRUNCATE) {
		c.dir = dentry_of(fd_file(task_fds(btf), (int)ARG(0), btf), btf);
		c.op = kind == DK_SYS_FATTRIB ? DK_OP_ATTRIB : DK_OP_WRITE; /* ftruncate: 0 bytes */
		c.done = kind == DK_SYS_WRITE ? DK_TP_DONE_WRITE : DK_TP_DONE;
		__u32 dev;
		const struct dk_dev_roots *roots;
		int watched = watched_device(c.dir, &dev, &roots, btf);

		/* Most writes on a node are elsewhere: refused here, before the scratch lookup
		 * (and compat's tail call). */
		dk_keep_compares(watched);
		if (!watched)
			return 0;
		if (outside_every_root(c.dir, btf)) /* the same file system, elsewhere */
			return 0;
		if (!DK_WRITES_SHARE_REPORT) /* dk_compat.bpf.h: modern's fast path */
			return record(ctx, nr, &c, regs, btf);
		dirfd = DK_NO_DIRFD;
	}
	dk_keep_compares(kind);
	/* Opens change something only with O_CREAT (a new file) or O_TRUNC (an existing one
	 * emptied): the others, most of the machine's, stop here. */
	if (kind == DK_SYS_OPEN_ARG1) {
		if (!(ARG(1) & (DK_O_CREAT | DK_O_TRUNC)))
			return 0;
		c.name = (const char *)ARG(0);
		c.done = open_done(ARG(1));
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_CREAT) { /* O_CREAT | O_WRONLY | O_TRUNC */
		c.name = (const char *)ARG(0);
		c.done = DK_TP_DONE_OPEN_TRUNC;
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_OPEN_ARG2) {
		if (!(ARG(2) & (DK_O_CREAT | DK_O_TRUNC)))
			return 0;
		dirfd = (int)ARG(0);
		c.name = (const char *)ARG(1);
		c.done = open_done(ARG(2));
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_OPENAT2) {
		__u64 flags = 0; /* struct open_how's first member */

		if (dk_probe_read_user(&flags, sizeof(flags), (void *)ARG(2)) ||
		    !(flags & (DK_O_CREAT | DK_O_TRUNC)))
			return 0;
		dirfd = (int)ARG(0);
		c.name = (const char *)ARG(1);
		c.done = open_done(flags);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_UNLINK || kind == DK_SYS_RMDIR || kind == DK_SYS_MKDIR ||
	    kind == DK_SYS_ATTRIB || kind == DK_SYS_TRUNCATE) {
		c.name = (const char *)ARG(0);
		c.op = kind == DK_SYS_UNLINK   ? DK_OP_DELETE :
		       kind == DK_SYS_RMDIR    ? DK_OP_RMDIR :
		       kind == DK_SYS_MKDIR    ? DK_OP_MKDIR :
		       kind == DK_SYS_TRUNCATE ? DK_OP_WRITE : /* 0 bytes */
						 DK_OP_ATTRIB;
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_LINK)
		c.name = (const char *)ARG(1);
	dk_keep_compares(kind);
	if (kind == DK_SYS_UNLINKAT || kind == DK_SYS_MKDIRAT || kind == DK_SYS_ATTRIBAT) {
		dirfd = (int)ARG(0);
		c.name = (const char *)ARG(1);
		c.op = kind == DK_SYS_MKDIRAT  ? DK_OP_MKDIR :
		       kind == DK_SYS_ATTRIBAT ? DK_OP_ATTRIB :
		       ARG(2) & DK_AT_REMOVEDIR ? DK_OP_RMDIR :
						  DK_OP_DELETE;
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_ATTRIBAT && name_is_empty(c.name)) { /* AT_EMPTY_PATH: dirfd's file */
		c.dir = BPF_CORE_READ(fd_file(task_fds(btf), dirfd, btf), f_path.dentry);
		c.name = NULL;
		dirfd = DK_NO_DIRFD;
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_SYMLINKAT) {
		dirfd = (int)ARG(1);
		c.name = (const char *)ARG(2);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_LINKAT) {
		dirfd = (int)ARG(2);
		c.name = (const char *)ARG(3);
		if (ARG(4) & DK_AT_EMPTY_PATH) {
			c.bytes = unnamed_size((int)ARG(0), btf);
			c.flags = c.bytes ? DK_F_CONTENT : 0;
		}
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_RENAME) {
		c.op = DK_OP_RENAME;
		c.from_name = (const char *)ARG(0);
		c.name = (const char *)ARG(1);
		c.from_dir = cwd_dentry(btf);
	}
	dk_keep_compares(kind);
	if (kind == DK_SYS_RENAMEAT || kind == DK_SYS_RENAMEAT2) {
		c.op = DK_OP_RENAME;
		c.from_name = (const char *)ARG(1);
		c.from_dir = name_dir((int)ARG(0), btf);
		dirfd = (int)ARG(2);
		c.name = (const char *)ARG(3);
		if (kind == DK_SYS_RENAMEAT2 && ARG(4) & DK_RENAME_EXCHANGE)
			c.flags = DK_F_EXCHANGE;
	}
	dk_keep_compares(kind);
	if (dirfd != DK_NO_DIRFD)
		c.dir = name_dir(dirfd, btf);
#if DK_TP_TAIL
	if (!btf)
		return record_in_tail(ctx, &c);
#else
	/* Each kind above reaches here with constants of its own in `c`: states the verifier
	 * cannot merge, so it walked record() once per kind (most of the start-up time). Read
	 * back from a map value, the fields are unknown to it: one walk serves every kind. */
	__u32 zero = 0;
	struct dk_tp_call *slot = bpf_map_lookup_elem(&dk_tp_call, &zero);

	if (!slot)
		return 0;
	c.nr = nr;
	*slot = c;
	asm volatile("" ::: "memory"); /* read back from the map, not what clang knows it wrote */
	c = *slot;
	nr = c.nr;
	c.done = c.done == DK_TP_DONE_OPEN      ? DK_TP_DONE_OPEN :
		 c.done == DK_TP_DONE_OPEN_TRUNC ? DK_TP_DONE_OPEN_TRUNC :
						   DK_TP_DONE;
#endif
	return record(ctx, nr, &c, regs, btf);
}

/*
 * sys_exit: the slot sys_enter kept for this call, sent if the call succeeded, dropped either
 * way. Writes that failed or wrote nothing, and opens that neither created nor truncated their
 * file, are not changes.
 */
static __always_inline int on_sys_exit(void *ctx, void *regs, long ret, bool btf)
{
	struct dk_sys r;

	if (dk_sys_read(regs, btf, &r))
		return 0;
	long nr = dk_sys_nr(&r);
	enum dk_sys_kind kind = dk_sys_kind(nr);

	if (kind == DK_SYS_NONE)
		return 0;
	if (kind == DK_SYS_FSTATFS) /* nothing left to learn: one global load */
		return ret < 0 || all_roots_learned() ? 0 :
			learn_from_fd(task_fds(btf), (long)(int)dk_sys_arg(regs, btf, &r, 0), btf);
	if (!any_pending()) /* this call's entry made none: one array load, no hash lookup */
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct dk_pending *p = bpf_map_lookup_elem(&dk_pending, &id);

	if (!p)
		return 0;
	int ok = ret >= 0 && p->dentry == (__u64)nr;

	if (ok && p->done == DK_TP_DONE_WRITE) {
		ok = ret > 0;
		p->ev.bytes = ret;
	}
	if (ok && (p->done == DK_TP_DONE_OPEN || p->done == DK_TP_DONE_OPEN_TRUNC)) {
		int created = (BPF_CORE_READ(fd_file(task_fds(btf), ret, btf), f_mode) & DK_FMODE_CREATED) != 0;

		/* An existing file opened with O_TRUNC was truncated (do_open(): a failed truncation
		 * fails the open): a write of 0 bytes. */
		if (!created)
			p->ev.op = DK_OP_WRITE;
		ok = created || p->done == DK_TP_DONE_OPEN_TRUNC;
	}
	if (p->ev.flags & DK_F_NAME) {
		struct dk_tp_names *nm = bpf_map_lookup_elem(&dk_tp_names, &id);
		int raced = ok && (!nm || !name_unchanged(p, nm, 0) || !name_unchanged(p, nm, 1));

		dk_keep_compares(raced); /* compat: no block laid out after, jumping back */
		p->ev.flags |= raced * DK_F_RACED;
		if (nm)
			bpf_map_delete_elem(&dk_tp_names, &id);
	}
	if (ok) {
		__u64 size = sizeof(struct dk_event) + p->ev.path_len + p->ev.from_len;

		p->ev.ts_ns = dk_now_ns();
		if (size <= sizeof(struct dk_event) + 2 * DK_PATH_MAX && dk_output(ctx, &p->ev, size))
			count_lost();
	}
	forget_pending(id);
	return 0;
}

#if DK_HAVE_BTF_PROGS
SEC("tp_btf/sys_enter")
int BPF_PROG(dk_sys_enter_btf, struct pt_regs *regs, long id)
{
	return on_sys_enter(ctx, regs, id, true);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(dk_sys_exit_btf, struct pt_regs *regs, long ret)
{
	return on_sys_exit(ctx, regs, ret, true);
}
#endif

SEC("raw_tracepoint/sys_enter")
int dk_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sys_enter(ctx, (void *)ctx->args[0], (long)ctx->args[1], false);
}

#if DK_TP_TAIL
/*
 * The rest of dk_sys_enter (compat), in two programs so that no one verifies two walks: the
 * path end, then for a rename the source end. The call and what is walked so far stay in
 * dk_tp_call and the scratch (per CPU: a tail call runs on the CPU of its caller).
 */
SEC("raw_tracepoint/sys_enter")
int dk_sys_enter_path(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct dk_tp_call *c = bpf_map_lookup_elem(&dk_tp_call, &zero);
	struct dk_scratch *s = scratch();

	if (!c || !s)
		return 0;
	record_path(s, c);
	if (c->op == DK_OP_RENAME) {
		bpf_tail_call(ctx, &dk_tp_tail, DK_TP_TAIL_FROM);
		count_lost();
		return 0;
	}
	return record_finish(ctx, s, c, (long)ctx->args[1], (void *)ctx->args[0], false);
}

SEC("raw_tracepoint/sys_enter")
int dk_sys_enter_from(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct dk_tp_call *c = bpf_map_lookup_elem(&dk_tp_call, &zero);
	struct dk_scratch *s = scratch();

	if (!c || !s)
		return 0;
	record_from(s, c, c->path_len);
	return record_finish(ctx, s, c, (long)ctx->args[1], (void *)ctx->args[0], false);
}
#endif

SEC("raw_tracepoint/sys_exit")
int dk_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sys_exit(ctx, (void *)ctx->args[0], (long)ctx->args[1], false);
}
