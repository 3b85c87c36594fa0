// SPDX-License-Identifier: MIT
/* pinfer inspect: a GGUF file's metadata, tensor table and totals per type. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "format/ggml_types.h"
#include "format/gguf.h"

#define SUMMARY_ELEMS 8		/* array elements shown before "..." */
#define SUMMARY_CHARS 96	/* string bytes shown before "..." */

static const char inspect_help[] =
	"usage: pinfer inspect [--json] [--all] FILE\n\n"
	"Reads a GGUF (v2 or v3) file, validates it, and prints its metadata,\n"
	"its tensor table (name, type, shape, absolute offset, bytes) and totals\n"
	"per tensor type. A malformed file is refused with one error naming the\n"
	"field and its file offset (exit status 1).\n\n"
	"  --all     print arrays and strings in full (default: summarized)\n"
	"  --json    print everything, in full, as one JSON object\n"
	"  -h, --help\n";

/* ---- text output --------------------------------------------------------- */

/* Print a string C-escaped, at most @max bytes (0: all). */
static void put_str(struct gguf_str s, uint64_t max)
{
	uint64_t i, n = max && s.len > max ? max : s.len;

	putchar('"');
	for (i = 0; i < n;) {
		unsigned char ch = (unsigned char)s.ptr[i];
		size_t l = cli_printable(s.ptr + i, n - i);

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", stdout);
		else if (ch == '\t')
			fputs("\\t", stdout);
		else if (!l)		/* controls (C0, DEL, C1), bytes that are not UTF-8 */
			printf("\\x%02x", ch);
		else
			fwrite(s.ptr + i, 1, l, stdout);
		i += l ? l : 1;
	}
	putchar('"');
	if (n < s.len)
		printf("...(%" PRIu64 " bytes)", s.len);
}

static void put_value(const struct gguf_value *v, bool all)
{
	struct gguf_value e;
	uint64_t pos = 0, i = 0;

	switch (v->type) {
	case GGUF_TYPE_INT8: case GGUF_TYPE_INT16:
	case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
		printf("%" PRId64, v->i64);
		break;
	case GGUF_TYPE_FLOAT32:
		printf("%.9g", v->f64);
		break;
	case GGUF_TYPE_FLOAT64:
		printf("%.17g", v->f64);
		break;
	case GGUF_TYPE_BOOL:
		fputs(v->u64 ? "true" : "false", stdout);
		break;
	case GGUF_TYPE_STRING:
		put_str(v->str, all ? 0 : SUMMARY_CHARS);
		break;
	case GGUF_TYPE_ARRAY:
		printf("[%s x %" PRIu64 "] [", gguf_type_name(v->arr.elem_type),
		       v->arr.count);
		while (gguf_array_next(v, &pos, &e)) {
			if (!all && i == SUMMARY_ELEMS) {
				fputs(", ...", stdout);
				break;
			}
			fputs(i++ ? ", " : "", stdout);
			put_value(&e, all);
		}
		putchar(']');
		break;
	default:
		printf("%" PRIu64, v->u64);
		break;
	}
}

static void shape_str(const struct gguf_tensor *t, char *buf, size_t size)
{
	size_t n = 0;
	uint32_t d;

	buf[0] = 0;
	for (d = 0; d < t->n_dims && n < size; d++)
		n += snprintf(buf + n, size - n, "%s%" PRIu64, d ? " x " : "",
			      t->dims[d]);
}

static void print_text(const struct gguf *g, const char *path, bool all)
{
	uint64_t count[GGML_TYPE_COUNT] = { 0 }, elems[GGML_TYPE_COUNT] = { 0 };
	uint64_t bytes[GGML_TYPE_COUNT] = { 0 }, total_elems = 0, total_bytes = 0;
	char shape[96], name[4 * 256];
	uint64_t i;

	printf("file:      %s (%" PRIu64 " bytes)\n", path, g->file_size);
	printf("gguf:      version %" PRIu32 ", alignment %" PRIu32 ", data at offset %" PRIu64 "\n",
	       g->version, g->alignment, g->data_offset);
	printf("\nmetadata (%" PRIu64 " keys):\n", g->n_kv);
	for (i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];

		cli_escape(kv->key.ptr, kv->key.len, name, sizeof(name));
		printf("  %-44s %-4s ", name, gguf_type_name(kv->value.type));
		put_value(&kv->value, all);
		putchar('\n');
	}

	printf("\ntensors (%" PRIu64 "):\n", g->n_tensors);
	printf("  %5s  %-32s %-7s %-20s %12s %12s\n", "#", "name", "type", "shape",
	       "offset", "bytes");
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		shape_str(t, shape, sizeof(shape));
		cli_escape(t->name.ptr, t->name.len, name, sizeof(name));
		printf("  %5" PRIu64 "  %-32s %-7s %-20s %12" PRIu64 " %12" PRIu64 "\n",
		       i, name, ggml_type_name(t->type), shape, t->offset, t->bytes);
		count[t->type]++;
		elems[t->type] += t->n_elems;
		bytes[t->type] += t->bytes;
		total_elems += t->n_elems;
		total_bytes += t->bytes;
	}

	printf("\ntotals per type:\n");
	printf("  %-7s %8s %14s %14s %9s\n", "type", "tensors", "elements", "bytes",
	       "bits/elem");
	for (i = 0; i < GGML_TYPE_COUNT; i++)
		if (count[i])
			printf("  %-7s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 " %9.2f\n",
			       ggml_type_name(i), count[i], elems[i], bytes[i],
			       8.0 * bytes[i] / elems[i]);
	printf("  %-7s %8" PRIu64 " %14" PRIu64 " %14" PRIu64 " %9.2f\n", "all",
	       g->n_tensors, total_elems, total_bytes,
	       total_elems ? 8.0 * total_bytes / total_elems : 0.0);
}

/* ---- JSON output ---------------------------------------------------------- */

/*
 * A JSON string. Bytes that are not valid UTF-8 are written as the lone
 * surrogates U+DC80..U+DCFF (Python's "surrogateescape"), so the exact bytes
 * can be recovered by a reader that wants them.
 */
static void json_str(struct gguf_str s)
{
	const unsigned char *p = (const unsigned char *)s.ptr;
	uint64_t i = 0;

	putchar('"');
	while (i < s.len) {
		size_t n = cli_utf8_len(s.ptr + i, s.len - i);

		if (!n) {
			printf("\\udc%02x", p[i++]);
		} else if (n > 1) {
			fwrite(p + i, 1, n, stdout);
			i += n;
		} else {
			unsigned char ch = p[i++];

			if (ch == '"' || ch == '\\')
				printf("\\%c", ch);
			else if (ch < 0x20 || ch == 0x7f)
				printf("\\u%04x", ch);
			else
				putchar(ch);
		}
	}
	putchar('"');
}

/* A float; NaN and infinities, which JSON has no numbers for, as null. */
static void json_float(double f, bool f32)
{
	if (!isfinite(f))
		fputs("null", stdout);
	else
		printf(f32 ? "%.9g" : "%.17g", f);
}

static void json_value(const struct gguf_value *v)
{
	struct gguf_value e;
	uint64_t pos = 0;
	bool first = true;

	switch (v->type) {
	case GGUF_TYPE_INT8: case GGUF_TYPE_INT16:
	case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
		printf("%" PRId64, v->i64);
		break;
	case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
		json_float(v->f64, v->type == GGUF_TYPE_FLOAT32);
		break;
	case GGUF_TYPE_BOOL:
		fputs(v->u64 ? "true" : "false", stdout);
		break;
	case GGUF_TYPE_STRING:
		json_str(v->str);
		break;
	case GGUF_TYPE_ARRAY:
		putchar('[');
		while (gguf_array_next(v, &pos, &e)) {
			fputs(first ? "" : ",", stdout);
			first = false;
			json_value(&e);
		}
		putchar(']');
		break;
	default:
		printf("%" PRIu64, v->u64);
		break;
	}
}

static void print_json(const struct gguf *g)
{
	uint64_t i;
	uint32_t d;

	printf("{\"version\":%" PRIu32 ",\"alignment\":%" PRIu32
	       ",\"file_size\":%" PRIu64 ",\"data_offset\":%" PRIu64 ",\n\"metadata\":[\n",
	       g->version, g->alignment, g->file_size, g->data_offset);
	for (i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];

		fputs(i ? ",\n{\"key\":" : "{\"key\":", stdout);
		json_str(kv->key);
		printf(",\"type\":\"%s\"", gguf_type_name(kv->value.type));
		if (kv->value.type == GGUF_TYPE_ARRAY)
			printf(",\"elem_type\":\"%s\"",
			       gguf_type_name(kv->value.arr.elem_type));
		fputs(",\"value\":", stdout);
		json_value(&kv->value);
		putchar('}');
	}
	fputs("],\n\"tensors\":[\n", stdout);
	for (i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		fputs(i ? ",\n{\"name\":" : "{\"name\":", stdout);
		json_str(t->name);
		printf(",\"type\":\"%s\",\"type_id\":%" PRIu32 ",\"shape\":[",
		       ggml_type_name(t->type), t->type);
		for (d = 0; d < t->n_dims; d++)
			printf("%s%" PRIu64, d ? "," : "", t->dims[d]);
		printf("],\"n_elements\":%" PRIu64 ",\"offset\":%" PRIu64
		       ",\"bytes\":%" PRIu64 "}", t->n_elems, t->offset, t->bytes);
	}
	fputs("]}\n", stdout);
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false, all = false;
	struct gguf_error err;
	struct gguf *g;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'a':
			all = true;
			break;
		case 'h':
			fputs(inspect_help, stdout);
			return EXIT_OK;
		default:
			fputs(inspect_help, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		cli_error("inspect: expected one FILE (see 'pinfer inspect --help')");
		return EXIT_USAGE;
	}
	if (gguf_open(&g, argv[optind], &err)) {
		cli_error("%s: %s", argv[optind], err.msg);
		return EXIT_FAIL;
	}
	if (json)
		print_json(g);
	else
		print_text(g, argv[optind], all);
	gguf_close(g);
	if (fflush(stdout) || ferror(stdout)) {
		cli_error("inspect: writing the output failed");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
