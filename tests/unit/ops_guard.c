/* ops_guard: an ops table whose memory the host cannot touch (see ops_guard.h). Pages are
 * opened (PROT_READ|PROT_WRITE) for the duration of each call into the inner table and
 * closed (PROT_NONE) again before it returns. */
#include "tests/unit/ops_guard.h"

#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/native/ops/ops.h"
#include "common/banned.h"

#define MAX_REGIONS 256

struct region {
	char *p;
	size_t bytes; /* asked for */
	size_t mapped; /* whole pages */
};

static const struct ops *in;
static struct ops g;
static struct region reg[MAX_REGIONS];
static int n_reg;
static struct ops_guard_stats st;
static struct sigaction old_segv;

static const struct region *find(const void *p)
{
	const char *c = p;
	for (int i = 0; i < n_reg; i++)
		if (c >= reg[i].p && c < reg[i].p + reg[i].mapped)
			return &reg[i];
	return NULL;
}

static void violation(const char *op, const char *arg, const void *p, size_t bytes,
		      const char *what)
{
	if (st.violations++ == 0)
		snprintf(st.first, sizeof st.first, "%s: %s (%p, %zu bytes) %s", op, arg, p, bytes,
			 what);
	fprintf(stderr, "ops_guard: %s: %s (%p, %zu bytes) %s\n", op, arg, p, bytes, what);
}

/* p must be NULL or [p, p + bytes) inside one allocation of this table. */
static void dev(const void *p, size_t bytes, const char *op, const char *arg)
{
	if (!p)
		return;
	const struct region *r = find(p);
	if (!r)
		violation(op, arg, p, bytes, "is not memory of this ops table (a host pointer?)");
	else if ((const char *)p + bytes > r->p + r->bytes)
		violation(op, arg, p, bytes, "runs past the end of its allocation");
}

#define DEV(p, bytes) dev((p), (bytes), __func__, #p)
#define F4(n) ((size_t)(n) * sizeof(float))

static void protect(int prot)
{
	for (int i = 0; i < n_reg; i++)
		if (mprotect(reg[i].p, reg[i].mapped, prot) != 0) {
			perror("ops_guard: mprotect");
			abort();
		}
}

static void open_all(void)
{
	st.calls++;
	protect(PROT_READ | PROT_WRITE);
}

static void close_all(void)
{
	protect(PROT_NONE);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	const struct region *r = find(si->si_addr);
	if (!r) { /* not ours: whoever was there before */
		sigaction(SIGSEGV, &old_segv, NULL);
		(void)sig;
		(void)uc;
		return;
	}
	char msg[256];
	int n = snprintf(msg, sizeof msg,
			 "ops_guard: the host touched backend memory at %p (offset %zu of an "
			 "allocation of %zu bytes) outside the ops table; backtrace:\n",
			 si->si_addr, (size_t)((char *)si->si_addr - r->p), r->bytes);
	if (n > 0 && write(2, msg, (size_t)n) < 0)
		_exit(99);
	void *bt[32];
	int k = backtrace(bt, 32);
	backtrace_symbols_fd(bt, k, 2);
	signal(SIGSEGV, SIG_DFL); /* the access repeats and ends the process */
}

/* ---- memory ---- */

static void *g_alloc(size_t bytes)
{
	st.calls++;
	if (n_reg == MAX_REGIONS)
		return NULL;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t mapped = ((bytes ? bytes : 1) + page - 1) / page * page;
	void *p = mmap(NULL, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	reg[n_reg++] = (struct region){p, bytes, mapped};
	st.live_allocs++;
	st.live_bytes += bytes;
	return p;
}

static void g_free(void *p)
{
	st.calls++;
	if (!p)
		return;
	for (int i = 0; i < n_reg; i++)
		if (reg[i].p == p) {
			munmap(reg[i].p, reg[i].mapped);
			st.live_allocs--;
			st.live_bytes -= reg[i].bytes;
			reg[i] = reg[--n_reg];
			return;
		}
	violation("free", "p", p, 0, "was not allocated by this ops table");
}

static void g_to_device(void *dst, const void *src, size_t bytes)
{
	DEV(dst, bytes);
	if (find(src))
		violation(__func__, "src", src, bytes, "is backend memory (expected host memory)");
	open_all();
	in->to_device(dst, src, bytes);
	close_all();
}

static void g_to_host(void *dst, const void *src, size_t bytes)
{
	DEV(src, bytes);
	if (find(dst))
		violation(__func__, "dst", dst, bytes, "is backend memory (expected host memory)");
	open_all();
	in->to_host(dst, src, bytes);
	close_all();
}

static void g_zero(float *dst, size_t n)
{
	DEV(dst, F4(n));
	open_all();
	in->zero(dst, n);
	close_all();
}

static size_t strided(size_t stride, int rows, int cols)
{
	return rows > 0 ? F4((size_t)(rows - 1) * stride + (size_t)cols) : 0;
}

static void g_copy_rows(float *dst, size_t ds, const float *src, size_t ss, int rows, int cols)
{
	DEV(dst, strided(ds, rows, cols));
	DEV(src, strided(ss, rows, cols));
	open_all();
	in->copy_rows(dst, ds, src, ss, rows, cols);
	close_all();
}

static void g_matmul(float *c, const float *a, const float *b, int m, int n, int k,
		     unsigned flags, float alpha, float beta)
{
	DEV(c, F4((size_t)m * n));
	DEV(a, F4((size_t)m * k));
	DEV(b, F4((size_t)k * n));
	open_all();
	in->matmul(c, a, b, m, n, k, flags, alpha, beta);
	close_all();
}

/* the bytes of a weight in its storage type */
static size_t wbytes(const struct ops_w *w)
{
	return (size_t)w->n * ggml_row_bytes(w->type, (size_t)w->k);
}

static void g_matmul_w(float *c, const float *a, const struct ops_w *w, int m, unsigned flags,
		       float alpha, float beta)
{
	bool tb = (flags & OPS_TB) != 0;
	DEV(c, F4((size_t)m * (size_t)(tb ? w->n : w->k)));
	DEV(a, F4((size_t)m * (size_t)(tb ? w->k : w->n)));
	dev(w->data, wbytes(w), __func__, "w->data");
	open_all();
	in->matmul_w(c, a, w, m, flags, alpha, beta);
	close_all();
}

/* ---- element-wise ---- */

static void g_add(float *out, const float *a, const float *b, size_t n)
{
	DEV(out, F4(n));
	DEV(a, F4(n));
	DEV(b, F4(n));
	open_all();
	in->add(out, a, b, n);
	close_all();
}

static void g_axpy(float *y, float alpha, const float *x, size_t n)
{
	DEV(y, F4(n));
	DEV(x, F4(n));
	open_all();
	in->axpy(y, alpha, x, n);
	close_all();
}

static void g_scale(float *x, float alpha, size_t n)
{
	DEV(x, F4(n));
	open_all();
	in->scale(x, alpha, n);
	close_all();
}

static void g_bias_add(float *out, const float *bias, int rows, int cols)
{
	DEV(out, F4((size_t)rows * cols));
	DEV(bias, F4(cols));
	open_all();
	in->bias_add(out, bias, rows, cols);
	close_all();
}

static void g_bias_backward(float *dbias, const float *dout, int rows, int cols)
{
	DEV(dbias, F4(cols));
	DEV(dout, F4((size_t)rows * cols));
	open_all();
	in->bias_backward(dbias, dout, rows, cols);
	close_all();
}

static void g_dropout_forward(float *out, uint8_t *mask, const float *x, size_t n, float p,
			      uint64_t seed, uint64_t stream)
{
	DEV(out, F4(n));
	DEV(mask, n);
	DEV(x, F4(n));
	open_all();
	in->dropout_forward(out, mask, x, n, p, seed, stream);
	close_all();
}

static void g_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n,
			       float p)
{
	DEV(din, F4(n));
	DEV(dout, F4(n));
	DEV(mask, n);
	open_all();
	in->dropout_backward(din, dout, mask, n, p);
	close_all();
}

/* ---- norms ---- */

static void g_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n,
			      int c, float eps)
{
	DEV(out, F4((size_t)n * c));
	DEV(rstd, F4(n));
	DEV(x, F4((size_t)n * c));
	DEV(w, F4(c));
	open_all();
	in->rmsnorm_forward(out, rstd, x, w, n, c, eps);
	close_all();
}

static void g_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
			       const float *w, const float *rstd, int n, int c)
{
	DEV(dx, F4((size_t)n * c));
	DEV(dw, F4(c));
	DEV(dout, F4((size_t)n * c));
	DEV(x, F4((size_t)n * c));
	DEV(w, F4(c));
	DEV(rstd, F4(n));
	open_all();
	in->rmsnorm_backward(dx, dw, dout, x, w, rstd, n, c);
	close_all();
}

static void g_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
				const float *w, const float *b, int n, int c, float eps)
{
	DEV(out, F4((size_t)n * c));
	DEV(mean, F4(n));
	DEV(rstd, F4(n));
	DEV(x, F4((size_t)n * c));
	DEV(w, F4(c));
	DEV(b, F4(c));
	open_all();
	in->layernorm_forward(out, mean, rstd, x, w, b, n, c, eps);
	close_all();
}

static void g_layernorm_backward(float *dx, float *dw, float *db, const float *dout,
				 const float *x, const float *w, const float *mean,
				 const float *rstd, int n, int c)
{
	DEV(dx, F4((size_t)n * c));
	DEV(dw, F4(c));
	DEV(db, F4(c));
	DEV(dout, F4((size_t)n * c));
	DEV(x, F4((size_t)n * c));
	DEV(w, F4(c));
	DEV(mean, F4(n));
	DEV(rstd, F4(n));
	open_all();
	in->layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, n, c);
	close_all();
}

/* ---- RoPE, attention ---- */

static void g_rope_forward(float *x, int b, int t, int nh, int hd, const int *pos0,
			   const float *inv_freq, enum ops_rope_style style)
{
	DEV(x, F4((size_t)b * t * nh * hd));
	DEV(pos0, (size_t)b * sizeof(int));
	DEV(inv_freq, F4(hd / 2));
	open_all();
	in->rope_forward(x, b, t, nh, hd, pos0, inv_freq, style);
	close_all();
}

static void g_rope_backward(float *dx, int b, int t, int nh, int hd, const int *pos0,
			    const float *inv_freq, enum ops_rope_style style)
{
	DEV(dx, F4((size_t)b * t * nh * hd));
	DEV(pos0, (size_t)b * sizeof(int));
	DEV(inv_freq, F4(hd / 2));
	open_all();
	in->rope_backward(dx, b, t, nh, hd, pos0, inv_freq, style);
	close_all();
}

static void g_attention_forward(float *out, float *att, const float *q, const float *k,
				const float *v, int b, int tq, int tk, int nh, int nkv, int hd,
				const int *pos0, float scale, int window)
{
	DEV(out, F4((size_t)b * tq * nh * hd));
	DEV(att, F4((size_t)b * nh * tq * tq));
	DEV(q, F4((size_t)b * tq * nh * hd));
	DEV(k, F4((size_t)b * tk * nkv * hd));
	DEV(v, F4((size_t)b * tk * nkv * hd));
	DEV(pos0, (size_t)b * sizeof(int));
	open_all();
	in->attention_forward(out, att, q, k, v, b, tq, tk, nh, nkv, hd, pos0, scale, window);
	close_all();
}

static void g_attention_backward(float *dq, float *dk, float *dv, const float *dout,
				 const float *att, const float *q, const float *k, const float *v,
				 int b, int t, int nh, int nkv, int hd, float scale, int window)
{
	size_t nq = F4((size_t)b * t * nh * hd), nk = F4((size_t)b * t * nkv * hd);
	DEV(dq, nq);
	DEV(dk, nk);
	DEV(dv, nk);
	DEV(dout, nq);
	DEV(att, F4((size_t)b * nh * t * t));
	DEV(q, nq);
	DEV(k, nk);
	DEV(v, nk);
	open_all();
	in->attention_backward(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd, scale, window);
	close_all();
}

static void g_attention_forward_bf16(float *out, float *att, const float *q, const float *k,
				     const float *v, int b, int t, int nh, int nkv, int hd,
				     float scale, int window)
{
	DEV(out, F4((size_t)b * t * nh * hd));
	DEV(att, F4((size_t)b * nh * t * t));
	DEV(q, F4((size_t)b * t * nh * hd));
	DEV(k, F4((size_t)b * t * nkv * hd));
	DEV(v, F4((size_t)b * t * nkv * hd));
	open_all();
	in->attention_forward_bf16(out, att, q, k, v, b, t, nh, nkv, hd, scale, window);
	close_all();
}

static void g_attention_backward_bf16(float *dq, float *dk, float *dv, const float *dout,
				      const float *att, const float *q, const float *k,
				      const float *v, int b, int t, int nh, int nkv, int hd,
				      float scale, int window)
{
	size_t nq = F4((size_t)b * t * nh * hd), nk = F4((size_t)b * t * nkv * hd);
	DEV(dq, nq);
	DEV(dk, nk);
	DEV(dv, nk);
	DEV(dout, nq);
	DEV(att, F4((size_t)b * nh * t * t));
	DEV(q, nq);
	DEV(k, nk);
	DEV(v, nk);
	open_all();
	in->attention_backward_bf16(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd, scale,
				    window);
	close_all();
}

/* ---- activations ---- */

static void g_swiglu_forward(float *out, const float *gate, const float *up, size_t n)
{
	DEV(out, F4(n));
	DEV(gate, F4(n));
	DEV(up, F4(n));
	open_all();
	in->swiglu_forward(out, gate, up, n);
	close_all();
}

static void g_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
			      const float *up, size_t n)
{
	DEV(dgate, F4(n));
	DEV(dup, F4(n));
	DEV(dout, F4(n));
	DEV(gate, F4(n));
	DEV(up, F4(n));
	open_all();
	in->swiglu_backward(dgate, dup, dout, gate, up, n);
	close_all();
}

static void g_geglu_forward(float *out, const float *gate, const float *up, size_t n)
{
	DEV(out, F4(n));
	DEV(gate, F4(n));
	DEV(up, F4(n));
	open_all();
	in->geglu_forward(out, gate, up, n);
	close_all();
}

static void g_geglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
			     const float *up, size_t n)
{
	DEV(dgate, F4(n));
	DEV(dup, F4(n));
	DEV(dout, F4(n));
	DEV(gate, F4(n));
	DEV(up, F4(n));
	open_all();
	in->geglu_backward(dgate, dup, dout, gate, up, n);
	close_all();
}

static void g_gelu_forward(float *out, const float *x, size_t n)
{
	DEV(out, F4(n));
	DEV(x, F4(n));
	open_all();
	in->gelu_forward(out, x, n);
	close_all();
}

static void g_gelu_backward(float *dx, const float *dout, const float *x, size_t n)
{
	DEV(dx, F4(n));
	DEV(dout, F4(n));
	DEV(x, F4(n));
	open_all();
	in->gelu_backward(dx, dout, x, n);
	close_all();
}

/* ---- embedding, cross-entropy ---- */

static void g_embedding_forward(float *out, const int32_t *tokens, const int *pos,
				const struct ops_w *wte, const float *wpe, int n, int t, int c)
{
	DEV(out, F4((size_t)n * c));
	DEV(tokens, (size_t)n * sizeof(int32_t));
	DEV(pos, (size_t)n * sizeof(int));
	dev(wte->data, wbytes(wte), __func__, "wte->data");
	DEV(wpe, F4(c));
	open_all();
	in->embedding_forward(out, tokens, pos, wte, wpe, n, t, c);
	close_all();
}

static void g_embedding_backward(float *dwte, float *dwpe, const float *dout,
				 const int32_t *tokens, const int *pos, int n, int t, int c)
{
	DEV(dwte, F4(c));
	DEV(dwpe, F4(c));
	DEV(dout, F4((size_t)n * c));
	DEV(tokens, (size_t)n * sizeof(int32_t));
	DEV(pos, (size_t)n * sizeof(int));
	open_all();
	in->embedding_backward(dwte, dwpe, dout, tokens, pos, n, t, c);
	close_all();
}

static long g_crossentropy_forward(float *losses, float *lse, int32_t *argmax,
				   const float *logits, const int32_t *targets, int n, int v)
{
	DEV(losses, F4(n));
	DEV(lse, F4(n));
	DEV(argmax, (size_t)n * sizeof(int32_t));
	DEV(logits, F4((size_t)n * v));
	DEV(targets, (size_t)n * sizeof(int32_t));
	open_all();
	long r = in->crossentropy_forward(losses, lse, argmax, logits, targets, n, v);
	close_all();
	return r;
}

static void g_crossentropy_backward(float *logits, const float *lse, const int32_t *targets,
				    int n, int v, float scale, const float *row_scale)
{
	DEV(logits, F4((size_t)n * v));
	DEV(lse, F4(n));
	DEV(targets, (size_t)n * sizeof(int32_t));
	DEV(row_scale, F4(n));
	open_all();
	in->crossentropy_backward(logits, lse, targets, n, v, scale, row_scale);
	close_all();
}

/* ---- optimizer ---- */

static double g_sumsq(const float *x, size_t n)
{
	DEV(x, F4(n));
	open_all();
	double r = in->sumsq(x, n);
	close_all();
	return r;
}

static void g_adamw(float *p, const float *gr, float *m, float *v, size_t n,
		    const struct ops_adamw_hp *h)
{
	DEV(p, F4(n));
	DEV(gr, F4(n));
	DEV(m, F4(n));
	DEV(v, F4(n));
	if (find(h))
		violation(__func__, "h", h, sizeof *h, "is backend memory (expected host memory)");
	open_all();
	in->adamw(p, gr, m, v, n, h);
	close_all();
}

const struct ops *ops_guard(const struct ops *inner)
{
	in = inner;
	g = (struct ops){
		.name = inner->name,
		.sumsq_chunk = inner->sumsq_chunk,
		.alloc = g_alloc,
		.free = g_free,
		.to_device = g_to_device,
		.to_host = g_to_host,
		.zero = g_zero,
		.copy_rows = g_copy_rows,
		.matmul = g_matmul,
		.matmul_w = g_matmul_w,
		.add = g_add,
		.axpy = g_axpy,
		.scale = g_scale,
		.bias_add = g_bias_add,
		.bias_backward = g_bias_backward,
		.dropout_forward = g_dropout_forward,
		.dropout_backward = g_dropout_backward,
		.rmsnorm_forward = g_rmsnorm_forward,
		.rmsnorm_backward = g_rmsnorm_backward,
		.layernorm_forward = g_layernorm_forward,
		.layernorm_backward = g_layernorm_backward,
		.rope_forward = g_rope_forward,
		.rope_backward = g_rope_backward,
		.attention_forward = g_attention_forward,
		.attention_backward = g_attention_backward,
		.attention_forward_bf16 = inner->attention_forward_bf16 ? g_attention_forward_bf16
									: NULL,
		.attention_backward_bf16 = inner->attention_backward_bf16
						   ? g_attention_backward_bf16
						   : NULL,
		.swiglu_forward = g_swiglu_forward,
		.swiglu_backward = g_swiglu_backward,
		.gelu_forward = g_gelu_forward,
		.gelu_backward = g_gelu_backward,
		.geglu_forward = g_geglu_forward,
		.geglu_backward = g_geglu_backward,
		.embedding_forward = g_embedding_forward,
		.embedding_backward = g_embedding_backward,
		.crossentropy_forward = g_crossentropy_forward,
		.crossentropy_backward = g_crossentropy_backward,
		.sumsq = g_sumsq,
		.adamw = g_adamw,
	};
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	return &g;
}

struct ops_guard_stats ops_guard_stats(void)
{
	return st;
}

void ops_guard_reset(void)
{
	long a = st.live_allocs;
	size_t b = st.live_bytes;
	memset(&st, 0, sizeof st);
	st.live_allocs = a;
	st.live_bytes = b;
}
