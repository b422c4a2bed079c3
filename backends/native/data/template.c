/* template: the chatml, alpaca, plain and custom templates as segment lists. The exact
 * texts are documented in docs/data.md; tests/unit/test_data_template.c pins them. */
#include "backends/native/data/template.h"

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

int template_resolve(struct template_spec *out, const struct config_data *cfg, bool has_chatml,
		     struct diag *d)
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
	case DATA_TEMPLATE_AUTO: out->kind = has_chatml ? TEMPLATE_CHATML : TEMPLATE_PLAIN; break;
	case DATA_TEMPLATE_CHATML: out->kind = TEMPLATE_CHATML; break;
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

int template_apply(struct templated *out, const struct record *r, enum data_format format,
		   const struct template_spec *ts, const char *file, struct diag *d)
{
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
