// SPDX-License-Identifier: MIT
/*
 * The plan: the embeddings, the output, every norm and bias and as many
 * whole layers as fit stay resident, from layer 0 up; the remaining layers
 * stream (stream.c). Everything resident is a list of file spans of whole
 * pages, merged where they touch, laid out one after another in the
 * region; the ring's slots follow, each as large as the largest streamed
 * layer (the pages spanning its matrices).
 */
#include "placement.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"

#define MIB 1048576.0

static uint64_t page_down(uint64_t x) { return x / LLM_PAGE * LLM_PAGE; }
static uint64_t page_up(uint64_t x) { return (x + LLM_PAGE - 1) / LLM_PAGE * LLM_PAGE; }

static int cmp_piece(const void *x, const void *y)
{
	const struct llm_piece *p = x, *q = y;

	return p->a < q->a ? -1 : p->a > q->a;
}

/*
 * The resident pieces when layers [0, r) are resident (and of them, with
 * @no_experts, all but the experts): each resident tensor's pages, sorted,
 * merged where they overlap or touch, laid out.
 */
static size_t layout_pieces(const struct llm_tensor_ref *refs, size_t n_refs, uint32_t r,
			    bool no_experts, struct llm_piece *out, uint64_t *bytes)
{
	size_t i, n = 0, k;
	uint64_t off = 0;

	for (i = 0; i < n_refs; i++) {
		const struct llm_tensor *t = refs[i].t;

		if ((refs[i].layer >= (int32_t)r && t->rows > 1) || (no_experts && t->n_mat > 1))
			continue;	/* a streamed matrix, or an expert */
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

/* Pages a slice of @bytes bytes at any offset can span: one more than whole ones. */
static uint64_t slice_span(uint64_t bytes)
{
	return page_up(bytes) + LLM_PAGE;
}

/*
 * A mixture-of-experts model with an expert cache: every layer resident but
 * its experts; as many slots of one expert (its three matrices' pages) as
 * the budget leaves room for, or --expert-slots; at least expert_used_count.
 */
static int plan_experts(struct llm_model *m, const struct llm_load_opts *o,
			const struct llm_tensor_ref *refs, size_t n_refs, struct llm_piece *pieces,
			struct llm_plan *p, struct llm_layout *lay, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint64_t res = 0, per, all = (uint64_t)c->n_layer * c->n_expert, room;
	uint32_t i;
	int k;

	for (i = 0; i < c->n_layer; i++) {
		const struct llm_layer *ly = &m->layers[i];
		const struct llm_tensor *t[3] = { &ly->gate_exps, &ly->up_exps, &ly->down_exps };
		uint64_t bytes = 0;

		for (k = 0; k < 3; k++) {
			uint64_t mat = t[k]->rows * t[k]->row_bytes;

			bytes += mat;
			if (slice_span(mat) > p->expert_span[k])
				p->expert_span[k] = slice_span(mat);
		}
		p->expert_bytes = bytes > p->expert_bytes ? bytes : p->expert_bytes;
	}
	p->expert_slot = p->expert_span[0] + p->expert_span[1] + p->expert_span[2];
	p->n_experts = c->n_expert;
	p->n_experts_used = c->n_expert_used;
	p->expert_policy = o->expert_policy;
	lay->n = layout_pieces(refs, n_refs, c->n_layer, true, pieces, &res);
	per = (uint64_t)c->n_layer * c->n_expert_used * p->expert_bytes;
	p->minimum = res + c->n_expert_used * p->expert_slot + p->session;
	room = p->budget > res + p->session ? (p->budget - res - p->session) / p->expert_slot : 0;
	if (o->expert_slots)
		room = o->expert_slots < room ? o->expert_slots : room;
	room = room < all ? room : all;
	if (room < c->n_expert_used)
		return pinfer_fail(err, ENOMEM, "a memory budget of %.1f MiB (%s) is below this model's minimum of %.1f MiB (%" PRIu64 " bytes): attention, routers, embeddings, output and norms %.1f MiB, %" PRIu32 " experts of %.1f MiB, KV cache and buffers for a context of %" PRIu32 " %.1f MiB (give a larger --mem, or a smaller --ctx)",
				   p->budget / MIB, p->budget_why, p->minimum / MIB, p->minimum,
				   res / MIB, c->n_expert_used, p->expert_slot / MIB, p->n_ctx,
				   p->session / MIB);
	p->expert_slots = (uint32_t)room;
	p->n_resident = c->n_layer;
	p->region = res + room * p->expert_slot;
	p->streamed = per;
	lay->pieces = pieces;
	lay->resident = res;
	return 0;
}

int llm_plan_make(struct llm_model *m, const struct llm_load_opts *o, uint64_t session,
		  struct llm_plan *p, struct llm_layout *lay, struct pinfer_err *err)
{
	const struct llm_config *c = &m->cfg;
	uint32_t n = c->n_layer, r = n, k = 0, tries[3], n_tries = 0, t, i, top;
	struct llm_tensor_ref *refs = malloc(LLM_MAX_TENSORS(n) * sizeof(*refs));
	struct llm_piece *pieces = malloc(LLM_MAX_TENSORS(n) * sizeof(*pieces));
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
	n_refs = llm_model_tensors(m, refs);
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
	p->session = session;
	if (o->mem) {
		p->budget = o->mem;
		snprintf(p->budget_why, sizeof(p->budget_why), "--mem");
	} else {
		p->budget = llm_budget_default(o->provider, &lock, p->budget_why, sizeof(p->budget_why));
	}
	/* the minimum: only the fixed part resident, the smallest ring */
	t = o->ring ? o->ring : 2;
	t = t < n ? t : n;
	layout_pieces(refs, n_refs, 0, false, pieces, &fixed_pages);
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
	layout_pieces(refs, n_refs, n, false, pieces, &res);
	fit = !o->stream_layers && res + p->session <= p->budget;
	if (c->n_expert && !o->stream_layers && (!fit || o->expert_slots)) {
		ret = plan_experts(m, o, refs, n_refs, pieces, p, lay, err);
		if (!ret) {
			lay->span_a = sa;
			lay->span_b = sb;
			pieces = NULL;
			sa = sb = NULL;
		}
		goto out;
	}
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
			layout_pieces(refs, n_refs, r, false, pieces, &res);
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
	n_pieces = layout_pieces(refs, n_refs, r, false, pieces, &res);
	p->n_resident = r;
	p->ring = r < n ? k : 0;
	p->slot = r < n ? slot : 0;
	p->region = res + (uint64_t)p->ring * p->slot;
	lay->pieces = pieces;
	lay->n = n_pieces;
	lay->resident = res;
	lay->span_a = sa;
	lay->span_b = sb;
	p->streamed = llm_layout_streamed(p, lay);
	pieces = NULL;
	sa = sb = NULL;
out:
	free(refs);
	free(pieces);
	free(sa);
	free(sb);
	return ret;
}

uint32_t llm_streamed_layers(const struct llm_plan *p, char *buf, size_t n)
{
	uint32_t l, a, count = 0;
	size_t len = 0;

	if (n)
		buf[0] = 0;
	for (l = 0; l < p->n_layer; l++) {
		if (!llm_streams(p, l))
			continue;
		for (a = l; l + 1 < p->n_layer && llm_streams(p, l + 1); l++)
			;
		count += l - a + 1;
		if (len < n)
			len += (size_t)snprintf(buf + len, n - len, "%s%" PRIu32 "-%" PRIu32,
						len ? ", " : "", a, l);
	}
	return count;
}

uint64_t llm_layout_streamed(const struct llm_plan *p, const struct llm_layout *lay)
{
	uint64_t bytes = 0;
	uint32_t i;

	if (p->ring < llm_streamed_layers(p, NULL, 0))
		for (i = 0; i < p->n_layer; i++)
			if (llm_streams(p, i))
				bytes += lay->span_b[i] - lay->span_a[i];
	return bytes;
}

struct pinfer_range llm_layout_read(const struct llm_layout *lay, uint64_t file_size, uint32_t l,
				    uint64_t region_off)
{
	uint64_t b = lay->span_b[l] < file_size ? lay->span_b[l] : file_size;

	return (struct pinfer_range){
		.file_off = lay->span_a[l], .region_off = region_off, .len = b - lay->span_a[l],
	};
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
	struct llm_tensor_ref *refs = malloc(LLM_MAX_TENSORS(m->cfg.n_layer) * sizeof(*refs));
	size_t n, i, j;

	if (!refs)
		return pinfer_fail(err, ENOMEM, "out of memory");
	n = llm_model_tensors(m, refs);
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
