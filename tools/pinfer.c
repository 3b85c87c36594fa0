// SPDX-License-Identifier: MIT
/* pinfer: the command-line front end. Each subcommand lives in its own file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <numa.h>

#include "cli.h"
#include "cpu.h"

#ifndef PINFER_VERSION
#define PINFER_VERSION "0.0.0"
#endif

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "run", cmd_run, "answer a prompt, streaming the text to stdout" },
	{ "chat", cmd_chat, "talk with a model, one line per turn" },
	{ "bench", cmd_bench, "prompt and generation speed (pp512, tg128) in tokens/s" },
	{ "quantize", cmd_quantize, "write a model with its weights in another tensor type" },
	{ "inspect", cmd_inspect, "print a GGUF file's metadata and tensor table" },
	{ "synth", cmd_synth, "write a model of real shapes with random weights" },
};

double cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

size_t cli_utf8_len(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;	/* overlong, surrogates, past Unicode */
	return len;
}

size_t cli_printable(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = cli_utf8_len(s, n);

	if (len == 1 && (u[0] < 0x20 || u[0] == 0x7f))
		return 0;	/* C0 controls, DEL */
	if (len == 2 && u[0] == 0xc2 && u[1] < 0xa0)
		return 0;	/* C1 controls (U+0080-U+009F: CSI...) */
	return len;
}

void cli_escape(const char *s, size_t n, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, l;

	while (i < n && cap - o > 4) {
		l = cli_printable(s + i, n - i);
		if (!l) {
			snprintf(out + o, cap - o, "\\x%02x", p[i++]);
			o += 4;
			continue;
		}
		if (l >= cap - o)
			break;
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	out[o] = 0;
}

void cli_error(const char *fmt, ...)
{
	char msg[1024], safe[4 * sizeof(msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* names from a file can hold escape sequences: not for the terminal */
	cli_escape(msg, strlen(msg), safe, sizeof(safe));
	fprintf(stderr, "pinfer: %s\n", safe);
}

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;

	if (end == s || !(v >= 0))
		return -1;
	switch (*end) {
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1048576.0; end++; break;
	case 'g': case 'G': mul = 1073741824.0; end++; break;
	case 't': case 'T': mul = 1099511627776.0; end++; break;
	}
	if (mul > 1 && (!strcmp(end, "iB") || !strcmp(end, "B") || !strcmp(end, "ib")))
		end += strlen(end);
	if (*end || v * mul > 1.8e19)
		return -1;
	*out = (uint64_t)(v * mul);
	return 0;
}

int cli_int(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi) {
		cli_error("%s %s: not a whole number from %lld to %lld", opt, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_u64(const char *opt, const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (end == s || *end || errno || strchr(s, '-')) {
		cli_error("%s %s: not a whole number from 0 to %llu", opt, s,
			  (unsigned long long)UINT64_MAX);
		return -1;
	}
	return 0;
}

int cli_real(const char *opt, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) {
		cli_error("%s %s: not a number from %g to %g", opt, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_threads(int asked, int node)
{
	cpu_set_t set;
	int n = 0, cpu;

	if (sched_getaffinity(0, sizeof(set), &set))
		return asked;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		n += CPU_ISSET(cpu, &set) && (node < 0 || numa_node_of_cpu(cpu) == node);
	if (!n || !asked)
		return n ? n : asked;	/* no CPU on @node: the pool says so */
	if (asked > n) {
		cli_error("-t %d is more than the %d CPUs this process may use%s: using %d (spin-waiting threads that share CPUs slow each other down)",
			  asked, n, node >= 0 ? " on its node" : "", n);
		return n;
	}
	return asked;
}

int cli_parse_mem(const char *s, uint64_t *out)
{
	if (!cli_parse_size(s, out) && *out)
		return 0;
	cli_error("--mem %s: not a size (like 4G, 512M or 1000000)", s);
	return -1;
}

void cli_progress(uint64_t done, uint64_t total, void *what)
{
	fprintf(stderr, "\rpinfer: %s %3d%% [%-40.*s]", (const char *)what,
		(int)(100 * done / total), (int)(40 * done / total),
		"========================================");
	if (done == total)
		fputc('\n', stderr);
}

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: pinfer COMMAND [ARGS]\n"
		   "       pinfer COMMAND --help\n"
		   "       pinfer --version\n\n"
		   "Runs quantized LLMs from GGUF files on pinned, hugepage-backed memory.\n\n"
		   "commands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

static void version(void)
{
	const struct pinfer_cpu *cpu = pinfer_cpu();

	printf("pinfer %s\n", PINFER_VERSION);
	printf("cpu: %s kernels (detected %s%s%s)\n", pinfer_isa_name(cpu->isa),
	       pinfer_isa_name(cpu->detected),
	       cpu->avx512_vnni ? ", avx512-vnni" : "",
	       cpu->avx_vnni ? ", avx-vnni" : "");
}

/*
 * Descriptors 0-2 closed by whoever started us would be taken by the next
 * open(): the model file would become stdin. Point them at /dev/null.
 */
static int open_std_fds(void)
{
	int fd;

	for (fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", fd ? O_WRONLY : O_RDONLY) != fd)
			return -1;
	return 0;
}

int main(int argc, char **argv)
{
	size_t i;

	if (open_std_fds())
		return EXIT_FAIL;
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		version();
		return EXIT_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	cli_error("unknown command '%s' (see 'pinfer --help')", argv[1]);
	return EXIT_USAGE;
}
