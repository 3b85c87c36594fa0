// SPDX-License-Identifier: MIT
/* pinfer: the command-line front end. Each subcommand lives in its own file. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("pinfer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
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

int main(int argc, char **argv)
{
	size_t i;

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
