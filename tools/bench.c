// SPDX-License-Identifier: MIT
/*
 * pinfer bench: prompt processing (ppN: N tokens fed at once, in batches) and
 * text generation (tgN: N tokens, one at a time) in tokens/s, mean and
 * standard deviation over repetitions, as a table like llama-bench's or as
 * JSON. Also the weight bytes read per generated token, and next to them
 * the machine's memory read bandwidth (measured without --mem or streaming:
 * its buffer would be outside the budget).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "model/model.h"
#include "kernels/quant.h"

static const char bench_help[] =
	"usage: pinfer bench [-m MODEL] [-p N] [-n N] [-t THREADS] [-r REPS] [--json]\n\n"
	"  -m, --model FILE   (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
	"  -p N               prompt tokens for the ppN test (default 512; 0 = skip)\n"
	"  -n N               generated tokens for the tgN test (default 128; 0 = skip)\n"
	"  -t N               threads (default: one per CPU this process may use)\n"
	"      --node N       NUMA node for the memory and threads (default: that\n"
	"                     of the CPUs this process may use, if all on one)\n"
	"  -r N               repetitions (default 3)\n"
	"      --provider NAME  memory provider (default: best available)\n"
	"      --mem SIZE     memory budget (as for pinfer run): layers that do not\n"
	"                     fit stream from the file (and no memory bandwidth probe)\n"
	"      --ring N       slots of the streaming ring (default 4)\n"
	"      --expert-slots N, --expert-policy lru|lfu\n"
	"                     mixture of experts: the expert cache (as for pinfer run);\n"
	"                     its counters are printed for each test\n"
	"  -ngl, --gpu-layers N\n"
	"                     run the last N layers and the output layer on the GPU\n"
	"      --gpu-mem SIZE GPU memory to use at most: layers that do not fit are\n"
	"                     copied to it as used (default: what is free)\n"
	"      --json         one JSON object per test\n"
	"      --plan         print where the weights go for these tests (the\n"
	"                     context of -p or -n), and exit\n";

/*
 * Tokens/s of @n tokens from position 0 of @s (@batch: as one prompt). The
 * session is reused across runs, as llama-bench reuses its context.
 */
static int one_run(struct llm_session *s, const struct llm_model *m, int n, bool batch,
		   unsigned int seed, double *tps, struct pinfer_err *err)
{
	const float *logits;
	int32_t *toks = malloc(n * sizeof(*toks));
	double t0;
	int i, ret = 0;

	if (!toks)
		return pinfer_fail(err, ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		seed = seed * 1103515245 + 12345;
		toks[i] = (int32_t)((seed >> 8) % m->cfg.n_vocab);
	}
	llm_session_reset(s);
	t0 = mono_now();
	if (batch)	/* ppN: the prompt at once */
		ret = llm_eval_batch(s, toks, n, &logits, err);
	for (i = 0; i < n && !ret && !batch; i++)	/* tgN: one at a time */
		ret = llm_eval(s, toks[i], &logits, err);
	*tps = n / (mono_now() - t0);
	free(toks);
	return ret;
}

#define MEMBW_BYTES (512ull << 20)	/* far larger than any L3 */
#define MEMBW_CHUNK (1u << 20)

struct membw {
	const uint64_t *buf;
	uint64_t sums[64];	/* per thread: keeps the loads from being dropped */
};

static void membw_chunks(void *arg, size_t b, size_t e, int thread)
{
	struct membw *w = arg;
	const uint64_t *p = w->buf + b * (MEMBW_CHUNK / 8), *end = w->buf + e * (MEMBW_CHUNK / 8);
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;

	for (; p < end; p += 4) {
		s0 += p[0];
		s1 += p[1];
		s2 += p[2];
		s3 += p[3];
	}
	w->sums[thread % 64] += s0 + s1 + s2 + s3;
}

/*
 * This machine's memory read bandwidth with the pool's threads: the best of
 * 3 passes summing a 512 MiB buffer, GB/s; 0 when there is no memory for it.
 * The buffer is on 2 MiB pages where THP allows it, as the weights are: on
 * 4 KiB pages the TLB misses held the probe below what the weights stream.
 */
static double mem_read_bw(struct pinfer_pool *pool)
{
	struct membw w = { 0 };
	uint64_t *buf = aligned_alloc(2u << 20, MEMBW_BYTES);
	double best = 0;
	int r;

	if (!buf)
		return 0;
	madvise(buf, MEMBW_BYTES, MADV_HUGEPAGE);
	memset(buf, 1, MEMBW_BYTES);
	w.buf = buf;
	for (r = 0; r < 3; r++) {
		double t0 = mono_now(), t;

		pinfer_parallel_for(pool, MEMBW_BYTES / MEMBW_CHUNK, 1, PINFER_STATIC, membw_chunks, &w);
		t = mono_now() - t0;
		best = MEMBW_BYTES / t / 1e9 > best ? MEMBW_BYTES / t / 1e9 : best;
	}
	free(buf);
	return best;
}

/*
 * Bytes of weights a generated token reads: every matrix once; of a layer's
 * experts, the n_expert_used it runs.
 */
static uint64_t weight_bytes(const struct llm_model *m)
{
	uint64_t b = m->output.rows * m->output.row_bytes;
	uint32_t i;
	unsigned k;

	for (i = 0; i < m->cfg.n_layer; i++)
		for (k = 0; k < LLM_LAYER_MATS; k++) {
			const struct llm_tensor *t = llm_layer_cmat(&m->layers[i], k);

			b += t->rows * t->row_bytes * (t->n_mat > 1 ? m->cfg.n_expert_used : 1);
		}
	return b;
}

/* The expert cache's counters between @a and @b, over @tokens tokens of @test. */
static void print_experts(const struct llm_expert_stats *a, const struct llm_expert_stats *b,
			  uint64_t tokens, const char *test)
{
	uint64_t hits = b->hits - a->hits, ahead = b->prefetch_used - a->prefetch_used;
	uint64_t misses = b->misses - a->misses, bytes = b->bytes - a->bytes;
	uint64_t pred = b->predicted - a->predicted, right = b->predicted_right - a->predicted_right;
	uint64_t need = hits + ahead + misses ? hits + ahead + misses : 1;
	double read_s = b->read_s - a->read_s;

	printf("%s experts: %.1f%% cached, %.1f%% read ahead, %.1f%% missed (of %" PRIu64 "); read %.1f MiB per token, %.2f GB/s while reading; guesses %.1f%% right; compute waited %.2f s\n",
	       test, 100.0 * hits / need, 100.0 * ahead / need, 100.0 * misses / need,
	       hits + ahead + misses, bytes / 1048576.0 / (tokens ? tokens : 1),
	       read_s > 0 ? bytes / read_s / 1e9 : 0.0, pred ? 100.0 * right / pred : 0.0,
	       b->wait_s - a->wait_s);
}

/* One test's figures as one line of JSON. */
static void print_json(const char *name, size_t size, const char *backend, int threads,
		       const char *test, double mean, double sd, const struct llm_model *m,
		       double membw, const struct llm_expert_stats *x0,
		       const struct llm_expert_stats *x1, uint64_t tokens)
{
	cJSON *o = cJSON_CreateObject();
	char *text;

	cJSON_AddStringToObject(o, "model", name);
	cJSON_AddNumberToObject(o, "size", (double)size);
	cJSON_AddStringToObject(o, "backend", backend);
	cJSON_AddNumberToObject(o, "threads", threads);
	cJSON_AddStringToObject(o, "test", test);
	cJSON_AddNumberToObject(o, "t_s", mean);
	cJSON_AddNumberToObject(o, "stddev", sd);
	cJSON_AddNumberToObject(o, "weight_bytes_per_token", (double)weight_bytes(m));
	cJSON_AddNumberToObject(o, "streamed_bytes_per_token", (double)m->plan.streamed);
	cJSON_AddNumberToObject(o, "resident_layers", m->plan.n_resident);
	cJSON_AddNumberToObject(o, "layers", m->cfg.n_layer);
	cJSON_AddNumberToObject(o, "mem_read_gbs", membw);
	if (m->experts) {
		cJSON_AddNumberToObject(o, "expert_slots", m->plan.expert_slots);
		cJSON_AddNumberToObject(o, "expert_hits", (double)(x1->hits - x0->hits));
		cJSON_AddNumberToObject(o, "expert_read_ahead", (double)(x1->prefetch_used - x0->prefetch_used));
		cJSON_AddNumberToObject(o, "expert_misses", (double)(x1->misses - x0->misses));
		cJSON_AddNumberToObject(o, "expert_bytes_per_token",
					(double)(x1->bytes - x0->bytes) / (tokens ? tokens : 1));
		cJSON_AddNumberToObject(o, "expert_read_gbs", x1->read_s > x0->read_s ?
					(x1->bytes - x0->bytes) / (x1->read_s - x0->read_s) / 1e9 : 0);
		cJSON_AddNumberToObject(o, "expert_guess_right", x1->predicted > x0->predicted ?
					(double)(x1->predicted_right - x0->predicted_right) /
					(x1->predicted - x0->predicted) : 0);
	}
	text = cJSON_PrintUnformatted(o);
	if (text)
		puts(text);
	cJSON_free(text);
	cJSON_Delete(o);
}

int cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "provider", required_argument, NULL, 'P' },
		{ "mem", required_argument, NULL, 'M' },
		{ "ring", required_argument, NULL, 'R' },
		{ "node", required_argument, NULL, 'N' },
		{ "expert-slots", required_argument, NULL, 'E' },
		{ "expert-policy", required_argument, NULL, 'L' },
		{ "gpu-layers", required_argument, NULL, 'G' },
		{ "gpu-mem", required_argument, NULL, 'g' },
		{ "plan", no_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf", *isa;
	struct llm_load_opts lo = { .provider = PINFER_PROVIDER_AUTO, .node = -1 };
	int pp = 512, tg = 128, threads = 0, reps = 3, c, t, r, ret = EXIT_FAIL, node = -2;
	long long num;
	struct pinfer_err err = { 0 };
	struct pinfer_pool *pool = NULL;
	struct llm_model *m = NULL;
	struct llm_session *s = NULL;
	struct pinfer_region_props rp;
	bool json = false, plan = false, membw;
	char layers[64];	/* the layers streamed at each pass */

	cli_alias_ngl(argc, argv, "m:p:n:t:r:h", opts);
	while ((c = getopt_long(argc, argv, "m:p:n:t:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'p':
			if (cli_int("-p", optarg, 0, INT32_MAX - 1, &num))
				return EXIT_USAGE;
			pp = (int)num;
			break;
		case 'n':
			if (cli_int("-n", optarg, 0, INT32_MAX - 1, &num))
				return EXIT_USAGE;
			tg = (int)num;
			break;
		case 't':
			if (cli_int("-t", optarg, 0, 1024, &num))
				return EXIT_USAGE;
			threads = (int)num;
			break;
		case 'r':
			if (cli_int("-r", optarg, 1, 64, &num))
				return EXIT_USAGE;
			reps = (int)num;
			break;
		case 'N':
			if (cli_int("--node", optarg, 0, 4095, &num))
				return EXIT_USAGE;
			node = (int)num;
			break;
		case 'j': json = true; break;
		case 'Q': plan = true; break;
		case 'P':
			lo.provider = pinfer_provider_parse(optarg);
			if (lo.provider == PINFER_PROVIDER_COUNT) {
				cli_error("--provider %s: not one of kmod, hugetlb, thp, plain", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'M':
			if (cli_parse_mem(optarg, &lo.mem))
				return EXIT_USAGE;
			break;
		case 'R':
			if (cli_int("--ring", optarg, 0, 1024, &num))
				return EXIT_USAGE;
			lo.ring = (uint32_t)num;
			break;
		case 'E':
			if (cli_int("--expert-slots", optarg, 1, 1 << 24, &num))
				return EXIT_USAGE;
			lo.expert_slots = (uint32_t)num;
			break;
		case 'G':
			if (cli_int("--gpu-layers", optarg, 0, 100000, &num))
				return EXIT_USAGE;
			lo.gpu_layers = (uint32_t)num;
			break;
		case 'g':
			if (cli_parse_bytes("--gpu-mem", optarg, &lo.gpu_mem))
				return EXIT_USAGE;
			break;
		case 'L':
			if (strcmp(optarg, "lru") && strcmp(optarg, "lfu")) {
				cli_error("--expert-policy %s: not one of lru, lfu", optarg);
				return EXIT_USAGE;
			}
			lo.expert_policy = strcmp(optarg, "lru") ? LLM_EXPERTS_LFU : LLM_EXPERTS_LRU;
			break;
		case 'h':
			fputs(bench_help, stdout);
			return EXIT_OK;
		default:
			fputs(bench_help, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_error("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	lo.node = node == -2 ? pinfer_node_default() : node;
	threads = cli_threads(threads, lo.node);
	lo.threads = (uint32_t)threads;
	lo.n_ctx = (uint32_t)(pp > tg ? pp : tg) + 1;
	if (plan)
		return cli_print_plan(model, &lo, 0);
	if (pinfer_pool_create(&pool, threads, lo.node, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	lo.pool = pool;		/* packs the weights at load */
	if (llm_model_load(&m, model, &lo, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	if (lo.n_ctx > m->cfg.ctx_train) {	/* before a test allocates its tokens */
		cli_error("-p %d / -n %d: more tokens than the model's context of %" PRIu32,
			  pp, tg, m->cfg.ctx_train);
		ret = EXIT_USAGE;
		goto out;
	}
	pinfer_region_props(m->region, &rp);
	quant_vec_dot(m->cfg.n_expert ? m->layers[0].up_exps.type : m->layers[0].w_up.type, &isa);
	/* the probe's buffer is outside any budget: only without one */
	membw = !lo.mem && !m->plan.ring && !m->experts && !m->plan.gpu_layers;
	llm_streamed_layers(&m->plan, layers, sizeof(layers));
	if (!json) {
		printf("| %-28s | %9s | %-22s | %7s | %8s | %16s |\n", "model", "size",
		       "backend", "threads", "test", "t/s");
		printf("| %.28s | %.9s | %.22s | %.7s | %.8s | %.16s |\n",
		       "------------------------------", "----------", "------------------------",
		       "--------", "---------", "------------------");
	}
	for (t = 0; t < 2; t++) {
		int n = t ? tg : pp;
		double v[64], mean = 0, var = 0, warm;
		char test[16], backend[64], name[512];
		struct llm_expert_stats x0, x1;
		const char *base = strrchr(model, '/');

		if (!n)
			continue;
		snprintf(test, sizeof(test), "%s%d", t ? "tg" : "pp", n);
		if (m->plan.gpu_layers)
			snprintf(backend, sizeof(backend), "CUDA %" PRIu32 "/%" PRIu32 " layers, CPU %s",
				 m->plan.gpu_layers, m->cfg.n_layer, isa);
		else
			snprintf(backend, sizeof(backend), "CPU %s, %s", isa,
				 pinfer_provider_name(rp.provider));
		base = base ? base + 1 : model;
		cli_escape(base, strlen(base), name, sizeof(name));
		if (llm_session_create(&s, m, (uint32_t)n + 1, pool, &err)) {
			cli_error("%s", err.msg);
			goto out;
		}
		/* a warm-up run first, untimed, as llama-bench does */
		for (r = -1; r < reps && r < 64; r++) {
			if (r == 0)
				llm_model_expert_stats(m, &x0);
			if (one_run(s, m, n, !t, 1234u + r, r < 0 ? &warm : &v[r], &err)) {
				cli_error("%s", err.msg);
				goto out;
			}
			mean += r < 0 ? 0 : v[r];
		}
		llm_model_expert_stats(m, &x1);
		llm_session_free(s);
		s = NULL;
		mean /= r;
		for (c = 0; c < r; c++)
			var += (v[c] - mean) * (v[c] - mean);
		var = r > 1 ? sqrt(var / (r - 1)) : 0;
		if (json)
			print_json(name, rp.size, backend, pinfer_pool_threads(pool), test, mean, var, m,
				   t && membw ? mem_read_bw(pool) : 0.0, &x0, &x1, (uint64_t)n * r);
		else
			printf("| %-28.28s | %5zu MiB | %-22.22s | %7d | %8s | %8.2f ± %5.2f |\n",
			       name, rp.size >> 20, backend, pinfer_pool_threads(pool), test,
			       mean, var);
		if (t && !json) {
			printf("\ngeneration reads %.1f MiB of weights per token: %.2f GB/s at tg%d",
			       weight_bytes(m) / 1048576.0, weight_bytes(m) * mean / 1e9, tg);
			if (membw)
				printf("; memory read bandwidth (%d threads, 512 MiB): %.2f GB/s",
				       pinfer_pool_threads(pool), mem_read_bw(pool));
			putchar('\n');
		}
		if (!json && m->experts)
			print_experts(&x0, &x1, (uint64_t)n * r, test);
		if (t && !json && m->stream)
			printf("of which %.1f MiB stream from the file (layers %s, %" PRIu32 " slots): %.2f GB/s from the drive\n",
			       m->plan.streamed / 1048576.0, layers,
			       m->plan.ring, m->plan.streamed * mean / 1e9);
	}
	ret = EXIT_OK;
out:
	llm_session_free(s);
	llm_model_free(m);
	pinfer_pool_free(pool);
	return ret;
}
