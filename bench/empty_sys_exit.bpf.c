// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The floor for the tracepoint mode: a program on the same raw tracepoint that does nothing.
 * Its per-write overhead is what merely enabling sys_exit costs (the syscall slow path),
 * whatever the program does. Compiled by bench/bench.py at run time with clang. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tracepoint/sys_exit")
int dk_bench_empty(void *ctx)
{
	return 0;
}
