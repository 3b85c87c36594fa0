// SPDX-License-Identifier: MIT
/*
 * pinfer stat's readings (tools/stat_collect.c). On the host (no pinfer.ko):
 * the module reads as not loaded, and pinfer serve's /metrics text parses.
 * Static, inside the test VM with the module loaded (PINFER_TEST_VM=1,
 * tests/kmod/test_vm.sh): what this program does is what the module's sysfs
 * and debugfs files say, read through the collector: two regions on two
 * nodes add their sizes to the pinned bytes of each node and of the module,
 * listed with this process, their node and size; a load through pinfer.ko's
 * prefetch commands adds exactly the file's bytes to the prefetch counter
 * and to the region's loaded bytes, with no failure and nothing left in
 * flight; the text view names them; freeing the regions gives every byte
 * back. tests/e2e/test_stat.py drives the CLI against a real pinfer serve.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libpinfer.h"
#include "stat.h"
#include "../tap.h"

#define MIB (1024 * 1024)

static int64_t node_pinned(const struct stat_module *m, int node)
{
	int i;

	for (i = 0; i < m->nr_nodes; i++)
		if (m->nodes[i].node == node)
			return m->nodes[i].pinned;
	return -1;
}

static int64_t nodes_sum(const struct stat_module *m)
{
	int64_t sum = 0;
	int i;

	for (i = 0; i < m->nr_nodes; i++)
		sum += m->nodes[i].pinned;
	return sum;
}

/* The region of @m that @before does not have, of @size bytes. */
static const struct stat_region *new_region(const struct stat_module *before,
					    const struct stat_module *m, uint64_t size)
{
	size_t i;

	for (i = 0; i < m->nr_list; i++)
		if (!stat_find_region(before, m->list[i].id) && m->list[i].size == size)
			return &m->list[i];
	return NULL;
}

static void host_tests(void)
{
	static const char metrics[] =
		"# HELP pinfer_requests_total Generation requests finished (any way).\n"
		"# TYPE pinfer_requests_total counter\n"
		"pinfer_requests_total 7\n"
		"pinfer_prompt_tokens_total 120\n"
		"pinfer_prompt_tokens_cached_total 11\n"
		"pinfer_generated_tokens_total 345\n"
		"pinfer_generated_tokens_per_second 12.50\n"
		"pinfer_slots_active 2\n"
		"pinfer_slots_total 4\n"
		"pinfer_queue_length 1\n"
		"pinfer_memory_pinned_bytes 287309824\n";
	struct stat_module m;
	struct stat_serve s;
	char err[256], *body;

	ok(stat_read_module(&m) == -ENODEV && !m.loaded, "no pinfer.ko: the module reads as not loaded");
	stat_module_free(&m);
	ok(!stat_parse_metrics(metrics, &s) && s.requests == 7 && s.prompt_tokens == 120 &&
	   s.gen_tokens == 345 && s.tokens_per_s == 12.5 && s.slots_active == 2 &&
	   s.slots_total == 4 && s.queued == 1 && s.pinned_bytes == 287309824 &&
	   s.stream_bytes == -1,
	   "metrics: each figure by its exact name (prompt_tokens_total, not ..._cached_total); a missing one is -1");
	ok(stat_parse_metrics("# HELP x\nother_metric 1\n", &s) == -1,
	   "metrics: a text without pinfer's figures is refused");
	ok(stat_http_get("https://127.0.0.1:1/", &body, err, sizeof(err)) == -1 &&
	   strstr(err, "only http://"), "http: https is refused: %s", err);
	ok(stat_http_get("127.0.0.1:8x", &body, err, sizeof(err)) == -1 && strstr(err, "port"),
	   "http: a bad port is refused: %s", err);
	ok(stat_http_get("127.0.0.1:1", &body, err, sizeof(err)) == -1 && strstr(err, "connect"),
	   "http: a closed port says so: %s", err);
}

static int write_file(const char *path, size_t size)
{
	char *buf = malloc(size);
	int fd, rc = -1;
	size_t i;

	if (!buf)
		return -1;
	for (i = 0; i < size; i++)
		buf[i] = (char)(i * 7 + 3);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0 && write(fd, buf, size) == (ssize_t)size && !fsync(fd))
		rc = 0;
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

static void vm_tests(const char *dir)
{
	const size_t size_a = 4 * MIB, size_b = 6 * MIB, file_size = 3 * MIB + 123;
	struct stat_module m0 = { 0 }, m1 = { 0 }, m2 = { 0 }, m3 = { 0 };
	const struct stat_region *ra, *rb;
	struct pinfer_region *a = NULL, *b = NULL;
	struct pinfer_loader *l = NULL;
	struct pinfer_loader_info li = { 0 };
	struct pinfer_err err = { 0 };
	struct pinfer_range range = { 0, 0, file_size };
	char path[512], *text = NULL;
	size_t text_len = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/stat-test.bin", dir);
	ok(!stat_read_module(&m0) && m0.loaded, "the module reads as loaded");
	ok(m0.regions >= 0 && m0.pinned >= 0 && m0.max_pinned > 0 && m0.held >= 0 &&
	   m0.inflight == 0 && m0.commands >= 0 && m0.errors >= 0 && m0.bytes >= 0,
	   "sysfs: every counter reads (regions %lld, pinned %lld of %lld, held %lld, prefetch: %lld commands, %lld bytes)",
	   (long long)m0.regions, (long long)m0.pinned, (long long)m0.max_pinned,
	   (long long)m0.held, (long long)m0.commands, (long long)m0.bytes);
	ok(m0.nr_nodes == 2 && node_pinned(&m0, 0) >= 0 && node_pinned(&m0, 1) >= 0,
	   "sysfs: node_pinned_bytes has both nodes (%d read)", m0.nr_nodes);
	ok(nodes_sum(&m0) == m0.pinned,
	   "sysfs: the nodes' bytes add up to the module's (%lld of %lld; held pages count on their node)",
	   (long long)nodes_sum(&m0), (long long)m0.pinned);
	ok(m0.list_err == 0 && m0.nr_list == (size_t)m0.regions,
	   "debugfs: the list reads, a line per region (%zu, error %d)", m0.nr_list, m0.list_err);

	if (pinfer_region_create(&a, size_a, 0, PINFER_PROVIDER_KMOD, &err) ||
	    pinfer_region_create(&b, size_b, 1, PINFER_PROVIDER_KMOD, &err)) {
		ok(0, "two kmod regions: %s", err.msg);
		goto out;
	}
	stat_read_module(&m1);
	ra = new_region(&m0, &m1, size_a);
	rb = new_region(&m0, &m1, size_b);
	ok(m1.regions == m0.regions + 2 && m1.pinned == m0.pinned + (int64_t)(size_a + size_b),
	   "two regions: the count and the pinned bytes grow by them (%lld, %lld)",
	   (long long)m1.regions, (long long)m1.pinned);
	ok(node_pinned(&m1, 0) == node_pinned(&m0, 0) + (int64_t)size_a &&
	   node_pinned(&m1, 1) == node_pinned(&m0, 1) + (int64_t)size_b,
	   "per node: 4 MiB more on node 0, 6 MiB more on node 1");
	ok(ra && rb && ra->node == 0 && rb->node == 1 && ra->pid == getpid() &&
	   rb->pid == getpid() && !strcmp(ra->comm, "test_stat") && !strcmp(ra->file, "-") &&
	   ra->loaded == 0 && rb->inflight == 0,
	   "debugfs: both listed with this process, their node, no file, nothing loaded");

	if (write_file(path, file_size) || pinfer_loader_create(&l, b, path, &err)) {
		ok(0, "a file and a loader for it: %s", err.msg[0] ? err.msg : strerror(errno));
		goto out;
	}
	pinfer_loader_info(l, &li);
	ok(li.kmod, "the loader reads through pinfer.ko's prefetch commands");
	ok(!pinfer_load(l, &range, 1, &err), "3 MiB + 123 bytes load into the 6 MiB region %s", err.msg);
	stat_read_module(&m2);
	rb = new_region(&m0, &m2, size_b);
	ok(m2.bytes - m1.bytes == (int64_t)file_size && m2.commands > m1.commands &&
	   m2.errors == m1.errors && m2.inflight == 0,
	   "prefetch: the counter grows by the file's bytes exactly (%lld), in %lld commands, none failed, none in flight",
	   (long long)(m2.bytes - m1.bytes), (long long)(m2.commands - m1.commands));
	ok(stat_rate(m1.bytes, m2.bytes, m2.t - m1.t) > 0, "prefetch: a rate over the interval");
	ok(rb && rb->loaded == file_size && !strcmp(rb->file, path),
	   "debugfs: the region has loaded the file's bytes, and names the file (%s)",
	   rb ? rb->file : "?");

	f = open_memstream(&text, &text_len);
	if (f) {
		stat_print(f, &m1, &m2, NULL, NULL, NULL);
		fclose(f);
	}
	ok(text && strstr(text, "pinfer.ko: ") && strstr(text, "pinned per node: N0 ") &&
	   strstr(text, "test_stat") && strstr(text, path) && strstr(text, "6.00 MiB") &&
	   strstr(text, "GB/s"), "the text view names the regions, their file, sizes and rates");
	for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n"))
		printf("# %s\n", line);
	free(text);
	pinfer_loader_free(l);
	l = NULL;
	unlink(path);

	pinfer_region_free(a);
	pinfer_region_free(b);
	a = b = NULL;
	stat_read_module(&m3);
	ok(m3.regions == m0.regions && m3.pinned == m0.pinned &&
	   node_pinned(&m3, 0) == node_pinned(&m0, 0) && node_pinned(&m3, 1) == node_pinned(&m0, 1),
	   "freed: the count, the pinned bytes and each node's are back (%lld, %lld)",
	   (long long)m3.regions, (long long)m3.pinned);
	ok(!new_region(&m0, &m3, size_a) && !new_region(&m0, &m3, size_b),
	   "debugfs: neither is listed any more");
	stat_module_free(&m3);
	stat_module_free(&m2);
out:
	pinfer_loader_free(l);
	pinfer_region_free(a);
	pinfer_region_free(b);
	stat_module_free(&m1);
	stat_module_free(&m0);
}

int main(void)
{
	const char *dir = getenv("PINFER_TEST_DIR");

	if (getenv("PINFER_TEST_VM"))
		vm_tests(dir ? dir : "/tmp");
	else
		host_tests();
	return tap_end();
}
