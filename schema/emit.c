/* emit: output forms of a resolved tree: canonical JSON (sorted keys, normalised numbers:
 * the basis of every hash), YAML for people (schema order), and struct config. */
#include "schema/internal.h"

#include <stdlib.h>
#include <string.h>

#include "schema/schema.h"

/* ---- JSON -------------------------------------------------------------------------- */

static int json_string(struct strbuf *out, const char *s)
{
	int rc = strbuf_puts(out, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
		switch (*p) {
		case '"': rc = strbuf_puts(out, "\\\""); break;
		case '\\': rc = strbuf_puts(out, "\\\\"); break;
		case '\n': rc = strbuf_puts(out, "\\n"); break;
		case '\r': rc = strbuf_puts(out, "\\r"); break;
		case '\t': rc = strbuf_puts(out, "\\t"); break;
		case '\b': rc = strbuf_puts(out, "\\b"); break;
		case '\f': rc = strbuf_puts(out, "\\f"); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				rc = strbuf_printf(out, "\\u%04x", *p);
			else
				rc = strbuf_append(out, (const char *)p, 1);
		}
	}
	return rc ? rc : strbuf_puts(out, "\"");
}

static int cmp_key(const void *a, const void *b)
{
	const struct node *x = *(const struct node *const *)a;
	const struct node *y = *(const struct node *const *)b;
	return strcmp(x->key, y->key);
}

int schema_json(struct strbuf *out, const struct node *n, bool skip_noncanon)
{
	int rc = 0;
	if (n->kind == NODE_SCALAR)
		return n->plain ? strbuf_puts(out, n->text) : json_string(out, n->text);
	if (n->kind == NODE_SEQ) {
		rc = strbuf_puts(out, "[");
		for (size_t i = 0; i < n->n && !rc; i++) {
			if (i)
				rc = strbuf_puts(out, ",");
			if (!rc)
				rc = schema_json(out, n->items[i], false);
		}
		return rc ? rc : strbuf_puts(out, "]");
	}
	const struct node **sorted = NULL;
	if (n->n && !(sorted = malloc(n->n * sizeof *sorted)))
		return FT_ENOMEM;
	for (size_t i = 0; i < n->n; i++)
		sorted[i] = n->items[i];
	if (n->n)
		qsort(sorted, n->n, sizeof *sorted, cmp_key);
	rc = strbuf_puts(out, "{");
	bool first = true;
	for (size_t i = 0; i < n->n && !rc; i++) {
		if (skip_noncanon) {
			const struct key_desc *k = schema_find(sorted[i]->key);
			if (k && (k->flags & KF_NOCANON))
				continue;
		}
		if (!first)
			rc = strbuf_puts(out, ",");
		first = false;
		if (!rc)
			rc = json_string(out, sorted[i]->key);
		if (!rc)
			rc = strbuf_puts(out, ":");
		if (!rc)
			rc = schema_json(out, sorted[i], false);
	}
	free(sorted);
	return rc ? rc : strbuf_puts(out, "}");
}

/* ---- YAML -------------------------------------------------------------------------- */

static bool yaml_plain_ok(const char *s)
{
	static const char *const special[] = {"true", "false", "null", "Null", "NULL", "~",
					      "y", "Y", "yes", "Yes", "YES", "n", "N", "no",
					      "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
					      "True", "TRUE", "False", "FALSE"};
	size_t len = strlen(s);
	if (len == 0 || s[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < FT_ARRAY_LEN(special); i++)
		if (strcmp(s, special[i]) == 0)
			return false;
	unsigned char c0 = (unsigned char)s[0];
	if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_' || c0 == '/' ||
	      c0 == '.'))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || strchr("_./- ,'", *p) || *p >= 0x80;
		if (!ok)
			return false;
		if (*p == ' ' && (p[1] == '#' || p[1] == ' '))
			return false;
	}
	if (strchr(s, ',') || (s[0] == '.' && s[1] >= '0' && s[1] <= '9'))
		return false; /* flow lists split on commas; ".5" reads as a number */
	return true;
}

static int yaml_scalar(struct strbuf *out, const struct node *n)
{
	if (n->plain || yaml_plain_ok(n->text))
		return strbuf_puts(out, n->text);
	return json_string(out, n->text);
}

static int indent_to(struct strbuf *out, int indent)
{
	int rc = 0;
	for (int i = 0; i < indent && !rc; i++)
		rc = strbuf_puts(out, "  ");
	return rc;
}

/* Rank of a key under prefix in the schema table (keys the table lacks go last). */
static size_t key_rank(const char *prefix, const char *key)
{
	char path[256];
	snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", key);
	const struct key_desc *k = schema_find(path);
	return k ? (size_t)(k - schema_keys) : schema_n_keys;
}

static int yaml_map(struct strbuf *out, const struct node *n, const char *prefix, int indent);

static bool all_scalars(const struct node *n)
{
	for (size_t i = 0; i < n->n; i++)
		if (n->items[i]->kind != NODE_SCALAR)
			return false;
	return true;
}

static int yaml_value(struct strbuf *out, const struct node *v, const char *path, int indent)
{
	int rc = 0;
	if (v->kind == NODE_SCALAR) {
		rc = strbuf_puts(out, " ");
		return rc ? rc : (rc = yaml_scalar(out, v)) ? rc : strbuf_puts(out, "\n");
	}
	if (v->kind == NODE_SEQ && all_scalars(v)) {
		rc = strbuf_puts(out, " [");
		for (size_t i = 0; i < v->n && !rc; i++) {
			if (i)
				rc = strbuf_puts(out, ", ");
			if (!rc)
				rc = yaml_scalar(out, v->items[i]);
		}
		return rc ? rc : strbuf_puts(out, "]\n");
	}
	if (v->kind == NODE_MAP && v->n == 0)
		return strbuf_puts(out, " {}\n");
	rc = strbuf_puts(out, "\n");
	if (!rc && v->kind == NODE_MAP)
		return yaml_map(out, v, path, indent + 1);
	char item_prefix[256];
	snprintf(item_prefix, sizeof item_prefix, "%s[]", path);
	for (size_t i = 0; i < v->n && !rc; i++) {
		const struct node *it = v->items[i];
		rc = indent_to(out, indent + 1);
		if (!rc)
			rc = strbuf_puts(out, "-");
		if (rc)
			break;
		if (it->kind == NODE_MAP && it->n > 0) {
			/* First entry on the dash line, the rest aligned under it. */
			struct strbuf sub = {0};
			rc = yaml_map(&sub, it, item_prefix, indent + 2);
			if (!rc) {
				const char *p = sub.buf;
				while (*p == ' ')
					p++;
				rc = strbuf_puts(out, " ");
				if (!rc)
					rc = strbuf_puts(out, p);
			}
			strbuf_free(&sub);
		} else {
			rc = yaml_value(out, it, item_prefix, indent + 1);
		}
	}
	return rc;
}

static int yaml_map(struct strbuf *out, const struct node *n, const char *prefix, int indent)
{
	const struct node **order = NULL;
	if (n->n && !(order = malloc(n->n * sizeof *order)))
		return FT_ENOMEM;
	for (size_t i = 0; i < n->n; i++)
		order[i] = n->items[i];
	/* Stable insertion sort by schema rank (maps here are small). */
	for (size_t i = 1; i < n->n; i++) {
		const struct node *x = order[i];
		size_t rx = key_rank(prefix, x->key), j = i;
		while (j > 0 && key_rank(prefix, order[j - 1]->key) > rx) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = x;
	}
	int rc = 0;
	for (size_t i = 0; i < n->n && !rc; i++) {
		const struct node *e = order[i];
		char path[256];
		snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", e->key);
		rc = indent_to(out, indent);
		if (!rc)
			rc = yaml_plain_ok(e->key) ? strbuf_puts(out, e->key) : json_string(out, e->key);
		if (!rc)
			rc = strbuf_puts(out, ":");
		if (!rc)
			rc = yaml_value(out, e, path, indent);
	}
	free(order);
	return rc;
}

/* A document whose top level is not a map: one value on its own line. */
static int schema_yaml_value(struct strbuf *out, const struct node *n)
{
	struct strbuf sub = {0};
	int rc = yaml_value(&sub, n, "", -1);
	if (!rc)
		rc = strbuf_puts(out, sub.buf[0] == ' ' ? sub.buf + 1 : sub.buf);
	strbuf_free(&sub);
	return rc;
}

int schema_yaml(struct strbuf *out, const struct node *n, int indent)
{
	if (n->kind != NODE_MAP)
		return FT_EINVAL;
	return yaml_map(out, n, "", indent);
}

/* JSON is YAML flow syntax: parse it back into nodes and print in schema order. */
int schema_json_to_yaml(char **out, const char *json, struct diag *d)
{
	*out = NULL;
	if (!json)
		return diag_set(d, FT_EINVAL, "", 0, 0, "no JSON to convert");
	struct node *tree = NULL;
	int rc = yaml_parse_nodes(&tree, json, strlen(json), NULL, NULL, "JSON", d);
	if (rc)
		return rc;
	struct strbuf sb = {0};
	if (tree && tree->kind == NODE_MAP)
		rc = schema_yaml(&sb, tree, 0);
	else if (tree)
		rc = schema_yaml_value(&sb, tree);
	node_free(tree);
	if (rc) {
		strbuf_free(&sb);
		return diag_set(d, rc, "", 0, 0, "cannot write YAML");
	}
	*out = sb.buf ? strbuf_detach(&sb) : ft_strdup("{}\n");
	return *out ? 0 : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
}

static int json_write_yaml(FILE *out, const char *json)
{
	struct diag d;
	diag_init(&d);
	char *yaml = NULL;
	int rc = schema_json_to_yaml(&yaml, json, &d);
	if (!rc && fputs(yaml, out) == EOF)
		rc = FT_EIO;
	free(yaml);
	return rc;
}

int config_write_yaml(FILE *out, const struct config *c)
{
	return json_write_yaml(out, c->canonical_json);
}

int experiment_write_yaml(FILE *out, const struct experiment *e)
{
	return json_write_yaml(out, experiment_spec_json(e));
}

/* ---- struct config ------------------------------------------------------------------ */

static const char *txt(const struct node *r, const char *path)
{
	const struct node *n = node_get_path(r, path);
	return n && n->kind == NODE_SCALAR ? n->text : NULL;
}

static int64_t get_i64(const struct node *r, const char *path, int64_t def)
{
	const char *t = txt(r, path);
	int64_t v;
	return t && parse_i64(t, &v) ? v : def;
}

static double get_f64(const struct node *r, const char *path, double def)
{
	const char *t = txt(r, path);
	double v;
	return t && parse_f64(t, &v) ? v : def;
}

static bool get_bool(const struct node *r, const char *path)
{
	const char *t = txt(r, path);
	return t && strcmp(t, "true") == 0;
}

/* Index of t in "a|b|c" (0 when absent). */
static int get_enum(const struct node *r, const char *path, const char *choices)
{
	const char *t = txt(r, path);
	if (!t)
		return 0;
	int idx = 0;
	size_t n = strlen(t);
	for (const char *p = choices; p && *p; idx++) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && memcmp(p, t, n) == 0)
			return idx;
		p = bar ? bar + 1 : NULL;
	}
	return 0;
}

struct filler {
	const struct node *r;
	const char *base_dir;
	int rc;
};

static char *fstr(struct filler *F, const char *path)
{
	const char *t = txt(F->r, path);
	if (!t)
		return NULL;
	char *s = ft_strdup(t);
	if (!s)
		F->rc = FT_ENOMEM;
	return s;
}

static char *fpath(struct filler *F, const char *path)
{
	const char *t = txt(F->r, path);
	if (!t)
		return NULL;
	char *j = path_join(F->base_dir, t);
	char *s = j ? path_normalize(j) : NULL;
	free(j);
	if (!s)
		F->rc = FT_ENOMEM;
	return s;
}

static void flist(struct filler *F, struct strlist *out, const char *path)
{
	const struct node *n = node_get_path(F->r, path);
	if (!n || n->kind != NODE_SEQ || n->n == 0)
		return;
	out->items = calloc(n->n, sizeof *out->items);
	if (!out->items) {
		F->rc = FT_ENOMEM;
		return;
	}
	for (size_t i = 0; i < n->n; i++) {
		out->items[i] = ft_strdup(n->items[i]->text);
		if (!out->items[i])
			F->rc = FT_ENOMEM;
		out->n++;
	}
}

static void fill_split(struct filler *F, struct split_spec *s, const char *path, uint64_t seed)
{
	const struct node *n = node_get_path(F->r, path);
	if (!n)
		return;
	s->present = true;
	char sub[64];
	if (n->kind == NODE_SCALAR) {
		s->path = fpath(F, path);
		s->seed = seed;
		return;
	}
	snprintf(sub, sizeof sub, "%s.from", path);
	s->from = fstr(F, sub);
	snprintf(sub, sizeof sub, "%s.fraction", path);
	s->fraction = get_f64(F->r, sub, 0);
	snprintf(sub, sizeof sub, "%s.seed", path);
	s->seed = (uint64_t)get_i64(F->r, sub, (int64_t)seed);
}

int schema_fill_config(struct config *c, const struct node *r, const char *base_dir)
{
	struct filler F = {.r = r, .base_dir = base_dir};
	c->name = fstr(&F, "name");
	c->description = fstr(&F, "description");
	c->seed = (uint64_t)get_i64(r, "seed", 0);
	c->model.base = fpath(&F, "model.base");
	c->model.context = (int)get_i64(r, "model.context", 512);

	struct config_data *d = &c->data;
	d->format = (enum data_format)get_enum(r, "data.format", "text|completion|instruction|chat");
	d->train = fpath(&F, "data.train");
	fill_split(&F, &d->validation, "data.validation", c->seed);
	fill_split(&F, &d->test, "data.test", c->seed);
	d->fields.text = fstr(&F, "data.fields.text");
	d->fields.prompt = fstr(&F, "data.fields.prompt");
	d->fields.completion = fstr(&F, "data.fields.completion");
	d->fields.response = fstr(&F, "data.fields.response");
	d->fields.instruction = fstr(&F, "data.fields.instruction");
	d->fields.input = fstr(&F, "data.fields.input");
	d->fields.output = fstr(&F, "data.fields.output");
	d->fields.messages = fstr(&F, "data.fields.messages");
	d->fields.system = fstr(&F, "data.fields.system");
	const char *tmpl = txt(r, "data.template");
	if (tmpl && schema_choice_ok("auto|chatml|alpaca|plain", tmpl))
		d->template_name = fstr(&F, "data.template");
	else
		d->template_custom = fstr(&F, "data.template");
	d->system = fstr(&F, "data.system");
	d->max_length = (int)get_i64(r, "data.max_length", c->model.context);
	d->train_on_inputs = get_bool(r, "data.train_on_inputs");
	d->packing = get_bool(r, "data.packing");
	d->limit_train = get_i64(r, "data.limit.train", 0);
	d->limit_validation = get_i64(r, "data.limit.validation", 0);
	d->limit_test = get_i64(r, "data.limit.test", 0);
	d->on_bad_example = (enum on_bad_example)get_enum(r, "data.on_bad_example", "error|skip");

	struct config_method *m = &c->method;
	m->type = (enum method_type)get_enum(r, "method.type", "none|full|freeze|lora");
	m->rank = (int)get_i64(r, "method.rank", 0);
	m->alpha = get_f64(r, "method.alpha", 0);
	m->dropout = get_f64(r, "method.dropout", 0);
	const char *tg = txt(r, "method.targets");
	m->all_linear = tg && strcmp(tg, "all-linear") == 0;
	flist(&F, &m->targets, "method.targets");
	m->rslora = get_bool(r, "method.rslora");
	flist(&F, &m->trainable, "method.trainable");
	m->layers_first = (int)get_i64(r, "method.layers.first", -1);
	m->layers_last = (int)get_i64(r, "method.layers.last", -1);

	struct config_train *t = &c->train;
	t->epochs = (int)get_i64(r, "train.epochs", 0);
	t->steps = get_i64(r, "train.steps", 0);
	t->batch_size = (int)get_i64(r, "train.batch_size", 8);
	t->grad_accum = (int)get_i64(r, "train.grad_accum", 1);
	t->optimizer.type = (enum optimizer_type)get_enum(r, "train.optimizer.type", "adamw|sgd");
	t->optimizer.lr = get_f64(r, "train.optimizer.lr", 2e-4);
	const struct node *betas = node_get_path(r, "train.optimizer.betas");
	if (betas && betas->n == 2) {
		parse_f64(betas->items[0]->text, &t->optimizer.beta1);
		parse_f64(betas->items[1]->text, &t->optimizer.beta2);
	}
	t->optimizer.eps = get_f64(r, "train.optimizer.eps", 1e-8);
	t->optimizer.weight_decay = get_f64(r, "train.optimizer.weight_decay", 0);
	t->schedule.type =
		(enum schedule_type)get_enum(r, "train.schedule.type", "constant|linear|cosine");
	t->schedule.warmup_steps = get_i64(r, "train.schedule.warmup_steps", 0);
	t->schedule.min_lr_ratio = get_f64(r, "train.schedule.min_lr_ratio", 0);
	t->max_grad_norm = get_f64(r, "train.max_grad_norm", 1.0);
	t->precision = (enum precision)get_enum(r, "train.precision", "fp32|bf16");
	t->grad_checkpointing = get_bool(r, "train.grad_checkpointing");
	t->eval_every = get_i64(r, "train.eval_every", 0);
	t->checkpoint_every = get_i64(r, "train.checkpoint_every", 0);
	if (node_get_path(r, "train.early_stopping")) {
		t->early_stopping.enabled = true;
		t->early_stopping.metric = fstr(&F, "train.early_stopping.metric");
		t->early_stopping.patience = (int)get_i64(r, "train.early_stopping.patience", 3);
		t->early_stopping.min_delta = get_f64(r, "train.early_stopping.min_delta", 0);
	}
	t->nonfinite = (enum nonfinite_policy)get_enum(r, "train.nonfinite", "abort|skip_step");

	struct config_eval *e = &c->eval;
	flist(&F, &e->splits, "eval.splits");
	flist(&F, &e->metrics, "eval.metrics");
	e->generate.max_new_tokens = (int)get_i64(r, "eval.generate.max_new_tokens", 64);
	e->generate.temperature = get_f64(r, "eval.generate.temperature", 0);
	e->generate.top_k = (int)get_i64(r, "eval.generate.top_k", 0);
	e->generate.top_p = get_f64(r, "eval.generate.top_p", 1);
	flist(&F, &e->generate.stop, "eval.generate.stop");
	e->compare_base = get_bool(r, "eval.compare_base");
	e->bootstrap = (int)get_i64(r, "eval.bootstrap", 1000);
	e->samples = (int)get_i64(r, "eval.samples", 20);

	struct config_backend *b = &c->backend;
	b->type = (enum backend_type)get_enum(r, "backend.type", "auto|cpu|cuda|exec");
	b->threads = (int)get_i64(r, "backend.threads", 0);
	b->device = (int)get_i64(r, "backend.device", 0);
	flist(&F, &b->command, "backend.command");
	b->timeout_s = get_f64(r, "backend.timeout", 0);
	b->metrics_file = fstr(&F, "backend.metrics_file");
	b->workdir = fpath(&F, "backend.workdir");

	struct config_launcher *l = &c->launcher;
	l->type = (enum launcher_type)get_enum(r, "launcher.type",
					      schema_find("launcher.type")->choices);
	l->partition = fstr(&F, "launcher.partition");
	l->account = fstr(&F, "launcher.account");
	l->qos = fstr(&F, "launcher.qos");
	l->mem = fstr(&F, "launcher.mem");
	const char *lt = txt(r, "launcher.time");
	if (lt && !schema_slurm_time(lt, &l->time_s))
		l->time_s = 0;
	l->cpus_per_task = (int)get_i64(r, "launcher.cpus_per_task", 0);
	l->gpus_per_task = (int)get_i64(r, "launcher.gpus_per_task", 0);
	l->array_parallelism = (int)get_i64(r, "launcher.array_parallelism", 0);
	flist(&F, &l->sbatch_args, "launcher.sbatch_args");
	flist(&F, &l->setup, "launcher.setup");

	const struct node *gates = node_get(r, "gates");
	if (gates && gates->n) {
		c->gates = calloc(gates->n, sizeof *c->gates);
		if (!c->gates)
			return FT_ENOMEM;
		c->n_gates = gates->n;
		for (size_t i = 0; i < gates->n; i++) {
			const struct node *g = gates->items[i];
			struct config_gate *cg = &c->gates[i];
			struct filler G = {.r = g, .base_dir = base_dir};
			cg->metric = fstr(&G, "metric");
			if (G.rc)
				F.rc = G.rc;
			const char *vs = txt(g, "vs");
			cg->vs = !vs ? GATE_ABSOLUTE : strcmp(vs, "base") == 0 ? GATE_VS_BASE
									     : GATE_VS_BASELINE;
			cg->has_min = txt(g, "min") != NULL;
			cg->has_max = txt(g, "max") != NULL;
			cg->has_min_delta = txt(g, "min_delta") != NULL;
			cg->has_max_regression = txt(g, "max_regression") != NULL;
			cg->min = get_f64(g, "min", 0);
			cg->max = get_f64(g, "max", 0);
			cg->min_delta = get_f64(g, "min_delta", 0);
			cg->max_regression = get_f64(g, "max_regression", 0);
			cg->line = g->line;
		}
	}
	c->objective_metric = fstr(&F, "sweep.objective.metric");
	c->objective_goal = (enum goal)get_enum(r, "sweep.objective.goal", "maximize|minimize");
	return F.rc;
}

static void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->description);
	free(c->source_path);
	free(c->base_dir);
	free(c->model.base);
	struct config_data *d = &c->data;
	free(d->train);
	free(d->validation.path);
	free(d->validation.from);
	free(d->test.path);
	free(d->test.from);
	char **fields[] = {&d->fields.text, &d->fields.prompt, &d->fields.completion,
			   &d->fields.response, &d->fields.instruction, &d->fields.input,
			   &d->fields.output, &d->fields.messages, &d->fields.system};
	for (size_t i = 0; i < FT_ARRAY_LEN(fields); i++)
		free(*fields[i]);
	free(d->template_name);
	free(d->template_custom);
	free(d->system);
	strlist_free(&c->method.targets);
	strlist_free(&c->method.trainable);
	free(c->train.early_stopping.metric);
	strlist_free(&c->eval.splits);
	strlist_free(&c->eval.metrics);
	strlist_free(&c->eval.generate.stop);
	strlist_free(&c->backend.command);
	free(c->backend.metrics_file);
	free(c->backend.workdir);
	free(c->launcher.partition);
	free(c->launcher.account);
	free(c->launcher.qos);
	free(c->launcher.mem);
	strlist_free(&c->launcher.sbatch_args);
	strlist_free(&c->launcher.setup);
	for (size_t i = 0; i < c->n_gates; i++)
		free(c->gates[i].metric);
	free(c->gates);
	free(c->objective_metric);
	free(c->canonical_json);
	memset(c, 0, sizeof *c);
}
