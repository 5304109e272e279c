/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The parent walk and the path assembly every program shares: from a file's dentry up to a
 * watched root (find_root), then the names from that root down as "a/b/c" (put_path), both in
 * the per-CPU scratch map. Included once, by diffkeeper.bpf.c, after the maps and
 * dk_compat.bpf.h.
 */
#ifndef DK_WALK_BPF_H
#define DK_WALK_BPF_H

/*
 * The first filter: is `dentry` on a file system holding a watched root? Once every root is
 * learned that is a compare with their super_block pointers, and *roots is NULL (walks then
 * compare dentry pointers); before, the device number is looked up in dk_devs. `direct`, here
 * and in find_root(): the caller is a tp_btf program, which may load pointers directly
 * (dk_direct.bpf.h).
 */
static __always_inline int watched_device(struct dentry *dentry, __u32 *dev,
					  const struct dk_dev_roots **roots, bool direct)
{
	*dev = 0;
	*roots = NULL;
	if (all_roots_learned())
		return learned_root_id(DK_T_SB, sb_of(dentry, direct)) >= 0;
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
 * The id of the watched root `d` is, or -1. With `roots` (not every root learned yet): by its
 * inode number among those on `dev`; without: by pointer among the learned root dentries.
 * A match by (dev, ino) is not learned: on btrfs every subvolume's top is inode 256 on one
 * device, so a sibling subvolume can carry a root's (dev, ino). Roots are learned only from
 * the root directory itself (learn_from_dentry), and the sidecar checks that all were before
 * it journals anything.
 */
static __always_inline int root_id(const struct dk_dev_roots *roots, struct dentry *d, __u32 dev)
{
	if (!roots)
		return learned_root_id(DK_T_DENTRY, d);
	__u64 ino = BPF_CORE_READ(d, d_inode, i_ino);

	if (!is_root_ino(roots, ino))
		return -1;
	struct dk_root_key key = { .dev = dev, .ino = ino };
	__u32 *id = bpf_map_lookup_elem(&dk_roots, &key);

	return id ? *id : -1;
}

/*
 * statfs() or fstatfs() on a watched root teaches its dentry: the sidecar does it on each root
 * (held open) right after attaching, so the learned dentry is that directory and no other
 * with the same (device, inode). A root is learned once (learn_root), so a later statfs of a
 * look-alike cannot replace it.
 */
static __always_inline int learn_from_dentry(struct dentry *dentry)
{
	struct dk_root_key key = {
		.dev = BPF_CORE_READ(dentry, d_sb, s_dev),
		.ino = BPF_CORE_READ(dentry, d_inode, i_ino),
	};
	__u32 *id = bpf_map_lookup_elem(&dk_roots, &key);

	if (id)
		learn_root(*id, dentry);
	return 0;
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
static __always_inline long find_step_at(__u32 i, void *data, bool direct)
{
	struct dk_loop *l = data;
	struct dk_scratch *s = l->s;
	struct dentry *d = s->w.cur;
	struct dentry *parent = parent_of(d, direct);

	if (!parent || parent == d) {
		s->w.ended = 1;
		return 1;
	}
	s->chain[i & (DK_MAX_DEPTH - 1)] = d;
	int id = root_id(l->roots, parent, s->w.dev);

	if (id >= 0) {
		s->w.root_id = id;
		s->w.depth = i + 1;
		return 1;
	}
	s->w.cur = parent;
	/* Once roots are learned, the top is known too: stop there without reading its d_parent. */
	if (l->roots || learned_root_id(DK_T_TOP, parent) < 0)
		return 0;
	s->w.ended = 1;
	return 1;
}

/* Two callbacks, so that only the tp_btf programs' copies contain the cast. */
DK_STEP find_step(__u32 i, void *data)
{
	return find_step_at(i, data, false);
}

#if DK_HAVE_BTF_PROGS
DK_STEP find_step_direct(__u32 i, void *data)
{
	return find_step_at(i, data, true);
}
#endif

/*
 * Finds the watched root above `leaf` within DK_MAX_DEPTH links; returns the depth or 0. A walk
 * that runs out of links before a root or the top cannot tell: it is counted (DK_STAT_TOO_DEEP)
 * and nothing is reported.
 */
static __always_inline __u32 find_root(struct dk_scratch *s, const struct dk_dev_roots *roots,
				       struct dentry *leaf, __u32 dev, bool direct)
{
	struct dk_loop l = { .s = s, .roots = roots };

	s->w.cur = leaf;
	s->w.dev = dev;
	s->w.depth = 0;
	s->w.root_id = 0;
	s->w.ended = 0;
#if DK_HAVE_BTF_PROGS
	if (direct && dk_direct)
		dk_loop(DK_MAX_DEPTH, find_step_direct, &l);
	else
#endif
		dk_loop(DK_MAX_DEPTH, find_step, &l);
	if (!s->w.depth && !s->w.ended)
		count_stat(DK_STAT_TOO_DEEP);
	return s->w.depth;
}

/* How many parents outside_every_root() looks at before it leaves the answer to the walk. */
#define DK_QUICK_DEPTH 8

/*
 * 1 when `leaf` is below no watched root, found with plain compares: its parents, nearest
 * first, reach the top of its file system (a learned root's top, or a dentry that is its own
 * parent) before any learned root. Most writes on a watched file system are of this kind, and
 * find_root() answers them with its per-level bookkeeping in the scratch map. 0 (a root met,
 * roots not learned yet, or deeper than DK_QUICK_DEPTH) leaves it to find_root(), the one
 * authority: this only ever refuses what find_root() would.
 */
static __always_inline int outside_every_root(struct dentry *leaf, bool direct)
{
	struct dentry *d = leaf;
	int verdict = 0; /* 1: the top reached, 2: a root met, 0: neither yet */

	if (!all_roots_learned())
		return 0;
	/* Compat: the levels one after the other, each skipped once decided (no early return:
	 * clang would share one, laid out before some levels, a backward jump). */
#pragma unroll
	for (int i = 0; i < DK_QUICK_DEPTH; i++) {
		if (!verdict) {
			struct dentry *parent = parent_of(d, direct);

			verdict = !parent || parent == d			 ? 1 :
				  learned_root_id(DK_T_DENTRY, parent) >= 0 ? 2 :
				  learned_root_id(DK_T_TOP, parent) >= 0    ? 1 :
									      0;
			dk_keep_compares(verdict);
			d = parent;
		}
	}
	return verdict == 1;
}

/*
 * Appends the j-th name from the root down (chain[depth-1-j]) and a '/' between names. A name
 * that cannot be read, or would take the path past DK_PATH_MAX, ends the path there with
 * DK_F_TRUNCATED: it is then the names before it, each followed by '/'.
 */
DK_STEP put_step(__u32 j, void *data)
{
	struct dk_loop *l = data;
	struct dk_scratch *s = l->s;
	int i = (int)s->w.depth - 1 - (int)j;

	if (i < 0)
		return 1;
	/* base and len <= DK_PATH_MAX: the read stays below data[2 * DK_PATH_MAX + DK_NAME_BUF]. */
	if (s->w.len >= DK_PATH_MAX) {
		s->w.flags |= DK_F_TRUNCATED;
		return 1;
	}
	struct dentry *d = s->chain[i & (DK_MAX_DEPTH - 1)];
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long n = bpf_probe_read_kernel_str(&s->data[(s->w.base + s->w.len) & DK_DATA_MASK],
					   DK_NAME_BUF, name);

	if (n <= 1 || s->w.len + n - 1 + (i > 0) > DK_PATH_MAX) {
		s->w.flags |= DK_F_TRUNCATED;
		return 1;
	}
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

#endif /* DK_WALK_BPF_H */
