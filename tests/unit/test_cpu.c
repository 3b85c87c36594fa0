// SPDX-License-Identifier: MIT
/*
 * Run-time CPU detection agrees with the kernel's view (/proc/cpuinfo flags),
 * and PINFER_CPU caps the level used but never raises it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cpu.h"
#include "../tap.h"

static char flags[8192];

static bool has_flag(const char *name)
{
	size_t n = strlen(name);
	const char *p = flags;

	while ((p = strstr(p, name))) {
		if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' ||
						     p[n] == 0))
			return true;
		p += n;
	}
	return false;
}

static int read_flags(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[sizeof(flags)];

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags", 5)) {
			strcpy(flags, strchr(line, ':') + 1);
			break;
		}
	fclose(f);
	return flags[0] ? 0 : -1;
}

/* The level a fresh process picks with PINFER_CPU=@cap. */
static int level_with(const char *cap)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		setenv("PINFER_CPU", cap, 1);
		_exit(pinfer_cpu()->isa);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

int main(void)
{
	static const struct { const char *flag; size_t off; } map[] = {
		{ "fma", offsetof(struct pinfer_cpu, fma) },
		{ "f16c", offsetof(struct pinfer_cpu, f16c) },
		{ "avx2", offsetof(struct pinfer_cpu, avx2) },
		{ "avx512f", offsetof(struct pinfer_cpu, avx512f) },
		{ "avx512bw", offsetof(struct pinfer_cpu, avx512bw) },
		{ "avx512dq", offsetof(struct pinfer_cpu, avx512dq) },
		{ "avx512vl", offsetof(struct pinfer_cpu, avx512vl) },
		{ "avx512_vnni", offsetof(struct pinfer_cpu, avx512_vnni) },
		{ "avx_vnni", offsetof(struct pinfer_cpu, avx_vnni) },
		{ "avx512_bf16", offsetof(struct pinfer_cpu, avx512_bf16) },
	};
	enum pinfer_isa det, want;
	const struct pinfer_cpu *cpu;
	size_t i;

	/* Children first: the parent's detection would be inherited. */
	int scalar = level_with("scalar"), avx2 = level_with("avx2");
	int junk = level_with("avx9000");

	cpu = pinfer_cpu();
	det = cpu->detected;
	if (read_flags()) {
		tap_skip("/proc/cpuinfo has no flags line");
		return tap_end();
	}
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		bool ours = *(const bool *)((const char *)cpu + map[i].off);

		ok(ours == has_flag(map[i].flag), "%s: cpuid says %d, /proc/cpuinfo %d",
		   map[i].flag, ours, has_flag(map[i].flag));
	}
	want = PINFER_ISA_SCALAR;
	if (has_flag("avx2") && has_flag("fma") && has_flag("f16c")) {
		want = PINFER_ISA_AVX2;
		if (has_flag("avx512f") && has_flag("avx512bw") &&
		    has_flag("avx512dq") && has_flag("avx512vl"))
			want = PINFER_ISA_AVX512;
	}
	ok(det == want, "detected level %s, as the kernel's flags imply (%s)",
	   pinfer_isa_name(det), pinfer_isa_name(want));
	ok(getenv("PINFER_CPU") || cpu->isa == det,
	   "without PINFER_CPU the detected level is used");
	ok(scalar == PINFER_ISA_SCALAR, "PINFER_CPU=scalar gives scalar (%d)", scalar);
	ok(avx2 == (det < PINFER_ISA_AVX2 ? (int)det : PINFER_ISA_AVX2),
	   "PINFER_CPU=avx2 gives min(avx2, detected) (%d)", avx2);
	ok(junk == (int)det, "an unknown PINFER_CPU value changes nothing (%d)",
	   junk);
	return tap_end();
}
