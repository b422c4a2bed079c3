/* template: the chatml, gemma, alpaca, plain and custom templates as segment lists. The
 * exact texts are documented in docs/data.md; tests/unit/test_data_template.c pins them. */
#include "backends/native/data/template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

static const char ALPACA_NO_INPUT[] =
	"Below is an instruction that describes a task. Write a response that appropriately "
	"completes the request.";
static const char ALPACA_INPUT[] =
	"Below is an instruction that describes a task, paired with an input that provides "
	"further context. Write a response that appropriately completes the request.";

void templated_free(struct templated *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->segs[i].text);
	free(t->segs);
	free(t->prompt);
	free(t->reference);
	memset(t, 0, sizeof *t);
}

/* Appends a segment; adjacent segments with equal flags merge. Empty text is dropped
 * (except EOS). */
static int seg(struct templated *t, const char *text, size_t len, unsigned flags)
{
	if (!(flags & SEG_EOS) && len == 0)
		return 0;
	if (t->n && !(flags & SEG_EOS) && t->segs[t->n - 1].flags == flags && t->n > t->n_prompt) {
		struct segment *last = &t->segs[t->n - 1];
		size_t old = strlen(last->text);
		char *nt = realloc(last->text, old + len + 1);
		if (!nt)
			return FT_ENOMEM;
		memcpy(nt + old, text, len);
		nt[old + len] = 0;
		last->text = nt;
		return 0;
	}
	struct segment *ns = realloc(t->segs, (t->n + 1) * sizeof *ns);
	if (!ns)
		return FT_ENOMEM;
	t->segs = ns;
	ns[t->n].text = ft_strndup(text, len);
	if (!ns[t->n].text)
		return FT_ENOMEM;
	ns[t->n].flags = flags;
	t->n++;
	return 0;
}

static int segs(struct templated *t, const char *text, unsigned flags)
{
	return seg(t, text, strlen(text), flags);
}

/* Marks the end of the generation prompt; later segments never merge into it. */
static void mark_prompt(struct templated *t)
{
	t->n_prompt = t->n;
}

static const char *pick_system(const struct record *r, const struct template_spec *t,
			       bool allow_default)
{
	if (r->system && *r->system)
		return r->system;
	if (t->system && *t->system)
		return t->system;
	return allow_default ? t->default_system : NULL;
}

/* completion/instruction prompt text: instruction + "\n\n" + input when input is set. */
static char *joined_prompt(const struct record *r, enum data_format f)
{
	if (f == DATA_COMPLETION)
		return ft_strdup(r->prompt);
	struct strbuf sb = {0};
	if (strbuf_puts(&sb, r->instruction) ||
	    (r->input && *r->input && (strbuf_puts(&sb, "\n\n") || strbuf_puts(&sb, r->input)))) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

static int chatml_turn(struct templated *t, const char *role, const char *content, bool assistant,
		       bool last_assistant)
{
	int rc;
	char head[48];
	snprintf(head, sizeof head, "<|im_start|>%s\n", role);
	if ((rc = segs(t, head, SEG_MARKUP)))
		return rc;
	if (!assistant) {
		if ((rc = segs(t, content, 0)) || (rc = segs(t, "<|im_end|>\n", SEG_MARKUP)))
			return rc;
		return 0;
	}
	if (last_assistant)
		mark_prompt(t);
	if ((rc = segs(t, content, SEG_TRAIN)) || (rc = segs(t, "<|im_end|>", SEG_TRAIN | SEG_MARKUP)) ||
	    (rc = segs(t, "\n", SEG_MARKUP)))
		return rc;
	return 0;
}

/* Index of the last assistant message (records always have one). */
static size_t last_assistant(const struct record *r)
{
	size_t k = 0;
	for (size_t i = 0; i < r->n_msgs; i++)
		if (r->msgs[i].role == ROLE_ASSISTANT)
			k = i;
	return k;
}

static int apply_chatml(struct templated *t, const struct record *r, enum data_format f,
			const struct template_spec *ts)
{
	int rc = 0;
	if (f == DATA_CHAT) {
		size_t la = last_assistant(r);
		const char *sys = r->msgs[0].role == ROLE_SYSTEM ? NULL : pick_system(r, ts, true);
		if (sys && (rc = chatml_turn(t, "system", sys, false, false)))
			return rc;
		for (size_t i = 0; i < r->n_msgs && !rc; i++) {
			const struct chat_msg *m = &r->msgs[i];
			const char *role = m->role == ROLE_SYSTEM ? "system"
					 : m->role == ROLE_USER ? "user" : "assistant";
			rc = chatml_turn(t, role, m->content, m->role == ROLE_ASSISTANT, i == la);
		}
		return rc;
	}
	const char *sys = pick_system(r, ts, true);
	char *p = joined_prompt(r, f);
	if (!p)
		return FT_ENOMEM;
	if (sys)
		rc = chatml_turn(t, "system", sys, false, false);
	if (!rc)
		rc = chatml_turn(t, "user", p, false, false);
	if (!rc)
		rc = chatml_turn(t, "assistant", r->response, true, true);
	free(p);
	return rc;
}

/* Length of the Unicode white space character at s (Python's str.isspace, which Jinja's
 * trim uses), 0 when s does not start with one. */
static size_t ws_len(const unsigned char *s, size_t n)
{
	if (n >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x20)))
		return 1;
	if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
		return 2;
	if (n < 3)
		return 0;
	uint32_t cp = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
	if ((s[0] & 0xf0) != 0xe0)
		return 0;
	return (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
		cp == 0x202f || cp == 0x205f || cp == 0x3000) ? 3 : 0;
}

/* s without leading and trailing white space (Jinja's trim), as a pointer and length. */
static const char *trimmed(const char *s, size_t *len)
{
	size_t n = strlen(s), k;
	while (n && (k = ws_len((const unsigned char *)s, n)) > 0)
		s += k, n -= k;
	for (;;) {
		size_t cut = 0;
		for (size_t w = 1; w <= 3 && w <= n && !cut; w++)
			if (ws_len((const unsigned char *)s + n - w, w) == w &&
			    (w == 1 || ((unsigned char)s[n - w] & 0xc0) != 0x80))
				cut = w;
		if (!cut)
			break;
		n -= cut;
	}
	*len = n;
	return s;
}

/* Gemma (Gemma 2 and 3 instruction models): "<start_of_turn>user\n{system\n\n}{content}
 * <end_of_turn>\n<start_of_turn>model\n{content}<end_of_turn>\n"; contents are trimmed, a
 * system prompt opens the first user turn, roles must alternate starting with user. */
static int gemma_turn(struct templated *t, bool model, const char *prefix, const char *content,
		      bool last_model)
{
	int rc;
	size_t n;
	const char *c = trimmed(content, &n);
	if ((rc = segs(t, model ? "<start_of_turn>model\n" : "<start_of_turn>user\n", SEG_MARKUP)))
		return rc;
	if (!model) {
		if ((prefix && ((rc = segs(t, prefix, 0)) || (rc = segs(t, "\n\n", 0)))) ||
		    (rc = seg(t, c, n, 0)) || (rc = segs(t, "<end_of_turn>\n", SEG_MARKUP)))
			return rc;
		return 0;
	}
	if (last_model)
		mark_prompt(t);
	if ((rc = seg(t, c, n, SEG_TRAIN)) || (rc = segs(t, "<end_of_turn>", SEG_TRAIN | SEG_MARKUP)) ||
	    (rc = segs(t, "\n", SEG_MARKUP)))
		return rc;
	return 0;
}

static int apply_gemma(struct templated *t, const struct record *r, enum data_format f,
		       const struct template_spec *ts, const char *file, struct diag *d)
{
	int rc = 0;
	if (f != DATA_CHAT) {
		char *p = joined_prompt(r, f);
		if (!p)
			return FT_ENOMEM;
		rc = gemma_turn(t, false, pick_system(r, ts, false), p, false);
		if (!rc)
			rc = gemma_turn(t, true, NULL, r->response, true);
		free(p);
		return rc;
	}
	size_t la = last_assistant(r), k = r->msgs[0].role == ROLE_SYSTEM ? 1 : 0;
	const char *sys = k ? r->msgs[0].content : pick_system(r, ts, false);
	for (size_t i = k; i < r->n_msgs && !rc; i++) {
		const struct chat_msg *m = &r->msgs[i];
		bool want_user = (i - k) % 2 == 0;
		if (m->role == ROLE_SYSTEM || (m->role == ROLE_USER) != want_user) {
			diag_set(d, FT_EINVAL, file, r->line, 0,
				 "the gemma template needs roles that alternate user, assistant, user, ... "
				 "(after an optional first system message); message %zu is %s", i + 1,
				 m->role == ROLE_SYSTEM ? "system" : m->role == ROLE_USER ? "user" : "assistant");
			return FT_EINVAL;
		}
		rc = gemma_turn(t, m->role == ROLE_ASSISTANT, i == k ? sys : NULL, m->content, i == la);
	}
	return rc;
}

static int apply_alpaca(struct templated *t, const struct record *r, const char *instruction,
			const char *input, const char *response, const struct template_spec *ts)
{
	const char *sys = pick_system(r, ts, false);
	bool has_input = input && *input;
	int rc;
	if ((rc = segs(t, sys ? sys : has_input ? ALPACA_INPUT : ALPACA_NO_INPUT, sys ? 0 : SEG_MARKUP)) ||
	    (rc = segs(t, "\n\n### Instruction:\n", SEG_MARKUP)) || (rc = segs(t, instruction, 0)))
		return rc;
	if (has_input && ((rc = segs(t, "\n\n### Input:\n", SEG_MARKUP)) || (rc = segs(t, input, 0))))
		return rc;
	if ((rc = segs(t, "\n\n### Response:\n", SEG_MARKUP)))
		return rc;
	mark_prompt(t);
	if ((rc = segs(t, response, SEG_TRAIN)) || (rc = seg(t, "", 0, SEG_TRAIN | SEG_EOS)))
		return rc;
	return 0;
}

static int apply_plain(struct templated *t, const struct record *r, enum data_format f,
		       const struct template_spec *ts)
{
	int rc;
	const char *sys = pick_system(r, ts, false);
	if (f == DATA_CHAT) {
		size_t la = last_assistant(r);
		if (sys && r->msgs[0].role != ROLE_SYSTEM &&
		    ((rc = segs(t, "System: ", SEG_MARKUP)) || (rc = segs(t, sys, 0)) ||
		     (rc = segs(t, "\n", SEG_MARKUP))))
			return rc;
		for (size_t i = 0; i < r->n_msgs; i++) {
			const struct chat_msg *m = &r->msgs[i];
			if (m->role != ROLE_ASSISTANT) {
				if ((rc = segs(t, m->role == ROLE_SYSTEM ? "System: " : "User: ", SEG_MARKUP)) ||
				    (rc = segs(t, m->content, 0)) || (rc = segs(t, "\n", SEG_MARKUP)))
					return rc;
				continue;
			}
			if ((rc = segs(t, "Assistant: ", SEG_MARKUP)))
				return rc;
			if (i == la)
				mark_prompt(t);
			if ((rc = segs(t, m->content, SEG_TRAIN)))
				return rc;
			if (i == la)
				rc = seg(t, "", 0, SEG_TRAIN | SEG_EOS);
			else
				rc = segs(t, "\n", SEG_TRAIN | SEG_MARKUP);
			if (rc)
				return rc;
		}
		return 0;
	}
	char *p = joined_prompt(r, f);
	if (!p)
		return FT_ENOMEM;
	rc = 0;
	if (sys)
		rc = segs(t, sys, 0);
	if (!rc && sys)
		rc = segs(t, "\n\n", SEG_MARKUP);
	if (!rc)
		rc = segs(t, p, 0);
	if (!rc)
		rc = segs(t, "\n", SEG_MARKUP);
	free(p);
	if (rc)
		return rc;
	mark_prompt(t);
	if ((rc = segs(t, r->response, SEG_TRAIN)) || (rc = seg(t, "", 0, SEG_TRAIN | SEG_EOS)))
		return rc;
	return 0;
}

/* Walks a custom template: literal text and {system} {prompt} {response}. With t NULL
 * it only validates (returns FT_EINVAL with the message in d). */
static int custom_walk(struct templated *t, const char *tpl, const char *sys, const char *prompt,
		       const char *response, struct diag *d)
{
	int n_resp = 0, n_prompt = 0, rc = 0;
	bool after = false;
	struct strbuf lit = {0};
	const char *p = tpl;
	while (*p && !rc) {
		if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
			rc = strbuf_append(&lit, p, 1);
			p += 2;
			continue;
		}
		if (*p == '}') {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "data.template: a lone '}' at offset %zu (write '}}' for a literal brace)",
				      (size_t)(p - tpl));
			break;
		}
		if (*p != '{') {
			rc = strbuf_append(&lit, p, 1);
			p++;
			continue;
		}
		const char *e = strchr(p, '}');
		size_t len = e ? (size_t)(e - p - 1) : 0;
		const char *name = p + 1;
		enum { PH_SYS, PH_PROMPT, PH_RESP, PH_BAD } ph = PH_BAD;
		if (e && len == 6 && memcmp(name, "system", 6) == 0)
			ph = PH_SYS;
		else if (e && len == 6 && memcmp(name, "prompt", 6) == 0)
			ph = PH_PROMPT;
		else if (e && len == 8 && memcmp(name, "response", 8) == 0)
			ph = PH_RESP;
		if (ph == PH_BAD) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "data.template: unknown placeholder '%.*s' at offset %zu; use {system}, {prompt}, {response} (and '{{' for a literal brace)",
				      e ? (int)len + 2 : (int)strlen(p), p, (size_t)(p - tpl));
			break;
		}
		if (t && lit.len)
			rc = seg(t, lit.buf, lit.len, SEG_MARKUP | (after ? SEG_TRAIN : 0));
		lit.len = 0;
		if (lit.buf)
			lit.buf[0] = 0;
		if (ph == PH_RESP) {
			n_resp++;
			if (t && !rc) {
				mark_prompt(t);
				rc = segs(t, response ? response : "", SEG_TRAIN);
			}
			after = true;
		} else if (t && !rc) {
			if (ph == PH_PROMPT)
				n_prompt++;
			const char *v = ph == PH_SYS ? (sys ? sys : "") : prompt;
			rc = segs(t, v ? v : "", after ? SEG_TRAIN : 0);
		} else if (ph == PH_PROMPT) {
			n_prompt++;
		}
		p = e + 1;
	}
	if (!rc && t && lit.len)
		rc = seg(t, lit.buf, lit.len, SEG_MARKUP | (after ? SEG_TRAIN : 0));
	if (!rc && t)
		rc = seg(t, "", 0, SEG_TRAIN | SEG_EOS);
	strbuf_free(&lit);
	if (rc)
		return rc;
	if (n_resp != 1)
		return diag_set(d, FT_EINVAL, NULL, 0, 0,
				"data.template: a custom template needs {response} exactly once (found %d)",
				n_resp);
	if (n_prompt < 1)
		return diag_set(d, FT_EINVAL, NULL, 0, 0,
				"data.template: a custom template needs {prompt}");
	return 0;
}

const char *template_kind_name(enum template_kind k)
{
	switch (k) {
	case TEMPLATE_CHATML: return schema_enum_name("data.template", DATA_TEMPLATE_CHATML);
	case TEMPLATE_GEMMA: return schema_enum_name("data.template", DATA_TEMPLATE_GEMMA);
	case TEMPLATE_ALPACA: return schema_enum_name("data.template", DATA_TEMPLATE_ALPACA);
	case TEMPLATE_PLAIN: return schema_enum_name("data.template", DATA_TEMPLATE_PLAIN);
	case TEMPLATE_CUSTOM: return "custom";
	}
	return "?";
}

char *template_chat_prompt(enum template_kind k, const char *system, const char *user)
{
	struct strbuf sb = {0};
	int rc = 0;
	if (k == TEMPLATE_GEMMA) {
		size_t n;
		const char *u = trimmed(user, &n);
		rc = strbuf_puts(&sb, "<start_of_turn>user\n");
		if (!rc && system && *system)
			rc = strbuf_printf(&sb, "%s\n\n", system);
		if (!rc)
			rc = strbuf_append(&sb, u, n);
		if (!rc)
			rc = strbuf_puts(&sb, "<end_of_turn>\n<start_of_turn>model\n");
	} else {
		if (system && *system)
			rc = strbuf_printf(&sb, "<|im_start|>system\n%s<|im_end|>\n", system);
		if (!rc)
			rc = strbuf_printf(&sb, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
					   user);
	}
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

int template_resolve(struct template_spec *out, const struct config_data *cfg,
		     enum template_kind auto_kind, struct diag *d)
{
	memset(out, 0, sizeof *out);
	out->system = cfg->system;
	const char *name = cfg->template_name;
	if (!name && cfg->template_custom) {
		out->kind = TEMPLATE_CUSTOM;
		out->custom = cfg->template_custom;
		return custom_walk(NULL, cfg->template_custom, NULL, NULL, NULL, d);
	}
	switch (name ? schema_enum_index("data.template", name) : DATA_TEMPLATE_AUTO) {
	case DATA_TEMPLATE_AUTO: out->kind = auto_kind; break;
	case DATA_TEMPLATE_CHATML: out->kind = TEMPLATE_CHATML; break;
	case DATA_TEMPLATE_GEMMA: out->kind = TEMPLATE_GEMMA; break;
	case DATA_TEMPLATE_ALPACA: out->kind = TEMPLATE_ALPACA; break;
	case DATA_TEMPLATE_PLAIN: out->kind = TEMPLATE_PLAIN; break;
	default:
		out->kind = TEMPLATE_CUSTOM;
		out->custom = name;
		return custom_walk(NULL, name, NULL, NULL, NULL, d);
	}
	return 0;
}

char *template_chatml_default_system(const char *jinja)
{
	static const char head[] = "<|im_start|>system\\n";
	static const char head_raw[] = "<|im_start|>system\n";
	if (!jinja)
		return NULL;
	const char *p = strstr(jinja, head);
	size_t hl = sizeof head - 1;
	if (!p) {
		p = strstr(jinja, head_raw);
		hl = sizeof head_raw - 1;
	}
	if (!p)
		return NULL;
	p += hl;
	const char *e = strstr(p, "<|im_end|>");
	if (!e || e == p)
		return NULL;
	/* Only a literal: a template that inserts message content here has no default. */
	for (const char *q = p; q < e; q++)
		if (*q == '{' || *q == '}' || *q == '\'' || *q == '"' || *q == '+')
			return NULL;
	return ft_strndup(p, (size_t)(e - p));
}

static const char *last_user(const struct record *r)
{
	size_t la = last_assistant(r);
	for (size_t i = la; i-- > 0;)
		if (r->msgs[i].role == ROLE_USER)
			return r->msgs[i].content;
	return "";
}

int template_apply_pref(struct templated *out, const struct record *r, bool rejected,
			const struct template_spec *ts, const char *file, struct diag *d)
{
	memset(out, 0, sizeof *out);
	struct record v = *r;
	const char *completion = rejected ? r->rejected : r->chosen;
	v.chosen = v.rejected = NULL;
	v.choices = NULL;
	v.n_choices = 0;
	if (!r->msgs) {
		v.response = (char *)(uintptr_t)completion;
		return template_apply(out, &v, DATA_COMPLETION, ts, file, d);
	}
	struct chat_msg *m = malloc((r->n_msgs + 1) * sizeof *m);
	if (!m)
		return diag_set(d, FT_ENOMEM, file, r->line, 0, "out of memory applying the template");
	memcpy(m, r->msgs, r->n_msgs * sizeof *m);
	m[r->n_msgs].role = ROLE_ASSISTANT;
	m[r->n_msgs].content = (char *)(uintptr_t)completion;
	v.msgs = m;
	v.n_msgs = r->n_msgs + 1;
	int rc = template_apply(out, &v, DATA_CHAT, ts, file, d);
	free(m);
	return rc;
}

int template_apply(struct templated *out, const struct record *r, enum data_format format,
		   const struct template_spec *ts, const char *file, struct diag *d)
{
	if (format == DATA_PREFERENCE)
		return template_apply_pref(out, r, false, ts, file, d);
	memset(out, 0, sizeof *out);
	int rc = 0;
	if (format == DATA_TEXT) {
		rc = segs(out, r->text, SEG_TRAIN);
		if (!rc)
			rc = seg(out, "", 0, SEG_TRAIN | SEG_EOS);
		goto done;
	}
	/* The record viewed as one exchange (chat with alpaca/custom needs exactly one). */
	const char *instruction = NULL, *input = NULL, *response = NULL;
	struct record one = *r;
	if (format == DATA_CHAT) {
		size_t k = r->msgs[0].role == ROLE_SYSTEM ? 1 : 0;
		bool single = r->n_msgs == k + 2 && r->msgs[k].role == ROLE_USER &&
			      r->msgs[k + 1].role == ROLE_ASSISTANT;
		if (ts->kind == TEMPLATE_ALPACA || ts->kind == TEMPLATE_CUSTOM) {
			if (!single) {
				rc = diag_set(d, FT_EINVAL, file, r->line, 0,
					      "the %s template takes one user message and one assistant reply; this conversation has %zu messages",
					      ts->kind == TEMPLATE_ALPACA
						  ? schema_enum_name("data.template", DATA_TEMPLATE_ALPACA)
						  : "custom",
					      r->n_msgs);
				diag_hint(d, "use template: chatml or plain for multi-turn chat");
				goto done;
			}
			instruction = r->msgs[k].content;
			response = r->msgs[k + 1].content;
			if (k)
				one.system = r->msgs[0].content;
		}
	} else {
		instruction = format == DATA_COMPLETION ? r->prompt : r->instruction;
		input = format == DATA_INSTRUCTION ? r->input : NULL;
		response = r->response;
	}
	switch (ts->kind) {
	case TEMPLATE_CHATML:
		rc = apply_chatml(out, r, format, ts);
		break;
	case TEMPLATE_GEMMA:
		rc = apply_gemma(out, r, format, ts, file, d);
		break;
	case TEMPLATE_PLAIN:
		rc = apply_plain(out, r, format, ts);
		break;
	case TEMPLATE_ALPACA:
		rc = apply_alpaca(out, &one, instruction, input, response, ts);
		break;
	case TEMPLATE_CUSTOM: {
		char *p = NULL;
		if (format == DATA_INSTRUCTION)
			p = joined_prompt(r, format);
		else
			p = ft_strdup(instruction);
		if (!p) {
			rc = FT_ENOMEM;
			break;
		}
		rc = custom_walk(out, ts->custom, pick_system(&one, ts, false), p, response, d);
		free(p);
		break;
	}
	}
	if (rc)
		goto done;
	if (format == DATA_CHAT) {
		out->prompt = ft_strdup(last_user(r));
		out->reference = ft_strdup(r->msgs[last_assistant(r)].content);
	} else {
		out->prompt = joined_prompt(r, format);
		out->reference = ft_strdup(r->response);
	}
	if (!out->prompt || !out->reference)
		rc = FT_ENOMEM;
done:
	if (rc == FT_ENOMEM)
		diag_set(d, rc, file, r->line, 0, "out of memory applying the template");
	if (rc)
		templated_free(out);
	return rc;
}

char *templated_text(const struct templated *t, size_t first, size_t count, const char *eos_text)
{
	struct strbuf sb = {0};
	int rc = strbuf_puts(&sb, "");
	for (size_t i = first; i < first + count && i < t->n && !rc; i++)
		rc = strbuf_puts(&sb, (t->segs[i].flags & SEG_EOS) ? eos_text : t->segs[i].text);
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}
