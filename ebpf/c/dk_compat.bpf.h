/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Everything that differs between diffkeeper's two objects, built from one source:
 *
 *   modern (default)   Linux >= 5.17: ring buffer, bpf_loop, global data, fentry/fexit/tp_btf
 *   compat (-DDK_COMPAT) Linux 4.18-5.16: what 4.18 has, nothing more (the split probe reads,
 *                        5.5, are rewritten to 4.18's by the loader where missing)
 *
 *                   modern                              compat
 *   event output    dk_events RINGBUF, bpf_ringbuf_output  dk_events PERF_EVENT_ARRAY,
 *                                                       bpf_perf_event_output(BPF_F_CURRENT_CPU)
 *   timestamps      bpf_ktime_get_boot_ns: BOOTTIME     bpf_ktime_get_ns: MONOTONIC (no
 *                                                       boot clock helper before 5.8)
 *   parent walk     bpf_loop callbacks                  the same callbacks, called from a
 *                                                       fully unrolled sequence (no backward
 *                                                       jump: no loops before 5.3)
 *   settings        const volatile dk_all_roots,        ARRAY map dk_settings (no global data
 *                   dk_ring_bytes (.rodata)             before 5.2)
 *   learned roots   .bss dk_learned, dk_root_dentry[],  ARRAY dk_learned (one value: the bits,
 *                   dk_root_sb[], dk_root_top[]         all_roots and the pointers of ids < 4),
 *                                                       HASH dk_root_{dentry,sb,top} (ids >= 4)
 *   memory reads    bpf_probe_read_{kernel,user}{,_str}  the same; before 5.5 the loader (aya)
 *                                                       rewrites them to bpf_probe_read{,_str}
 *   programs        + fentry/fexit, tp_btf              kprobe/kretprobe, raw_tracepoint only
 *
 * Loader contract of the compat object (the maps both objects share, dk_roots, dk_devs,
 * dk_lost, dk_scratch and dk_inflight, are identical):
 *   dk_settings   ARRAY, 1 entry, key u32 0, value struct dk_settings { u64 all_roots }:
 *                 the loader writes all_roots (bit id set for every root id in dk_roots, the
 *                 value modern takes as the dk_all_roots global) after load, before attach.
 *                 0 (the initial value) means "learn nothing, never take the learned path".
 *   dk_events     PERF_EVENT_ARRAY, max_entries 0 (loaders size it to the CPU count): one
 *                 perf buffer per CPU. A sample's raw data is struct dk_event + path_len +
 *                 from_len bytes (the ring buffer record of modern), then up to 7 bytes of
 *                 perf padding. Losses: dk_lost (output failed) + the perf ring's own
 *                 PERF_RECORD_LOST counts. No dk_ring_bytes: the buffer size is user space's.
 *   dk_learned, dk_root_dentry, dk_root_sb, dk_root_top: written by the programs only.
 *   ts_ns         CLOCK_MONOTONIC (modern: CLOCK_BOOTTIME): convert with a monotonic offset.
 */
#ifndef DK_COMPAT_BPF_H
#define DK_COMPAT_BPF_H

/* DK_MAX_ROOTS (diffkeeper_event.h) is dk_roots' max_entries and the learned bitmask's width. */

/* Which learned-root table learned_root_id() searches. */
enum dk_table {
	DK_T_DENTRY, /* the root's own dentry */
	DK_T_SB,     /* its super_block: replaces the dk_devs lookup once all roots are learned */
	DK_T_TOP,    /* its file system's top dentry: a walk stops there */
};

/* Both objects' reads name their address space (bpf_probe_read_kernel, _user: 5.5). The
 * unsplit bpf_probe_read guesses it from the address, which costs every read (~3 ns of a
 * write's sys_enter here), and arm64 kernels without
 * CONFIG_ARCH_HAS_NON_OVERLAPPING_ADDRESS_SPACE lack it. For compat on a kernel before 5.5 the
 * loader (aya's sanitize_functions) turns each into the unsplit one, which is what 4.18 has. */
#define dk_probe_read_user_str bpf_probe_read_user_str
#define dk_probe_read_user bpf_probe_read_user

#ifdef DK_COMPAT

/* sys_exit reports writes through the report call every kind shares: one inlined walk, so the
 * program stays within the pre-5.2 verifier budget. */
#define DK_WRITES_SHARE_REPORT 1

/* sys_enter picks the call's ends in one program and walks them in another, reached by
 * bpf_tail_call() (4.2): each is verified alone, so the many kinds' paths are not multiplied by
 * the walks' (one program had Debian 6.1's verifier pass its 1,000,000-step limit). */
#define DK_TP_TAIL 1

/* fentry/fexit/tp_btf need the running kernel's own BTF: not on the kernels compat is for. */
#define DK_HAVE_BTF_PROGS 0

/* A walk step is a real (bpf-to-bpf) function, called DK_MAX_DEPTH times, so the unrolled
 * walk costs a call per level instead of a copy of the step. */
#define DK_STEP static __noinline long

/* Calls cb(0, data), cb(1, data), ... until one returns non-zero: unrolled, so the program
 * has no backward jump (the 4.18 verifier rejects any). */
#define dk_loop(n, cb, data)                                                          \
	do {                                                                          \
		_Pragma("unroll") for (__u32 dk_i = 0; dk_i < (n); dk_i++) if (cb(dk_i, data)) \
			break;                                                        \
	} while (0)

/* Keeps the compares on v as written: clang would merge them into a switch, which it lowers
 * with bit tests for dense case values (arm64's write family) and a range check whose
 * failure jumps back to a block laid out before it. */
#define dk_keep_compares(v) barrier_var(v)

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} dk_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dk_settings);
} dk_settings SEC(".maps");

/*
 * Learned roots. Every write on the machine asks "is this file's super_block a learned one?"
 * and every walk level on a watched file system "is this parent a learned root, or the top?".
 * Hash maps answered with a helper call each (hashing and a bucket walk; 1 per write on
 * another file system, 5 per write two levels below the top of the watched one), where modern
 * compares with global arrays. Compat has no global data and no loops, so it keeps such arrays
 * in the one value of an ARRAY map, whose lookup the verifier inlines into a few instructions
 * (no helper call), and compares with an unrolled sequence of DK_FAST_ROOTS entries.
 *
 * Only root ids below DK_FAST_ROOTS are in the arrays. The compares are verified once per call
 * of the walk step, and the unrolled walk is verified hundreds of times per program
 * (DK_MAX_DEPTH calls per walk, a walk at each report site, with and without learned roots):
 * every entry costs the sys_exit program about 1,700 verifier steps, out of the pre-5.2 budget
 * of 131,072 it must stay within. User space numbers roots densely from 0, so four covers the
 * usual sidecar (a few watched directories and the canary); the ids above it keep hash maps,
 * looked up only when such ids exist.
 */
#define DK_FAST_ROOTS 4

struct dk_learned_roots {
	__u64 learned;   /* bit id set once root id's pointers are stored */
	__u64 all_roots; /* dk_settings.all_roots, copied when learning: one lookup per run */
	__u64 ptr[3][DK_FAST_ROOTS]; /* [enum dk_table][id]; 0 until learned */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dk_learned_roots);
} dk_learned SEC(".maps");

/* Learned pointer -> root id, for ids >= DK_FAST_ROOTS. */
#define DK_LEARNED_TABLE(name)                                                        \
	struct {                                                                      \
		__uint(type, BPF_MAP_TYPE_HASH);                                      \
		__uint(max_entries, DK_MAX_ROOTS);                                    \
		__type(key, __u64);                                                   \
		__type(value, __u32);                                                 \
	} name SEC(".maps")
DK_LEARNED_TABLE(dk_root_dentry);
DK_LEARNED_TABLE(dk_root_sb);
DK_LEARNED_TABLE(dk_root_top);

static __always_inline struct dk_learned_roots *learned_roots(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dk_learned, &zero);
}

/* Indexed by id, like modern's arrays: CPUs learning different roots at once write different
 * entries, so a race can only lose a bit (the sidecar's start-up check then finds the root not
 * learned), never mix two roots up. A root is learned once: never replaced afterwards. */
static __always_inline void learn_root(__u32 id, struct dentry *root)
{
	__u32 zero = 0;
	struct dk_learned_roots *v = learned_roots();
	struct dk_settings *set = bpf_map_lookup_elem(&dk_settings, &zero);
	__u64 dentry = (__u64)root;
	__u64 sb = (__u64)BPF_CORE_READ(root, d_sb);
	__u64 top = (__u64)BPF_CORE_READ(root, d_sb, s_root);

	if (!v || !set)
		return;
	id &= DK_MAX_ROOTS - 1;
	if (v->learned & (1ULL << id))
		return;
	if (id < DK_FAST_ROOTS) {
		v->ptr[DK_T_DENTRY][id & (DK_FAST_ROOTS - 1)] = dentry;
		v->ptr[DK_T_SB][id & (DK_FAST_ROOTS - 1)] = sb;
		v->ptr[DK_T_TOP][id & (DK_FAST_ROOTS - 1)] = top;
	} else {
		bpf_map_update_elem(&dk_root_dentry, &dentry, &id, BPF_ANY);
		bpf_map_update_elem(&dk_root_sb, &sb, &id, BPF_ANY);
		bpf_map_update_elem(&dk_root_top, &top, &id, BPF_ANY);
	}
	v->all_roots = set->all_roots;
	asm volatile("" ::: "memory"); /* the pointers are stored before the bit says so */
	/* Plain read-modify-write (no atomic OR before 5.12): see above for a lost bit. */
	v->learned |= 1ULL << id;
}

static __always_inline int all_roots_learned(void)
{
	struct dk_learned_roots *v = learned_roots();

	if (!v)
		return 0;
	__u64 all = v->all_roots;
	__u64 got = v->learned;

	/* Not short-circuited: jump threading would send the last compare back into code laid
	 * out before it (the compat object has no backward jump). */
	return (all != 0) & (all == got);
}

/* The id of the root whose entry in `table` is `p`, or -1. */
static __always_inline int learned_root_id(enum dk_table table, void *p)
{
	struct dk_learned_roots *v = learned_roots();
	__u64 key = (__u64)p;
	int id = -1;

	/* 0 (a failed read) must not match an entry not learned yet. */
	if (!v || !key)
		return -1;
	const __u64 *ptr = v->ptr[table];

	/*
	 * Every entry, without a bound from all_roots: unused entries are 0 and never match, and
	 * a bound test per entry would cost as many verifier steps as the compare it saves.
	 * Forward-only: a miss falls through to the next entry, a hit jumps past the last.
	 */
#pragma unroll
	for (int k = 0; k < DK_FAST_ROOTS; k++) {
		if (ptr[k] == key) {
			id = k;
			break;
		}
	}
	if (id >= 0 || !(v->all_roots >> DK_FAST_ROOTS))
		return id;
	__u32 *found = bpf_map_lookup_elem(table == DK_T_DENTRY ? (void *)&dk_root_dentry
					  : table == DK_T_SB    ? (void *)&dk_root_sb
								: (void *)&dk_root_top,
					  &key);

	return found ? (int)(*found & (DK_MAX_ROOTS - 1)) : -1;
}

static __always_inline __u64 dk_now_ns(void)
{
	return bpf_ktime_get_ns();
}

static __always_inline long dk_output(void *ctx, void *data, __u64 size)
{
	return bpf_perf_event_output(ctx, &dk_events, BPF_F_CURRENT_CPU, data, size);
}

#else /* modern */

#define DK_HAVE_BTF_PROGS 1
/* sys_exit gives writes, the most frequent call, their own report call: the shared one costs a
 * write outside the watched dirs ~5 ns/run more (register spills, the other kinds' tests),
 * and a second inlined walk costs modern's verifier a few hundred steps. */
#define DK_WRITES_SHARE_REPORT 0
#define DK_TP_TAIL 0
#define DK_STEP static long
#define dk_keep_compares(v)
#define dk_loop(n, cb, data) bpf_loop(n, cb, data, 0)

/* Events to user space; user space sets the size at load (default 1 MiB). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} dk_events SEC(".maps");

/*
 * Learned root dentries, so that walks compare pointers (one probe read per level) instead
 * of reading each parent's inode number (three). User space sets bit `id` of dk_all_roots
 * for every root id and keeps every root directory open while the programs are attached: a
 * pinned dentry cannot be freed, so its address names that directory and nothing else
 * (a directory has one dentry). A root is learned once, when the sidecar calls fstatfs() on
 * it (learn_from_dentry), so even writes outside take the cheap path from the start.
 */
const volatile __u64 dk_all_roots = 0;
__u64 dk_learned = 0;
__u64 dk_root_dentry[DK_MAX_ROOTS];
__u64 dk_root_sb[DK_MAX_ROOTS];
__u64 dk_root_top[DK_MAX_ROOTS];

/* Once per root. Plain read-modify-write: a bit lost to a race with another CPU leaves the root
 * unlearned, which the sidecar's start-up check reports. */
static __always_inline void learn_root(__u32 id, struct dentry *root)
{
	if (dk_learned & (1ULL << (id & (DK_MAX_ROOTS - 1))))
		return;
	dk_root_dentry[id & (DK_MAX_ROOTS - 1)] = (__u64)root;
	dk_root_sb[id & (DK_MAX_ROOTS - 1)] = (__u64)BPF_CORE_READ(root, d_sb);
	dk_root_top[id & (DK_MAX_ROOTS - 1)] = (__u64)BPF_CORE_READ(root, d_sb, s_root);
	asm volatile("" ::: "memory"); /* the pointers are stored before the bit says so */
	dk_learned |= 1ULL << (id & (DK_MAX_ROOTS - 1));
}

static __always_inline int all_roots_learned(void)
{
	return dk_all_roots && dk_learned == dk_all_roots;
}

/* The id of the root whose entry in `table` is `p`, or -1. */
static __always_inline int learned_root_id(enum dk_table table, void *p)
{
	const __u64 *learned = table == DK_T_DENTRY ? dk_root_dentry
			       : table == DK_T_SB   ? dk_root_sb
						    : dk_root_top;

	for (int k = 0; k < DK_MAX_ROOTS; k++) {
		if (!(dk_all_roots >> k))
			return -1;
		if (learned[k] == (__u64)p)
			return k;
	}
	return -1;
}

/* Boot time, not ktime_get_ns: it keeps counting across suspend like CLOCK_REALTIME, so user
 * space's one wall-clock offset stays valid after a resume. */
static __always_inline __u64 dk_now_ns(void)
{
	return bpf_ktime_get_boot_ns();
}

/* dk_events' size in bytes: user space sets it at load, with the map's max_entries. */
const volatile __u32 dk_ring_bytes = 1 << 20;

/*
 * Wake the reader once, when this record makes the ring cross an eighth full; it also polls
 * on a short timeout and drains everything once woken. A wake-up per record would cost the
 * writer an irq_work and the reader a context switch per event. Past half full the reader
 * is falling behind: then every record forces a wake-up, whose cost slows the writers
 * enough for the reader to catch up (without it a burst of 1-byte writes loses a third).
 */
static __always_inline __u64 wakeup_flag(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&dk_events, BPF_RB_AVAIL_DATA);
	__u64 after = avail + size + BPF_RINGBUF_HDR_SZ; /* records are 8-aligned, like the marks */

	if (avail > dk_ring_bytes / 2 || (avail <= dk_ring_bytes / 8 && after > dk_ring_bytes / 8))
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline long dk_output(void *ctx, void *data, __u64 size)
{
	return bpf_ringbuf_output(&dk_events, data, size, wakeup_flag(size));
}

#endif /* DK_COMPAT */
#endif /* DK_COMPAT_BPF_H */
