// SPDX-License-Identifier: MIT
/*
 * pinfer perplexity: how well a model predicts a text, by llama.cpp's
 * llama-perplexity convention, so that the two tools' figures compare:
 *
 *   The text is tokenized whole (after the model's BOS token, if it wants
 *   one) and cut into chunks of N tokens (-c); what is left over past the
 *   last whole chunk is not used, and at least two chunks are needed. Each
 *   chunk is evaluated from an empty context with its first token replaced
 *   by BOS (if the model has one), and only the second half is scored: the
 *   logits after position j predict token j + 1 for j = N/2 .. N-2, so
 *   N/2 - 1 tokens a chunk, each with at least N/2 tokens of context.
 *   PPL = exp(mean negative log-likelihood); its ± is the standard error of
 *   that mean, times PPL.
 *
 * --save-base FILE keeps the log-probabilities of every scored position
 * (fp16; n_vocab of them a position), --kl-divergence-base FILE compares
 * with them: mean KL(base || this model), how often both pick the same
 * top token, and both perplexities.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "text/tokenizer.h"

static const char perplexity_help[] =
	"usage: pinfer perplexity [-m MODEL] -f TEXT [options]\n\n"
	"Perplexity of MODEL on the text file TEXT, as llama.cpp's llama-perplexity\n"
	"computes it: chunks of N tokens, each from an empty context with BOS first,\n"
	"the second half of each scored. Prints the running estimate after each\n"
	"chunk and the final figure with its standard error. Public-domain texts\n"
	"ship in tests/reference: genesis-kjv.txt (about 50,000 tokens) and\n"
	"alice-ch1.txt (about 2700).\n\n"
	"  -m, --model FILE      GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
	"  -f, --file TEXT       the text (UTF-8)\n"
	"  -c, --ctx N           tokens per chunk (default 512)\n"
	"      --chunks N        at most N chunks (default: all the text holds)\n"
	"  -t, --threads N       threads (default: one per CPU this process may use)\n"
	"      --save-base FILE  write the log-probabilities of every scored token\n"
	"                        (a reference model's; n_vocab fp16 values each)\n"
	"      --kl-divergence-base FILE\n"
	"                        compare with a saved base of the same text and -c:\n"
	"                        mean KL divergence, top-token agreement, both PPLs\n"
	"      --provider NAME   memory: kmod, hugetlb, thp or plain (default: best)\n"
	"      --exact           the reference mode: weights dequantized, activations\n"
	"                        in float, sums in double (slow): the model's own\n"
	"                        perplexity, without the 8-bit activations' error\n"
	"  -ngl, --gpu-layers N  the last N layers and the output layer on the GPU\n"
	"                        (Documentation/cuda.md)\n"
	"  -q, --quiet           no running estimate, only the results\n";

static const char base_magic[8] = { 'P', 'I', 'N', 'F', 'K', 'L', 'D', '1' };

struct base_header {
	char magic[8];
	uint32_t n_ctx, n_vocab, n_chunk, n_scored;	/* n_scored: positions a chunk */
};

/* log Σ exp(x), in double; the index of the largest at *top. */
static double log_sum_exp(const float *x, size_t n, size_t *top)
{
	double sum = 0;
	float mx = x[0];
	size_t i, t = 0;

	for (i = 1; i < n; i++)
		if (x[i] > mx)
			mx = x[i], t = i;
	for (i = 0; i < n; i++)
		sum += exp((double)x[i] - mx);
	*top = t;
	return mx + log(sum);
}

struct stats {
	double nll, nll2;		/* Σ -log p(token), Σ of its square */
	double base_nll, kld, kld2;	/* with a base */
	double dnll2;			/* Σ (nll - the base's nll)^2 */
	uint64_t count, same_top;
};

/* mean and standard error of a sum @s and sum of squares @s2 of @n values */
static double std_err(double s, double s2, uint64_t n)
{
	double m = s / n, v = s2 / n - m * m;

	return n > 1 && v > 0 ? sqrt(v / (n - 1)) : 0;
}

/*
 * Score one position: @lg the logits, @tok the token that came next. With
 * @base (n_vocab fp16 log-probabilities) also the divergence; @save: the
 * log-probabilities to write.
 */
static void score(const float *lg, size_t V, int32_t tok, const fp16_t *base, fp16_t *save,
		  struct stats *st)
{
	size_t top, i;
	double lz = log_sum_exp(lg, V, &top), nll = lz - lg[tok];

	st->nll += nll;
	st->nll2 += nll * nll;
	st->count++;
	if (save)
		for (i = 0; i < V; i++)
			save[i] = f32_to_fp16((float)(lg[i] - lz));
	if (base) {
		const float *tab = fp16_table();
		double kl = 0, d = nll + tab[base[tok]];	/* d: nll less the base's */
		size_t btop = 0;

		for (i = 0; i < V; i++) {
			double lb = tab[base[i]];

			if (lb > tab[base[btop]])
				btop = i;
			kl += exp(lb) * (lb - (lg[i] - lz));
		}
		st->base_nll -= tab[base[tok]];
		st->dnll2 += d * d;
		st->kld += kl;
		st->kld2 += kl * kl;
		st->same_top += btop == top;
	}
}

static int read_text(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f) {
		cli_error("perplexity: %s: %s", path, strerror(errno));
		return -1;
	}
	do {
		if (n + 65536 > cap) {
			char *nb = realloc(buf, cap = 2 * cap + 65536);

			if (!nb) {
				free(buf);
				fclose(f);
				cli_error("perplexity: %s: out of memory", path);
				return -1;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r);
	if (ferror(f)) {
		cli_error("perplexity: reading %s: %s", path, strerror(errno ? errno : EIO));
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

struct opts {
	const char *model, *text, *save, *base;
	long long ctx, chunks, threads, gpu_layers;
	enum pinfer_provider provider;
	bool quiet, exact;
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "file", required_argument, NULL, 'f' },
		{ "ctx", required_argument, NULL, 'c' },
		{ "chunks", required_argument, NULL, 'C' },
		{ "threads", required_argument, NULL, 't' },
		{ "save-base", required_argument, NULL, 'S' },
		{ "kl-divergence-base", required_argument, NULL, 'K' },
		{ "provider", required_argument, NULL, 'P' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "exact", no_argument, NULL, 'x' },
		{ "gpu-layers", required_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	cli_alias_ngl(argc, argv, "m:f:c:t:qh", lopts);
	while ((c = getopt_long(argc, argv, "m:f:c:t:qh", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'f': o->text = optarg; break;
		case 'c':
			if (cli_int("-c", optarg, 8, 1 << 20, &o->ctx))
				return EXIT_USAGE;
			break;
		case 'C':
			if (cli_int("--chunks", optarg, 1, INT32_MAX, &o->chunks))
				return EXIT_USAGE;
			break;
		case 't':
			if (cli_int("-t", optarg, 0, 1024, &o->threads))
				return EXIT_USAGE;
			break;
		case 'G':
			if (cli_int("--gpu-layers", optarg, 0, 100000, &o->gpu_layers))
				return EXIT_USAGE;
			break;
		case 'S': o->save = optarg; break;
		case 'K': o->base = optarg; break;
		case 'P':
			o->provider = pinfer_provider_parse(optarg);
			if (o->provider == PINFER_PROVIDER_COUNT) {
				cli_error("--provider %s: not one of kmod, hugetlb, thp, plain", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'q': o->quiet = true; break;
		case 'x': o->exact = true; break;
		case 'h':
			fputs(perplexity_help, stdout);
			return EXIT_OK;
		default:
			fputs(perplexity_help, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_error("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	if (!o->text) {
		cli_error("perplexity: -f TEXT is required (see --help)");
		return EXIT_USAGE;
	}
	if (o->save && o->base) {
		cli_error("perplexity: --save-base and --kl-divergence-base do not go together");
		return EXIT_USAGE;
	}
	return -1;	/* go on */
}

/* Open and check a saved base against this run: NULL after saying why. */
static FILE *open_base(const char *path, const struct base_header *want, const int32_t *tokens)
{
	struct base_header h;
	FILE *f = fopen(path, "rb");
	int32_t *t = NULL;
	size_t n = (size_t)want->n_chunk * want->n_ctx;

	if (!f) {
		cli_error("perplexity: %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fread(&h, sizeof(h), 1, f) != 1 || memcmp(h.magic, base_magic, sizeof(base_magic))) {
		cli_error("perplexity: %s: not a base written by pinfer perplexity --save-base", path);
		goto bad;
	}
	if (h.n_vocab != want->n_vocab || h.n_ctx != want->n_ctx || h.n_chunk < want->n_chunk) {
		cli_error("perplexity: %s: a base of %" PRIu32 " chunks of %" PRIu32 " tokens over %" PRIu32
			  " token ids; this run has %" PRIu32 " of %" PRIu32 " over %" PRIu32
			  " (the same -c and tokenizer are needed)", path, h.n_chunk, h.n_ctx, h.n_vocab,
			  want->n_chunk, want->n_ctx, want->n_vocab);
		goto bad;
	}
	t = malloc((size_t)h.n_chunk * h.n_ctx * sizeof(*t));
	if (!t || fread(t, sizeof(*t), (size_t)h.n_chunk * h.n_ctx, f) != (size_t)h.n_chunk * h.n_ctx) {
		cli_error("perplexity: %s: %s", path, t ? "cut short" : "out of memory");
		goto bad;
	}
	if (memcmp(t, tokens, n * sizeof(*t))) {
		cli_error("perplexity: %s: made from another text (its tokens differ)", path);
		goto bad;
	}
	free(t);
	return f;
bad:
	free(t);
	fclose(f);
	return NULL;
}

int cmd_perplexity(int argc, char **argv)
{
	struct opts o = { .model = "models/SmolLM2-135M-Instruct.Q4_1.gguf", .ctx = 512,
			  .provider = PINFER_PROVIDER_AUTO };
	struct llm_load_opts lo = { .node = -1 };
	struct pinfer_err err = { 0 };
	struct pinfer_pool *pool = NULL;
	struct llm_model *m = NULL;
	struct llm_session *s = NULL;
	struct tokenizer *tok = NULL;
	struct stats st = { 0 };
	struct base_header h = { 0 };
	int32_t *ids = NULL, *all = NULL, bos;
	fp16_t *row = NULL;
	FILE *bf = NULL;
	bool created = false;
	char *text = NULL;
	size_t len, n_ids = 0, n_all, V, first, i, j;
	uint32_t n_chunk;
	double t0;
	int ret = parse(argc, argv, &o), threads;

	if (ret >= 0)
		return ret;
	ret = EXIT_FAIL;
	if (read_text(o.text, &text, &len))
		return EXIT_FAIL;
	lo.provider = o.provider;
	lo.node = pinfer_node_default();
	threads = cli_threads((int)o.threads, lo.node);
	lo.threads = (uint32_t)threads;
	lo.n_ctx = (uint32_t)o.ctx;
	lo.gpu_layers = (uint32_t)o.gpu_layers;
	if (pinfer_pool_create(&pool, threads, lo.node, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	lo.pool = pool;
	if (llm_model_load(&m, o.model, &lo, &err) || tokenizer_load(&tok, m->gguf, &err) ||
	    llm_model_check_tokenizer(m, tok, &err)) {
		cli_error("%s", err.msg);
		goto out;
	}
	if (o.ctx > m->cfg.ctx_train) {
		cli_error("perplexity: -c %lld: more than the model's context of %" PRIu32, o.ctx,
			  m->cfg.ctx_train);
		ret = EXIT_USAGE;
		goto out;
	}
	if (tokenizer_encode(tok, text, len, false, &ids, &n_ids, &err)) {
		cli_error("perplexity: %s: %s", o.text, err.msg);
		goto out;
	}
	bos = tokenizer_bos(tok);
	n_all = n_ids + (bos >= 0);
	all = malloc((n_all ? n_all : 1) * sizeof(*all));
	if (!all) {
		cli_error("perplexity: out of memory");
		goto out;
	}
	if (bos >= 0)
		all[0] = bos;
	memcpy(all + (bos >= 0), ids, n_ids * sizeof(*ids));
	if (n_all < 2 * (size_t)o.ctx) {
		cli_error("perplexity: %s is %zu tokens; -c %lld needs at least %lld (two chunks)",
			  o.text, n_all, o.ctx, 2 * o.ctx);
		goto out;
	}
	n_chunk = (uint32_t)(n_all / o.ctx);
	if (o.chunks && (uint32_t)o.chunks < n_chunk)
		n_chunk = (uint32_t)o.chunks;
	V = m->cfg.n_vocab;
	first = (size_t)o.ctx / 2;
	h = (struct base_header){ .n_ctx = (uint32_t)o.ctx, .n_vocab = (uint32_t)V,
				  .n_chunk = n_chunk, .n_scored = (uint32_t)(o.ctx - 1 - first) };
	memcpy(h.magic, base_magic, sizeof(h.magic));
	if (o.base && !(bf = open_base(o.base, &h, all)))
		goto out;
	if (o.save) {
		bf = fopen(o.save, "wb");
		created = bf != NULL;
		if (!bf || fwrite(&h, sizeof(h), 1, bf) != 1 ||
		    fwrite(all, sizeof(*all), (size_t)n_chunk * o.ctx, bf) != (size_t)n_chunk * o.ctx) {
			cli_error("perplexity: %s: %s", o.save, strerror(errno));
			goto out;
		}
	}
	row = malloc(V * sizeof(*row));
	if (!row || llm_session_create(&s, m, (uint32_t)o.ctx, pool, &err)) {
		cli_error("perplexity: %s", row ? err.msg : "out of memory");
		goto out;
	}
	llm_session_set_exact(s, o.exact);
	fprintf(stderr, "pinfer: perplexity of %s over %" PRIu32 " chunks of %lld tokens (%zu of the text's %zu), %zu scored each\n",
		o.model, n_chunk, o.ctx, (size_t)n_chunk * (size_t)o.ctx, n_all, (size_t)h.n_scored);
	t0 = mono_now();
	for (i = 0; i < n_chunk; i++) {
		int32_t *chunk = all + i * o.ctx, keep = chunk[0];
		const float *lg;

		if (bos >= 0)
			chunk[0] = bos;
		llm_session_reset(s);
		ret = llm_eval_all(s, chunk, (size_t)o.ctx, &lg, &err);
		chunk[0] = keep;
		if (ret) {
			cli_error("perplexity: chunk %zu: %s", i + 1, err.msg);
			ret = EXIT_FAIL;
			goto out;
		}
		ret = EXIT_FAIL;
		for (j = first; j + 1 < (size_t)o.ctx; j++) {
			if (o.base && fread(row, sizeof(*row), V, bf) != V) {
				cli_error("perplexity: %s: cut short", o.base);
				goto out;
			}
			score(lg + j * V, V, chunk[j + 1], o.base ? row : NULL, o.save ? row : NULL, &st);
			if (o.save && fwrite(row, sizeof(*row), V, bf) != V) {
				cli_error("perplexity: writing %s: %s", o.save, strerror(errno));
				goto out;
			}
		}
		if (!o.quiet) {
			printf("[%zu]%.4f,", i + 1, exp(st.nll / st.count));
			fflush(stdout);
			if (i == 0)
				fprintf(stderr, "pinfer: %.2f s a chunk, about %.0f s in all\n",
					mono_now() - t0, (mono_now() - t0) * n_chunk);
		}
	}
	if (!o.quiet)
		printf("\n");
	{
		double ppl = exp(st.nll / st.count);

		printf("PPL = %.4f +/- %.5f (%" PRIu64 " tokens scored, %.1f s)\n", ppl,
		       std_err(st.nll, st.nll2, st.count) * ppl, st.count, mono_now() - t0);
		if (o.base) {
			double bppl = exp(st.base_nll / st.count);

			printf("base PPL = %.4f; PPL / base = %.6f, delta %+.4f\n", bppl, ppl / bppl,
			       ppl - bppl);
			/* paired, token by token: what separates two models on one text */
			printf("mean ln(PPL / base) = %+.6f +/- %.6f\n", (st.nll - st.base_nll) / st.count,
			       std_err(st.nll - st.base_nll, st.dnll2, st.count));
			printf("mean KL divergence = %.6f +/- %.6f\n", st.kld / st.count,
			       std_err(st.kld, st.kld2, st.count));
			printf("same top token = %.2f%% (%" PRIu64 " of %" PRIu64 ")\n",
			       100.0 * st.same_top / st.count, st.same_top, st.count);
		}
	}
	if (o.save && fflush(bf)) {
		cli_error("perplexity: writing %s: %s", o.save, strerror(errno));
		goto out;
	}
	ret = EXIT_OK;
out:
	if (bf && fclose(bf) && o.save && ret == EXIT_OK) {
		cli_error("perplexity: writing %s: %s", o.save, strerror(errno));
		ret = EXIT_FAIL;
	}
	if (created && ret != EXIT_OK)
		unlink(o.save);	/* no half-written base */
	free(row);
	free(all);
	free(ids);
	free(text);
	tokenizer_free(tok);
	llm_session_free(s);
	llm_model_free(m);
	pinfer_pool_free(pool);
	return ret;
}
