/* metrics: exact match, token F1, BLEU, ROUGE-L and chrF over UTF-8 strings, written to
 * give the same numbers as SQuAD's evaluation script, sacrebleu 2.4 and rouge-score 0.1
 * (tests/reference/ holds the parity fixture). Text is decoded to code points; n-grams
 * are counted by sorting, so no hash collisions can change a count. */
#include "scoring/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

/* ---- code point buffers ---------------------------------------------------------- */

struct cps {
	uint32_t *v;
	size_t n, cap;
};

static int cps_push(struct cps *c, uint32_t x)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64, bytes;
		if (!size_mul(cap, sizeof *c->v, &bytes))
			return FT_ENOMEM;
		uint32_t *v = realloc(c->v, bytes);
		if (!v)
			return FT_ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = x;
	return 0;
}

static void cps_free(struct cps *c)
{
	free(c->v);
	c->v = NULL;
	c->n = c->cap = 0;
}

/* Invalid bytes decode to 0xDC00+byte (Python's surrogateescape), one character each. */
static int utf8_decode(struct cps *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		uint32_t c = p[0];
		int len = 1;
		if (c >= 0xC2 && c <= 0xDF && (p[1] & 0xC0) == 0x80) {
			c = ((c & 0x1F) << 6) | (p[1] & 0x3F);
			len = 2;
		} else if (c >= 0xE0 && c <= 0xEF && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
			uint32_t v = ((c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
			if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) {
				c = v;
				len = 3;
			}
		} else if (c >= 0xF0 && c <= 0xF4 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 &&
			   (p[3] & 0xC0) == 0x80) {
			uint32_t v = ((c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
				     ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
			if (v >= 0x10000 && v <= 0x10FFFF) {
				c = v;
				len = 4;
			}
		}
		if (len == 1 && c >= 0x80)
			c = 0xDC00 + c;
		if (cps_push(out, c))
			return FT_ENOMEM;
		p += len;
	}
	return 0;
}

static int utf8_encode(struct strbuf *sb, uint32_t c)
{
	char b[4];
	size_t n;
	if (c >= 0xDC80 && c <= 0xDCFF) {
		b[0] = (char)(c - 0xDC00);
		n = 1;
	} else if (c < 0x80) {
		b[0] = (char)c;
		n = 1;
	} else if (c < 0x800) {
		b[0] = (char)(0xC0 | (c >> 6));
		b[1] = (char)(0x80 | (c & 0x3F));
		n = 2;
	} else if (c < 0x10000) {
		b[0] = (char)(0xE0 | (c >> 12));
		b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
		b[2] = (char)(0x80 | (c & 0x3F));
		n = 3;
	} else {
		b[0] = (char)(0xF0 | (c >> 18));
		b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((c >> 6) & 0x3F));
		b[3] = (char)(0x80 | (c & 0x3F));
		n = 4;
	}
	return strbuf_append(sb, b, n);
}

/* Python's str.isspace() set, which str.split() and str.rstrip() use. */
static bool py_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_digit(uint32_t c)
{
	return c >= '0' && c <= '9';
}

/* Python string.punctuation. */
static bool ascii_punct(uint32_t c)
{
	return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
	       (c >= 0x7B && c <= 0x7E);
}

/* Lowercasing for the SQuAD normalisation: ASCII, Latin-1, Latin Extended-A, basic Greek
 * and Cyrillic, and the Kelvin sign (the ranges documented in docs/data.md). U+0130
 * becomes "i" + U+0307 as in Python. */
static int lower_push(struct cps *out, uint32_t c)
{
	/* One branch per documented Unicode range; equal offsets in different ranges are
	 * not clones to merge. */
	// NOLINTBEGIN(bugprone-branch-clone)
	if (c >= 'A' && c <= 'Z')
		c += 32;
	else if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		c += 32;
	else if (c == 0x130) {
		if (cps_push(out, 'i'))
			return FT_ENOMEM;
		c = 0x307;
	} else if (c >= 0x100 && c <= 0x17F) {
		if ((c <= 0x12F || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) &&
		    c % 2 == 0)
			c += 1;
		else if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && c % 2 == 1)
			c += 1;
		else if (c == 0x178)
			c = 0xFF;
	} else if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		c += 32;
	else if (c == 0x386)
		c = 0x3AC;
	else if (c >= 0x388 && c <= 0x38A)
		c += 37;
	else if (c == 0x38C)
		c = 0x3CC;
	else if (c == 0x38E || c == 0x38F)
		c += 63;
	else if (c >= 0x410 && c <= 0x42F)
		c += 32;
	else if (c >= 0x400 && c <= 0x40F)
		c += 80;
	else if (c == 0x212A)
		c = 'k';
	// NOLINTEND(bugprone-branch-clone)
	return cps_push(out, c);
}

/* Approximates Python's Unicode \w for non-ASCII characters: letters, digits and most
 * scripts are word characters; whitespace, combining marks, symbols, general and CJK
 * punctuation and emoji are not. */
static bool word_char(uint32_t c)
{
	if (c < 0x80)
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		       c == '_';
	if (py_space(c))
		return false;
	if (c >= 0x80 && c <= 0xBF)
		return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA ||
		       c == 0xBC || c == 0xBD || c == 0xBE;
	if (c == 0xD7 || c == 0xF7 || (c >= 0x300 && c <= 0x36F))
		return false;
	if (c >= 0x2000 && c <= 0x2BFF)
		return false;
	if (c >= 0x3000 && c <= 0x303F)
		return c == 0x3005 || c == 0x3006 || c == 0x3007 || (c >= 0x3021 && c <= 0x3029);
	if ((c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xFF01 && c <= 0xFF0F) ||
	    (c >= 0x1F000 && c <= 0x1FAFF) || (c >= 0xDC80 && c <= 0xDCFF))
		return false;
	return true;
}

/* ---- token lists: (offset, length) spans over one code point buffer --------------- */

struct span {
	size_t off, len;
};

struct toks {
	struct cps text; /* all token characters */
	struct span *s;
	size_t n, cap;
};

static int toks_push(struct toks *t, size_t off, size_t len)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32, bytes;
		if (!size_mul(cap, sizeof *t->s, &bytes))
			return FT_ENOMEM;
		struct span *s = realloc(t->s, bytes);
		if (!s)
			return FT_ENOMEM;
		t->s = s;
		t->cap = cap;
	}
	t->s[t->n].off = off;
	t->s[t->n].len = len;
	t->n++;
	return 0;
}

static void toks_free(struct toks *t)
{
	cps_free(&t->text);
	free(t->s);
	memset(t, 0, sizeof *t);
}

/* Python str.split(): maximal runs of non-whitespace. */
static int split_ws(struct toks *out, const struct cps *in)
{
	out->n = 0;
	out->text.n = 0;
	size_t i = 0;
	while (i < in->n) {
		while (i < in->n && py_space(in->v[i]))
			i++;
		size_t start = out->text.n;
		while (i < in->n && !py_space(in->v[i])) {
			if (cps_push(&out->text, in->v[i]))
				return FT_ENOMEM;
			i++;
		}
		if (out->text.n > start && toks_push(out, start, out->text.n - start))
			return FT_ENOMEM;
	}
	return 0;
}

/* Assigns each token of a and b an integer id (equal tokens, equal ids). */
struct intern_item {
	const uint32_t *p;
	size_t len;
	uint32_t *slot;
};

static int intern_cmp(const void *x, const void *y)
{
	const struct intern_item *a = x, *b = y;
	size_t n = a->len < b->len ? a->len : b->len;
	for (size_t i = 0; i < n; i++)
		if (a->p[i] != b->p[i])
			return a->p[i] < b->p[i] ? -1 : 1;
	return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static int intern_pair(uint32_t **out_a, uint32_t **out_b, const struct toks *a,
		       const struct toks *b)
{
	size_t n = a->n + b->n;
	uint32_t *ia = calloc(a->n + 1, sizeof *ia), *ib = calloc(b->n + 1, sizeof *ib);
	struct intern_item *items = calloc(n + 1, sizeof *items);
	if (!ia || !ib || !items) {
		free(ia);
		free(ib);
		free(items);
		return FT_ENOMEM;
	}
	for (size_t i = 0; i < a->n; i++)
		items[i] = (struct intern_item){a->text.v + a->s[i].off, a->s[i].len, &ia[i]};
	for (size_t i = 0; i < b->n; i++)
		items[a->n + i] = (struct intern_item){b->text.v + b->s[i].off, b->s[i].len, &ib[i]};
	if (n)
		qsort(items, n, sizeof *items, intern_cmp);
	uint32_t id = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && intern_cmp(&items[i - 1], &items[i]) != 0)
			id++;
		*items[i].slot = id;
	}
	free(items);
	*out_a = ia;
	*out_b = ib;
	return 0;
}

/* ---- n-gram multiset intersection ------------------------------------------------- */

struct ngram_ref {
	const uint32_t *p;
	int side; /* 0 = hypothesis, 1 = reference */
};

static int ngram_cmp(const void *x, const void *y, void *arg)
{
	const struct ngram_ref *a = x, *b = y;
	int n = *(const int *)arg;
	for (int i = 0; i < n; i++)
		if (a->p[i] != b->p[i])
			return a->p[i] < b->p[i] ? -1 : 1;
	return 0;
}

/* Counts of order-n n-grams: *hyp_total, *ref_total and sum over distinct n-grams of
 * min(count in a, count in b). */
static int ngram_match(int64_t *out_match, int64_t *hyp_total, int64_t *ref_total,
		       const uint32_t *a, size_t na, const uint32_t *b, size_t nb, int n)
{
	size_t ka = na >= (size_t)n ? na - (size_t)n + 1 : 0;
	size_t kb = nb >= (size_t)n ? nb - (size_t)n + 1 : 0;
	*hyp_total = (int64_t)ka;
	*ref_total = (int64_t)kb;
	*out_match = 0;
	if (!ka || !kb)
		return 0;
	struct ngram_ref *r = malloc((ka + kb) * sizeof *r);
	if (!r)
		return FT_ENOMEM;
	for (size_t i = 0; i < ka; i++)
		r[i] = (struct ngram_ref){a + i, 0};
	for (size_t i = 0; i < kb; i++)
		r[ka + i] = (struct ngram_ref){b + i, 1};
	qsort_r(r, ka + kb, sizeof *r, ngram_cmp, &n);
	int64_t match = 0;
	size_t i = 0;
	while (i < ka + kb) {
		size_t j = i;
		int64_t ca = 0, cb = 0;
		while (j < ka + kb && ngram_cmp(&r[i], &r[j], &n) == 0) {
			if (r[j].side == 0)
				ca++;
			else
				cb++;
			j++;
		}
		match += ca < cb ? ca : cb;
		i = j;
	}
	free(r);
	*out_match = match;
	return 0;
}

/* ---- SQuAD normalisation, exact match, token F1 ----------------------------------- */

/* lower -> remove string.punctuation -> replace the words a/an/the by a space ->
 * ' '.join(split()). */
static int squad_normalize(struct cps *out, const char *s)
{
	struct cps raw = {0}, low = {0};
	int rc = utf8_decode(&raw, s);
	for (size_t i = 0; !rc && i < raw.n; i++)
		if (!ascii_punct(raw.v[i]))
			rc = lower_push(&low, raw.v[i]);
	/* Lowercasing never creates punctuation, so removing it first is equivalent. */
	struct cps noart = {0};
	size_t i = 0;
	while (!rc && i < low.n) {
		if (word_char(low.v[i]) && (i == 0 || !word_char(low.v[i - 1]))) {
			size_t j = i;
			while (j < low.n && word_char(low.v[j]))
				j++;
			size_t len = j - i;
			const uint32_t *w = low.v + i;
			bool art = (len == 1 && w[0] == 'a') ||
				   (len == 2 && w[0] == 'a' && w[1] == 'n') ||
				   (len == 3 && w[0] == 't' && w[1] == 'h' && w[2] == 'e');
			if (art)
				rc = cps_push(&noart, ' ');
			else
				for (size_t k = i; !rc && k < j; k++)
					rc = cps_push(&noart, low.v[k]);
			i = j;
		} else {
			rc = cps_push(&noart, low.v[i]);
			i++;
		}
	}
	/* ' '.join(split()) */
	out->n = 0;
	bool pending = false;
	for (size_t k = 0; !rc && k < noart.n; k++) {
		if (py_space(noart.v[k])) {
			pending = out->n > 0;
			continue;
		}
		if (pending) {
			rc = cps_push(out, ' ');
			pending = false;
		}
		if (!rc)
			rc = cps_push(out, noart.v[k]);
	}
	cps_free(&raw);
	cps_free(&low);
	cps_free(&noart);
	return rc;
}

static int exact_match(double *out, const char *pred, const char *ref)
{
	struct cps a = {0}, b = {0};
	int rc = squad_normalize(&a, pred);
	if (!rc)
		rc = squad_normalize(&b, ref);
	if (!rc)
		*out = (a.n == b.n && (a.n == 0 || memcmp(a.v, b.v, a.n * sizeof *a.v) == 0)) ? 1.0 : 0.0;
	cps_free(&a);
	cps_free(&b);
	return rc;
}

/* SQuAD v2 F1: both empty -> 1, one empty -> 0. */
static int token_f1(double *out, const char *pred, const char *ref)
{
	struct cps a = {0}, b = {0};
	struct toks ta = {0}, tb = {0};
	uint32_t *ia = NULL, *ib = NULL;
	int rc = squad_normalize(&a, pred);
	if (!rc)
		rc = squad_normalize(&b, ref);
	if (!rc)
		rc = split_ws(&ta, &a);
	if (!rc)
		rc = split_ws(&tb, &b);
	if (rc)
		goto done;
	if (ta.n == 0 || tb.n == 0) {
		*out = (ta.n == 0 && tb.n == 0) ? 1.0 : 0.0;
		goto done;
	}
	rc = intern_pair(&ia, &ib, &ta, &tb);
	if (rc)
		goto done;
	int64_t same, tot_a, tot_b;
	rc = ngram_match(&same, &tot_a, &tot_b, ia, ta.n, ib, tb.n, 1);
	if (rc)
		goto done;
	if (same == 0) {
		*out = 0.0;
	} else {
		double p = (double)same / (double)ta.n, r = (double)same / (double)tb.n;
		*out = 2 * p * r / (p + r);
	}
done:
	free(ia);
	free(ib);
	toks_free(&ta);
	toks_free(&tb);
	cps_free(&a);
	cps_free(&b);
	return rc;
}

/* ---- 13a tokenisation (sacrebleu Tokenizer13a + TokenizerRegexp) ------------------ */

/* Python str.replace(pat, rep) over code points (ASCII patterns). */
static int cps_replace(struct cps *s, const char *pat, const char *rep)
{
	size_t pn = strlen(pat), rn = strlen(rep);
	struct cps out = {0};
	size_t i = 0;
	int rc = 0;
	bool changed = false;
	while (!rc && i < s->n) {
		bool hit = i + pn <= s->n;
		for (size_t k = 0; hit && k < pn; k++)
			hit = s->v[i + k] == (unsigned char)pat[k];
		if (hit) {
			for (size_t k = 0; !rc && k < rn; k++)
				rc = cps_push(&out, (unsigned char)rep[k]);
			i += pn;
			changed = true;
		} else {
			rc = cps_push(&out, s->v[i++]);
		}
	}
	if (rc || !changed) {
		cps_free(&out);
		return rc;
	}
	cps_free(s);
	*s = out;
	return 0;
}

static bool re1_class(uint32_t c)
{
	return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
	       (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
}

static bool dotcomma(uint32_t c)
{
	return c == '.' || c == ',';
}

static int push3(struct cps *o, uint32_t a, uint32_t b, uint32_t c)
{
	if (cps_push(o, a) || cps_push(o, b) || cps_push(o, c))
		return FT_ENOMEM;
	return 0;
}

/* One left-to-right, non-overlapping pass of a two-character regex substitution.
 * rule 2: ([^0-9])([.,]) -> "\1 \2 "; rule 3: ([.,])([^0-9]) -> " \1 \2";
 * rule 4: ([0-9])(-) -> "\1 \2 ". */
static int re_pass(struct cps *s, int rule)
{
	struct cps o = {0};
	size_t i = 0;
	int rc = 0;
	while (!rc && i < s->n) {
		uint32_t a = s->v[i];
		if (i + 1 < s->n) {
			uint32_t b = s->v[i + 1];
			bool hit = rule == 2 ? (!is_digit(a) && dotcomma(b))
				 : rule == 3 ? (dotcomma(a) && !is_digit(b))
					     : (is_digit(a) && b == '-');
			if (hit) {
				if (rule == 3)
					rc = push3(&o, ' ', a, ' ');
				else
					rc = push3(&o, a, ' ', b);
				if (!rc)
					rc = cps_push(&o, rule == 3 ? b : ' ');
				i += 2;
				continue;
			}
		}
		rc = cps_push(&o, a);
		i++;
	}
	if (rc) {
		cps_free(&o);
		return rc;
	}
	cps_free(s);
	*s = o;
	return 0;
}

/* sacrebleu BLEU preprocessing: rstrip(), then 13a; result split into tokens. */
static int tokenize_13a(struct toks *out, const char *text)
{
	struct cps s = {0}, w = {0};
	int rc = utf8_decode(&s, text);
	while (!rc && s.n && py_space(s.v[s.n - 1]))
		s.n--;
	if (!rc)
		rc = cps_replace(&s, "<skipped>", "");
	if (!rc)
		rc = cps_replace(&s, "-\n", "");
	if (!rc)
		rc = cps_replace(&s, "\n", " ");
	bool amp = false;
	for (size_t i = 0; i < s.n; i++)
		amp |= s.v[i] == '&';
	if (amp) {
		if (!rc)
			rc = cps_replace(&s, "&quot;", "\"");
		if (!rc)
			rc = cps_replace(&s, "&amp;", "&");
		if (!rc)
			rc = cps_replace(&s, "&lt;", "<");
		if (!rc)
			rc = cps_replace(&s, "&gt;", ">");
	}
	/* f' {line} ' and rule 1: every character of the class gets spaces around it. */
	for (size_t i = 0; !rc && i < s.n + 2; i++) {
		uint32_t c = (i == 0 || i == s.n + 1) ? ' ' : s.v[i - 1];
		rc = re1_class(c) ? push3(&w, ' ', c, ' ') : cps_push(&w, c);
	}
	for (int rule = 2; !rc && rule <= 4; rule++)
		rc = re_pass(&w, rule);
	if (!rc)
		rc = split_ws(out, &w);
	cps_free(&s);
	cps_free(&w);
	return rc;
}

static int bleu_stats(double *out, const char *hyp, const char *ref)
{
	struct toks th = {0}, tr = {0};
	uint32_t *ih = NULL, *ir = NULL;
	int rc = tokenize_13a(&th, hyp);
	if (!rc)
		rc = tokenize_13a(&tr, ref);
	if (!rc)
		rc = intern_pair(&ih, &ir, &th, &tr);
	if (rc)
		goto done;
	out[0] = (double)th.n;
	out[1] = (double)tr.n;
	for (int n = 1; n <= 4; n++) {
		int64_t m, h, r;
		rc = ngram_match(&m, &h, &r, ih, th.n, ir, tr.n, n);
		if (rc)
			break;
		out[2 + n - 1] = (double)m;
		out[6 + n - 1] = (double)h;
	}
done:
	free(ih);
	free(ir);
	toks_free(&th);
	toks_free(&tr);
	return rc;
}

static double my_log(double x)
{
	return x == 0.0 ? -9999999999.0 : log(x);
}

/* sacrebleu BLEU.compute_bleu with smooth_method='exp', max order 4. */
static double bleu_compute(const double *st, bool effective_order)
{
	double sys_len = st[0], ref_len = st[1];
	const double *correct = st + 2, *total = st + 6;
	double bp = 1.0;
	if (sys_len < ref_len)
		bp = sys_len > 0 ? exp(1.0 - ref_len / sys_len) : 0.0;
	bool any = false;
	for (int i = 0; i < 4; i++)
		any |= correct[i] != 0;
	if (!any)
		return 0.0;
	double prec[4] = {0, 0, 0, 0}, smooth = 1.0;
	int eff = 4;
	for (int n = 1; n <= 4; n++) {
		if (total[n - 1] == 0)
			break;
		if (effective_order)
			eff = n;
		if (correct[n - 1] == 0) {
			smooth *= 2;
			prec[n - 1] = 100.0 / (smooth * total[n - 1]);
		} else {
			prec[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
		}
	}
	double s = 0;
	for (int i = 0; i < eff; i++)
		s += my_log(prec[i]);
	return bp * exp(s / eff);
}

/* ---- chrF (char order 6, word order 0, beta 2, whitespace removed) ---------------- */

static int chrf_stats(double *out, const char *hyp, const char *ref)
{
	struct cps h = {0}, r = {0}, hs = {0}, rs = {0};
	int rc = utf8_decode(&h, hyp);
	if (!rc)
		rc = utf8_decode(&r, ref);
	for (size_t i = 0; !rc && i < h.n; i++)
		if (!py_space(h.v[i]))
			rc = cps_push(&hs, h.v[i]);
	for (size_t i = 0; !rc && i < r.n; i++)
		if (!py_space(r.v[i]))
			rc = cps_push(&rs, r.v[i]);
	for (int n = 1; n <= 6 && !rc; n++) {
		int64_t m, nh, nr;
		rc = ngram_match(&m, &nh, &nr, hs.v, hs.n, rs.v, rs.n, n);
		out[3 * (n - 1) + 0] = nr > 0 ? (double)nh : 0.0;
		out[3 * (n - 1) + 1] = (double)nr;
		out[3 * (n - 1) + 2] = (double)m;
	}
	cps_free(&h);
	cps_free(&r);
	cps_free(&hs);
	cps_free(&rs);
	return rc;
}

/* sacrebleu CHRF._compute_f_score without eps smoothing. */
static double chrf_compute(const double *st)
{
	const double eps = 1e-16, factor = 4.0;
	double avg_prec = 0, avg_rec = 0;
	int eff = 0;
	for (size_t i = 0; i < 6; i++) {
		double nh = st[3 * i], nr = st[3 * i + 1], nm = st[3 * i + 2];
		double prec = nh > 0 ? nm / nh : eps;
		double rec = nr > 0 ? nm / nr : eps;
		if (nh > 0 && nr > 0) {
			avg_prec += prec;
			avg_rec += rec;
			eff++;
		}
	}
	if (eff == 0) {
		avg_prec = avg_rec = 0;
	} else {
		avg_prec /= eff;
		avg_rec /= eff;
	}
	if (avg_prec + avg_rec != 0) {
		double score = (1 + factor) * avg_prec * avg_rec;
		score /= (factor * avg_prec) + avg_rec;
		return 100 * score;
	}
	return 0.0;
}

/* ---- ROUGE-L (rouge-score default tokenizer, no stemmer) -------------------------- */

/* lower(); [^a-z0-9]+ -> ' '; split on whitespace; keep ^[a-z0-9]+$ tokens. Only
 * ASCII letters, U+212A (-> 'k') and U+0130 (-> 'i' + a separator) lowercase into
 * [a-z0-9]; every other non-ASCII character separates tokens. */
static int rouge_tokens(struct toks *out, const char *text)
{
	struct cps s = {0}, w = {0};
	int rc = utf8_decode(&s, text);
	for (size_t i = 0; !rc && i < s.n; i++) {
		uint32_t c = s.v[i];
		if (c >= 'A' && c <= 'Z')
			c += 32;
		else if (c == 0x212A)
			c = 'k';
		else if (c == 0x130) {
			rc = cps_push(&w, 'i');
			c = ' ';
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			c = ' ';
		if (!rc)
			rc = cps_push(&w, c);
	}
	if (!rc)
		rc = split_ws(out, &w);
	cps_free(&s);
	cps_free(&w);
	return rc;
}

static int rouge_l(double *out, const char *pred, const char *ref)
{
	struct toks tp = {0}, tr = {0};
	uint32_t *ip = NULL, *ir = NULL, *row = NULL;
	int rc = rouge_tokens(&tp, pred);
	if (!rc)
		rc = rouge_tokens(&tr, ref);
	if (rc)
		goto done;
	if (tp.n == 0 || tr.n == 0) {
		*out = 0.0;
		goto done;
	}
	rc = intern_pair(&ip, &ir, &tp, &tr);
	if (rc)
		goto done;
	/* LCS with one row: row[j] = LCS(ref[:i], pred[:j]). */
	row = calloc(tp.n + 1, sizeof *row);
	if (!row) {
		rc = FT_ENOMEM;
		goto done;
	}
	for (size_t i = 1; i <= tr.n; i++) {
		uint32_t diag = 0;
		for (size_t j = 1; j <= tp.n; j++) {
			uint32_t up = row[j];
			if (ir[i - 1] == ip[j - 1])
				row[j] = diag + 1;
			else if (row[j - 1] > row[j])
				row[j] = row[j - 1];
			diag = up;
		}
	}
	double lcs = row[tp.n];
	double p = lcs / (double)tp.n, r = lcs / (double)tr.n;
	*out = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
done:
	free(row);
	free(ip);
	free(ir);
	toks_free(&tp);
	toks_free(&tr);
	return rc;
}

/* ---- public API ------------------------------------------------------------------- */

static const char *const names[METRIC_N_KINDS] = {"exact_match", "f1", "bleu", "rouge_l",
						  "chrf"};

const char *metric_name(enum metric_kind k)
{
	return k < METRIC_N_KINDS ? names[k] : "?";
}

int metric_from_name(const char *name)
{
	for (int i = 0; i < METRIC_N_KINDS; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

size_t metric_stats_dim(enum metric_kind k)
{
	return k == METRIC_BLEU ? 10 : k == METRIC_CHRF ? 18 : 1;
}

int metric_pair_stats(double *out, enum metric_kind k, const char *prediction,
		      const char *reference)
{
	switch (k) {
	case METRIC_EXACT_MATCH:
		return exact_match(out, prediction, reference);
	case METRIC_F1:
		return token_f1(out, prediction, reference);
	case METRIC_ROUGE_L:
		return rouge_l(out, prediction, reference);
	case METRIC_BLEU:
		return bleu_stats(out, prediction, reference);
	case METRIC_CHRF:
		return chrf_stats(out, prediction, reference);
	default:
		return FT_EINVAL;
	}
}

double metric_from_stats(enum metric_kind k, const double *sum, size_t n)
{
	if (k == METRIC_BLEU)
		return bleu_compute(sum, false);
	if (k == METRIC_CHRF)
		return chrf_compute(sum);
	return n ? sum[0] / (double)n : NAN;
}

int metric_sentence(double *out, enum metric_kind k, const char *prediction,
		    const char *reference)
{
	double st[METRIC_STATS_MAX];
	int rc = metric_pair_stats(st, k, prediction, reference);
	if (rc)
		return rc;
	*out = k == METRIC_BLEU ? bleu_compute(st, true) : metric_from_stats(k, st, 1);
	return 0;
}

int metric_corpus(double *out, enum metric_kind k, const char *const *predictions,
		  const char *const *references, size_t n)
{
	/* st zeroed only so the analyzer sees every slot below dim defined */
	double sum[METRIC_STATS_MAX] = {0}, st[METRIC_STATS_MAX] = {0};
	size_t dim = metric_stats_dim(k);
	for (size_t i = 0; i < n; i++) {
		int rc = metric_pair_stats(st, k, predictions[i], references[i]);
		if (rc)
			return rc;
		for (size_t j = 0; j < dim; j++)
			sum[j] += st[j];
	}
	*out = metric_from_stats(k, sum, n);
	return 0;
}

static char *join_toks(const struct toks *t)
{
	struct strbuf sb = {0};
	for (size_t i = 0; i < t->n; i++) {
		if (i && strbuf_append(&sb, " ", 1))
			goto fail;
		for (size_t k = 0; k < t->s[i].len; k++)
			if (utf8_encode(&sb, t->text.v[t->s[i].off + k]))
				goto fail;
	}
	return strbuf_detach(&sb);
fail:
	strbuf_free(&sb);
	return NULL;
}

char *metric_tokenize_13a(const char *s)
{
	struct toks t = {0};
	char *r = tokenize_13a(&t, s) ? NULL : join_toks(&t);
	toks_free(&t);
	return r;
}

char *metric_rouge_tokens(const char *s)
{
	struct toks t = {0};
	char *r = rouge_tokens(&t, s) ? NULL : join_toks(&t);
	toks_free(&t);
	return r;
}

char *metric_squad_normalize(const char *s)
{
	struct cps c = {0};
	struct strbuf sb = {0};
	char *r = NULL;
	if (squad_normalize(&c, s) == 0) {
		size_t i = 0;
		for (; i < c.n; i++)
			if (utf8_encode(&sb, c.v[i]))
				break;
		if (i == c.n)
			r = strbuf_detach(&sb);
	}
	strbuf_free(&sb);
	cps_free(&c);
	return r;
}
