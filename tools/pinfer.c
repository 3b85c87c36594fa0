// SPDX-License-Identifier: MIT
/* pinfer: the command-line front end. Each subcommand lives in its own file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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
#include "model/model.h"
#include "cpu.h"
#include "text/unicode.h"

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
	{ "serve", cmd_serve, "serve the model over the OpenAI HTTP API (continuous batching)" },
	{ "synth", cmd_synth, "write a model of real shapes with random weights" },
	{ "stat", cmd_stat, "live view of pinfer.ko's regions, pinned memory, prefetch and a server" },
	{ "doctor", cmd_doctor, "check this machine for running models, with the fix for each problem" },
	{ "perplexity", cmd_perplexity, "perplexity of a model on a text (as llama-perplexity), KL to a base" },
};

size_t cli_utf8_len(const char *s, size_t n)
{
	uint32_t cp;
	size_t len = utf8_decode(s, n, &cp);

	return len == 1 && cp == 0xfffd ? 0 : len;	/* a bad byte, not U+FFFD itself */
}

size_t cli_printable(const char *s, size_t n)
{
	uint32_t cp;
	size_t len = utf8_decode(s, n, &cp);

	if ((len == 1 && cp == 0xfffd) || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
		return 0;	/* bad bytes; C0, DEL and C1 controls (CSI...) */
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

int cli_parse_bytes(const char *opt, const char *s, uint64_t *out)
{
	if (!cli_parse_size(s, out) && *out)
		return 0;
	cli_error("%s %s: not a size (like 4G, 512M or 1000000)", opt, s);
	return -1;
}

int cli_parse_mem(const char *s, uint64_t *out)
{
	return cli_parse_bytes("--mem", s, out);
}

void cli_alias_ngl(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *c;
		const struct option *o;

		if (!strcmp(a, "--"))
			return;
		if (!strcmp(a, "-ngl")) {
			argv[i] = (char *)"--gpu-layers";
		} else if (a[0] == '-' && a[1] == '-' && !strchr(a, '=')) {
			for (o = longopts; o->name; o++)	/* its value is the next argument */
				if (!strcmp(o->name, a + 2) && o->has_arg == required_argument)
					i++;
		} else if (a[0] == '-' && a[1] != '-') {
			for (c = a + 1; *c; c++) {	/* a cluster: -qh, -n8, -n 8 */
				const char *s = strchr(shortopts, *c);

				if (s && s[1] == ':') {
					i += !c[1];	/* the value follows, here or next */
					break;
				}
			}
		}
	}
}

void cli_progress(uint64_t done, uint64_t total, void *what)
{
	static const void *cur;
	static double t0, last;
	double now = mono_now(), dt;

	if (what != cur || done == 0) {	/* a new piece of work */
		cur = what;
		t0 = last = now;
	}
	if (done < total && now - last < 0.1)
		return;		/* ten lines a second at most */
	last = now;
	dt = now - t0;
	fprintf(stderr, "\rpinfer: %s %3d%% [%-20.*s] %.0f of %.0f MiB, %.2f GB/s", (const char *)what,
		total ? (int)(100 * done / total) : 100, total ? (int)(20 * done / total) : 20,
		"====================", done / 1048576.0, total / 1048576.0,
		dt > 0 ? done / dt / 1e9 : 0.0);
	fputs("\033[K", stderr);	/* the rest of a longer line before */
	if (done == total)
		fputc('\n', stderr);
}

pinfer_progress_fn cli_progress_fn(bool quiet)
{
	return !quiet && isatty(2) ? cli_progress : NULL;
}

void cli_print_expert_stats(const struct llm_model *m)
{
	struct llm_expert_stats st;
	uint64_t need;

	llm_model_expert_stats(m, &st);
	need = st.hits + st.prefetch_used + st.misses;
	need = need ? need : 1;
	fprintf(stderr, "pinfer: experts needed %" PRIu64 ": %.1f%% cached, %.1f%% read ahead, %.1f%% missed; read ahead %" PRIu64 " (%.1f%% of guesses right); read %.1f MiB, %.2f GB/s while reading; compute waited %.2f s\n",
		st.hits + st.prefetch_used + st.misses, 100.0 * st.hits / need,
		100.0 * st.prefetch_used / need, 100.0 * st.misses / need, st.prefetched,
		st.predicted ? 100.0 * st.predicted_right / st.predicted : 0.0,
		st.bytes / 1048576.0, st.read_s > 0 ? st.bytes / st.read_s / 1e9 : 0.0, st.wait_s);
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
