// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The floor for the tracepoint mode: programs on the same raw tracepoints (sys_enter and
 * sys_exit, the two the sidecar's tracepoint mode attaches) that do nothing. Their per-write
 * overhead is what merely enabling those tracepoints costs (the syscall slow path), whatever the
 * programs do. Compiled by bench/bench.py at run time with clang. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tracepoint/sys_enter")
int dk_bench_empty_enter(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int dk_bench_empty(void *ctx)
{
	return 0;
}
