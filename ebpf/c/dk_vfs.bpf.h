/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The kprobe and fentry families: writes at vfs_write/vfs_writev, every other operation at its
 * security hook, sent when the VFS call that performs it returns successfully. Included once,
 * by diffkeeper.bpf.c, after report_dentry() and report_rename().
 */
#ifndef DK_VFS_BPF_H
#define DK_VFS_BPF_H

/*
 * Whether a VFS call succeeded, from its raw return: 0 (the int-returning calls), or a
 * dentry pointer (vfs_mkdir() from 6.15 returns the new directory's dentry or an ERR_PTR).
 * An int error is a small negative number in either register width; a kernel pointer has
 * its top 16 bits set.
 */
static __always_inline int dk_vfs_ok(__u64 ret)
{
	return (int)ret == 0 || (ret >> 48 == 0xffff && !DK_IS_ERR(ret));
}

/* Whether `d` reads as a dentry: its super block's root dentry is on that super block. Tells
 * the dentry argument from a user_namespace or mnt_idmap one (report_setattr). */
static __always_inline int dk_is_dentry(struct dentry *d)
{
	struct super_block *sb = BPF_CORE_READ(d, d_sb);

	return d && sb && BPF_CORE_READ(sb, s_root, d_sb) == sb;
}

/* ---- fentry family writes: typed arguments, fexit sees the return value directly ---- */

#if DK_HAVE_BTF_PROGS

SEC("fexit/vfs_write")
int BPF_PROG(dk_fexit_vfs_write, struct file *file, const char *buf, __u64 count, void *pos,
	     long ret)
{
	return ret > 0 ? report_file(ctx, file, DK_OP_WRITE, ret, DK_EMIT_NOW) : 0;
}

SEC("fexit/vfs_writev")
int BPF_PROG(dk_fexit_vfs_writev, struct file *file, const void *vec, unsigned long vlen,
	     void *pos, int flags, long ret)
{
	return ret > 0 ? report_file(ctx, file, DK_OP_WRITE, ret, DK_EMIT_NOW) : 0;
}

#endif

/* ---- kprobe family writes: the entry remembers a watched-device file, the return reports ---- */

/*
 * An entry still in dk_inflight when the thread's next write starts is a return that was never
 * seen (the kretprobe missed: maxactive exhausted): it is counted and replaced, or deleted when
 * the new write is not on a watched device, so the new write's return cannot be blamed on the
 * old file. (The lookup costs every write on the machine one hash lookup in kprobe mode.)
 */
SEC("kprobe/vfs_write")
int BPF_KPROBE(dk_kprobe_write, struct file *file)
{
	__u32 dev;
	const struct dk_dev_roots *roots;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ptr = (__u64)file;
	int stale = bpf_map_lookup_elem(&dk_inflight, &id) != NULL;
	int watched = watched_device(BPF_CORE_READ(file, f_path.dentry), &dev, &roots, false);

	/* Compat: materialise the verdict before branching on it, else clang threads the map
	 * lookup's result straight into the update block it lays out above (a backward jump). */
	dk_keep_compares(watched);
	if (watched) {
		if (bpf_map_update_elem(&dk_inflight, &id, &ptr, BPF_ANY))
			count_lost();
	} else if (stale) {
		bpf_map_delete_elem(&dk_inflight, &id);
	}
	if (stale)
		count_stat(DK_STAT_MISSED_RETURN);
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
	return ret > 0 ? report_file(ctx, file, DK_OP_WRITE, ret, DK_EMIT_NOW) : 0;
}

/*
 * ---- security hooks (kprobe, fentry): the paths as the hook sees them, kept in dk_pending;
 * the return of the VFS call that performs the operation sends them only if it succeeded.
 * A hook runs before the operation can fail (permission, LSM, ENOTEMPTY, ENOSPC...), and
 * security_inode_create also runs for an open(O_CREAT) of an existing file whose dentry was
 * not cached (may_o_create() precedes the lookup). ----
 */

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
#if DK_HAVE_BTF_PROGS
#define DK_FENTRY_HOOK_SB(hook, body, ...)                                            \
	SEC("fentry/security_sb_" #hook)                                              \
	int BPF_PROG(dk_fentry_sb_##hook, __VA_ARGS__) { return body; }
#else
#define DK_FENTRY_HOOK_SB(hook, body, ...)
#endif
#define DK_HOOK_SB(hook, body, ...)                                                   \
	DK_FENTRY_HOOK_SB(hook, body, __VA_ARGS__)                                    \
	SEC("kprobe/security_sb_" #hook)                                              \
	int BPF_KPROBE(dk_kprobe_sb_##hook, __VA_ARGS__) { return body; }

DK_HOOK(create, report_dentry(ctx, dentry, DK_OP_CREATE, 0, false, DK_EMIT_CREATE, NULL),
	struct inode *dir, struct dentry *dentry)
DK_HOOK(unlink, report_dentry(ctx, dentry, DK_OP_DELETE, 0, false, DK_EMIT_UNLINK, NULL),
	struct inode *dir, struct dentry *dentry)
DK_HOOK(rename, report_rename(ctx, old_dentry, new_dentry), struct inode *old_dir,
	struct dentry *old_dentry, struct inode *new_dir, struct dentry *new_dentry)
/* link(2), linkat(2) (also of an O_TMPFILE file) and symlink(2): a new name, a create. */
DK_HOOK(link, report_dentry(ctx, new_dentry, DK_OP_CREATE, 0, false, DK_EMIT_LINK, NULL),
	struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
DK_HOOK(symlink, report_dentry(ctx, dentry, DK_OP_CREATE, 0, false, DK_EMIT_SYMLINK, NULL),
	struct inode *dir, struct dentry *dentry)

/* mkdir(2)/mkdirat(2) and rmdir(2): directories are their own ops. */
DK_HOOK(mkdir, report_dentry(ctx, dentry, DK_OP_MKDIR, 0, false, DK_EMIT_MKDIR, NULL),
	struct inode *dir, struct dentry *dentry)
DK_HOOK(rmdir, report_dentry(ctx, dentry, DK_OP_RMDIR, 0, false, DK_EMIT_RMDIR, NULL),
	struct inode *dir, struct dentry *dentry)

/*
 * chmod, chown and their f*at variants (and the mode a write changes when it clears setuid),
 * and truncate(2), ftruncate(2) and opens with O_TRUNC of an existing file (do_truncate()):
 * security_inode_setattr(), then delivered when notify_change() returns. Its prototype is
 * (dentry, attr) on older kernels and (user_namespace or mnt_idmap, dentry, attr) on newer
 * ones, so the caller passes the first three arguments and this picks the dentry among them.
 * A size change is a write of 0 bytes (the content changed); a mode or owner change an attrib.
 * One call with both (a truncation that clears setuid) is one write: a thread has one report
 * in flight, and whoever reads the file again for its content reads its mode too. Times alone
 * are not reported.
 */
static __always_inline int report_setattr(void *ctx, __u64 a0, __u64 a1, __u64 a2)
{
	struct dentry *dentry = (struct dentry *)a1;
	struct iattr *attr = (struct iattr *)a2;

	if (dk_is_dentry((struct dentry *)a0)) {
		dentry = (struct dentry *)a0;
		attr = (struct iattr *)a1;
	} else if (!dk_is_dentry(dentry)) {
		return 0;
	}
	unsigned int valid = BPF_CORE_READ(attr, ia_valid);

	if (!(valid & (DK_ATTR_SIZE | DK_ATTR_MODE | DK_ATTR_UID | DK_ATTR_GID)))
		return 0;
	return report_dentry(ctx, dentry, valid & DK_ATTR_SIZE ? DK_OP_WRITE : DK_OP_ATTRIB, 0,
			     false, DK_EMIT_SETATTR, NULL);
}

SEC("kprobe/security_inode_setattr")
int BPF_KPROBE(dk_kprobe_inode_setattr, void *a0, void *a1, void *a2)
{
	return report_setattr(ctx, (__u64)a0, (__u64)a1, (__u64)a2);
}

#if DK_HAVE_BTF_PROGS
/* fentry: the argument count says which prototype this kernel has (bpf_get_func_arg* is 5.17,
 * like the rest of the modern object). */
SEC("fentry/security_inode_setattr")
int dk_fentry_inode_setattr(unsigned long long *ctx)
{
	__u64 a0 = 0, a1 = 0, a2 = 0;

	if (bpf_get_func_arg_cnt(ctx) == 2) {
		bpf_get_func_arg(ctx, 0, &a0);
		bpf_get_func_arg(ctx, 1, &a1);
		return report_setattr(ctx, a0, a1, 0);
	}
	bpf_get_func_arg(ctx, 1, &a1);
	bpf_get_func_arg(ctx, 2, &a2);
	return report_setattr(ctx, 0, a1, a2);
}
#endif

/* statfs(2)/fstatfs(2) (statfs_by_dentry()): the sidecar teaches the roots' dentries. */
DK_HOOK_SB(statfs, learn_from_dentry(dentry), struct dentry *dentry)

/*
 * ---- the returns. mkdir and rmdir have two each, the first to return delivers: vfs_mkdir and
 * vfs_rmdir sit in fs/namei.c beside the syscalls' do_mkdirat and do_rmdir, which the compiler
 * may inline them into (Debian 5.10: rmdir(2) never returned through vfs_rmdir); the exported
 * copy still serves other callers (overlayfs, nfsd). The vfs_* prototypes changed (user_namespace, then mnt_idmap, first in
 * 5.12 and 6.3; vfs_rename takes a struct renamedata from 5.12), so no program reads their
 * arguments: kretprobes read the return register, fexit programs bpf_get_func_ret() (5.17,
 * like everything in the modern object). do_filp_open(dfd, name, op) is the same from 4.18
 * to 6.18; it returns the opened file, whose f_mode says whether this open created it. ----
 */

static __always_inline int opened(void *ctx, struct file *file)
{
	if (!file || DK_IS_ERR(file))
		return deliver_pending(ctx, DK_DONE_CREATE, 0, 0);
	__u64 dentry = (__u64)BPF_CORE_READ(file, f_path.dentry);

	return deliver_pending(ctx, DK_DONE_CREATE, BPF_CORE_READ(file, f_mode) & DK_FMODE_CREATED,
			       dentry);
}

#define DK_RETURNS(X)                                                                 \
	X(vfs_create, DK_DONE_CREATE)                                                 \
	X(vfs_unlink, DK_DONE_UNLINK)                                                 \
	X(vfs_rename, DK_DONE_RENAME)                                                 \
	X(vfs_link, DK_DONE_LINK)                                                     \
	X(vfs_symlink, DK_DONE_SYMLINK)                                               \
	X(vfs_mkdir, DK_DONE_MKDIR)                                                   \
	X(do_mkdirat, DK_DONE_MKDIR)                                                  \
	X(vfs_rmdir, DK_DONE_RMDIR)                                                   \
	X(do_rmdir, DK_DONE_RMDIR)                                                    \
	X(notify_change, DK_DONE_SETATTR)

#define DK_KRETPROBE(fn, done)                                                        \
	SEC("kretprobe/" #fn)                                                         \
	int BPF_KRETPROBE(dk_kretprobe_##fn, long ret)                                \
	{                                                                             \
		return deliver_pending(ctx, done, dk_vfs_ok(ret), 0);                  \
	}
DK_RETURNS(DK_KRETPROBE)

SEC("kretprobe/do_filp_open")
int BPF_KRETPROBE(dk_kretprobe_do_filp_open, struct file *file)
{
	return opened(ctx, file);
}

#if DK_HAVE_BTF_PROGS
#define DK_FEXIT(fn, done)                                                            \
	SEC("fexit/" #fn)                                                             \
	int dk_fexit_##fn(unsigned long long *ctx)                                    \
	{                                                                             \
		__u64 ret = 1;                                                        \
                                                                                      \
		bpf_get_func_ret(ctx, &ret);                                          \
		return deliver_pending(ctx, done, dk_vfs_ok(ret), 0);                  \
	}
DK_RETURNS(DK_FEXIT)

SEC("fexit/do_filp_open")
int dk_fexit_do_filp_open(unsigned long long *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return opened(ctx, (struct file *)ret);
}
#endif

#endif /* DK_VFS_BPF_H */
