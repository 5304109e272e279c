// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Loads every program of an eBPF object on the running kernel, one at a time, and prints
 * the verifier's statistics for each (BPF_LOG_STATS, kernel >= 5.2):
 *
 *   VERIFIER prog=<name> section=<sec> insns=<n> result=ok processed=<n> states=<n>
 *   VERIFIER prog=<name> section=<sec> insns=<n> result=refused errno=<e> log=<last line>
 *
 * bpftool can only print the full verifier log (log level 1+2+4), which for tens of
 * thousands of processed instructions overflows its buffer and takes minutes under TCG.
 * One program per load, so one refusal does not hide the other programs' counts. The
 * kernel's own BTF (or BTF path argv[2]) serves the CO-RE relocations, as with bpftool.
 * Exit code: 0 if every program loaded, 1 otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

static char log_buf[1 << 20];

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	(void)level;
	(void)fmt;
	(void)args;
	return 0;
}

/* The refusal reason: the last log line before the statistics ("processed …" etc.). */
static const char *reason(char *log)
{
	const char *found = log;

	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "processed ", 10) && strncmp(line, "verification time", 17) &&
		    strncmp(line, "stack depth", 11))
			found = line;
	}
	return found;
}

/* Loads nothing but `only` of obj (the others' autoload off); returns it (NULL if absent). */
static struct bpf_program *only_program(struct bpf_object *obj, const char *only)
{
	struct bpf_program *prog, *target = NULL;

	bpf_object__for_each_program(prog, obj) {
		int me = strcmp(bpf_program__name(prog), only) == 0;

		bpf_program__set_autoload(prog, me);
		if (me)
			target = prog;
	}
	return target;
}

static int load_one(const char *path, const char *btf, const char *only)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = btf);
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	struct bpf_program *target;

	if (!obj) {
		printf("VERIFIER open %s failed: %s\n", path, strerror(errno));
		return 1;
	}
	target = only_program(obj, only);
	log_buf[0] = '\0';
	/* Statistics only, so the buffer cannot overflow on success. */
	bpf_program__set_log_level(target, 4);
	bpf_program__set_log_buf(target, log_buf, sizeof(log_buf));
	int err = bpf_object__load(obj);
	char sec[128];
	size_t insns = bpf_program__insn_cnt(target);

	snprintf(sec, sizeof(sec), "%s", bpf_program__section_name(target));

	if (!err) {
		const char *p = strstr(log_buf, "processed ");
		const char *s = strstr(log_buf, "total_states ");

		printf("VERIFIER prog=%s section=%s insns=%zu result=ok processed=%ld states=%ld\n",
		       only, sec, insns, p ? strtol(p + 10, NULL, 10) : -1L,
		       s ? strtol(s + 13, NULL, 10) : -1L);
		bpf_object__close(obj);
		return 0;
	}
	bpf_object__close(obj);

	/* Again with the plain log (level 1) for the reason. */
	obj = bpf_object__open_file(path, &opts);
	target = only_program(obj, only);
	log_buf[0] = '\0';
	bpf_program__set_log_level(target, 1);
	bpf_program__set_log_buf(target, log_buf, sizeof(log_buf));
	err = bpf_object__load(obj);
	printf("VERIFIER prog=%s section=%s insns=%zu result=refused errno=%d log=%s\n", only,
	       sec, insns, -err, reason(log_buf));
	bpf_object__close(obj);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s OBJECT [BTF]\n", argv[0]);
		return 2;
	}
	const char *btf = argc > 2 ? argv[2] : NULL;

	libbpf_set_print(getenv("VERIFIER_STATS_DEBUG") ? NULL : quiet);
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);

	if (!obj) {
		printf("VERIFIER open %s failed: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct bpf_program *prog;
	char names[64][64];
	int n = 0, failed = 0;

	bpf_object__for_each_program(prog, obj) {
		if (n < 64)
			snprintf(names[n++], sizeof(names[0]), "%s", bpf_program__name(prog));
	}
	bpf_object__close(obj);
	for (int i = 0; i < n; i++)
		failed |= load_one(argv[1], btf, names[i]);
	return failed;
}
