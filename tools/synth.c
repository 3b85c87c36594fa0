// SPDX-License-Identifier: MIT
/*
 * pinfer synth: write a GGUF model of a real model's shapes with random
 * weights (engine/model/synth.c), for tests and for benchmarks of models larger
 * than memory.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "format/ggml_types.h"
#include "kernels/quant.h"
#include "model/synth.h"

static const char synth_help[] =
	"usage: pinfer synth --arch ARCH --params SIZE [options] -o FILE\n"
	"       pinfer synth --arch ARCH --embd N --layers N --ff N --heads N [options] -o FILE\n\n"
	"Writes a valid GGUF model with random weights and a small byte-level\n"
	"vocabulary, of the shapes of a known model (or of the given ones).\n\n"
	"  -o, --output FILE   where to write it (through FILE.tmp)\n"
	"      --arch ARCH     llama, qwen2, qwen3 or qwen3moe (default llama)\n"
	"      --params SIZE   a preset, below\n"
	"      --type TYPE     matrices: f32, f16, bf16, q4_0, q4_1, q8_0, q4_k,\n"
	"                      q5_k or q6_k (default q4_0)\n"
	"      --embd N, --layers N, --ff N, --heads N, --kv-heads N, --head-dim N\n"
	"                      shapes (override the preset's; --ff is each expert's\n"
	"                      width in a model with experts)\n"
	"      --experts N     a mixture of N experts per layer (llama: Mixtral's\n"
	"                      layout; qwen3moe has them always)\n"
	"      --experts-used K  experts per token (default 2, or the preset's)\n"
	"      --skew S        routing skewed: router row of the expert ranked r\n"
	"                      (a random order per layer) scaled by (1 + r)^-S, so\n"
	"                      low ranks win far more often (default 0: uniform)\n"
	"      --vocab N       vocabulary size, at least 260 (default 512)\n"
	"      --ctx N         context length (default 4096)\n"
	"      --seed N        random seed (default 1)\n"
	"      --rope-scale F  linear RoPE scaling by F (rope.scaling.* keys)\n"
	"      --rope-freqs    a rope_freqs tensor (Llama 3.1's) of random factors\n"
	"  -t, --threads N     threads making the data (default: one per CPU)\n"
	"  -q, --quiet         no progress bar (shown only when stderr is a terminal)\n"
	"  -h, --help\n\n"
	"presets:\n";

static const uint32_t synth_types[] = {
	GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
	GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

static int parse_type(const char *name, uint32_t *type)
{
	size_t i;

	for (i = 0; i < sizeof(synth_types) / sizeof(synth_types[0]); i++)
		if (!strcasecmp(name, ggml_type_name(synth_types[i]))) {
			*type = synth_types[i];
			return 0;
		}
	return -1;
}

int cmd_synth(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "arch", required_argument, NULL, 1 },
		{ "params", required_argument, NULL, 2 },
		{ "type", required_argument, NULL, 3 },
		{ "embd", required_argument, NULL, 4 },
		{ "layers", required_argument, NULL, 5 },
		{ "ff", required_argument, NULL, 6 },
		{ "heads", required_argument, NULL, 7 },
		{ "kv-heads", required_argument, NULL, 8 },
		{ "vocab", required_argument, NULL, 9 },
		{ "ctx", required_argument, NULL, 10 },
		{ "seed", required_argument, NULL, 11 },
		{ "threads", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "rope-scale", required_argument, NULL, 12 },
		{ "rope-freqs", no_argument, NULL, 13 },
		{ "head-dim", required_argument, NULL, 14 },
		{ "experts", required_argument, NULL, 15 },
		{ "experts-used", required_argument, NULL, 16 },
		{ "skew", required_argument, NULL, 17 },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out = NULL, *arch = "llama", *params = NULL, *type = NULL;
	long long dims[7] = { -1, -1, -1, -1, -1, -1, -1 };	/* embd .. ctx */
	long long head_dim = -1, experts = -1, used = -1;
	double skew = 0;
	struct synth_spec s = {
		.n_vocab = 512, .ctx = 4096, .type = GGML_TYPE_Q4_0, .seed = 1,
	};
	struct pinfer_pool *pool = NULL;
	struct pinfer_err err = { 0 };
	uint64_t seed = 1;
	double rope_scale = 0;
	bool rope_freqs = false, quiet = false;
	char opt[32];
	long long v;
	int c, threads = 0, ret, bad = 0;
	double t0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:t:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 1: arch = optarg; break;
		case 2: params = optarg; break;
		case 3: type = optarg; break;
		case 4: case 5: case 6: case 7: case 8: case 9: case 10:
			snprintf(opt, sizeof(opt), "--%s", opts[c].name);
			bad = cli_int(opt, optarg, 1, 1 << 30, &dims[c - 4]);
			break;
		case 11: bad = cli_u64("--seed", optarg, &seed); break;
		case 12: bad = cli_real("--rope-scale", optarg, 1e-3, 1e6, &rope_scale); break;
		case 13: rope_freqs = true; break;
		case 14: bad = cli_int("--head-dim", optarg, 2, 1024, &head_dim); break;
		case 15: bad = cli_int("--experts", optarg, 1, 1024, &experts); break;
		case 16: bad = cli_int("--experts-used", optarg, 1, 1024, &used); break;
		case 17: bad = cli_real("--skew", optarg, 0, 16, &skew); break;
		case 't':
			bad = cli_int("-t", optarg, 0, 1024, &v);
			threads = (int)v;
			break;
		case 'q': quiet = true; break;
		case 'h':
			fputs(synth_help, stdout);
			fputs(synth_presets(), stdout);
			return EXIT_OK;
		default:
			fputs(synth_help, stderr);
			return EXIT_USAGE;
		}
		if (bad)
			return EXIT_USAGE;
	}
	if (optind != argc || !out) {
		cli_error(optind != argc ? "synth: unexpected argument '%s' (see --help)" :
			  "synth: no output file: give one with -o (see --help)%s",
			  optind != argc ? argv[optind] : "");
		return EXIT_USAGE;
	}
	for (s.arch = LLM_ARCH_LLAMA; s.arch <= LLM_ARCH_QWEN3MOE; s.arch++)
		if (!strcmp(arch, llm_arch_name(s.arch)))
			break;
	if (s.arch > LLM_ARCH_QWEN3MOE) {
		cli_error("synth: --arch %s: not one of llama, qwen2, qwen3, qwen3moe", arch);
		return EXIT_USAGE;
	}
	if (params && synth_preset(&s, arch, params, &err)) {
		cli_error("%s", err.msg);
		return EXIT_USAGE;
	}
	if (!params && (dims[0] < 0 || dims[1] < 0 || dims[2] < 0 || dims[3] < 0)) {
		cli_error("synth: give --params, or --embd, --layers, --ff and --heads (see --help)");
		return EXIT_USAGE;
	}
#define DIM(i_, field_) if (dims[i_] > 0) s.field_ = (uint32_t)dims[i_]
	DIM(0, n_embd);
	DIM(1, n_layer);
	DIM(2, n_ff);
	DIM(3, n_head);
	s.n_head_kv = params ? s.n_head_kv : s.n_head;
	DIM(4, n_head_kv);
	DIM(5, n_vocab);
	DIM(6, ctx);
#undef DIM
	if (head_dim > 0)
		s.head_dim = (uint32_t)head_dim;
	else if (!params && s.arch >= LLM_ARCH_QWEN3)
		s.head_dim = 128;	/* Qwen3's */
	if (experts > 0) {
		s.n_expert = (uint32_t)experts;
		s.n_expert_used = s.n_expert_used ? s.n_expert_used : 2;
	}
	if (used > 0)
		s.n_expert_used = (uint32_t)used;
	if (s.arch == LLM_ARCH_QWEN3MOE && !s.n_expert) {
		cli_error("synth: --arch qwen3moe needs --experts N (or a preset)");
		return EXIT_USAGE;
	}
	if ((used > 0 || skew > 0) && !s.n_expert) {
		cli_error("synth: --experts-used and --skew need --experts N");
		return EXIT_USAGE;
	}
	s.skew = (float)skew;
	s.seed = seed;
	s.rope_scale = (float)rope_scale;
	s.rope_freqs = rope_freqs;
	if (type && parse_type(type, &s.type)) {
		cli_error("synth: --type %s: not one of f32, f16, bf16, q4_0, q4_1, q8_0, q4_k, q5_k, q6_k",
			  type);
		return EXIT_USAGE;
	}
	if (!synth_bytes(&s)) {
		synth_write(&s, out, NULL, NULL, NULL, &err);	/* says why */
		cli_error("%s", err.msg);
		return EXIT_USAGE;
	}
	if (pinfer_pool_create(&pool, threads, -1, &err)) {
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	t0 = mono_now();
	cli_remove_output_on_signals();
	ret = synth_write(&s, out, pool, cli_progress_fn(quiet), (void *)"writing", &err);
	pinfer_pool_free(pool);
	if (ret) {
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	fprintf(stderr, "pinfer: wrote %s: %s, %" PRIu32 " layers, embedding %" PRIu32 ", %s, %.1f MiB in %.2f s\n",
		out, arch, s.n_layer, s.n_embd, ggml_type_name(s.type),
		synth_bytes(&s) / 1048576.0, mono_now() - t0);
	if (s.n_expert)
		fprintf(stderr, "pinfer: %" PRIu32 " of %" PRIu32 " experts of %" PRIu32 " per token, routing %s (skew %g)\n",
			s.n_expert_used, s.n_expert, s.n_ff, s.skew > 0 ? "skewed" : "uniform",
			(double)s.skew);
	return EXIT_OK;
}
