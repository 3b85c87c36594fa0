// SPDX-License-Identifier: MIT
/*
 * pinfer run: answer one prompt, streaming the text to stdout.
 * pinfer chat: talk with the model, one line of input per turn.
 * Load time, memory provider, prompt and generation speed go to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "text/chat.h"
#include "cli.h"
#include "format/gguf.h"
#include "model/model.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define NODE_AUTO (-2)	/* --node not given: pinfer_node_default() */

static const char run_help[] =
	"usage: pinfer run [-m MODEL] -p PROMPT [options]\n"
	"       pinfer chat [-m MODEL] [options]\n\n"
	"run answers PROMPT, streaming the answer to stdout; chat reads one line\n"
	"per turn from stdin. The model's chat template is used when it has one.\n\n"
	"  -m, --model FILE       GGUF model (default " DEFAULT_MODEL ")\n"
	"  -p, --prompt TEXT      the prompt (run)\n"
	"  -n, --n-predict N      tokens to generate at most (default 256)\n"
	"  -t, --threads N        threads (default: one per CPU this process may use,\n"
	"                         of --node's node; never more)\n"
	"      --node N           NUMA node for the model's memory and the threads\n"
	"                         (default: the node of the CPUs this process may\n"
	"                         use, if they are all on one; else none)\n"
	"  -s, --seed N           sampling seed (default: from the clock)\n"
	"      --temp T           temperature; 0 = greedy (default 0.8)\n"
	"      --top-k K          (default 40; 0 = off)\n"
	"      --top-p P          (default 0.95; 1 = off)\n"
	"      --min-p P          (default 0.05; 0 = off)\n"
	"      --repeat-penalty R (default 1.0 = off), over the last 64 tokens\n"
	"  -c, --ctx N            context length (default: the model's)\n"
	"      --system TEXT      system prompt (default: the template's, if any)\n"
	"      --raw              feed PROMPT as it is, without the chat template\n"
	"                         (after the model's BOS token, if it wants one)\n"
	"      --special          text like <|im_start|> in PROMPT or chat lines\n"
	"                         stands for that special token (default: it is\n"
	"                         plain text; only the template's are special)\n"
	"      --provider NAME    memory: kmod, hugetlb, thp or plain (default: best)\n"
	"      --mem SIZE         memory budget, e.g. 4G or 512M (default: what can\n"
	"                         be pinned, less a margin); layers that do not fit\n"
	"                         stream from the file through a ring of slots\n"
	"      --ring N           slots of the streaming ring (default 4)\n"
	"      --stream-layers N  stream at least the last N layers (benchmarks)\n"
	"      --expert-slots N   mixture of experts: an expert cache of N experts\n"
	"                         (default: one as large as the budget allows, only\n"
	"                         when the model does not fit)\n"
	"      --expert-policy P  which cached expert a new one replaces: lru (default)\n"
	"                         or lfu\n"
	"      --kv-type TYPE     KV cache: f16 (default) or q8_0 (half the memory)\n"
	"  -ngl, --gpu-layers N   run the last N layers, and the output layer, on the\n"
	"                         GPU (the CUDA backend; default 0: none)\n"
	"      --gpu-mem SIZE     GPU memory to use at most (default: what is free);\n"
	"                         GPU layers that do not fit are copied to it as used\n"
	"      --verbose-prompt   print the prompt's token ids on stderr\n"
	"      --plan             print the placement plan and exit\n"
	"      --drive-bw GB/s    the drive's read bandwidth, for --plan's floor\n"
	"  -q, --quiet            no progress bar while loading (shown only when\n"
	"                         stderr is a terminal)\n"
	"  -h, --help\n";

struct run_opts {
	const char *model, *prompt, *system;
	int n_predict, threads, node;
	uint32_t n_ctx;
	bool raw, chat, plan, special, verbose_prompt, quiet;
	enum llm_kv_type kv;
	uint64_t mem, gpu_mem;
	long long ring, stream_layers, expert_slots, gpu_layers;
	enum llm_expert_policy expert_policy;
	double drive_bw;
	enum pinfer_provider provider;
	struct sampler_params sp;
};

/*
 * What `pinfer run` and `pinfer chat` hold while they talk to a model: the
 * model, its tokenizer, the pool, one session, the sampler, the chat
 * template and the conversation's tokens so far (the CLI's state; the
 * engine is under engine/).
 */
struct conversation {
	bool verbose_prompt;
	struct llm_model *m;
	struct tokenizer *tok;
	struct pinfer_pool *pool;
	struct llm_session *s;
	struct sampler *smp;
	enum chat_template tmpl;
	char system[512];
	int32_t *hist;
	size_t n_hist;
	bool cut;		/* the last answer ended before its end-of-turn token */
};

static int parse(int argc, char **argv, struct run_opts *o)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "n-predict", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "ctx", required_argument, NULL, 'c' },
		{ "temp", required_argument, NULL, 1 },
		{ "top-k", required_argument, NULL, 2 },
		{ "top-p", required_argument, NULL, 3 },
		{ "min-p", required_argument, NULL, 4 },
		{ "repeat-penalty", required_argument, NULL, 5 },
		{ "system", required_argument, NULL, 6 },
		{ "raw", no_argument, NULL, 7 },
		{ "provider", required_argument, NULL, 8 },
		{ "mem", required_argument, NULL, 9 },
		{ "ring", required_argument, NULL, 10 },
		{ "stream-layers", required_argument, NULL, 11 },
		{ "plan", no_argument, NULL, 12 },
		{ "drive-bw", required_argument, NULL, 13 },
		{ "kv-type", required_argument, NULL, 14 },
		{ "special", no_argument, NULL, 15 },
		{ "node", required_argument, NULL, 16 },
		{ "verbose-prompt", no_argument, NULL, 17 },
		{ "expert-slots", required_argument, NULL, 18 },
		{ "expert-policy", required_argument, NULL, 19 },
		{ "gpu-layers", required_argument, NULL, 20 },
		{ "gpu-mem", required_argument, NULL, 21 },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	long long v;
	double d;
	int c, bad = 0;

	cli_alias_ngl(argc, argv, "m:p:n:t:s:c:qh", opts);
	while ((c = getopt_long(argc, argv, "m:p:n:t:s:c:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'p': o->prompt = optarg; break;
		case 'n':
			bad = cli_int("-n", optarg, 0, INT32_MAX, &v);
			o->n_predict = (int)v;
			break;
		case 't':
			bad = cli_int("-t", optarg, 0, 1024, &v);
			o->threads = (int)v;
			break;
		case 's': bad = cli_u64("--seed", optarg, &o->sp.seed); break;
		case 'c':
			bad = cli_int("--ctx", optarg, 0, UINT32_MAX, &v);
			o->n_ctx = (uint32_t)v;
			break;
		case 1:
			bad = cli_real("--temp", optarg, 0, 1e6, &d);
			o->sp.temp = (float)d;
			break;
		case 2:
			bad = cli_int("--top-k", optarg, 0, INT32_MAX, &v);
			o->sp.top_k = (int)v;
			break;
		case 3:
			bad = cli_real("--top-p", optarg, 0, 1, &d);
			o->sp.top_p = (float)d;
			break;
		case 4:
			bad = cli_real("--min-p", optarg, 0, 1, &d);
			o->sp.min_p = (float)d;
			break;
		case 5:
			bad = cli_real("--repeat-penalty", optarg, 1e-3, 1e3, &d);
			o->sp.repeat_penalty = (float)d;
			break;
		case 6: o->system = optarg; break;
		case 7: o->raw = true; break;
		case 8:
			o->provider = pinfer_provider_parse(optarg);
			if (o->provider == PINFER_PROVIDER_COUNT) {
				cli_error("--provider %s: not one of kmod, hugetlb, thp, plain", optarg);
				return EXIT_USAGE;
			}
			break;
		case 9: bad = cli_parse_mem(optarg, &o->mem); break;
		case 10: bad = cli_int("--ring", optarg, 0, 1024, &o->ring); break;
		case 11: bad = cli_int("--stream-layers", optarg, 0, 1024, &o->stream_layers); break;
		case 12: o->plan = true; break;
		case 13: bad = cli_real("--drive-bw", optarg, 0, 1e4, &o->drive_bw); break;
		case 14:
			if (strcmp(optarg, "f16") && strcmp(optarg, "q8_0")) {
				cli_error("--kv-type %s: not one of f16, q8_0", optarg);
				return EXIT_USAGE;
			}
			o->kv = strcmp(optarg, "f16") ? LLM_KV_Q8_0 : LLM_KV_F16;
			break;
		case 15: o->special = true; break;
		case 16:
			bad = cli_int("--node", optarg, 0, 4095, &v);
			o->node = (int)v;
			break;
		case 17: o->verbose_prompt = true; break;
		case 'q': o->quiet = true; break;
		case 18: bad = cli_int("--expert-slots", optarg, 1, 1 << 24, &o->expert_slots); break;
		case 19:
			if (strcmp(optarg, "lru") && strcmp(optarg, "lfu")) {
				cli_error("--expert-policy %s: not one of lru, lfu", optarg);
				return EXIT_USAGE;
			}
			o->expert_policy = strcmp(optarg, "lru") ? LLM_EXPERTS_LFU : LLM_EXPERTS_LRU;
			break;
		case 20: bad = cli_int("--gpu-layers", optarg, 0, 100000, &o->gpu_layers); break;
		case 21: bad = cli_parse_bytes("--gpu-mem", optarg, &o->gpu_mem); break;
		case 'h':
			fputs(run_help, stdout);
			return -1;
		default:
			fputs(run_help, stderr);
			return EXIT_USAGE;
		}
		if (bad)
			return EXIT_USAGE;
	}
	if (optind != argc) {
		cli_error("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	if (!o->chat && !o->prompt && !o->plan) {
		cli_error("run: no prompt: give one with -p (see 'pinfer run --help')");
		return EXIT_USAGE;
	}
	if (o->node == NODE_AUTO)
		o->node = pinfer_node_default();
	o->threads = cli_threads(o->threads, o->node);
	return 0;
}

static struct llm_load_opts load_opts(const struct run_opts *o)
{
	return (struct llm_load_opts){
		.provider = o->provider, .node = o->node, .mem = o->mem, .ring = (uint32_t)o->ring,
		.n_ctx = o->n_ctx, .stream_layers = (uint32_t)o->stream_layers,
		.threads = (uint32_t)o->threads, .expert_slots = (uint32_t)o->expert_slots,
		.expert_policy = o->expert_policy, .gpu_layers = (uint32_t)o->gpu_layers,
		.gpu_mem = o->gpu_mem,
	};
}

#define MIB 1048576.0

/* --plan: nothing loaded, the placement printed. */
static int print_plan(const struct run_opts *o)
{
	struct llm_load_opts lo = load_opts(o);

	return cli_print_plan(o->model, &lo, o->drive_bw);
}

static int start(struct conversation *e, const struct run_opts *o)
{
	struct llm_load_opts lo = load_opts(o);
	struct pinfer_region_props rp;
	struct pinfer_err err = { 0 };
	double t0 = mono_now();
	char layers[64];	/* the layers streamed at each pass */
	int ret;

	e->verbose_prompt = o->verbose_prompt;
	lo.progress = cli_progress_fn(o->quiet);
	lo.progress_label = "loading";
	lo.stream_progress_arg = (void *)"streaming, first pass";
	ret = pinfer_pool_create(&e->pool, o->threads, o->node, &err);
	lo.pool = e->pool;	/* packs the weights at load */
	if (ret || (ret = llm_model_load(&e->m, o->model, &lo, &err)) ||
	    (ret = tokenizer_load(&e->tok, e->m->gguf, &err)) ||
	    (ret = llm_model_check_tokenizer(e->m, e->tok, &err)) ||
	    (ret = llm_session_create_kv(&e->s, e->m, (uint32_t)o->n_ctx, o->kv, e->pool, &err))) {
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	e->smp = sampler_create(&o->sp, e->m->cfg.n_vocab);
	/* every token the session holds, and the one sampled after them */
	e->hist = malloc(sizeof(*e->hist) * ((size_t)llm_session_ctx(e->s) + 1));
	if (!e->smp || !e->hist) {
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	e->tmpl = o->raw ? CHAT_NONE : chat_detect(e->m->gguf, e->system, sizeof(e->system));
	if (o->system)
		snprintf(e->system, sizeof(e->system), "%s", o->system);
	pinfer_region_props(e->m->region, &rp);
	fprintf(stderr, "pinfer: %s: %s, %" PRIu32 " layers, vocab %" PRIu32 ", %zu MiB\n",
		o->model, llm_arch_name(e->m->cfg.arch), e->m->cfg.n_layer, e->m->cfg.n_vocab,
		rp.size >> 20);
	if (e->m->cfg.n_expert)
		fprintf(stderr, "pinfer: experts: %" PRIu32 " of %" PRIu32 " per token in each layer, each of %" PRIu32 "\n",
			e->m->cfg.n_expert_used, e->m->cfg.n_expert, e->m->cfg.n_ff_exp);
	fprintf(stderr, "pinfer: memory: %s provider, %zu KiB pages, %s%s%s\n",
		pinfer_provider_name(rp.provider), rp.page_size >> 10,
		rp.locked ? "locked" : "not locked", rp.note[0] ? "; " : "", rp.note);
	if (e->m->load_note[0])
		fprintf(stderr, "pinfer: loading: %s\n", e->m->load_note);
	if (e->m->plan.expert_slots)
		fprintf(stderr, "pinfer: expert cache: %" PRIu32 " of %" PRIu64 " experts in %.1f MiB (%s); attention, routers, norms resident (%.1f MiB); budget %.1f MiB (%s)\n",
			e->m->plan.expert_slots, (uint64_t)e->m->cfg.n_expert * e->m->cfg.n_layer,
			(double)e->m->plan.expert_slots * e->m->plan.expert_slot / MIB,
			e->m->plan.expert_policy == LLM_EXPERTS_LFU ? "lfu" : "lru",
			(e->m->plan.region - (uint64_t)e->m->plan.expert_slots * e->m->plan.expert_slot) / MIB,
			e->m->plan.budget / MIB, e->m->plan.budget_why);
	llm_streamed_layers(&e->m->plan, layers, sizeof(layers));
	if (e->m->stream)
		fprintf(stderr, "pinfer: streaming: layers %s (%.1f MiB per token) through %" PRIu32 " slots of %.1f MiB; %.1f MiB resident; budget %.1f MiB (%s)\n",
			layers, e->m->plan.streamed / MIB,
			e->m->plan.ring, e->m->plan.slot / MIB,
			(e->m->plan.region - (uint64_t)e->m->plan.ring * e->m->plan.slot) / MIB,
			e->m->plan.budget / MIB, e->m->plan.budget_why);
	cli_print_gpu(e->m);
	fprintf(stderr, "pinfer: loaded in %.2f s; %d threads; chat template %s\n",
		mono_now() - t0, pinfer_pool_threads(e->pool), chat_template_name(e->tmpl));
	return 0;
}

static void stop(struct conversation *e)
{
	free(e->hist);
	sampler_free(e->smp);
	llm_session_free(e->s);
	tokenizer_free(e->tok);
	llm_model_free(e->m);
	pinfer_pool_free(e->pool);
}

/* Print the bytes that form whole UTF-8 characters; keep a partial tail. */
struct utf8_out {
	char pend[8];
	size_t n;
};

static void emit(struct utf8_out *u, const char *p, size_t n, bool flush)
{
	size_t cut, i;

	while (n--) {
		if (u->n == sizeof(u->pend)) {	/* not UTF-8 at all: let it out */
			fwrite(u->pend, 1, u->n, stdout);
			u->n = 0;
		}
		u->pend[u->n++] = *p++;
	}
	cut = u->n;
	for (i = u->n; i > 0 && i + 4 > u->n; i--) {	/* a lead byte near the end */
		unsigned char c = (unsigned char)u->pend[i - 1];
		size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

		if ((c & 0xc0) != 0x80) {
			if (i - 1 + need > u->n)
				cut = i - 1;
			break;
		}
	}
	if (flush)
		cut = u->n;
	fwrite(u->pend, 1, cut, stdout);
	memmove(u->pend, u->pend + cut, u->n - cut);
	u->n -= cut;
	fflush(stdout);
}

/*
 * Feed @text (special tokens only where @plain, if any, is 0; none with
 * @plain NULL and !@special), then generate up to @n_predict tokens.
 */
static int generate(struct conversation *e, const char *text, const uint8_t *plain, bool special,
		    int32_t bos, int n_predict, bool quiet_stats)
{
	struct pinfer_err err = { 0 };
	struct utf8_out out = { .n = 0 };
	const float *logits = NULL;
	uint32_t n_ctx_left;
	int32_t *ids = NULL;
	size_t n_ids, i;
	double t0, t1, t2;
	char piece[256];
	float *l;
	int gen = 0, ret = 0;

	if (plain ? tokenizer_encode_masked(e->tok, text, strlen(text), plain, &ids, &n_ids, &err) :
		    tokenizer_encode(e->tok, text, strlen(text), special, &ids, &n_ids, &err)) {
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	if (bos >= 0) {		/* the model's beginning of text first */
		int32_t *with = realloc(ids, (n_ids + 1) * sizeof(*ids));

		if (!with) {
			free(ids);
			cli_error("out of memory");
			return EXIT_FAIL;
		}
		ids = with;
		memmove(ids + 1, ids, n_ids * sizeof(*ids));
		ids[0] = bos;
		n_ids++;
	}
	if (e->verbose_prompt) {
		fputs("pinfer: prompt tokens:", stderr);
		for (i = 0; i < n_ids; i++)
			fprintf(stderr, " %" PRId32, ids[i]);
		fputc('\n', stderr);
	}
	n_ctx_left = llm_session_ctx(e->s) - llm_session_pos(e->s);
	if (!n_ids || n_ids >= n_ctx_left) {
		cli_error("the prompt is %zu tokens; the context has room for %" PRIu32 " more",
			  n_ids, n_ctx_left ? n_ctx_left - 1 : 0);
		free(ids);
		return EXIT_FAIL;
	}
	t0 = mono_now();
	for (i = 0; i < n_ids; i++)
		e->hist[e->n_hist++] = ids[i];
	if (llm_eval_batch(e->s, ids, n_ids, &logits, &err)) {
		cli_error("%s", err.msg);
		free(ids);
		return EXIT_FAIL;
	}
	free(ids);
	t1 = mono_now();
	e->cut = true;
	l = malloc(e->m->cfg.n_vocab * sizeof(*l));
	while (l && gen < n_predict) {
		int32_t tok;

		memcpy(l, logits, e->m->cfg.n_vocab * sizeof(*l));
		tok = sampler_sample(e->smp, l, e->hist, e->n_hist);
		gen++;
		e->hist[e->n_hist++] = tok;
		if (tok == tokenizer_eos(e->tok) || tokenizer_is_control(e->tok, tok)) {
			e->cut = false;
			ret = llm_eval(e->s, tok, &logits, &err);	/* keep the turn's end */
			break;
		}
		emit(&out, piece, tokenizer_decode(e->tok, tok, piece, sizeof(piece)), false);
		ret = llm_eval(e->s, tok, &logits, &err);
		if (ret)
			break;
	}
	free(l);
	emit(&out, NULL, 0, true);
	if (ret && ret != -ENOSPC) {	/* a full context just ends the answer */
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	t2 = mono_now();
	if (!quiet_stats)
		fprintf(stderr, "\npinfer: prompt %zu tokens in %.2f s (%.1f t/s); generated %d tokens in %.2f s (%.1f t/s)\n",
			n_ids, t1 - t0, n_ids / (t1 - t0), gen, t2 - t1,
			gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
	if (!quiet_stats && e->m->stream) {
		struct llm_stream_stats st;

		llm_model_stream_stats(e->m, &st);
		fprintf(stderr, "pinfer: streamed %.1f MiB in %" PRIu64 " layer reads; compute waited %.2f s for them\n",
			st.bytes / MIB, st.reads, st.wait_s);
	}
	if (!quiet_stats && e->m->plan.expert_slots)
		cli_print_expert_stats(e->m);
	return EXIT_OK;
}

static void defaults(struct run_opts *o, bool chat)
{
	memset(o, 0, sizeof(*o));
	o->model = DEFAULT_MODEL;
	o->n_predict = 256;
	o->chat = chat;
	o->provider = PINFER_PROVIDER_AUTO;
	o->node = NODE_AUTO;
	o->sp = (struct sampler_params){
		.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
		.repeat_penalty = 1.0f, .repeat_last_n = 64,
		.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32,
	};
}

/*
 * The template's text for @msgs, and in *@plain (unless --special) a mask
 * of the bytes that are the messages' own text: there, text that looks
 * like a special token is just text. After an answer cut off at -n, the
 * template's end of the assistant's turn comes first, as if the model had
 * written it.
 */
static char *format(const struct conversation *e, const struct run_opts *o,
		    const struct chat_msg *msgs, size_t n, int first, uint8_t **plain)
{
	const char *end = !first && e->cut ? chat_turn_end(e->tmpl) : "";
	size_t spans[4], i, skip = strlen(end);
	char *text = chat_format(e->tmpl, msgs, n, first, spans);

	*plain = NULL;
	if (text && skip) {
		char *with = malloc(skip + strlen(text) + 1);

		if (with)
			stpcpy(stpcpy(with, end), text);
		free(text);
		text = with;
	}
	if (!text || o->special)
		return text;
	*plain = calloc(strlen(text) + 1, 1);
	if (!*plain) {
		free(text);
		return NULL;
	}
	for (i = 0; i < n; i++)
		memset(*plain + skip + spans[2 * i], 1, spans[2 * i + 1] - spans[2 * i]);
	return text;
}

int cmd_run(int argc, char **argv)
{
	struct conversation e = { 0 };
	struct run_opts o;
	struct chat_msg msgs[2];
	uint8_t *plain = NULL;
	char *text;
	int ret;

	defaults(&o, false);
	ret = parse(argc, argv, &o);
	if (ret)
		return ret < 0 ? EXIT_OK : ret;
	if (o.plan)
		return print_plan(&o);
	ret = start(&e, &o);
	if (!ret && e.tmpl == CHAT_NONE) {	/* --raw, or no template */
		ret = generate(&e, o.prompt, NULL, o.special, tokenizer_bos(e.tok), o.n_predict, false);
	} else if (!ret) {
		size_t n = 0;

		if (e.system[0])
			msgs[n++] = (struct chat_msg){ "system", e.system };
		msgs[n++] = (struct chat_msg){ "user", o.prompt };
		text = format(&e, &o, msgs, n, 1, &plain);
		ret = text ? generate(&e, text, plain, o.special, -1, o.n_predict, false) : EXIT_FAIL;
		free(text);
		free(plain);
	}
	stop(&e);
	return ret;
}

int cmd_chat(int argc, char **argv)
{
	struct conversation e = { 0 };
	struct run_opts o;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int ret, turn = 0;

	defaults(&o, true);
	ret = parse(argc, argv, &o);
	if (ret)
		return ret < 0 ? EXIT_OK : ret;
	if (o.plan)
		return print_plan(&o);
	ret = start(&e, &o);
	if (!ret && e.tmpl == CHAT_NONE)
		fprintf(stderr, "pinfer: this model has no chat template: lines are fed as they are\n");
	while (!ret) {
		struct chat_msg msgs[2];
		uint8_t *plain = NULL;
		size_t n = 0;
		char *text;

		if (isatty(0))
			fputs("> ", stderr);
		len = getline(&line, &cap, stdin);	/* a line of any length */
		if (len < 0)
			break;
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		if (!turn && e.system[0] && e.tmpl != CHAT_NONE)
			msgs[n++] = (struct chat_msg){ "system", e.system };
		msgs[n++] = (struct chat_msg){ "user", line };
		text = format(&e, &o, msgs, n, !turn, &plain);
		if (!text) {
			cli_error("out of memory");
			ret = EXIT_FAIL;
			break;
		}
		ret = generate(&e, text, plain, o.special,
			       !turn && e.tmpl == CHAT_NONE ? tokenizer_bos(e.tok) : -1,
			       o.n_predict, !isatty(2));
		free(text);
		free(plain);
		turn++;
		putchar('\n');
	}
	free(line);
	stop(&e);
	return ret;
}
