// SPDX-License-Identifier: MIT
/*
 * pinfer stat's readings (stat.h): the module's sysfs and debugfs files,
 * pinfer serve's /metrics, and the plain-text view of them.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/clock.h"
#include "stat.h"
#include "sysfile.h"

static int64_t sys_counter(const char *name)
{
	char path[128];
	uint64_t v;

	snprintf(path, sizeof(path), STAT_SYSFS "/%s", name);
	return sysfile_u64(path, &v) ? -1 : (int64_t)v;
}

/* "N0=BYTES N1=BYTES" */
static void read_nodes(struct stat_module *m)
{
	char line[4096], *p = line, *end;

	m->nr_nodes = 0;
	if (sysfile_line(STAT_SYSFS "/node_pinned_bytes", line, sizeof(line)))
		return;
	while (m->nr_nodes < STAT_MAX_NODES && *p == 'N') {
		long node = strtol(p + 1, &end, 10);

		if (end == p + 1 || *end != '=')
			break;
		p = end + 1;
		m->nodes[m->nr_nodes].node = (int)node;
		m->nodes[m->nr_nodes].pinned = (int64_t)strtoull(p, &end, 10);
		if (end == p)
			break;
		m->nr_nodes++;
		p = end + strspn(end, " ");
	}
}

/* The next space-separated field of *@s, its octal escapes (\ooo) undone, in @out. */
static int field(char **s, char *out, size_t cap)
{
	char *p = *s + strspn(*s, " ");
	size_t n = 0;

	if (!*p)
		return -1;
	while (*p && *p != ' ') {
		char c = *p++;

		if (c == '\\' && p[0] >= '0' && p[0] <= '7' && p[1] >= '0' && p[1] <= '7' &&
		    p[2] >= '0' && p[2] <= '7') {
			c = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
			p += 3;
		}
		if (n + 1 < cap)
			out[n++] = c;
	}
	out[n] = 0;
	*s = p;
	return 0;
}

/* "ID PID COMM NODE SIZE LOADED INFLIGHT FILE" into @r: 0, or -1 if malformed. */
static int parse_region(char *line, struct stat_region *r)
{
	char num[7][32];
	char *end;
	int i;

	if (field(&line, num[0], sizeof(num[0])) || field(&line, num[1], sizeof(num[1])) ||
	    field(&line, r->comm, sizeof(r->comm)))
		return -1;
	for (i = 2; i < 6; i++)
		if (field(&line, num[i], sizeof(num[i])))
			return -1;
	if (field(&line, r->file, sizeof(r->file)))
		return -1;
	r->id = strtoull(num[0], &end, 10);
	r->pid = (int)strtol(num[1], &end, 10);
	r->node = (int)strtol(num[2], &end, 10);
	r->size = strtoull(num[3], &end, 10);
	r->loaded = strtoull(num[4], &end, 10);
	r->inflight = (int)strtol(num[5], &end, 10);
	return *end ? -1 : 0;
}

static void read_list(struct stat_module *m)
{
	FILE *f = fopen(STAT_DEBUGFS, "r");
	char line[4096];
	size_t cap = 0;

	m->nr_list = 0;
	m->list = NULL;
	if (!f) {
		m->list_err = -errno;
		return;
	}
	m->list_err = 0;
	while (fgets(line, sizeof(line), f)) {
		struct stat_region r = { 0 };

		line[strcspn(line, "\n")] = 0;
		if (parse_region(line, &r))
			continue;
		if (m->nr_list == cap) {
			struct stat_region *n;

			cap = cap ? cap * 2 : 8;
			n = realloc(m->list, cap * sizeof(*n));
			if (!n)
				break;
			m->list = n;
		}
		m->list[m->nr_list++] = r;
	}
	fclose(f);
}

int stat_read_module(struct stat_module *m)
{
	memset(m, 0, sizeof(*m));
	m->t = mono_now();
	m->list_err = -ENODEV;
	if (access("/dev/pinfer", F_OK))
		return -ENODEV;
	m->loaded = true;
	m->regions = sys_counter("regions");
	m->pinned = sys_counter("pinned_bytes");
	m->max_pinned = sys_counter("max_pinned_bytes");
	m->held = sys_counter("held_bytes");
	m->inflight = sys_counter("prefetch_inflight");
	m->commands = sys_counter("prefetch_commands");
	m->errors = sys_counter("prefetch_errors");
	m->bytes = sys_counter("prefetch_bytes");
	read_nodes(m);
	read_list(m);
	return 0;
}

void stat_module_free(struct stat_module *m)
{
	free(m->list);
	m->list = NULL;
	m->nr_list = 0;
}

const struct stat_region *stat_find_region(const struct stat_module *m, uint64_t id)
{
	size_t i;

	for (i = 0; m && i < m->nr_list; i++)
		if (m->list[i].id == id)
			return &m->list[i];
	return NULL;
}

double stat_rate(int64_t before, int64_t after, double seconds)
{
	if (before < 0 || after < 0 || seconds <= 0)
		return -1;
	return after > before ? (double)(after - before) / seconds : 0;
}

double stat_region_rate(const struct stat_module *prev, const struct stat_region *r, double seconds)
{
	const struct stat_region *p = stat_find_region(prev, r->id);

	return p ? stat_rate((int64_t)p->loaded, (int64_t)r->loaded, seconds) : -1;
}

/* ---- pinfer serve's /metrics ------------------------------------------------ */

#define HTTP_MAX_BODY (4u << 20)
#define HTTP_TIMEOUT_S 5

static int connect_to(const char *host, const char *port, char *err, size_t cap)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *a;
	struct timeval tv = { .tv_sec = HTTP_TIMEOUT_S };
	int fd = -1, e = getaddrinfo(host, port, &hints, &res), saved = 0;

	if (e) {
		snprintf(err, cap, "%s: %s", host, gai_strerror(e));
		return -1;
	}
	for (a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, a->ai_addr, a->ai_addrlen)) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, cap, "cannot connect to %s:%s: %s", host, port, strerror(saved));
	return fd;
}

/* Everything the peer sends until it closes, NUL-terminated, in *@out. */
static int read_all(int fd, char **out, size_t *len, char *err, size_t cap)
{
	size_t n = 0, size = 65536;
	char *b = malloc(size + 1);
	ssize_t k;

	if (!b) {
		snprintf(err, cap, "out of memory");
		return -1;
	}
	while ((k = read(fd, b + n, size - n)) > 0) {
		n += (size_t)k;
		if (n == size) {
			char *nb = size < HTTP_MAX_BODY ? realloc(b, 2 * size + 1) : NULL;

			if (!nb) {
				snprintf(err, cap, "the response is over %u MiB", HTTP_MAX_BODY >> 20);
				free(b);
				return -1;
			}
			b = nb;
			size *= 2;
		}
	}
	if (k < 0) {
		snprintf(err, cap, "reading the response: %s", strerror(errno));
		free(b);
		return -1;
	}
	b[n] = 0;
	*out = b;
	*len = n;
	return 0;
}

int stat_http_get(const char *url, char **body, char *err, size_t cap)
{
	char host[256], port[16] = "80", path[512] = "/metrics", *req = NULL, *resp;
	const char *p = url, *slash, *colon;
	size_t len, hl;
	int fd, status = 0, rc = -1;
	char *eoh;

	*body = NULL;
	if (!strncmp(p, "http://", 7))
		p += 7;
	else if (strstr(p, "://")) {
		snprintf(err, cap, "%s: only http:// URLs", url);
		return -1;
	}
	slash = strchr(p, '/');
	hl = slash ? (size_t)(slash - p) : strlen(p);
	colon = memchr(p, ':', hl);
	if (colon) {
		size_t pl = hl - (size_t)(colon + 1 - p);

		if (!pl || pl >= sizeof(port) || strspn(colon + 1, "0123456789") < pl) {
			snprintf(err, cap, "%s: not a port number after the host", url);
			return -1;
		}
		memcpy(port, colon + 1, pl);
		port[pl] = 0;
		hl = (size_t)(colon - p);
	}
	if (!hl || hl >= sizeof(host) || (slash && strlen(slash) >= sizeof(path))) {
		snprintf(err, cap, "%s: not an http://HOST:PORT[/PATH] URL", url);
		return -1;
	}
	memcpy(host, p, hl);
	host[hl] = 0;
	if (slash && slash[1])
		strcpy(path, slash);
	fd = connect_to(host, port, err, cap);
	if (fd < 0)
		return -1;
	if (asprintf(&req, "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: text/plain\r\n\r\n", path,
		     host, port) < 0) {
		req = NULL;
		snprintf(err, cap, "out of memory");
		goto out;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		snprintf(err, cap, "sending the request to %s:%s: %s", host, port, strerror(errno));
		goto out;
	}
	if (read_all(fd, &resp, &len, err, cap))
		goto out;
	eoh = strstr(resp, "\r\n\r\n");
	if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1 || !eoh) {
		snprintf(err, cap, "%s: not an HTTP response", url);
		free(resp);
		goto out;
	}
	if (status != 200) {
		snprintf(err, cap, "GET %s: HTTP status %d", url, status);
		free(resp);
		goto out;
	}
	memmove(resp, eoh + 4, len - (size_t)(eoh + 4 - resp) + 1);
	*body = resp;
	rc = 0;
out:
	free(req);
	close(fd);
	return rc;
}

/* The value of the sample @name (exactly, labels included) in Prometheus @text. */
static int metric(const char *text, const char *name, double *v)
{
	size_t n = strlen(name);
	const char *p;

	for (p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		char *end;

		if (strncmp(p, name, n) || p[n] != ' ')
			continue;
		*v = strtod(p + n + 1, &end);
		return end == p + n + 1 ? -1 : 0;
	}
	return -1;
}

static int64_t metric_int(const char *text, const char *name, int *found)
{
	double v;

	if (metric(text, name, &v))
		return -1;
	++*found;
	return (int64_t)v;
}

int stat_parse_metrics(const char *text, struct stat_serve *s)
{
	int found = 0;

	s->tokens_per_s = -1;
	if (!metric(text, "pinfer_generated_tokens_per_second", &s->tokens_per_s))
		found++;
	s->slots_active = metric_int(text, "pinfer_slots_active", &found);
	s->slots_total = metric_int(text, "pinfer_slots_total", &found);
	s->queued = metric_int(text, "pinfer_queue_length", &found);
	s->requests = metric_int(text, "pinfer_requests_total", &found);
	s->gen_tokens = metric_int(text, "pinfer_generated_tokens_total", &found);
	s->prompt_tokens = metric_int(text, "pinfer_prompt_tokens_total", &found);
	s->pinned_bytes = metric_int(text, "pinfer_memory_pinned_bytes", &found);
	s->stream_bytes = metric_int(text, "pinfer_stream_bytes_total", &found);
	return found ? 0 : -1;
}

/* ---- the plain-text view ------------------------------------------------------ */

/* @v bytes as "1.50 GiB"; "?" when unknown (< 0). */
static const char *bytes(int64_t v, char *buf, size_t cap)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double x = (double)v;
	int u = 0;

	if (v < 0)
		return "?";
	while (x >= 1024 && u < 4) {
		x /= 1024;
		u++;
	}
	snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", x, unit[u]);
	return buf;
}

static const char *number(int64_t v, char *buf, size_t cap)
{
	if (v < 0)
		return "?";
	snprintf(buf, cap, "%" PRId64, v);
	return buf;
}

static void print_list(FILE *f, const struct stat_module *prev, const struct stat_module *cur)
{
	double dt = prev ? cur->t - prev->t : 0;
	char a[32], b[32];
	size_t i;

	if (cur->list_err) {
		fprintf(f, "  regions one by one: %s: %s%s\n", STAT_DEBUGFS, strerror(-cur->list_err),
			cur->list_err == -EACCES ? " (readable by root)" :
			cur->list_err == -ENOENT ? " (debugfs not mounted? mount -t debugfs none /sys/kernel/debug)" : "");
		return;
	}
	if (!cur->nr_list)
		return;
	fprintf(f, "  %4s %8s %-15s %4s %11s %11s %9s %9s  %s\n", "ID", "PID", "COMMAND", "NODE",
		"SIZE", "LOADED", "IN FLIGHT", "GB/s", "FILE");
	for (i = 0; i < cur->nr_list; i++) {
		const struct stat_region *r = &cur->list[i];
		double rate = stat_region_rate(prev, r, dt);
		char gbs[16] = "-";

		if (rate >= 0)
			snprintf(gbs, sizeof(gbs), "%.2f", rate / 1e9);
		fprintf(f, "  %4" PRIu64 " %8d %-15s %4d %11s %11s %9d %9s  %s\n", r->id, r->pid,
			r->comm, r->node, bytes((int64_t)r->size, a, sizeof(a)),
			bytes((int64_t)r->loaded, b, sizeof(b)), r->inflight, gbs, r->file);
	}
}

static void print_module(FILE *f, const struct stat_module *prev, const struct stat_module *cur)
{
	char a[32], b[32], c[32], d[32];
	double rate;
	int i;

	if (!cur->loaded) {
		fprintf(f, "pinfer.ko: not loaded (no /dev/pinfer; modprobe pinfer)\n");
		return;
	}
	fprintf(f, "pinfer.ko: %s regions, %s pinned of %s allowed (max_pinned_mb), %s held after release\n",
		number(cur->regions, a, sizeof(a)), bytes(cur->pinned, b, sizeof(b)),
		bytes(cur->max_pinned, c, sizeof(c)), bytes(cur->held, d, sizeof(d)));
	if (cur->nr_nodes) {
		fprintf(f, "  pinned per node:");
		for (i = 0; i < cur->nr_nodes; i++)
			fprintf(f, "%s N%d %s", i ? "," : "", cur->nodes[i].node,
				bytes(cur->nodes[i].pinned, a, sizeof(a)));
		fputc('\n', f);
	}
	rate = prev ? stat_rate(prev->bytes, cur->bytes, cur->t - prev->t) : -1;
	fprintf(f, "  prefetch: %s in flight, ", number(cur->inflight, a, sizeof(a)));
	if (rate >= 0)
		fprintf(f, "%.2f GB/s", rate / 1e9);
	else
		fprintf(f, "? GB/s");
	fprintf(f, "; since loading %s commands read %s, %s failed\n",
		number(cur->commands, a, sizeof(a)), bytes(cur->bytes, b, sizeof(b)),
		number(cur->errors, c, sizeof(c)));
	print_list(f, prev, cur);
}

void stat_print(FILE *f, const struct stat_module *prev, const struct stat_module *cur,
		const char *url, const struct stat_serve *sv, const char *why)
{
	char a[32], b[32], c[32], d[32], e[32];

	print_module(f, prev, cur);
	if (!url)
		return;
	if (!sv) {
		fprintf(f, "pinfer serve (%s): %s\n", url, why);
		return;
	}
	fprintf(f, "pinfer serve (%s): ", url);
	if (sv->tokens_per_s >= 0)
		fprintf(f, "%.2f tokens/s", sv->tokens_per_s);
	else
		fprintf(f, "? tokens/s");
	fprintf(f, ", %s of %s slots decoding, %s queued\n", number(sv->slots_active, a, sizeof(a)),
		number(sv->slots_total, b, sizeof(b)), number(sv->queued, c, sizeof(c)));
	fprintf(f, "  since starting %s requests, %s prompt tokens, %s generated; %s pinned, %s streamed\n",
		number(sv->requests, a, sizeof(a)), number(sv->prompt_tokens, b, sizeof(b)),
		number(sv->gen_tokens, c, sizeof(c)), bytes(sv->pinned_bytes, d, sizeof(d)),
		bytes(sv->stream_bytes, e, sizeof(e)));
}
