// SPDX-License-Identifier: MIT
/*
 * --plan (run, chat, bench, serve): where each part of a model goes under
 * the command's budget, context and -ngl, without loading it.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"
#include "cuda/cuda_api.h"
#include "model/gpu.h"
#include "model/model.h"

#define MIB 1048576.0

/* --plan's GPU part: its layers, their device memory, the device or why none. */
static void print_gpu_plan(const struct llm_plan *p)
{
	struct pinfer_err err = { 0 };
	struct pcu_device dev;

	printf("  GPU layers      %10.1f MiB: layers %" PRIu32 "-%" PRIu32 "%s (%" PRIu32 " of %" PRIu32 ")\n",
	       p->gpu_weights / MIB, p->n_layer - p->gpu_layers, p->n_layer - 1,
	       p->gpu_output ? " and the output layer" : "", p->gpu_layers, p->n_layer);
	if (p->gpu_streamed && !p->gpu_drive)
		printf("  GPU streamed    %10.1f MiB per call: layers %" PRIu32 "-%" PRIu32 " copied from memory through a ring of %" PRIu32 " slots of %.1f MiB (in the above)\n",
		       p->gpu_stream_bytes / MIB, p->n_layer - p->gpu_streamed, p->n_layer - 1,
		       p->gpu_ring, p->gpu_slot / MIB);
	else if (p->gpu_streamed)
		printf("  GPU streamed    %10.1f MiB per call: layers %" PRIu32 "-%" PRIu32 " copied through a ring of %" PRIu32 " slots of %.1f MiB (in the above), layers %" PRIu32 "-%" PRIu32 " read from the drive first\n",
		       p->gpu_stream_bytes / MIB, p->n_layer - p->gpu_streamed, p->n_layer - 1,
		       p->gpu_ring, p->gpu_slot / MIB, p->n_layer - p->gpu_drive, p->n_layer - 1);
	if (p->gpu_once)
		printf("  GPU from drive  layers %" PRIu32 "-%" PRIu32 ", read from the drive once, at load, and kept, not in host memory (in the above)\n",
		       p->n_layer - p->gpu_drive - p->gpu_once, p->n_layer - p->gpu_drive - 1);
	printf("  GPU KV, buffers %10.1f MiB\n", p->gpu_session / MIB);
	printf("  GPU total       %10.1f MiB", (p->gpu_weights + p->gpu_session) / MIB);
	if (p->gpu_mem)
		printf(" within --gpu-mem %.1f MiB", p->gpu_mem / MIB);
	if (llm_gpu_probe(&dev, &err)) {
		printf("; no GPU here: %s\n", err.msg);
		return;
	}
	printf(" of %.1f MiB free on %s (compute %d.%d)%s\n", dev.free / MIB, dev.name, dev.major,
	       dev.minor, p->gpu_weights + p->gpu_session > dev.free ? ": does not fit" : "");
	printf("  GPU prompts     batches of %d tokens or more through %s\n", PCU_GEMM_MIN, dev.gemm);
}

void cli_print_gpu(const struct llm_model *m)
{
	const struct llm_plan *p = &m->plan;

	if (!p->gpu_layers)
		return;
	fprintf(stderr, "pinfer: GPU (%s): layers %" PRIu32 "-%" PRIu32 "%s, %" PRIu32 " of them copied to it per call",
		llm_gpu_name(m), p->n_layer - p->gpu_layers, p->n_layer - 1,
		p->gpu_output ? " and the output layer" : "", p->gpu_streamed);
	if (p->gpu_once)
		fprintf(stderr, ", %" PRIu32 " read from the drive once", p->gpu_once);
	fprintf(stderr, "; %.1f MiB of its memory, their KV cache included\n",
		(p->gpu_weights + p->gpu_session) / MIB);
}

int cli_print_plan(const char *model, const struct llm_load_opts *lo, double drive_bw)
{
	struct pinfer_err err = { 0 };
	struct llm_plan p;
	const double bws[] = { 1.0, 3.0, 7.0 };
	char layers[64];	/* the layers streamed at each pass */
	uint32_t n_streamed;
	size_t i;

	if (llm_model_plan(&p, model, lo, &err)) {
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	n_streamed = llm_streamed_layers(&p, layers, sizeof(layers));
	printf("plan for %s: %" PRIu32 " layers, %.1f MiB of weights, context %" PRIu32 "\n",
	       model, p.n_layer, p.weights / MIB, p.n_ctx);
	printf("  budget          %10.1f MiB (%s)\n", p.budget / MIB, p.budget_why);
	printf("  resident        %10.1f MiB: embeddings, output, norms (%.1f MiB)",
	       (p.region - (uint64_t)p.ring * p.slot - (uint64_t)p.expert_slots * p.expert_slot) / MIB,
	       p.fixed / MIB);
	if (p.expert_slots)
		printf(" + layers 0-%" PRIu32 " but their experts", p.n_layer - 1);
	else if (p.n_resident)
		printf(" + layers 0-%" PRIu32, p.n_resident - 1);
	printf(" (%" PRIu32 " of %" PRIu32 " layers)\n", p.n_resident, p.n_layer);
	if (p.expert_slots)
		printf("  expert cache    %10.1f MiB: %" PRIu32 " experts (of %" PRIu64 ") in slots of %.2f MiB\n",
		       (double)p.expert_slots * p.expert_slot / MIB, p.expert_slots,
		       (uint64_t)p.n_experts * p.n_layer, p.expert_slot / MIB);
	else
		printf("  ring            %10.1f MiB: %" PRIu32 " slot%s of %.1f MiB%s\n",
		       (double)p.ring * p.slot / MIB, p.ring, p.ring == 1 ? "" : "s", p.slot / MIB,
		       p.ring && !n_streamed ? ", to stage the GPU's reads at load" : "");
	printf("  KV cache, buffers %8.1f MiB\n", p.session / MIB);
	printf("  total           %10.1f MiB\n", (p.region + p.session) / MIB);
	if (lo->gpu_seqs && p.server_kv)
		printf("  server KV cache %10.1f MiB: %" PRIu32 " requests of %" PRIu32 " positions, a region of its own beside the budget\n",
		       p.server_kv / MIB, lo->gpu_seqs, p.n_ctx);
	else if (lo->gpu_seqs)	/* a page, for the region to be there */
		printf("  server KV cache        0 MiB: every layer's K and V are on the GPU (below)\n");
	if (!p.ring && !p.expert_slots) {
		printf("  streamed               0 MiB per token: the whole model is resident\n");
	} else {
		if (p.expert_slots) {
			double cached = (double)p.expert_slots / ((double)p.n_experts * p.n_layer);

			printf("  streamed        %10.1f MiB per token at most: %" PRIu32 " experts of %.2f MiB in each of %" PRIu32 " layers, when none is cached\n",
			       p.streamed / MIB, p.n_experts_used, p.expert_bytes / MIB, p.n_layer);
			printf("  expected        %10.1f MiB per token with uniform routing (the cache holds %.0f%% of the experts; skewed routing reads less)\n",
			       p.streamed * (1 - cached) / MIB, 100 * cached);
		}
		else if (n_streamed)
			printf("  streamed        %10.1f MiB per token: layers %s%s\n",
			       p.streamed / MIB, layers,
			       p.streamed ? "" : " (the ring holds them all: read once)");
		else
			printf("  streamed        %10.1f MiB per token: none (the GPU's, below, are read once)\n",
			       0.0);
		if (drive_bw > 0)
			printf("  floor           %10.4f s/token at %.1f GB/s\n",
			       p.streamed / (drive_bw * 1e9), drive_bw);
		else
			for (i = 0; i < sizeof(bws) / sizeof(bws[0]); i++)
				printf("  floor           %10.4f s/token at %.0f GB/s%s\n",
				       p.streamed / (bws[i] * 1e9), bws[i],
				       i ? "" : " (--drive-bw for your drive's)");
	}
	printf("  minimum budget  %10.1f MiB (%" PRIu64 " bytes)\n", p.minimum / MIB, p.minimum);
	if (p.gpu_layers)
		print_gpu_plan(&p);
	return EXIT_OK;
}

