// SPDX-License-Identifier: MIT
/*
 * Models larger than the memory budget.
 *
 * The plan: the embeddings, the output, every norm and bias and as many
 * whole layers as fit stay resident, from layer 0 up; the remaining layers
 * stream. Everything resident is a list of file spans of whole pages,
 * merged where they touch, laid out one after another in the region; the
 * ring's slots follow, each as large as the largest streamed layer (the
 * pages spanning its matrices).
 *
 * The ring: streamed layers are used in a fixed cyclic order, so use number
 * q (counting from the start) is layer first + q % m in slot q % K. When use
 * q is released, the read for use q + K goes into its slot; the reads are
 * submitted as tickets of the runtime's loader (O_DIRECT or pinfer.ko
 * prefetch, 4 MiB requests, 32 in flight), kept moving by
 * llm_stream_pump() between operations, and a layer waits only for its own
 * ticket. With K == m the slots keep their layers and nothing is re-read.
 */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"

struct llm_slot {
	int ticket;		/* reads in flight, or 0 */
	int32_t layer;		/* held or being read; -1: none */
	bool ready;
};

struct llm_stream {
	const struct llm_model *model;
	struct pinfer_loader *loader;
	uint8_t *base;		/* the region */
	uint64_t ring_off, slot_bytes;
	uint32_t first, m, k;	/* layers [first, first + m) through k slots */
	uint64_t use;		/* the next use number */
	uint64_t *span_a, *span_b;	/* [layer]: its matrices' file span */
	struct llm_slot *slots;
	struct llm_stream_stats stats;
	struct pinfer_err error;	/* code 0: none */
};

#define MIB 1048576.0

static uint64_t page_down(uint64_t x) { return x / LLM_PAGE * LLM_PAGE; }
static uint64_t page_up(uint64_t x) { return (x + LLM_PAGE - 1) / LLM_PAGE * LLM_PAGE; }

/* ---- the budget -------------------------------------------------------------- */

static uint64_t meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	uint64_t kb = 0;
	size_t n = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':') {
			kb = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb << 10;
}

static uint64_t sysfs_u64(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long v = 0;

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* A cgroup file's number; "max" (v2) or absent: UINT64_MAX. */
static uint64_t cgroup_u64(const char *dir, const char *file)
{
	char path[6200 + 64], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	if (!f)
		return UINT64_MAX;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return buf[0] >= '0' && buf[0] <= '9' ? strtoull(buf, NULL, 10) : UINT64_MAX;
}

/* The value of @key in the cgroup's memory.stat, or 0. */
static uint64_t cgroup_stat(const char *dir, const char *key)
{
	char path[6200 + 64], line[256];
	unsigned long long v = 0;
	size_t n = strlen(key);
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ') {
			v = strtoull(line + n + 1, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

/*
 * The memory this process's memory cgroup, and each of its ancestors, has
 * left: the smallest of limit less usage (v2: memory.max and memory.high
 * less memory.current; v1: memory.limit_in_bytes less memory.usage_in_bytes),
 * the page cache (memory.stat's file, v1 total_cache) not counted as used:
 * the kernel reclaims it when the group needs room. UINT64_MAX where there
 * is no limit. The cgroup file system is found in
 * /proc/self/mountinfo, the process's group in /proc/self/cgroup.
 */
static uint64_t cgroup_left(void)
{
	char line[4096], mnt[2][1024] = { "", "" }, root[2][1024] = { "", "" };
	char grp[2][2048] = { "", "" }, dir[6200];
	uint64_t left = UINT64_MAX;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int v;

	while (f && fgets(line, sizeof(line), f)) {	/* v = 0: v1 memory, 1: v2 */
		char r[1024], m[1024], *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", r, m) != 2)
			continue;
		if (!strncmp(dash, " - cgroup2 ", 11))
			v = 1;
		else if (!strncmp(dash, " - cgroup ", 10) && strstr(dash, "memory"))
			v = 0;
		else
			continue;
		if (!mnt[v][0]) {
			snprintf(mnt[v], sizeof(mnt[v]), "%s", m);
			snprintf(root[v], sizeof(root[v]), "%s", r);
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;

		if (!path)
			continue;
		path[strcspn(path, "\n")] = 0;
		if (!strncmp(line, "0::", 3))
			snprintf(grp[1], sizeof(grp[1]), "%s", path + 1);
		else if (strstr(ctl, "memory") && strstr(ctl, "memory") < path)
			snprintf(grp[0], sizeof(grp[0]), "%s", path + 1);
	}
	if (f)
		fclose(f);
	for (v = 0; v < 2; v++) {
		const char *rel = grp[v];
		size_t rl = strlen(root[v]), n;

		if (!mnt[v][0] || !grp[v][0])
			continue;
		if (strcmp(root[v], "/") && !strncmp(rel, root[v], rl))
			rel += rl;	/* a namespace's view: the mount is the group */
		snprintf(dir, sizeof(dir), "%s%s", mnt[v], rel);
		for (;;) {	/* the group, then its ancestors up to the mount */
			uint64_t use = cgroup_u64(dir, v ? "memory.current" : "memory.usage_in_bytes");
			uint64_t cache = cgroup_stat(dir, v ? "file" : "total_cache");
			uint64_t lim = cgroup_u64(dir, v ? "memory.max" : "memory.limit_in_bytes");
			uint64_t high = v ? cgroup_u64(dir, "memory.high") : UINT64_MAX;

			lim = high < lim ? high : lim;
			if (use != UINT64_MAX)
				use = use > cache ? use - cache : 0;
			if (lim != UINT64_MAX && lim < (1ull << 62)) {	/* v1: "no limit" is huge */
				lim = lim > use || use == UINT64_MAX ? lim - (use == UINT64_MAX ? 0 : use) : 0;
				left = lim < left ? lim : left;
			}
			n = strlen(dir);
			if (n <= strlen(mnt[v]))
				break;
			while (n > strlen(mnt[v]) && dir[n - 1] != '/')
				n--;
			dir[n > strlen(mnt[v]) ? n - 1 : n] = 0;
		}
	}
	return left;
}

/*
 * The memory budget: available memory less a margin (an eighth, at least
 * 256 MiB), within what the memory cgroup has left (less the same margin
 * of that), within pinfer.ko's max_pinned_mb when the module is there; the
 * free pages of the hugetlb pool for that provider. *@lock: RLIMIT_MEMLOCK
 * for a process that is not root (what it can pin), UINT64_MAX if none.
 */
static uint64_t default_budget(enum pinfer_provider prov, uint64_t *lock, char *why, size_t n)
{
	uint64_t avail = meminfo("MemAvailable"), margin = avail / 8, b, cg = cgroup_left();
	struct rlimit rl;

	margin = margin < (256ull << 20) ? 256ull << 20 : margin;
	b = avail > margin ? avail - margin : 0;
	snprintf(why, n, "available memory %" PRIu64 " MiB less %" PRIu64 " MiB",
		 avail >> 20, margin >> 20);
	if (cg != UINT64_MAX && cg - cg / 8 < b) {
		b = cg - cg / 8;
		snprintf(why, n, "what the memory cgroup has left, %" PRIu64 " MiB, less an eighth",
			 cg >> 20);
	}
	*lock = UINT64_MAX;
	if (geteuid() && !getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY)
		*lock = rl.rlim_cur;
	if ((prov == PINFER_PROVIDER_AUTO || prov == PINFER_PROVIDER_KMOD) &&
	    !access("/dev/pinfer", F_OK)) {
		uint64_t max = sysfs_u64("/sys/class/misc/pinfer/max_pinned_bytes");
		uint64_t used = sysfs_u64("/sys/class/misc/pinfer/pinned_bytes");

		if (max && max - (used < max ? used : max) < b) {
			b = max - (used < max ? used : max);
			snprintf(why, n, "pinfer.ko's max_pinned_mb less what is pinned: %" PRIu64 " MiB",
				 b >> 20);
		}
	}
	if (prov == PINFER_PROVIDER_HUGETLB) {
		b = meminfo("HugePages_Free") >> 10;	/* a count, not kB */
		b *= meminfo("Hugepagesize");
		snprintf(why, n, "the free 2 MiB pages of the hugetlb pool: %" PRIu64 " MiB", b >> 20);
		*lock = UINT64_MAX;	/* hugetlb pages are not charged to it */
	}
	return b;
}

/* ---- the plan ------------------------------------------------------------------ */

static int cmp_piece(const void *x, const void *y)
{
	const struct llm_piece *p = x, *q = y;

	return p->a < q->a ? -1 : p->a > q->a;
}

/*
 * The resident pieces when layers [0, r) are resident: each resident
 * tensor's pages, sorted, merged where they overlap or touch, laid out.
 */
static size_t layout_pieces(const struct llm_tref *refs, size_t n_refs, uint32_t r,
			    struct llm_piece *out, uint64_t *bytes)
{
	size_t i, n = 0, k;
	uint64_t off = 0;

	for (i = 0; i < n_refs; i++) {
		const struct llm_tensor *t = refs[i].t;

		if (refs[i].layer >= (int32_t)r && t->rows > 1)
			continue;	/* a streamed matrix */
		out[n++] = (struct llm_piece){ page_down(t->file_off),
					       page_up(t->file_off + t->bytes), 0 };
	}
	qsort(out, n, sizeof(*out), cmp_piece);
	for (i = 0, k = 0; i < n; i++) {
		if (k && out[i].a <= out[k - 1].b) {
			out[k - 1].b = out[i].b > out[k - 1].b ? out[i].b : out[k - 1].b;
			continue;
		}
		out[k++] = out[i];
	}
	for (i = 0; i < k; i++) {
		out[i].roff = off;
		off += out[i].b - out[i].a;
	}
	*bytes = off;
	return k;
}

/* The output tensor when it is the embeddings (tied): not counted twice. */
static bool tied(const struct llm_model *m, const struct llm_tensor *t)
{
	return t == &m->output && t->file_off == m->token_embd.file_off;
}

static uint64_t largest_span(const uint64_t *sa, const uint64_t *sb, uint32_t from,
			     uint32_t to)
{
	uint64_t max = 0;

	for (; from < to; from++)
		max = sb[from] - sa[from] > max ? sb[from] - sa[from] : max;
	return max;
}

int llm_plan_make(struct llm_model *m, const struct llm_load_opts *o,
		  struct llm_plan *p, struct llm_layout *lay, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint32_t n = c->n_layer, r = n, k = 0, tries[3], n_tries = 0, t, i, top;
	struct llm_tref *refs = malloc(LLM_TREFS(n) * sizeof(*refs));
	struct llm_piece *pieces = malloc(LLM_TREFS(n) * sizeof(*pieces));
	uint64_t *sa = calloc(n, sizeof(*sa)), *sb = calloc(n, sizeof(*sb));
	uint64_t res = 0, slot = 0, fixed_pages, lock = UINT64_MAX;
	size_t n_refs, j, n_pieces;
	bool fit;
	int ret = 0;

	memset(p, 0, sizeof(*p));
	memset(lay, 0, sizeof(*lay));
	if (!refs || !pieces || !sa || !sb) {
		ret = pinfer_fail(err, ENOMEM, "plan: out of memory");
		goto out;
	}
	n_refs = llm_model_trefs(m, refs);
	for (i = 0; i < n; i++)
		sa[i] = UINT64_MAX;
	for (j = 0; j < n_refs; j++) {
		const struct llm_tensor *tt = refs[j].t;

		if (tied(m, tt))
			continue;
		p->weights += tt->bytes;
		if (refs[j].layer < 0 || tt->rows == 1) {
			p->fixed += tt->bytes;
			continue;
		}
		i = (uint32_t)refs[j].layer;
		if (page_down(tt->file_off) < sa[i])
			sa[i] = page_down(tt->file_off);
		if (page_up(tt->file_off + tt->bytes) > sb[i])
			sb[i] = page_up(tt->file_off + tt->bytes);
	}
	p->n_layer = n;
	p->n_ctx = o->n_ctx && o->n_ctx < c->ctx_train ? o->n_ctx : c->ctx_train;
	p->session = llm_session_bytes(c, p->n_ctx, o->threads ? o->threads :
				       o->pool ? (uint32_t)pinfer_pool_threads(o->pool) : 1);
	if (o->mem) {
		p->budget = o->mem;
		snprintf(p->budget_why, sizeof(p->budget_why), "--mem");
	} else {
		p->budget = default_budget(o->provider, &lock, p->budget_why, sizeof(p->budget_why));
	}
	/* the minimum: only the fixed part resident, the smallest ring */
	t = o->ring ? o->ring : 2;
	t = t < n ? t : n;
	layout_pieces(refs, n_refs, 0, pieces, &fixed_pages);
	p->minimum = fixed_pages + t * largest_span(sa, sb, 0, n) + p->session;
	/* What can be pinned bounds the default budget, unless even the
	 * minimum cannot be: then the memory is not locked, and it says so. */
	if (lock < p->budget && lock >= p->minimum) {
		p->budget = lock;
		snprintf(p->budget_why, sizeof(p->budget_why),
			 "RLIMIT_MEMLOCK (ulimit -l) of %" PRIu64 " MiB", lock >> 20);
	} else if (lock < p->budget) {
		size_t l = strlen(p->budget_why);

		snprintf(p->budget_why + l, sizeof(p->budget_why) - l,
			 "; RLIMIT_MEMLOCK (ulimit -l) of %" PRIu64 " KiB is below the model's minimum: memory not locked",
			 lock >> 10);
	}

	/* Everything resident if it fits; else the most layers with a ring of
	 * the size asked for, or of 4, 3 or 2 slots. */
	layout_pieces(refs, n_refs, n, pieces, &res);
	fit = !o->stream_layers && res + p->session <= p->budget;
	if (o->ring)
		tries[n_tries++] = o->ring;
	else
		for (t = LLM_RING_DEFAULT; t >= 2; t--)
			tries[n_tries++] = t;
	top = n - (o->stream_layers > 1 ? (o->stream_layers < n ? o->stream_layers : n) : 1);
	for (t = 0; t < n_tries && !fit; t++)
		for (r = top + 1; r-- > 0 && !fit;) {	/* r = top .. 0 resident layers */
			k = tries[t] < n - r ? tries[t] : n - r;
			slot = largest_span(sa, sb, r, n);
			layout_pieces(refs, n_refs, r, pieces, &res);
			fit = res + k * slot + p->session <= p->budget;
			if (fit)
				break;
		}
	if (!fit) {
		t = o->ring ? o->ring : 2;
		ret = pinfer_fail(err, ENOMEM, "a memory budget of %.1f MiB (%s) is below this model's minimum of %.1f MiB (%" PRIu64 " bytes): embeddings, output and norms %.1f MiB, a ring of %" PRIu32 " slots of %.1f MiB, KV cache and buffers for a context of %" PRIu32 " %.1f MiB (give a larger --mem, or a smaller --ctx)",
				  p->budget / MIB, p->budget_why, p->minimum / MIB, p->minimum,
				  fixed_pages / MIB, t < n ? t : n, largest_span(sa, sb, 0, n) / MIB,
				  p->n_ctx, p->session / MIB);
		goto out;
	}
	n_pieces = layout_pieces(refs, n_refs, r, pieces, &res);
	p->n_resident = r;
	p->ring = r < n ? k : 0;
	p->slot = r < n ? slot : 0;
	p->region = res + (uint64_t)p->ring * p->slot;
	if (p->ring && p->ring < n - r)
		for (i = r; i < n; i++)
			p->streamed += sb[i] - sa[i];
	lay->pieces = pieces;
	lay->n = n_pieces;
	lay->resident = res;
	lay->span_a = sa;
	lay->span_b = sb;
	pieces = NULL;
	sa = sb = NULL;
out:
	free(refs);
	free(pieces);
	free(sa);
	free(sb);
	return ret;
}

void llm_layout_free(struct llm_layout *lay)
{
	free(lay->pieces);
	free(lay->span_a);
	free(lay->span_b);
	memset(lay, 0, sizeof(*lay));
}

int llm_layout_place(struct llm_model *m, const struct llm_layout *lay, uint8_t *base,
		     struct pinfer_err *err)
{
	struct llm_tref *refs = malloc(LLM_TREFS(m->cfg.n_layer) * sizeof(*refs));
	size_t n, i, j;

	if (!refs)
		return pinfer_fail(err, ENOMEM, "out of memory");
	n = llm_model_trefs(m, refs);
	for (i = 0; i < n; i++) {
		struct llm_tensor *t = refs[i].t;

		t->data = NULL;
		for (j = 0; j < lay->n; j++)
			if (lay->pieces[j].a <= t->file_off &&
			    t->file_off + t->bytes <= lay->pieces[j].b) {
				t->data = base + lay->pieces[j].roff + (t->file_off - lay->pieces[j].a);
				break;
			}
	}
	free(refs);
	return 0;
}

/* ---- the ring -------------------------------------------------------------------- */

static uint32_t slot_of(const struct llm_stream *st, uint64_t q)
{
	return (uint32_t)(q % st->k);
}

static uint32_t layer_of(const struct llm_stream *st, uint64_t q)
{
	return st->first + (uint32_t)(q % st->m);
}

/* The tensor of @layer holding file offset @off (or the next after it). */
static const char *tensor_at(const struct llm_model *m, uint32_t layer, uint64_t off,
			     char *buf, size_t n)
{
	const struct llm_layer *ly = &m->layers[layer];
	const struct {
		const struct llm_tensor *t;
		const char *name;
	} mats[] = {
		{ &ly->wq, "attn_q" }, { &ly->wk, "attn_k" }, { &ly->wv, "attn_v" },
		{ &ly->wo, "attn_output" }, { &ly->w_gate, "ffn_gate" },
		{ &ly->w_up, "ffn_up" }, { &ly->w_down, "ffn_down" },
	};
	const char *best = NULL;
	uint64_t best_off = UINT64_MAX;
	size_t i;

	for (i = 0; i < sizeof(mats) / sizeof(mats[0]); i++) {
		const struct llm_tensor *t = mats[i].t;

		if (t->file_off <= off && off < t->file_off + t->bytes) {
			best = mats[i].name;
			break;
		}
		if (t->file_off > off && t->file_off < best_off) {
			best_off = t->file_off;
			best = mats[i].name;
		}
	}
	snprintf(buf, n, "blk.%" PRIu32 ".%s.weight", layer, best ? best : "?");
	return buf;
}

/* Keep @e, the failure of @layer's reads, naming the tensor where it broke. */
static void stream_failed(struct llm_stream *st, uint32_t layer, const struct pinfer_err *e)
{
	char name[64];

	if (e->file_off >= 0)
		pinfer_fail(&st->error, -e->code, "streaming %s (file offset %" PRId64 "): %s",
			    tensor_at(st->model, layer, (uint64_t)e->file_off, name, sizeof(name)),
			    e->file_off, e->msg);
	else
		pinfer_fail(&st->error, -e->code, "streaming layer %" PRIu32 ": %s", layer, e->msg);
}

/* Send the reads of use @q's layer into its slot. */
static void submit(struct llm_stream *st, uint64_t q)
{
	struct llm_slot *s = &st->slots[slot_of(st, q)];
	uint32_t layer = layer_of(st, q);
	struct pinfer_err e = { 0 };
	struct pinfer_range rg = {
		.file_off = st->span_a[layer],
		.region_off = st->ring_off + slot_of(st, q) * st->slot_bytes,
		.len = st->span_b[layer] - st->span_a[layer],
	};
	int ticket;

	if (s->layer == (int32_t)layer && s->ready)
		return;		/* still there: the ring holds every layer */
	s->layer = (int32_t)layer;
	s->ready = false;
	s->ticket = 0;
	if (st->error.code)
		return;
	ticket = pinfer_load_submit(st->loader, &rg, 1, &e);
	if (ticket < 0)
		stream_failed(st, layer, &e);
	else {
		s->ticket = ticket;
		st->stats.bytes += rg.len;
		st->stats.reads++;
	}
}

void llm_model_stream_stats(const struct llm_model *m, struct llm_stream_stats *st)
{
	if (m->stream)
		*st = m->stream->stats;
	else
		memset(st, 0, sizeof(*st));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int llm_stream_start(struct llm_model *m, const struct llm_layout *lay,
		     struct pinfer_loader *l, struct pinfer_err *err)
{
	struct llm_stream *st = calloc(1, sizeof(*st));
	uint64_t q;

	if (!st || !(st->slots = calloc(m->plan.ring, sizeof(*st->slots)))) {
		free(st);
		pinfer_loader_free(l);
		return pinfer_fail(err, ENOMEM, "stream: out of memory");
	}
	st->model = m;
	st->loader = l;
	st->base = pinfer_region_ptr(m->region);
	st->ring_off = lay->resident;
	st->slot_bytes = m->plan.slot;
	st->first = m->plan.n_resident;
	st->m = m->cfg.n_layer - st->first;
	st->k = m->plan.ring;
	st->span_a = malloc(m->cfg.n_layer * sizeof(*st->span_a));
	st->span_b = malloc(m->cfg.n_layer * sizeof(*st->span_b));
	if (!st->span_a || !st->span_b) {
		llm_stream_free(st);
		return pinfer_fail(err, ENOMEM, "stream: out of memory");
	}
	for (q = 0; q < m->cfg.n_layer; q++) {	/* the last page may be partial */
		st->span_a[q] = lay->span_a[q];
		st->span_b[q] = lay->span_b[q] < m->gguf->file_size ?
				lay->span_b[q] : m->gguf->file_size;
	}
	for (q = 0; q < st->k; q++)
		st->slots[q].layer = -1;
	for (q = 0; q < st->k; q++)
		submit(st, q);
	m->stream = st;
	return 0;
}

void llm_stream_free(struct llm_stream *st)
{
	if (!st)
		return;
	pinfer_loader_free(st->loader);	/* waits for reads in flight */
	free(st->span_a);
	free(st->span_b);
	free(st->slots);
	free(st);
}

/* A layer's seven matrices: what streams. */
static void layer_mats(struct llm_layer *ly, struct llm_tensor *mats[7])
{
	mats[0] = &ly->wq, mats[1] = &ly->wk, mats[2] = &ly->wv, mats[3] = &ly->wo;
	mats[4] = &ly->w_gate, mats[5] = &ly->w_up, mats[6] = &ly->w_down;
}

int llm_stream_acquire(const struct llm_model *m, uint32_t layer, struct pinfer_pool *pool,
		       bool pack, struct pinfer_err *err)
{
	struct llm_stream *st = m->stream;
	struct llm_tensor *mats[7];
	struct llm_slot *s;
	bool fresh = false;
	uint8_t *at;
	uint64_t q, a;
	size_t i;

	if (!st || layer < st->first)
		return 0;
	if (st->error.code) {
		if (err)
			*err = st->error;
		return st->error.code;
	}
	q = st->use;
	if (layer_of(st, q) != layer)
		return pinfer_fail(err, EPROTO, "stream: layer %" PRIu32 " used out of order (expected %" PRIu32 ")",
				   layer, layer_of(st, q));
	s = &st->slots[slot_of(st, q)];
	if (!s->ready) {
		struct pinfer_err e = { 0 };
		double t0 = now();
		int ret = pinfer_load_wait(st->loader, s->ticket, &e);

		st->stats.wait_s += now() - t0;
		if (ret) {
			s->ticket = 0;
			s->layer = -1;
			stream_failed(st, layer, &e);
			if (err)
				*err = st->error;
			return st->error.code;
		}
		s->ticket = 0;
		s->ready = true;
		fresh = true;
	}
	at = st->base + st->ring_off + slot_of(st, q) * st->slot_bytes;
	a = st->span_a[layer];
	layer_mats(&m->layers[layer], mats);
	for (i = 0; i < 7; i++) {
		struct llm_tensor *t = mats[i];

		t->data = at + (t->file_off - a);
		if (fresh)
			t->packed = false;	/* the file's layout again */
		if (pack && !t->packed && llm_tensor_pack(t, pool)) {
			pinfer_fail(&st->error, ENOMEM, "streaming layer %" PRIu32 ": out of memory packing it",
				    layer);
			if (err)
				*err = st->error;
			return st->error.code;
		}
	}
	return 0;
}

void llm_stream_release(const struct llm_model *m, uint32_t layer)
{
	struct llm_stream *st = m->stream;
	struct llm_tensor *mats[7];
	size_t i;

	if (!st || layer < st->first)
		return;
	layer_mats(&m->layers[layer], mats);
	for (i = 0; i < 7; i++)
		mats[i]->data = NULL;
	submit(st, st->use + st->k);
	st->use++;
}

void llm_stream_pump(const struct llm_model *m)
{
	if (m->stream)
		pinfer_load_pump(m->stream->loader);
}
