/* SPDX-License-Identifier: MIT */
/* Shared by the pinfer subcommands: exit codes and messages. */
#ifndef PINFER_CLI_H
#define PINFER_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/clock.h"
#include "libpinfer.h"

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,		/* the work failed: bad file, I/O error */
	EXIT_USAGE = 2,		/* the command line was wrong */
};

/* The length of the valid UTF-8 sequence at s[0..n) (n > 0), or 0. */
size_t cli_utf8_len(const char *s, size_t n);

/* As cli_utf8_len(), but 0 for control characters too (C0, DEL, C1). */
size_t cli_printable(const char *s, size_t n);

/*
 * @n bytes of @s for a terminal or JSON, NUL-terminated in @out (@cap bytes,
 * cut at a character): control characters (C0, DEL, C1) and bytes that
 * are not UTF-8 become \xNN.
 */
void cli_escape(const char *s, size_t n, char *out, size_t cap);

/* "pinfer: <message>" on stderr, escaped as by cli_escape(). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Command-line numbers, the whole string and in range (@opt names the
 * option in the message printed when not): 0, or -1 after saying why.
 */
int cli_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
int cli_u64(const char *opt, const char *s, uint64_t *out);
int cli_real(const char *opt, const char *s, double lo, double hi, double *out);

/*
 * Threads for -t @asked: the CPUs this process may use (on NUMA node @node
 * if >= 0) when 0, and never more (said on stderr).
 */
int cli_threads(int asked, int node);

/* "4G", "512M", "1.5GiB", "1000000" (bytes): 0, or -1 for not a size. */
int cli_parse_size(const char *s, uint64_t *out);

/* A size option's (@opt's) value above 0, or -1 after saying why it is not one. */
int cli_parse_bytes(const char *opt, const char *s, uint64_t *out);

/* --mem's value, or -1 after saying why it is not a size. */
int cli_parse_mem(const char *s, uint64_t *out);

struct option;

/*
 * llama.cpp's spelling "-ngl" of --gpu-layers, rewritten in @argv where it
 * stands as an option (not as the value of one, by the command's options
 * @shortopts and @longopts, as getopt reads them), before getopt_long().
 */
void cli_alias_ngl(int argc, char **argv, const char *shortopts, const struct option *longopts);

/*
 * A progress bar on stderr: "pinfer: <what> NN% [===   ] M of N MiB, G GB/s"
 * (a pinfer_progress_fn over bytes; at most ten updates a second).
 */
void cli_progress(uint64_t done, uint64_t total, void *what);
/* cli_progress when stderr is a terminal and not @quiet (-q), else NULL. */
pinfer_progress_fn cli_progress_fn(bool quiet);

struct llm_model;
struct llm_load_opts;

/*
 * --plan: where each part of @model would go under @lo (budget, context,
 * -ngl, and for a server its sequences), the GPU's part and the floor at
 * @drive_bw GB/s (0: at 1, 3 and 7), on stdout, without loading it;
 * EXIT_OK, or EXIT_FAIL after saying why not.
 */
int cli_print_plan(const char *model, const struct llm_load_opts *lo, double drive_bw);

/* Where a loaded model's GPU layers went (nothing without them), one line on stderr. */
void cli_print_gpu(const struct llm_model *m);

/* The expert cache's counters, one line on stderr. */
void cli_print_expert_stats(const struct llm_model *m);

/*
 * On SIGINT, SIGTERM, SIGHUP: remove gguf_out_open()'s file, then die of
 * the signal; SIGXFSZ ignored (a write past ulimit -f fails with EFBIG).
 */
void cli_remove_output_on_signals(void);

int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_stat(int argc, char **argv);

#endif
