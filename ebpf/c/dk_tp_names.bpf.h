/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The tracepoint family's names (dk_tracepoint.bpf.h includes this once): copying a user name
 * into the report at sys_enter, deciding whether an absolute one can be placed (dk_abs), and
 * checking at sys_exit that the caller's memory still holds what was copied (dk_tp_names).
 * Needs root_dentry() and the scratch and pending maps.
 */
#ifndef DK_TP_NAMES_BPF_H
#define DK_TP_NAMES_BPF_H

/* Absolute names: the sidecar's root and the watched roots' common prefix (user space). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dk_abs_root);
} dk_abs SEC(".maps");

/*
 * Where sys_enter copied a call's names from, and to (offset in the slot's data, length with
 * the NUL), per end (0: path, 1: from); ptr 0 for an end without a name. sys_exit reads them
 * again: a name that changed in user memory while the call ran may not be the one the kernel
 * used, and the report says so (DK_F_RACED) instead of naming a file.
 */
struct dk_tp_names {
	__u64 ptr[2];
	__u32 at[2];
	__u32 len[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, struct dk_tp_names);
} dk_tp_names SEC(".maps");

/*
 * Reads a user name to data[at..], NUL included; returns its length with the NUL, 0 when it
 * could not be read or may have been cut (it filled the whole read).
 */
static __always_inline long read_name(struct dk_scratch *s, __u32 at, const char *name, int end)
{
	/* One read per end, of a size fixed by the end (constant once inlined): the path's name
	 * starts within data[0..DK_PATH_MAX + 1], a rename source's anywhere up to 2 * DK_PATH_MAX,
	 * so the latter reads at most DK_NAME_BUF (a longer one is flagged). Two reads behind a
	 * test on `at` made 5.x/6.1 verifiers walk the impossible branch and refuse it. */
	long size = end ? DK_NAME_BUF : DK_PATH_MAX;
	long n;

	if (at > sizeof(s->data) - size)
		return 0;
	n = dk_probe_read_user_str(&s->data[at], size, name);
	return n <= 0 || n >= size ? 0 : n;
}

/* An absolute name (read at data[at..], n bytes with the NUL) the sidecar can place: the
 * caller shares its root, and the name starts with one of the prefixes (dk_abs_root). */
static __always_inline int absolute_placeable(struct dk_scratch *s, __u32 at, long n)
{
	__u32 zero = 0;
	struct dk_abs_root *abs = bpf_map_lookup_elem(&dk_abs, &zero);
	struct dentry *root = root_dentry();
	int hit = 0;

	if (!abs || !abs->ino || BPF_CORE_READ(root, d_sb, s_dev) != abs->dev ||
	    BPF_CORE_READ(root, d_inode, i_ino) != abs->ino)
		return 0;
	/* A word at a time, without a branch (compat has no backward jump); the loads may be
	 * unaligned, which x86_64 and arm64 allow. */
	__u64 diff0 = 0, diff1 = 0;

#pragma unroll
	for (int k = 0; k < DK_ABS_PREFIX / 8; k++) {
		__u64 word = *(__u64 *)&s->data[(at + 8 * k) & DK_DATA_MASK];

		diff0 |= (word ^ abs->prefix[0][k]) & abs->mask[0][k];
		diff1 |= (word ^ abs->prefix[1][k]) & abs->mask[1][k];
	}
	/* A prefix has no NUL, so a name that matches it is at least as long. */
	hit = (diff0 == 0) | (diff1 == 0);
	return hit;
}

static __always_inline int name_is_empty(const char *name)
{
	char first[2] = {};

	return dk_probe_read_user_str(first, sizeof(first), name) == 1;
}

/*
 * Whether the name of `end` still reads, from the caller's memory, as sys_enter copied it: its
 * length and its first DK_NAME_CHECK bytes (a word at a time, without a branch per word). A
 * name changed and changed back while the call ran is not seen; the README says so.
 */
#define DK_NAME_CHECK 64

static __always_inline int name_unchanged(struct dk_pending *p, struct dk_tp_names *nm, int end)
{
	struct dk_scratch *s = scratch();
	__u32 at = nm->at[end & 1] & DK_DATA_MASK;
	__u64 diff = 0;

	if (!nm->ptr[end & 1])
		return 1;
	/* A name that ends this close to the end of the data is not checked: flagged instead. */
	if (!s || at > sizeof(p->data) - DK_NAME_CHECK)
		return 0;
	long n = dk_probe_read_user_str(s->data, DK_PATH_MAX, (const char *)nm->ptr[end & 1]);

	if (n != nm->len[end & 1])
		return 0;
	/* The copy sys_enter made, to a fixed place: older verifiers lose the bound on `at`. */
	if (bpf_probe_read_kernel(&s->data[DK_PATH_MAX], DK_NAME_CHECK, &p->data[at]))
		return 0;
#pragma unroll
	for (int k = 0; k < DK_NAME_CHECK / 8; k++) {
		long rem = n - 8 * k; /* bytes of the name (with its NUL) in word k */
		__u64 mask = rem >= 8 ? ~0ULL : rem <= 0 ? 0 : (1ULL << (8 * rem)) - 1;
		__u64 now = 0, then = 0;

		__builtin_memcpy(&now, &s->data[8 * k], 8);
		__builtin_memcpy(&then, &s->data[DK_PATH_MAX + 8 * k], 8);
		diff |= (now ^ then) & mask;
	}
	return diff == 0;
}

#endif /* DK_TP_NAMES_BPF_H */
