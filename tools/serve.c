// SPDX-License-Identifier: MIT
/*
 * pinfer serve: the OpenAI HTTP API over the scheduler's continuous
 * batching (engine/serve/sched.h). libmicrohttpd parses HTTP, a thread per
 * connection; cJSON reads requests and writes responses. Connection
 * threads tokenize, submit, and read text back; only the scheduler's
 * thread touches the model. Documentation/serve.md has the endpoints,
 * flags, metrics and limits.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "cli.h"
#include "model/gpu.h"
#include "model/model.h"
#include "serve/sched.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define NODE_AUTO (-2)
#define MAX_BODY (1u << 20)	/* bytes of a request body */
#define MAX_MESSAGES 256

static const char serve_help[] =
	"usage: pinfer serve [-m MODEL] [options]\n\n"
	"Serve the model over the OpenAI HTTP API: POST /v1/chat/completions,\n"
	"POST /v1/completions, GET /v1/models, GET /health, GET /metrics.\n"
	"Up to --parallel requests decode together in one batched pass per token.\n\n"
	"  -m, --model FILE       GGUF model (default " DEFAULT_MODEL ")\n"
	"      --host ADDR        address to listen on (default 127.0.0.1)\n"
	"      --port N           TCP port (default 8080; 0: any free one, printed)\n"
	"      --parallel N       requests decoding together (default 4)\n"
	"  -c, --ctx N            context of each request, in tokens (default 2048,\n"
	"                         at most the model's); the KV cache holds\n"
	"                         parallel x ctx tokens\n"
	"      --queue N          requests waiting for a slot, at most (default 64);\n"
	"                         past that: 503\n"
	"      --chunk N          prompt tokens fed per step while others decode\n"
	"                         (default 16: what a step adds to their latency)\n"
	"      --api-key KEY      require 'Authorization: Bearer KEY'\n"
	"      --api-key-file F   the same, the key read from F's first line\n"
	"  -t, --threads N        threads (default: one per CPU this process may use)\n"
	"      --node N           NUMA node for memory and threads\n"
	"      --provider NAME    memory: kmod, hugetlb, thp or plain (default: best)\n"
	"      --mem SIZE         memory budget for the weights (default: what can be\n"
	"                         pinned); layers that do not fit stream from the file\n"
	"      --stream-layers N  stream at least the last N layers (benchmarks)\n"
	"  -ngl, --gpu-layers N   run the last N layers, and the output layer, on an\n"
	"                         NVIDIA GPU, their KV cache there too (Documentation/cuda.md)\n"
	"      --gpu-mem SIZE     GPU memory to use at most (default: what is free);\n"
	"                         layers that do not fit are copied to it per step\n"
	"      --grace SECONDS    on SIGTERM/SIGINT, let running requests finish this\n"
	"                         long before cutting them (default 10)\n"
	"      --plan             print where the weights and KV caches would go, and exit\n"
	"  -h, --help\n";

struct serve_opts {
	const char *model, *host, *api_key_file;
	char api_key[256];
	long long port, parallel, ctx, queue, chunk, grace;
	int threads, node;
	uint64_t mem, gpu_mem;
	long long gpu_layers, stream_layers;
	bool plan;
	enum pinfer_provider provider;
};

static const int statuses[] = { 200, 400, 401, 404, 413, 503 };	/* counted apart */
#define N_STATUS (sizeof(statuses) / sizeof(statuses[0]))

/* Everything the connection threads share; read-only but for the counters. */
struct server {
	struct serve_opts o;
	struct llm_model *m;
	struct tokenizer *tok;
	struct pinfer_pool *pool;
	struct sched *sched;
	enum chat_template tmpl;
	char system[512];	/* the template's default system prompt, or empty */
	char model_id[256];
	time_t started;
	atomic_bool draining;
	atomic_uint_fast64_t ids;
	atomic_uint_fast64_t status[N_STATUS + 1];	/* answers by statuses[], then others */
	atomic_uint_fast64_t disconnects;
};

static void count_status(struct server *sv, unsigned int code)
{
	size_t i;

	for (i = 0; i < N_STATUS && (unsigned int)statuses[i] != code; i++)
		;
	sv->status[i]++;	/* N_STATUS: another */
}

/* ---- a connection ---------------------------------------------------- */

enum api { API_CHAT, API_COMPLETIONS };

struct conn {
	struct server *sv;
	struct MHD_Connection *c;
	char *body;
	size_t len;
	bool too_big;
	/* a streamed answer */
	struct sched_req *r;
	enum api api;
	bool include_usage, sent_first, done;
	char id[48];
	time_t created;
	char *out;		/* SSE bytes not sent yet */
	size_t out_len, out_sent;
};

static void free_conn(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode why)
{
	struct conn *cn = *con_cls;

	(void)cls;
	(void)c;
	if (!cn)
		return;
	if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && cn->r)
		cn->sv->disconnects++;
	sched_release(cn->r);
	free(cn->body);
	free(cn->out);
	free(cn);
	*con_cls = NULL;
}

/* The client closed its end (or the socket broke). */
static bool client_gone(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct pollfd p;

	if (!ci)
		return true;
	p.fd = ci->connect_fd;
	p.events = POLLRDHUP;
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* @s with every byte that is not part of valid UTF-8 (and NUL) as U+FFFD. */
static char *utf8_clean(const char *s, size_t n)
{
	char *out = malloc(3 * n + 1), *o = out;
	size_t i = 0, k;

	if (!out)
		return NULL;
	while (i < n) {
		k = s[i] ? cli_utf8_len(s + i, n - i) : 0;
		if (!k) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(o, s + i, k);
		o += k;
		i += k;
	}
	*o = 0;
	return out;
}

static enum MHD_Result respond(struct conn *cn, unsigned int code, const char *type,
			       char *body /* malloc'd, taken */)
{
	struct MHD_Response *rs;
	enum MHD_Result ret;

	if (!body)
		return MHD_NO;
	rs = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!rs) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(rs, "Content-Type", type);
	if (code == 401)
		MHD_add_response_header(rs, "WWW-Authenticate", "Bearer");
	ret = MHD_queue_response(cn->c, code, rs);
	MHD_destroy_response(rs);
	count_status(cn->sv, code);
	return ret;
}

static enum MHD_Result respond_json(struct conn *cn, unsigned int code, cJSON *j)
{
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;

	cJSON_Delete(j);
	return respond(cn, code, "application/json", s);
}

/* An OpenAI-style error: {"error": {"message", "type", "param", "code"}}. */
__attribute__((format(printf, 5, 6)))
static enum MHD_Result fail(struct conn *cn, unsigned int code, const char *param,
			    const char *ecode, const char *fmt, ...)
{
	cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
	char msg[512], *clean;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clean = utf8_clean(msg, strlen(msg));
	cJSON_AddStringToObject(e, "message", clean ? clean : "");
	free(clean);
	cJSON_AddStringToObject(e, "type", code == 401 ? "authentication_error" :
				code >= 500 ? "server_error" : "invalid_request_error");
	if (param)
		cJSON_AddStringToObject(e, "param", param);
	else
		cJSON_AddNullToObject(e, "param");
	if (ecode)
		cJSON_AddStringToObject(e, "code", ecode);
	else
		cJSON_AddNullToObject(e, "code");
	return respond_json(cn, code, j);
}

/* ---- request fields ---------------------------------------------------- */

/* A field's problem, said once: 400 naming it. */
struct field_err {
	const char *param;
	char msg[256];
};

__attribute__((format(printf, 3, 4)))
static bool bad_field(struct field_err *fe, const char *param, const char *fmt, ...)
{
	va_list ap;

	if (fe->param)
		return false;
	fe->param = param;
	va_start(ap, fmt);
	vsnprintf(fe->msg, sizeof(fe->msg), fmt, ap);
	va_end(ap);
	return false;
}

/* An optional number in [lo, hi] (integral when @integer); absent or null: unchanged. */
static bool get_num(const cJSON *j, const char *name, double lo, double hi, bool integer,
		    double *out, struct field_err *fe)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);

	if (!v || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsNumber(v))
		return bad_field(fe, name, "'%s' must be a number", name);
	if (v->valuedouble < lo || v->valuedouble > hi || (integer && v->valuedouble != (double)(long long)v->valuedouble))
		return bad_field(fe, name, "'%s' must be %s from %g to %g", name,
				 integer ? "an integer" : "a number", lo, hi);
	*out = v->valuedouble;
	return true;
}

/* Sampling, max_tokens, stop and stream, as the OpenAI API names them. */
static bool get_params(const cJSON *j, struct sched_params *p, bool *stream,
		       bool *include_usage, struct field_err *fe)
{
	const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "stream");
	const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
	double temp = 0.8, top_p = 0.95, min_p = 0.05, top_k = 40, seed = -1, max = 0, n = 1;
	const cJSON *v;
	int i = 0;

	get_num(j, "temperature", 0, 2, false, &temp, fe);
	get_num(j, "top_p", 0, 1, false, &top_p, fe);
	get_num(j, "min_p", 0, 1, false, &min_p, fe);
	get_num(j, "top_k", 0, 1e9, true, &top_k, fe);
	get_num(j, "seed", -9.2e18, 9.2e18, true, &seed, fe);
	get_num(j, "max_tokens", 1, 1e9, true, &max, fe);
	get_num(j, "max_completion_tokens", 1, 1e9, true, &max, fe);
	get_num(j, "n", 1, 1, true, &n, fe);
	memset(p, 0, sizeof(*p));
	p->sp = (struct sampler_params){
		.temp = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p,
		.min_p = (float)min_p, .repeat_penalty = 1.0f, .repeat_last_n = 64,
		/* -1 (llama.cpp's) or none: a random seed */
		.seed = seed != -1 ? (uint64_t)(long long)seed :
				     (uint64_t)time(NULL) ^ (uint64_t)rand() << 20,
	};
	p->max_tokens = (uint32_t)max;
	if (stop && cJSON_IsString(stop)) {
		p->stop[0] = stop->valuestring;
	} else if (stop && cJSON_IsArray(stop)) {
		if (cJSON_GetArraySize(stop) > SCHED_MAX_STOP)
			return bad_field(fe, "stop", "'stop' holds at most %d strings", SCHED_MAX_STOP);
		cJSON_ArrayForEach(v, stop) {
			if (!cJSON_IsString(v))
				return bad_field(fe, "stop", "'stop' must be a string or an array of strings");
			p->stop[i++] = v->valuestring;
		}
	} else if (stop && !cJSON_IsNull(stop)) {
		return bad_field(fe, "stop", "'stop' must be a string or an array of strings");
	}
	v = cJSON_GetObjectItemCaseSensitive(j, "ignore_eos");	/* llama.cpp's extension */
	if (v && !cJSON_IsNull(v) && !cJSON_IsBool(v))
		return bad_field(fe, "ignore_eos", "'ignore_eos' must be true or false");
	p->ignore_eos = v && cJSON_IsTrue(v);
	*stream = false;
	if (st && !cJSON_IsNull(st)) {
		if (!cJSON_IsBool(st))
			return bad_field(fe, "stream", "'stream' must be true or false");
		*stream = cJSON_IsTrue(st);
	}
	*include_usage = false;
	if (so && cJSON_IsObject(so)) {
		v = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
		*include_usage = v && cJSON_IsTrue(v);
	}
	return !fe->param;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts. */
static char *content_text(const cJSON *c, struct field_err *fe)
{
	const cJSON *part;
	size_t len = 0;
	char *s, *end;

	if (cJSON_IsString(c))
		return strdup(c->valuestring);
	if (cJSON_IsNull(c))
		return strdup("");
	if (!cJSON_IsArray(c)) {
		bad_field(fe, "messages", "a message's 'content' must be a string or an array of text parts");
		return NULL;
	}
	cJSON_ArrayForEach(part, c) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");

		if (!cJSON_IsString(t)) {
			bad_field(fe, "messages", "a content part must be {\"type\": \"text\", \"text\": \"...\"}");
			return NULL;
		}
		len += strlen(t->valuestring);
	}
	s = malloc(len + 1);
	if (!s)
		return NULL;
	end = s;
	*end = 0;
	cJSON_ArrayForEach(part, c)
		end = stpcpy(end, cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
	return s;
}

/* Prepend the model's BOS token if it has one. */
static int add_bos(const struct tokenizer *tok, int32_t **ids, size_t *n)
{
	int32_t bos = tokenizer_bos(tok), *with;

	if (bos < 0)
		return 0;
	with = realloc(*ids, (*n + 1) * sizeof(**ids));
	if (!with)
		return -ENOMEM;
	memmove(with + 1, with, *n * sizeof(*with));
	with[0] = bos;
	*ids = with;
	(*n)++;
	return 0;
}

/*
 * The prompt's tokens of a chat request: its messages through the model's
 * template, their contents plain text (no special tokens from a user).
 */
static int chat_prompt(struct server *sv, const cJSON *j, int32_t **ids, size_t *n,
		       struct field_err *fe)
{
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages"), *mj;
	struct chat_msg m[MAX_MESSAGES];
	char *contents[MAX_MESSAGES], *text = NULL;
	size_t spans[2 * MAX_MESSAGES], k = 0, i;
	uint8_t *plain = NULL;
	struct pinfer_err err = { 0 };
	int ret = -EINVAL;

	if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs)) {
		bad_field(fe, "messages", "'messages' must be a non-empty array");
		return -EINVAL;
	}
	if (cJSON_GetArraySize(msgs) >= MAX_MESSAGES) {
		bad_field(fe, "messages", "at most %d messages", MAX_MESSAGES);
		return -EINVAL;
	}
	/* as the template does: its default system prompt unless one is given */
	{
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 0), "role");
		const char *r0 = cJSON_IsString(role) ? role->valuestring : "";

		if (sv->system[0] && sv->tmpl != CHAT_NONE && strcmp(r0, "system") &&
		    strcmp(r0, "developer")) {
			contents[k] = strdup(sv->system);
			if (!contents[k])
				goto out;
			m[k] = (struct chat_msg){ "system", contents[k] };
			k++;
		}
	}
	cJSON_ArrayForEach(mj, msgs) {
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(mj, "role");
		const char *r = cJSON_IsString(role) ? role->valuestring : "";

		if (!strcmp(r, "developer"))
			r = "system";
		if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
			bad_field(fe, "messages", "a message's 'role' must be system, user or assistant");
			goto out;
		}
		contents[k] = content_text(cJSON_GetObjectItemCaseSensitive(mj, "content"), fe);
		if (!contents[k])
			goto out;
		m[k] = (struct chat_msg){ r, contents[k] };
		k++;
	}
	if (sv->tmpl == CHAT_NONE) {	/* no template: the contents, a line each */
		size_t len = 0;
		char *end;

		for (i = 0; i < k; i++)
			len += strlen(m[i].content) + 1;
		end = text = calloc(len + 1, 1);
		for (i = 0; text && i < k; i++)
			end = stpcpy(stpcpy(end, m[i].content), "\n");
		ret = text ? tokenizer_encode(sv->tok, text, strlen(text), false, ids, n, &err) : -ENOMEM;
		if (!ret)
			ret = add_bos(sv->tok, ids, n);
		goto out;
	}
	text = chat_format(sv->tmpl, m, k, 1, spans);
	plain = text ? calloc(strlen(text) + 1, 1) : NULL;
	if (!plain) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < k; i++)
		memset(plain + spans[2 * i], 1, spans[2 * i + 1] - spans[2 * i]);
	ret = tokenizer_encode_masked(sv->tok, text, strlen(text), plain, ids, n, &err);
out:
	if (ret && ret != -EINVAL && ret != -ENOMEM)
		bad_field(fe, "messages", "%s", err.msg);
	for (i = 0; i < k; i++)
		free(contents[i]);
	free(text);
	free(plain);
	return ret;
}

/* The prompt's tokens of a completions request: a string (special tokens
 * parsed, as the raw prompt it is), or an array of one string or of token ids. */
static int raw_prompt(struct server *sv, const cJSON *j, int32_t **ids, size_t *n,
		      struct field_err *fe)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt"), *v;
	struct pinfer_err err = { 0 };
	size_t i = 0;
	int ret;

	if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
	    cJSON_IsString(cJSON_GetArrayItem(p, 0)))
		p = cJSON_GetArrayItem(p, 0);
	if (cJSON_IsString(p)) {
		ret = tokenizer_encode(sv->tok, p->valuestring, strlen(p->valuestring), true, ids, n,
				       &err);
		if (ret) {
			bad_field(fe, "prompt", "%s", err.msg);
			return ret;
		}
		return add_bos(sv->tok, ids, n);
	}
	if (!cJSON_IsArray(p) || !cJSON_GetArraySize(p)) {
		bad_field(fe, "prompt", "'prompt' must be a string, or an array of token ids");
		return -EINVAL;
	}
	*n = (size_t)cJSON_GetArraySize(p);
	*ids = malloc(*n * sizeof(**ids));
	if (!*ids)
		return -ENOMEM;
	cJSON_ArrayForEach(v, p) {
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
		    v->valuedouble >= tokenizer_n_vocab(sv->tok) ||
		    v->valuedouble != (double)(int32_t)v->valuedouble) {
			bad_field(fe, "prompt", "'prompt' token %zu is not a token id below %" PRIu32, i,
				  tokenizer_n_vocab(sv->tok));
			return -EINVAL;
		}
		(*ids)[i++] = (int32_t)v->valuedouble;
	}
	return 0;
}

/* ---- answers ------------------------------------------------------------- */

static const char *finish_name(enum sched_finish f)
{
	return f == SCHED_STOP ? "stop" : "length";	/* cut at shutdown: length */
}

static cJSON *usage_json(struct sched_req *r)
{
	uint32_t p, c, cached;
	cJSON *u = cJSON_CreateObject(), *d;

	sched_usage(r, &p, &c, &cached);
	cJSON_AddNumberToObject(u, "prompt_tokens", p);
	cJSON_AddNumberToObject(u, "completion_tokens", c);
	cJSON_AddNumberToObject(u, "total_tokens", p + c);
	d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
	cJSON_AddNumberToObject(d, "cached_tokens", cached);
	return u;
}

/* The skeleton of a response or chunk: id, object, created, model, choices[]. */
static cJSON *envelope(struct conn *cn, const char *object, cJSON **choice)
{
	cJSON *j = cJSON_CreateObject(), *choices;

	cJSON_AddStringToObject(j, "id", cn->id);
	cJSON_AddStringToObject(j, "object", object);
	cJSON_AddNumberToObject(j, "created", (double)cn->created);
	cJSON_AddStringToObject(j, "model", cn->sv->model_id);
	choices = cJSON_AddArrayToObject(j, "choices");
	if (choice) {
		*choice = cJSON_CreateObject();
		cJSON_AddItemToArray(choices, *choice);
		cJSON_AddNumberToObject(*choice, "index", 0);
	}
	return j;
}

/* Append the event "data: @data\n\n" to the connection's output. */
static void sse_data(struct conn *cn, const char *data)
{
	char *o = realloc(cn->out, cn->out_len + strlen(data) + 9);

	if (o) {
		cn->out = o;
		cn->out_len += (size_t)sprintf(o + cn->out_len, "data: %s\n\n", data);
	}
}

/* Append an event of JSON @j (freed). */
static void sse(struct conn *cn, cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);

	cJSON_Delete(j);
	sse_data(cn, s ? s : "{}");
	free(s);
}

/* A chunk of a stream: @text (or none), @fin (or still running). */
static void stream_chunk(struct conn *cn, const char *text, size_t n, enum sched_finish fin)
{
	bool chat = cn->api == API_CHAT;
	cJSON *choice, *j = envelope(cn, chat ? "chat.completion.chunk" : "text_completion",
				     &choice);
	char *clean = text ? utf8_clean(text, n) : NULL;

	if (chat) {
		cJSON *d = cJSON_AddObjectToObject(choice, "delta");

		if (!cn->sent_first)
			cJSON_AddStringToObject(d, "role", "assistant");
		if (clean || !cn->sent_first)
			cJSON_AddStringToObject(d, "content", clean ? clean : "");
	} else {
		cJSON_AddStringToObject(choice, "text", clean ? clean : "");
	}
	cJSON_AddNullToObject(choice, "logprobs");
	if (fin == SCHED_RUNNING)
		cJSON_AddNullToObject(choice, "finish_reason");
	else
		cJSON_AddStringToObject(choice, "finish_reason", finish_name(fin));
	free(clean);
	cn->sent_first = true;
	sse(cn, j);
}

/* MHD's reader of a stream: SSE chunks as the scheduler produces text. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct conn *cn = cls;
	char text[4096];
	size_t n;

	(void)pos;
	while (cn->out_sent == cn->out_len) {
		enum sched_finish fin;

		if (cn->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		cn->out_len = cn->out_sent = 0;
		if (!cn->sent_first && cn->api == API_CHAT) {
			stream_chunk(cn, NULL, 0, SCHED_RUNNING);
			continue;
		}
		n = sched_read(cn->r, text, sizeof(text), 100, &fin);
		if (fin == SCHED_ERROR) {
			cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");

			cJSON_AddStringToObject(e, "message", sched_error(cn->r));
			cJSON_AddStringToObject(e, "type", "server_error");
			sse(cn, j);
		} else if (n) {
			stream_chunk(cn, text, n, SCHED_RUNNING);
		}
		if (fin != SCHED_RUNNING && fin != SCHED_ERROR) {
			stream_chunk(cn, NULL, 0, fin);
			if (cn->include_usage) {
				cJSON *j = envelope(cn, cn->api == API_CHAT ? "chat.completion.chunk" :
						    "text_completion", NULL);

				cJSON_AddItemToObject(j, "usage", usage_json(cn->r));
				sse(cn, j);
			}
		}
		if (fin != SCHED_RUNNING) {
			sse_data(cn, "[DONE]");
			cn->done = true;
		}
		if (cn->out_len == 0 && client_gone(cn->c))
			return MHD_CONTENT_READER_END_WITH_ERROR;	/* frees the slot */
	}
	n = cn->out_len - cn->out_sent < max ? cn->out_len - cn->out_sent : max;
	memcpy(buf, cn->out + cn->out_sent, n);
	cn->out_sent += n;
	return (ssize_t)n;
}

/* Wait for the whole answer; NULL when the client left first. */
static char *collect(struct conn *cn, enum sched_finish *fin)
{
	size_t len = 0, cap = 4096;
	char *text = malloc(cap), *t;

	*fin = SCHED_RUNNING;
	while (text && *fin == SCHED_RUNNING) {
		if (cap - len < 1024) {
			t = realloc(text, cap *= 2);
			if (!t)
				break;
			text = t;
		}
		len += sched_read(cn->r, text + len, cap - len - 1, 200, fin);
		if (*fin == SCHED_RUNNING && client_gone(cn->c)) {
			free(text);
			return NULL;
		}
	}
	if (text && *fin == SCHED_RUNNING) {	/* out of memory */
		free(text);
		return NULL;
	}
	t = text ? utf8_clean(text, len) : NULL;
	free(text);
	return t;
}

static enum MHD_Result generate(struct conn *cn, const cJSON *j, enum api api)
{
	struct server *sv = cn->sv;
	struct field_err fe = { 0 };
	struct sched_params p;
	bool stream = false, usage = false;
	int32_t *ids = NULL;
	size_t n = 0;
	int ret;

	cn->api = api;
	if (!get_params(j, &p, &stream, &usage, &fe))
		return fail(cn, 400, fe.param, NULL, "%s", fe.msg);
	ret = api == API_CHAT ? chat_prompt(sv, j, &ids, &n, &fe) : raw_prompt(sv, j, &ids, &n, &fe);
	if (ret || !n) {
		free(ids);
		if (ret == -ENOMEM)
			return fail(cn, 500, NULL, NULL, "out of memory");
		return fail(cn, 400, fe.param ? fe.param : "prompt", NULL, "%s",
			    fe.param ? fe.msg : "the prompt is empty");
	}
	ret = sched_submit(sv->sched, ids, n, &p, &cn->r);
	free(ids);
	if (ret == -E2BIG)
		return fail(cn, 400, "messages", "context_length_exceeded",
			    "the prompt is %zu tokens; this server's context is %lld (--ctx), and at least one token must be generated",
			    n, sv->o.ctx);
	if (ret == -EAGAIN)
		return fail(cn, 503, NULL, NULL, "the server is busy: %lld requests wait already (--queue); retry later",
			    sv->o.queue);
	if (ret == -ESHUTDOWN)
		return fail(cn, 503, NULL, NULL, "the server is shutting down");
	if (ret)
		return fail(cn, 500, NULL, NULL, "out of memory");
	snprintf(cn->id, sizeof(cn->id), "%s-%" PRIuFAST64, api == API_CHAT ? "chatcmpl" : "cmpl",
		 ++sv->ids);
	cn->created = time(NULL);
	cn->include_usage = usage;
	if (stream) {
		struct MHD_Response *rs = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
									     stream_reader, cn, NULL);
		enum MHD_Result r;

		if (!rs)
			return MHD_NO;
		MHD_add_response_header(rs, "Content-Type", "text/event-stream");
		MHD_add_response_header(rs, "Cache-Control", "no-cache");
		r = MHD_queue_response(cn->c, 200, rs);
		MHD_destroy_response(rs);
		count_status(sv, 200);
		return r;
	} else {
		enum sched_finish fin;
		char *text = collect(cn, &fin);
		cJSON *choice, *out;

		if (!text)
			return MHD_NO;	/* gone: close; the slot is freed with the connection */
		if (fin == SCHED_ERROR) {
			free(text);
			return fail(cn, 500, NULL, NULL, "%s", sched_error(cn->r));
		}
		out = envelope(cn, api == API_CHAT ? "chat.completion" : "text_completion", &choice);
		if (api == API_CHAT) {
			cJSON *msg = cJSON_AddObjectToObject(choice, "message");

			cJSON_AddStringToObject(msg, "role", "assistant");
			cJSON_AddStringToObject(msg, "content", text);
		} else {
			cJSON_AddStringToObject(choice, "text", text);
		}
		cJSON_AddNullToObject(choice, "logprobs");
		cJSON_AddStringToObject(choice, "finish_reason", finish_name(fin));
		cJSON_AddItemToObject(out, "usage", usage_json(cn->r));
		free(text);
		return respond_json(cn, 200, out);
	}
}

/* ---- the other endpoints ------------------------------------------------ */

static enum MHD_Result models(struct conn *cn)
{
	cJSON *j = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(j, "data");
	cJSON *m = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "object", "list");
	cJSON_AddStringToObject(m, "id", cn->sv->model_id);
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddNumberToObject(m, "created", (double)cn->sv->started);
	cJSON_AddStringToObject(m, "owned_by", "pinfer");
	cJSON_AddItemToArray(data, m);
	return respond_json(cn, 200, j);
}

/* Append a printf to a growing buffer. */
__attribute__((format(printf, 2, 3)))
static void put(char **b, const char *fmt, ...)
{
	size_t len = *b ? strlen(*b) : 0;
	va_list ap;
	char *n;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	n = realloc(*b, len + (size_t)k + 1);
	if (!n)
		return;
	va_start(ap, fmt);
	vsnprintf(n + len, (size_t)k + 1, fmt, ap);
	va_end(ap);
	*b = n;
}

#define METRIC(b, name, type, help) put(b, "# HELP pinfer_" name " " help "\n# TYPE pinfer_" name " " type "\n")

static enum MHD_Result metrics(struct conn *cn)
{
	struct server *sv = cn->sv;
	struct pinfer_region_props w;
	struct sched_stats st;
	char *b = calloc(1, 1);
	size_t i;

	sched_stats(sv->sched, &st);
	pinfer_region_props(sv->m->region, &w);
	METRIC(&b, "http_responses_total", "counter", "HTTP responses by status code.");
	for (i = 0; i < N_STATUS; i++)
		put(&b, "pinfer_http_responses_total{code=\"%d\"} %" PRIuFAST64 "\n", statuses[i],
		    (uint_fast64_t)sv->status[i]);
	put(&b, "pinfer_http_responses_total{code=\"other\"} %" PRIuFAST64 "\n",
	    (uint_fast64_t)sv->status[N_STATUS]);
	METRIC(&b, "requests_total", "counter", "Generation requests finished (any way).");
	put(&b, "pinfer_requests_total %" PRIu64 "\n", st.requests);
	METRIC(&b, "client_disconnects_total", "counter", "Requests whose client left before the end.");
	put(&b, "pinfer_client_disconnects_total %" PRIuFAST64 "\n", (uint_fast64_t)sv->disconnects);
	METRIC(&b, "prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
	put(&b, "pinfer_prompt_tokens_total %" PRIu64 "\n", st.prompt_tokens);
	METRIC(&b, "prompt_tokens_cached_total", "counter", "Prompt tokens found in the prefix cache (not computed).");
	put(&b, "pinfer_prompt_tokens_cached_total %" PRIu64 "\n", st.cached_tokens);
	METRIC(&b, "prefix_cache_hits_total", "counter", "KV blocks found in the prefix cache.");
	put(&b, "pinfer_prefix_cache_hits_total %" PRIu64 "\n", st.block_hits);
	METRIC(&b, "generated_tokens_total", "counter", "Tokens generated.");
	put(&b, "pinfer_generated_tokens_total %" PRIu64 "\n", st.gen_tokens);
	METRIC(&b, "generated_tokens_per_second", "gauge", "Tokens generated per second, over the last seconds.");
	put(&b, "pinfer_generated_tokens_per_second %.2f\n", st.gen_rate);
	METRIC(&b, "steps_total", "counter", "Batched forward passes.");
	put(&b, "pinfer_steps_total %" PRIu64 "\n", st.steps);
	METRIC(&b, "queue_length", "gauge", "Requests waiting for a slot.");
	put(&b, "pinfer_queue_length %" PRIu32 "\n", st.queued);
	METRIC(&b, "slots_active", "gauge", "Requests decoding.");
	put(&b, "pinfer_slots_active %" PRIu32 "\n", st.active);
	METRIC(&b, "slots_total", "gauge", "Requests that can decode together (--parallel).");
	put(&b, "pinfer_slots_total %" PRIu32 "\n", st.parallel);
	METRIC(&b, "kv_blocks", "gauge", "KV cache blocks: used by requests, free (cached: free, holding a findable prefix).");
	put(&b, "pinfer_kv_blocks{state=\"used\"} %" PRIu32 "\n", st.blocks_used);
	put(&b, "pinfer_kv_blocks{state=\"free\"} %" PRIu32 "\n", st.blocks - st.blocks_used);
	put(&b, "pinfer_kv_blocks{state=\"cached\"} %" PRIu32 "\n", st.blocks_cached);
	METRIC(&b, "kv_block_tokens", "gauge", "Positions per KV block.");
	put(&b, "pinfer_kv_block_tokens %d\n", LLM_KV_BLOCK);
	METRIC(&b, "memory_bytes", "gauge", "Bytes of each region, by provider; pinned: locked in memory.");
	put(&b, "pinfer_memory_bytes{region=\"weights\",provider=\"%s\",pinned=\"%d\"} %zu\n",
	    pinfer_provider_name(w.provider), w.locked, w.size);
	put(&b, "pinfer_memory_bytes{region=\"kv\",provider=\"%s\",pinned=\"%d\"} %zu\n",
	    pinfer_provider_name(st.kv_region.provider), st.kv_region.locked, st.kv_region.size);
	METRIC(&b, "memory_pinned_bytes", "gauge", "Bytes locked in memory (weights and KV cache).");
	put(&b, "pinfer_memory_pinned_bytes %zu\n",
	    (w.locked ? w.size : 0) + (st.kv_region.locked ? st.kv_region.size : 0));
	METRIC(&b, "stream_bytes_total", "counter", "Bytes of weights read from the drive while serving (streamed layers).");
	put(&b, "pinfer_stream_bytes_total %" PRIu64 "\n", st.stream.bytes);
	if (sv->m->experts) {
		METRIC(&b, "experts_total", "counter", "Experts the layers needed: in the cache (cached), there because read ahead (read_ahead), read while the layer waited (missed).");
		put(&b, "pinfer_experts_total{found=\"cached\"} %" PRIu64 "\n", st.experts.hits);
		put(&b, "pinfer_experts_total{found=\"read_ahead\"} %" PRIu64 "\n", st.experts.prefetch_used);
		put(&b, "pinfer_experts_total{found=\"missed\"} %" PRIu64 "\n", st.experts.misses);
		METRIC(&b, "experts_read_ahead_total", "counter", "Experts read ahead for the next layer (used or not).");
		put(&b, "pinfer_experts_read_ahead_total %" PRIu64 "\n", st.experts.prefetched);
		METRIC(&b, "expert_bytes_total", "counter", "Bytes of experts read from the drive.");
		put(&b, "pinfer_expert_bytes_total %" PRIu64 "\n", st.experts.bytes);
		METRIC(&b, "expert_read_seconds_total", "counter", "Seconds with expert reads in flight.");
		put(&b, "pinfer_expert_read_seconds_total %.3f\n", st.experts.read_s);
	}
	return respond(cn, 200, "text/plain; version=0.0.4", b);
}

/* Authorization: Bearer <key>, compared in constant time. */
static bool authorized(struct server *sv, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	size_t n = strlen(sv->o.api_key), i;
	unsigned char diff = 0;

	if (!n)
		return true;
	if (!h || strncmp(h, "Bearer ", 7) || strlen(h + 7) != n)
		return false;
	for (i = 0; i < n; i++)
		diff |= (unsigned char)(h[7 + i] ^ sv->o.api_key[i]);
	return !diff;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct server *sv = cls;
	struct conn *cn = *con_cls;
	bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
	bool chat = !strcmp(url, "/v1/chat/completions"), compl = !strcmp(url, "/v1/completions");
	cJSON *j;
	enum MHD_Result ret;

	(void)version;
	if (!cn) {	/* the headers: answer what needs no body now */
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");

		cn = calloc(1, sizeof(*cn));
		if (!cn)
			return MHD_NO;
		cn->sv = sv;
		cn->c = c;
		*con_cls = cn;
		if (cl && strtoull(cl, NULL, 10) > MAX_BODY)
			return fail(cn, 413, NULL, NULL, "the body is %s bytes; at most %u are taken", cl,
				    MAX_BODY);
		return MHD_YES;
	}
	if (*upload_size) {
		if (!cn->too_big && cn->len + *upload_size <= MAX_BODY) {
			char *b = realloc(cn->body, cn->len + *upload_size + 1);

			if (!b)
				return MHD_NO;
			memcpy(b + cn->len, upload, *upload_size);
			cn->body = b;
			cn->len += *upload_size;
			b[cn->len] = 0;
		} else {
			cn->too_big = true;	/* read and dropped */
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strcmp(url, "/health")) {
		if (!get)
			return fail(cn, 404, NULL, NULL, "%s %s: no such endpoint", method, url);
		return respond(cn, sv->draining ? 503 : 200, "application/json",
			       strdup(sv->draining ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}"));
	}
	if (!authorized(sv, c))
		return fail(cn, 401, NULL, "invalid_api_key", "a valid API key is needed: 'Authorization: Bearer KEY'");
	if (get && !strcmp(url, "/v1/models"))
		return models(cn);
	if (get && !strcmp(url, "/metrics"))
		return metrics(cn);
	if (!post || (!chat && !compl))
		return fail(cn, 404, NULL, NULL, "%s %s: no such endpoint (POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics)",
			    method, url);
	if (cn->too_big)
		return fail(cn, 413, NULL, NULL, "the body is over %u bytes", MAX_BODY);
	if (sv->draining)
		return fail(cn, 503, NULL, NULL, "the server is shutting down");
	j = cn->body ? cJSON_ParseWithLength(cn->body, cn->len) : NULL;
	if (!j || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return fail(cn, 400, NULL, NULL, "the body is not a JSON object%s",
			    cn->body ? "" : " (it is empty)");
	}
	ret = generate(cn, j, chat ? API_CHAT : API_COMPLETIONS);
	cJSON_Delete(j);
	return ret;
}

/* ---- the command ------------------------------------------------------- */

static int parse(int argc, char **argv, struct serve_opts *o)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "ctx", required_argument, NULL, 'c' },
		{ "host", required_argument, NULL, 1 },
		{ "port", required_argument, NULL, 2 },
		{ "parallel", required_argument, NULL, 3 },
		{ "queue", required_argument, NULL, 4 },
		{ "chunk", required_argument, NULL, 5 },
		{ "api-key", required_argument, NULL, 6 },
		{ "api-key-file", required_argument, NULL, 7 },
		{ "node", required_argument, NULL, 8 },
		{ "provider", required_argument, NULL, 9 },
		{ "mem", required_argument, NULL, 10 },
		{ "grace", required_argument, NULL, 11 },
		{ "gpu-layers", required_argument, NULL, 12 },
		{ "gpu-mem", required_argument, NULL, 13 },
		{ "stream-layers", required_argument, NULL, 14 },
		{ "plan", no_argument, NULL, 15 },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	long long v;
	int c, bad = 0;

	cli_alias_ngl(argc, argv, "m:t:c:h", opts);
	while ((c = getopt_long(argc, argv, "m:t:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 't':
			bad = cli_int("-t", optarg, 0, 1024, &v);
			o->threads = (int)v;
			break;
		case 'c': bad = cli_int("--ctx", optarg, 16, UINT32_MAX, &o->ctx); break;
		case 1: o->host = optarg; break;
		case 2: bad = cli_int("--port", optarg, 0, 65535, &o->port); break;
		case 3: bad = cli_int("--parallel", optarg, 1, 256, &o->parallel); break;
		case 4: bad = cli_int("--queue", optarg, 0, 100000, &o->queue); break;
		case 5: bad = cli_int("--chunk", optarg, 1, 4096, &o->chunk); break;
		case 6:
			if (strlen(optarg) >= sizeof(o->api_key) || !optarg[0]) {
				cli_error("--api-key: 1 to %zu characters", sizeof(o->api_key) - 1);
				return EXIT_USAGE;
			}
			strcpy(o->api_key, optarg);
			break;
		case 7: o->api_key_file = optarg; break;
		case 8:
			bad = cli_int("--node", optarg, 0, 4095, &v);
			o->node = (int)v;
			break;
		case 9:
			o->provider = pinfer_provider_parse(optarg);
			if (o->provider == PINFER_PROVIDER_COUNT) {
				cli_error("--provider %s: not one of kmod, hugetlb, thp, plain", optarg);
				return EXIT_USAGE;
			}
			break;
		case 10: bad = cli_parse_mem(optarg, &o->mem); break;
		case 11: bad = cli_int("--grace", optarg, 0, 3600, &o->grace); break;
		case 12: bad = cli_int("--gpu-layers", optarg, 0, 100000, &o->gpu_layers); break;
		case 13: bad = cli_parse_bytes("--gpu-mem", optarg, &o->gpu_mem); break;
		case 14: bad = cli_int("--stream-layers", optarg, 0, 1024, &o->stream_layers); break;
		case 15: o->plan = true; break;
		case 'h':
			fputs(serve_help, stdout);
			return -1;
		default:
			fputs(serve_help, stderr);
			return EXIT_USAGE;
		}
		if (bad)
			return EXIT_USAGE;
	}
	if (optind != argc) {
		cli_error("unexpected argument '%s' (see --help)", argv[optind]);
		return EXIT_USAGE;
	}
	if (o->api_key_file) {
		FILE *f = fopen(o->api_key_file, "r");

		if (!f || !fgets(o->api_key, sizeof(o->api_key), f)) {
			cli_error("--api-key-file %s: %s", o->api_key_file,
				  f ? "empty" : strerror(errno));
			if (f)
				fclose(f);
			return EXIT_USAGE;
		}
		fclose(f);
		o->api_key[strcspn(o->api_key, "\r\n")] = 0;
		if (!o->api_key[0]) {
			cli_error("--api-key-file %s: the first line is empty", o->api_key_file);
			return EXIT_USAGE;
		}
	}
	if (o->node == NODE_AUTO)
		o->node = pinfer_node_default();
	o->threads = cli_threads(o->threads, o->node);
	return 0;
}

/* What the options ask of the model's placement: for --parallel requests of --ctx. */
static struct llm_load_opts load_opts(const struct serve_opts *o)
{
	return (struct llm_load_opts){
		.provider = o->provider, .node = o->node, .mem = o->mem,
		.threads = (uint32_t)o->threads, .progress_label = "loading",
		.n_ctx = (uint32_t)o->ctx, .stream_layers = (uint32_t)o->stream_layers,
		.gpu_layers = (uint32_t)o->gpu_layers, .gpu_mem = o->gpu_mem,
		.gpu_seqs = (uint32_t)o->parallel,
	};
}

static int load(struct server *sv)
{
	struct serve_opts *o = &sv->o;
	struct llm_load_opts lo = load_opts(o);
	struct pinfer_region_props rp;
	struct pinfer_err err = { 0 };
	struct sched_opts so;
	const char *base;
	int ret;

	if (isatty(2))
		lo.progress = cli_progress;
	ret = pinfer_pool_create(&sv->pool, o->threads, o->node, &err);
	lo.pool = sv->pool;
	if (!ret)
		ret = llm_model_load(&sv->m, o->model, &lo, &err);
	if (!ret && (uint64_t)o->ctx > sv->m->cfg.ctx_train) {
		fprintf(stderr, "pinfer: --ctx %lld is beyond the model's %" PRIu32 ": using that\n",
			o->ctx, sv->m->cfg.ctx_train);
		o->ctx = sv->m->cfg.ctx_train;
	}
	so = (struct sched_opts){
		.parallel = (uint32_t)o->parallel, .n_ctx = (uint32_t)o->ctx,
		.queue = (uint32_t)o->queue, .chunk = (uint32_t)o->chunk,
		.provider = o->provider, .node = o->node,
	};
	if (!ret)
		ret = tokenizer_load(&sv->tok, sv->m->gguf, &err);
	if (!ret)
		ret = llm_model_check_tokenizer(sv->m, sv->tok, &err);
	if (!ret)
		ret = sched_create(&sv->sched, sv->m, sv->tok, sv->pool, &so, &err);
	if (ret) {
		cli_error("%s", err.msg);
		return EXIT_FAIL;
	}
	sv->tmpl = chat_detect(sv->m->gguf, sv->system, sizeof(sv->system));
	base = strrchr(o->model, '/');
	snprintf(sv->model_id, sizeof(sv->model_id), "%s", base ? base + 1 : o->model);
	pinfer_region_props(sv->m->region, &rp);
	fprintf(stderr, "pinfer: %s: %" PRIu32 " layers, %zu MiB; memory: %s provider, %zu KiB pages, %s%s%s\n",
		o->model, sv->m->cfg.n_layer, rp.size >> 20, pinfer_provider_name(rp.provider),
		rp.page_size >> 10, rp.locked ? "locked" : "not locked", rp.note[0] ? "; " : "",
		rp.note);
	fprintf(stderr, "pinfer: %lld slots of %lld tokens (KV cache %.1f MiB); %d threads; chat template %s\n",
		o->parallel, o->ctx,
		llm_kv_cache_bytes(&sv->m->cfg, llm_kv_layers(sv->m), (uint32_t)o->ctx,
				   (uint32_t)o->parallel) / 1048576.0,
		pinfer_pool_threads(sv->pool), chat_template_name(sv->tmpl));
	cli_print_gpu(sv->m);
	return 0;
}

static void unload(struct server *sv)
{
	sched_free(sv->sched);
	tokenizer_free(sv->tok);
	llm_model_free(sv->m);
	pinfer_pool_free(sv->pool);
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	fputs("pinfer: http: ", stderr);
	vfprintf(stderr, fmt, ap);
}

int cmd_serve(int argc, char **argv)
{
	static struct server sv;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *di;
	sigset_t sigs;
	char port[16];
	double t0;
	int sig, ret;

	sv.o = (struct serve_opts){
		.model = DEFAULT_MODEL, .host = "127.0.0.1", .port = 8080, .parallel = 4,
		.ctx = 2048, .queue = 64, .chunk = 16, .grace = 10, .node = NODE_AUTO,
		.provider = PINFER_PROVIDER_AUTO,
	};
	ret = parse(argc, argv, &sv.o);
	if (ret)
		return ret < 0 ? EXIT_OK : ret;
	if (sv.o.plan) {
		struct llm_load_opts lo = load_opts(&sv.o);

		return cli_print_plan(sv.o.model, &lo, 0);
	}
	/* every thread from here on inherits these blocked: main waits for them */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	snprintf(port, sizeof(port), "%lld", sv.o.port);
	if (getaddrinfo(sv.o.host, port, &hints, &ai) || !ai) {
		cli_error("--host %s: not an address to listen on", sv.o.host);
		return EXIT_USAGE;
	}
	ret = load(&sv);
	if (ret) {
		freeaddrinfo(ai);
		return ret;
	}
	sv.started = time(NULL);
	srand((unsigned int)time(NULL) ^ (unsigned int)getpid());
	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_ITC | MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
			     0, NULL, NULL, handle, &sv,
			     MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
			     MHD_OPTION_SOCK_ADDR, ai->ai_addr,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
			     MHD_OPTION_NOTIFY_COMPLETED, free_conn, NULL,
			     MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!d) {
		cli_error("cannot listen on %s port %lld: %s", sv.o.host, sv.o.port, strerror(errno));
		unload(&sv);
		return EXIT_FAIL;
	}
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	fprintf(stderr, "pinfer: listening on http://%s:%u (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health, /metrics)%s\n",
		sv.o.host, di ? di->port : (unsigned int)sv.o.port,
		sv.o.api_key[0] ? "; API key required" : "");
	fflush(stderr);

	sigwait(&sigs, &sig);
	fprintf(stderr, "pinfer: %s: no new requests; %u running get %lld s to finish\n",
		strsignal(sig), sched_busy(sv.sched), sv.o.grace);
	sv.draining = true;
	sched_drain(sv.sched);
	MHD_quiesce_daemon(d);	/* the listening socket closes */
	t0 = mono_now();
	while (sched_busy(sv.sched) && mono_now() - t0 < (double)sv.o.grace)
		usleep(50000);
	if (sched_busy(sv.sched))
		fprintf(stderr, "pinfer: cutting %u requests\n", sched_busy(sv.sched));
	sched_cut(sv.sched);	/* what runs ends, its streams closed cleanly */
	t0 = mono_now();	/* their last bytes sent, unless a client stopped reading */
	while (sched_busy(sv.sched) && mono_now() - t0 < 5)
		usleep(10000);
	MHD_stop_daemon(d);	/* joins the connections' threads */
	unload(&sv);
	fprintf(stderr, "pinfer: stopped\n");
	return EXIT_OK;
}
