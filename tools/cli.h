/* SPDX-License-Identifier: MIT */
/* Shared by the pinfer subcommands: exit codes and messages. */
#ifndef PINFER_CLI_H
#define PINFER_CLI_H

#include <stdint.h>
#include <stdio.h>

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,		/* the work failed: bad file, I/O error */
	EXIT_USAGE = 2,		/* the command line was wrong */
};

/* Seconds on the monotonic clock. */
double cli_now(void);

/* "pinfer: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "4G", "512M", "1.5GiB", "1000000" (bytes): 0, or -1 for not a size. */
int cli_parse_size(const char *s, uint64_t *out);

/* --mem's value, or -1 after saying why it is not a size. */
int cli_parse_mem(const char *s, uint64_t *out);

/* A progress bar on stderr: "pinfer: <what> NN% [===   ]" (a pinfer_progress_fn). */
void cli_progress(uint64_t done, uint64_t total, void *what);

int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);

#endif
