/* emit: output forms of a resolved tree: canonical JSON (sorted keys, normalised numbers:
 * the basis of every hash), YAML for people (schema order), and struct config. */
#include "schema/internal.h"

#include <stdlib.h>
#include <string.h>

#include "schema/schema.h"
#include "common/banned.h"

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

struct filler {
	const struct node *r;
	const char *table_prefix; /* the table path of r: "" for the root, "gates[]." */
	const char *base_dir;
	int rc;
};

static const char *txt(const struct node *r, const char *path)
{
	const struct node *n = node_get_path(r, path);
	return n && n->kind == NODE_SCALAR ? n->text : NULL;
}

/* The filler reads the resolved tree, which already holds every default of the schema
 * table (validate.c fills them), so no default is written here: an absent key is one the
 * experiment does not have (a LoRA key under method full, an unset optional value) and
 * reads as 0, false or NULL. */
static const char *value(const struct filler *F, const char *path)
{
	return txt(F->r, path);
}

/* absent: what the field holds when the key is absent (not a default: a sentinel). */
static int64_t get_i64_or(const struct filler *F, const char *path, int64_t absent)
{
	const char *t = value(F, path);
	int64_t v;
	return t && parse_i64(t, &v) ? v : absent;
}

static int64_t get_i64(const struct filler *F, const char *path)
{
	return get_i64_or(F, path, 0);
}

static double get_f64(const struct filler *F, const char *path)
{
	const char *t = value(F, path);
	double v;
	return t && parse_f64(t, &v) ? v : 0;
}

static bool get_bool(const struct filler *F, const char *path)
{
	const char *t = value(F, path);
	return t && strcmp(t, "true") == 0;
}

/* The index of the value among the key's choices: config.h's enums follow table order. */
static int get_enum(const struct filler *F, const char *path)
{
	char full[128];
	snprintf(full, sizeof full, "%s%s", F->table_prefix, path);
	int i = schema_enum_index(full, value(F, path));
	return i < 0 ? 0 : i;
}

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
	s->fraction = get_f64(F, sub);
	snprintf(sub, sizeof sub, "%s.seed", path);
	/* Absent: the experiment seed (a computed default, see data.validation.seed). */
	s->seed = txt(F->r, sub) ? (uint64_t)get_i64(F, sub) : seed;
}

int schema_fill_config(struct config *c, const struct node *r, const char *base_dir)
{
	struct filler F = {.r = r, .table_prefix = "", .base_dir = base_dir};
	c->name = fstr(&F, "name");
	c->description = fstr(&F, "description");
	c->seed = (uint64_t)get_i64(&F, "seed");
	c->model.base = fpath(&F, "model.base");
	c->model.context = (int)get_i64(&F, "model.context");
	c->model.quantize = (enum quantize_type)get_enum(&F, "model.quantize");

	struct config_data *d = &c->data;
	d->format = (enum data_format)get_enum(&F, "data.format");
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
	d->fields.chosen = fstr(&F, "data.fields.chosen");
	d->fields.rejected = fstr(&F, "data.fields.rejected");
	d->fields.choices = fstr(&F, "data.fields.choices");
	d->fields.answer = fstr(&F, "data.fields.answer");
	const char *tmpl = txt(r, "data.template");
	if (tmpl && schema_choice_ok("auto|chatml|gemma|alpaca|plain", tmpl))
		d->template_name = fstr(&F, "data.template");
	else
		d->template_custom = fstr(&F, "data.template");
	d->system = fstr(&F, "data.system");
	d->max_length = (int)get_i64(&F, "data.max_length");
	d->train_on_inputs = get_bool(&F, "data.train_on_inputs");
	d->packing = get_bool(&F, "data.packing");
	d->limit_train = get_i64(&F, "data.limit.train");
	d->limit_validation = get_i64(&F, "data.limit.validation");
	d->limit_test = get_i64(&F, "data.limit.test");
	d->on_bad_example = (enum on_bad_example)get_enum(&F, "data.on_bad_example");

	struct config_method *m = &c->method;
	m->type = (enum method_type)get_enum(&F, "method.type");
	m->rank = (int)get_i64(&F, "method.rank");
	m->alpha = get_f64(&F, "method.alpha");
	m->dropout = get_f64(&F, "method.dropout");
	const char *tg = txt(r, "method.targets");
	m->all_linear = tg && strcmp(tg, "all-linear") == 0;
	flist(&F, &m->targets, "method.targets");
	m->rslora = get_bool(&F, "method.rslora");
	/* adapter: "auto" positions and non-linearity follow the placement (absent keys, other
	 * methods: pfeiffer's, unused) */
	m->pfeiffer = get_enum(&F, "method.placement") == 0;
	int pos = get_enum(&F, "method.positions"); /* auto|attention|mlp|both */
	m->attn_adapter = pos == 1 || pos == 3 || (pos == 0 && !m->pfeiffer);
	m->mlp_adapter = pos >= 2 || pos == 0;
	m->reduction_factor = get_f64(&F, "method.reduction_factor");
	int nl = get_enum(&F, "method.non_linearity"); /* auto|relu|swish|... */
	m->non_linearity = nl > 0 ? nl - 1 : m->pfeiffer ? 0 : 1;
	flist(&F, &m->ff_targets, "method.feedforward_targets");
	m->ff_default = node_get_path(r, "method.feedforward_targets") == NULL;
	m->num_virtual_tokens = (int)get_i64_or(&F, "method.num_virtual_tokens", 0);
	m->prefix_projection = get_bool(&F, "method.prefix_projection");
	m->encoder_hidden_size = (int)get_i64_or(&F, "method.encoder_hidden_size", 0);
	flist(&F, &m->trainable, "method.trainable");
	/* -1: no layer range (method.layers absent) */
	m->layers_first = (int)get_i64_or(&F, "method.layers.first", -1);
	m->layers_last = (int)get_i64_or(&F, "method.layers.last", -1);

	struct config_train *t = &c->train;
	t->epochs = (int)get_i64(&F, "train.epochs");
	t->steps = get_i64(&F, "train.steps");
	t->batch_size = (int)get_i64(&F, "train.batch_size");
	t->grad_accum = (int)get_i64(&F, "train.grad_accum");
	t->optimizer.type = (enum optimizer_type)get_enum(&F, "train.optimizer.type");
	t->optimizer.lr = get_f64(&F, "train.optimizer.lr");
	const struct node *betas = node_get_path(r, "train.optimizer.betas");
	if (betas && betas->n == 2) {
		parse_f64(betas->items[0]->text, &t->optimizer.beta1);
		parse_f64(betas->items[1]->text, &t->optimizer.beta2);
	}
	t->optimizer.eps = get_f64(&F, "train.optimizer.eps");
	t->optimizer.weight_decay = get_f64(&F, "train.optimizer.weight_decay");
	t->optimizer.momentum = get_f64(&F, "train.optimizer.momentum");
	t->optimizer.dampening = get_f64(&F, "train.optimizer.dampening");
	t->optimizer.nesterov = get_bool(&F, "train.optimizer.nesterov");
	t->schedule.type =
		(enum schedule_type)get_enum(&F, "train.schedule.type");
	t->schedule.warmup_steps = get_i64(&F, "train.schedule.warmup_steps");
	t->schedule.min_lr_ratio = get_f64(&F, "train.schedule.min_lr_ratio");
	t->max_grad_norm = get_f64(&F, "train.max_grad_norm");
	t->precision = (enum precision)get_enum(&F, "train.precision");
	t->grad_checkpointing = get_bool(&F, "train.grad_checkpointing");
	t->eval_every = get_i64(&F, "train.eval_every");
	t->checkpoint_every = get_i64(&F, "train.checkpoint_every");
	if (node_get_path(r, "train.early_stopping")) {
		t->early_stopping.enabled = true;
		t->early_stopping.metric = fstr(&F, "train.early_stopping.metric");
		t->early_stopping.patience = (int)get_i64(&F, "train.early_stopping.patience");
		t->early_stopping.min_delta = get_f64(&F, "train.early_stopping.min_delta");
	}
	t->nonfinite = (enum nonfinite_policy)get_enum(&F, "train.nonfinite");
	t->objective = (enum train_objective)get_enum(&F, "train.objective");
	t->preference.loss_type = (enum pref_loss_type)get_enum(&F, "train.preference.loss_type");
	t->preference.beta = get_f64(&F, "train.preference.beta");
	t->preference.label_smoothing = get_f64(&F, "train.preference.label_smoothing");
	t->preference.lambda = get_f64(&F, "train.preference.lambda");
	t->preference.gamma = get_f64(&F, "train.preference.gamma");

	struct config_eval *e = &c->eval;
	flist(&F, &e->splits, "eval.splits");
	flist(&F, &e->metrics, "eval.metrics");
	flist(&F, &e->choices, "eval.choices");
	e->generate.max_new_tokens = (int)get_i64(&F, "eval.generate.max_new_tokens");
	e->generate.temperature = get_f64(&F, "eval.generate.temperature");
	e->generate.top_k = (int)get_i64(&F, "eval.generate.top_k");
	e->generate.top_p = get_f64(&F, "eval.generate.top_p");
	flist(&F, &e->generate.stop, "eval.generate.stop");
	e->compare_base = get_bool(&F, "eval.compare_base");
	e->bootstrap = (int)get_i64(&F, "eval.bootstrap");
	e->samples = (int)get_i64(&F, "eval.samples");

	struct config_backend *b = &c->backend;
	b->type = (enum backend_type)get_enum(&F, "backend.type");
	b->threads = (int)get_i64(&F, "backend.threads");
	b->device = (int)get_i64(&F, "backend.device");
	flist(&F, &b->command, "backend.command");
	b->timeout_s = get_f64(&F, "backend.timeout");
	b->metrics_file = fstr(&F, "backend.metrics_file");
	b->workdir = fpath(&F, "backend.workdir");

	struct config_launcher *l = &c->launcher;
	l->type = (enum launcher_type)get_enum(&F, "launcher.type");
	l->partition = fstr(&F, "launcher.partition");
	l->account = fstr(&F, "launcher.account");
	l->qos = fstr(&F, "launcher.qos");
	l->mem = fstr(&F, "launcher.mem");
	const char *lt = value(&F, "launcher.time");
	if (lt && !schema_slurm_time(lt, &l->time_s))
		l->time_s = 0;
	l->cpus_per_task = (int)get_i64(&F, "launcher.cpus_per_task");
	l->gpus_per_task = (int)get_i64(&F, "launcher.gpus_per_task");
	l->array_parallelism = (int)get_i64(&F, "launcher.array_parallelism");
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
			struct filler G = {.r = g, .table_prefix = "gates[].", .base_dir = base_dir};
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
			cg->min = get_f64(&G, "min");
			cg->max = get_f64(&G, "max");
			cg->min_delta = get_f64(&G, "min_delta");
			cg->max_regression = get_f64(&G, "max_regression");
			cg->line = g->line;
		}
	}
	c->objective_metric = fstr(&F, "sweep.objective.metric");
	c->objective_goal = (enum goal)get_enum(&F, "sweep.objective.goal");
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
			   &d->fields.output, &d->fields.messages, &d->fields.system,
			   &d->fields.chosen, &d->fields.rejected, &d->fields.choices,
			   &d->fields.answer};
	for (size_t i = 0; i < FT_ARRAY_LEN(fields); i++)
		free(*fields[i]);
	free(d->template_name);
	free(d->template_custom);
	free(d->system);
	strlist_free(&c->method.targets);
	strlist_free(&c->method.trainable);
	strlist_free(&c->method.ff_targets);
	free(c->train.early_stopping.metric);
	strlist_free(&c->eval.splits);
	strlist_free(&c->eval.metrics);
	strlist_free(&c->eval.choices);
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
