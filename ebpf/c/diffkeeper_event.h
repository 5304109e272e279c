/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The event ABI between diffkeeper.bpf.c and user space. Its Rust mirror is
 * ebpf/src/event.rs; a test there compiles this header with offsetof()/sizeof()
 * and compares every field, so change both together.
 */
#ifndef DIFFKEEPER_EVENT_H
#define DIFFKEEPER_EVENT_H

#include <linux/types.h>

#define DK_COMM_LEN 16
/* Longest relative path sent (bytes, no NUL); longer paths are cut and flagged. */
#define DK_PATH_MAX 4096
/* Longest single name the kernel allows (NAME_MAX) plus its NUL. */
#define DK_NAME_BUF 256
/* Parent links walked from a file towards its watched root (>= 16 by contract). */
#define DK_MAX_DEPTH 32
/* Watched roots in all: dk_roots' max_entries, and the width of the learned-root bitmask. */
#define DK_MAX_ROOTS 64
/* Watched roots that may share one device (filesystem). */
#define DK_MAX_ROOTS_PER_DEV 8

enum dk_op {
	DK_OP_WRITE = 1,
	DK_OP_CREATE = 2,
	DK_OP_DELETE = 3,
	DK_OP_RENAME = 4,
	DK_OP_MKDIR = 5,
	DK_OP_RMDIR = 6,
	DK_OP_ATTRIB = 7, /* mode or owner changed */
};

enum dk_flag {
	DK_F_PATH = 1,      /* path (the file, or a rename's target) is under a watched root */
	DK_F_FROM = 2,      /* from (a rename's source) is under a watched root */
	DK_F_TRUNCATED = 4, /* a path could not be assembled whole (longer than DK_PATH_MAX, or a
			     * name unreadable): it is cut after its last whole name and ends
			     * with '/' (or is empty) */
	DK_F_NAME = 8,      /* tracepoint mode: each end sent (path, and from for a rename) is a
			     * directory, NUL, and a name relative to it exactly as the caller
			     * passed it; with DK_F_TRUNCATED, only the directory (name not read).
			     * Root id DK_ROOT_ABS: an absolute name from the sidecar's own root
			     * directory, after an empty directory */
	DK_F_CONTENT = 16,  /* tracepoint mode's linkat of an unnamed (O_TMPFILE) file: bytes is its
			     * size, written while it had no name (counted, not reported, then) */
	DK_F_EXCHANGE = 32, /* a rename with RENAME_EXCHANGE: path and from swapped places */
	DK_F_RACED = 64,    /* DK_F_NAME: a name read differently from the caller's memory at
			     * sys_exit than at sys_enter: the kernel may have used either */
};

/* Root id of an end whose name is absolute (DK_F_NAME): placed from the sidecar's root. */
#define DK_ROOT_ABS 0xffffffffu
/* Bytes of the watched roots' common prefix the tracepoint programs compare absolute names with. */
#define DK_ABS_PREFIX 64

/*
 * Indices of dk_stats (PERCPU_ARRAY of __u64): changes the kernel side did not report on
 * purpose, because it could not name them truly. User space sums the CPUs (/metrics).
 */
enum dk_stat {
	DK_STAT_TOO_DEEP = 0, /* a file on a watched file system more than DK_MAX_DEPTH links below
			       * anything the walk could decide (may be outside the roots) */
	DK_STAT_UNLINKED = 1, /* a change through a file with no name: O_TMPFILE (even once
			       * linked: the descriptor keeps the unnamed dentry) or deleted */
	DK_STAT_MISSED_RETURN = 2, /* kprobe mode: a vfs_write(v) or a VFS operation whose
				    * kretprobe never ran (maxactive exhausted): found by the
				    * thread's next call */
	DK_STAT_COUNT = 3,
};

/*
 * One change. The ring buffer record (modern) or perf sample (compat) is this header followed by path_len bytes of
 * `path` and then from_len bytes of `from`, both relative to their watched root
 * ("sub/dir/file"), without NULs (with DK_F_NAME, `from` is a name relative to `path`).
 */
struct dk_event {
	__u64 bytes;        /* write: bytes the write returned; otherwise 0 */
	__u64 ts_ns;        /* time of the change: CLOCK_BOOTTIME (modern), CLOCK_MONOTONIC (compat) */
	__u32 pid;          /* thread group id of the writer (init pid namespace) */
	__u32 tid;          /* thread id */
	__u32 root_id;      /* id (dk_roots value) of the root holding `path` */
	__u32 from_root_id; /* id of the root holding `from` (renames) */
	__u16 op;           /* enum dk_op */
	__u16 flags;        /* enum dk_flag */
	__u16 path_len;
	__u16 from_len;
	char comm[DK_COMM_LEN];
};

/* Key of dk_roots: a watched root directory. dev is the kernel's encoding (major << 20 | minor). */
struct dk_root_key {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

/* Value of dk_devs: the inode numbers of the watched roots on one device. */
struct dk_dev_roots {
	__u32 count;
	__u32 pad;
	__u64 ino[DK_MAX_ROOTS_PER_DEV];
};

/*
 * Value of the compat object's dk_settings ARRAY map (key 0), which the loader writes after
 * load: what the modern object takes as `const volatile` globals.
 */
struct dk_settings {
	__u64 all_roots; /* bit id set for every root id in dk_roots (modern: dk_all_roots) */
};

/*
 * Value of dk_abs (ARRAY, key 0), written by the loader: which absolute names the tracepoint
 * programs send. Only a caller whose root directory is (dev, ino), the sidecar's, and only names
 * starting with prefix[0] (the state directories' common leading directories) or prefix[1]
 * (the canary's directory), as the sidecar's root sees them: the bytes where mask is 0xff,
 * compared a word at a time. ino 0: none.
 */
#define DK_ABS_PREFIXES 2
struct dk_abs_root {
	__u32 dev;
	__u32 pad;
	__u64 ino;
	__u64 prefix[DK_ABS_PREFIXES][DK_ABS_PREFIX / 8];
	__u64 mask[DK_ABS_PREFIXES][DK_ABS_PREFIX / 8]; /* bytes 0xff where the prefix has one */
};

#endif /* DIFFKEEPER_EVENT_H */
