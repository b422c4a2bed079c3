/* bottleneck: AdapterHub bottleneck adapter directories (see bottleneck.h). The reader
 * treats the files as untrusted: sizes bounded, header inside the file, dtype known,
 * byte ranges matching shapes, inside the data section and not overlapping. */
#include "backends/native/peft/bottleneck.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/dequant.h"
#include "backends/native/ops/ops.h"
#include "backends/native/peft/st_write.h"
#include "common/util.h"
#include "common/banned.h"

#define BN_HEADER_MAX ((uint64_t)16 << 20)
#define BN_FILE_MAX ((size_t)2 << 30)
#define BN_NAME_MAX 256

static const char *const act_names[] = {"relu", "swish", "gelu", "gelu_new", "tanh"};

int bottleneck_act_parse(const char *s)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < FT_ARRAY_LEN(act_names); i++)
		if (strcmp(s, act_names[i]) == 0)
			return (int)i;
	return strcmp(s, "silu") == 0 ? OPS_ACT_SILU : -1;
}

const char *bottleneck_act_name(int act)
{
	return act >= 0 && act < (int)FT_ARRAY_LEN(act_names) ? act_names[act] : "relu";
}

/* ftlab "<block>.attention_adapters.adapter_down.weight" -> AdapterHub
 * "<block>.attention_adapters.adapters.<an>.adapter_down.0.weight". */
static bool name_to_file(char *buf, size_t n, const char *name, const char *an)
{
	const char *p = strstr(name, "_adapters.");
	if (!p)
		return false;
	size_t head = (size_t)(p - name) + strlen("_adapters.");
	const char *rest = name + head;
	int w;
	if (strncmp(rest, "adapter_down.", 13) == 0)
		w = snprintf(buf, n, "%.*sadapters.%s.adapter_down.0.%s", (int)head, name, an,
			     rest + 13);
	else if (strncmp(rest, "adapter_up.", 11) == 0)
		w = snprintf(buf, n, "%.*sadapters.%s.%s", (int)head, name, an, rest);
	else
		return false;
	return w > 0 && (size_t)w < n;
}

/* The inverse; *an gets the adapter's name (at most 63 bytes). */
static bool name_from_file(char *buf, size_t n, const char *key, char an[64])
{
	const char *p = strstr(key, "_adapters.adapters.");
	if (!p || (strncmp(key, "model.layers.", 13) != 0 && strncmp(key, "transformer.h.", 14) != 0))
		return false;
	size_t head = (size_t)(p - key) + strlen("_adapters.");
	const char *nm = p + strlen("_adapters.adapters.");
	const char *dot = strchr(nm, '.');
	if (!dot || dot == nm || dot - nm >= 64)
		return false;
	memcpy(an, nm, (size_t)(dot - nm));
	an[dot - nm] = '\0';
	const char *rest = dot + 1;
	const char *tail;
	int w;
	if (strncmp(rest, "adapter_down.0.", 15) == 0) {
		tail = rest + 15;
		w = snprintf(buf, n, "%.*sadapter_down.%s", (int)head, key, tail);
	} else if (strncmp(rest, "adapter_up.", 11) == 0) {
		tail = rest + 11;
		w = snprintf(buf, n, "%.*sadapter_up.%s", (int)head, key, tail);
	} else {
		return false;
	}
	if (strcmp(tail, "weight") != 0 && strcmp(tail, "bias") != 0)
		return false;
	return w > 0 && (size_t)w < n;
}

static const char *model_class(const char *model_type)
{
	if (model_type && strcmp(model_type, "gemma3") == 0)
		return "Gemma3ForCausalLM";
	if (model_type && strcmp(model_type, "gpt2") == 0)
		return "GPT2LMHeadModel";
	return "LlamaForCausalLM";
}

/* AdapterHub's full config for SeqBn (pfeiffer) or DoubleSeqBn (houlsby) with our
 * choices; the keys save_adapter writes. */
static json_t *config_json(const struct bn_info *in)
{
	json_t *c = json_object();
	json_object_set_new(c, "adapter_residual_before_ln", json_false());
	json_object_set_new(c, "cross_adapter", json_false());
	json_object_set_new(c, "dropout", json_real(0.0));
	json_object_set_new(c, "factorized_phm_W", json_true());
	json_object_set_new(c, "factorized_phm_rule", json_false());
	json_object_set_new(c, "hypercomplex_nonlinearity", json_string("glorot-uniform"));
	json_object_set_new(c, "init_weights", json_string("bert"));
	json_object_set_new(c, "init_weights_seed", json_null());
	json_object_set_new(c, "inv_adapter", json_null());
	json_object_set_new(c, "inv_adapter_reduction_factor", json_null());
	json_object_set_new(c, "is_parallel", json_false());
	json_object_set_new(c, "learn_phm", json_true());
	json_object_set_new(c, "leave_out", json_array());
	json_object_set_new(c, "ln_after", json_false());
	json_object_set_new(c, "ln_before", json_false());
	json_object_set_new(c, "mh_adapter", json_boolean(in->attn));
	json_object_set_new(c, "non_linearity", json_string(bottleneck_act_name(in->act)));
	json_object_set_new(c, "original_ln_after", json_true());
	json_object_set_new(c, "original_ln_before", json_boolean(in->pfeiffer));
	json_object_set_new(c, "output_adapter", json_boolean(in->mlp));
	json_object_set_new(c, "phm_bias", json_true());
	json_object_set_new(c, "phm_c_init", json_string("normal"));
	json_object_set_new(c, "phm_dim", json_integer(4));
	json_object_set_new(c, "phm_init_range", json_real(0.0001));
	json_object_set_new(c, "phm_layer", json_false());
	json_object_set_new(c, "phm_rank", json_integer(1));
	/* an integral factor as an integer, as Python writes 16 */
	double r = in->reduction;
	json_object_set_new(c, "reduction_factor", r == floor(r) && r < 1e15
							   ? json_integer((json_int_t)r)
							   : json_real(r));
	json_object_set_new(c, "residual_before_ln", json_true());
	json_object_set_new(c, "scaling", json_real(1.0));
	json_object_set_new(c, "shared_W_phm", json_false());
	json_object_set_new(c, "shared_phm_rule", json_true());
	json_object_set_new(c, "stochastic_depth", json_real(0.0));
	json_object_set_new(c, "use_gating", json_false());
	json_t *j = json_object();
	json_object_set_new(j, "config", c);
	json_object_set_new(j, "hidden_size", json_integer(in->hidden_size));
	json_object_set_new(j, "model_class", json_string(model_class(in->model_type)));
	json_object_set_new(j, "model_name", json_null());
	json_object_set_new(j, "model_type",
			    json_string(in->model_type ? in->model_type : "llama"));
	json_object_set_new(j, "name", json_string(in->name ? in->name : "ftlab"));
	json_object_set_new(j, "version", json_string("adapters.1.3.0"));
	return j;
}

int bottleneck_write(const char *dir, const struct lora_tensor *t, size_t n,
		     const struct bn_info *info, struct diag *d)
{
	int rc = dir_make_all(dir, d);
	if (rc)
		return rc;
	const char *an = info->name ? info->name : "ftlab";
	struct st_tensor *st = calloc(n ? n : 1, sizeof(*st));
	char **names = calloc(n ? n : 1, sizeof(*names));
	char *stp = path_join(dir, "adapter.safetensors");
	char *cfp = path_join(dir, "adapter_config.json");
	char *text = NULL;
	if (!st || !names || !stp || !cfp) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		char buf[BN_NAME_MAX];
		if (!name_to_file(buf, sizeof buf, t[i].name, an)) {
			rc = diag_set(d, FT_EINVAL, dir, 0, 0,
				      "'%s' is not a bottleneck adapter tensor", t[i].name);
			goto done;
		}
		names[i] = ft_strdup(buf);
		if (!names[i]) {
			rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
			goto done;
		}
		bool vec = t[i].cols == 1 && strstr(t[i].name, ".bias");
		st[i] = (struct st_tensor){.name = names[i], .dtype = "F32", .ndim = vec ? 1 : 2,
					   .shape = {t[i].rows, vec ? 0 : t[i].cols},
					   .data = t[i].data,
					   .nbytes = (size_t)t[i].rows * (size_t)t[i].cols * 4};
	}
	if ((rc = st_write_file(stp, st, n, NULL, d)) != 0)
		goto done;
	json_t *j = config_json(info);
	text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (!text) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	rc = file_write_atomic(cfp, text, strlen(text), d);
done:
	for (size_t i = 0; i < n && names; i++)
		free(names[i]);
	free(text);
	free(names);
	free(st);
	free(stp);
	free(cfp);
	return rc;
}

/* A config key that must have one value for a bottleneck adapter ftlab builds. */
static bool cfg_is(const json_t *c, const char *key, const json_t *want, bool absent_ok)
{
	const json_t *v = json_object_get(c, key);
	if (!v)
		return absent_ok;
	if (json_is_number(want))
		return json_is_number(v) && json_number_value(v) == json_number_value(want);
	return json_equal((json_t *)v, (json_t *)want);
}

static int read_config(struct bn_info *info, const char *path, struct diag *d)
{
	json_t *j = NULL;
	int rc = adapter_config_read(&j, path, d);
	if (rc)
		return rc;
	json_t *c = json_object_get(j, "config");
	json_t *hs = json_object_get(j, "hidden_size");
	json_t *mh = json_object_get(c, "mh_adapter"), *oa = json_object_get(c, "output_adapter");
	json_t *rf = json_object_get(c, "reduction_factor");
	json_t *olb = json_object_get(c, "original_ln_before");
	const char *nl = json_string_value(json_object_get(c, "non_linearity"));
	const char *arch = json_string_value(json_object_get(c, "architecture"));
	if (!json_is_object(c) || !json_is_boolean(mh) || !json_is_boolean(oa) ||
	    !json_is_number(rf) || !(json_number_value(rf) > 0) || !json_is_integer(hs) ||
	    json_integer_value(hs) < 1 || json_integer_value(hs) > (1 << 20)) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "expected a bottleneck adapter config (config.mh_adapter, "
			      "config.output_adapter, a numeric config.reduction_factor > 0, "
			      "hidden_size)");
		goto done;
	}
	if (bottleneck_act_parse(nl) < 0) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "config.non_linearity '%s' is not one of relu, swish, gelu, gelu_new, "
			      "tanh", nl ? nl : "(missing)");
		goto done;
	}
	json_t *t = json_true(), *f = json_false(), *one = json_real(1.0), *zero = json_real(0.0),
	       *nul = json_null(), *empty = json_array();
	const char *bad = (arch && strcmp(arch, "bottleneck") != 0) ? "architecture"
			  : !cfg_is(c, "original_ln_after", t, true) ? "original_ln_after"
			  : !cfg_is(c, "residual_before_ln", t, true) ? "residual_before_ln"
			  : !cfg_is(c, "adapter_residual_before_ln", f, true)
				  ? "adapter_residual_before_ln"
			  : !cfg_is(c, "ln_before", f, true)       ? "ln_before"
			  : !cfg_is(c, "ln_after", f, true)        ? "ln_after"
			  : !cfg_is(c, "use_gating", f, true)      ? "use_gating"
			  : !cfg_is(c, "is_parallel", f, true)     ? "is_parallel"
			  : !cfg_is(c, "phm_layer", f, true)       ? "phm_layer"
			  : !cfg_is(c, "scaling", one, true)       ? "scaling"
			  : !cfg_is(c, "stochastic_depth", zero, true) ? "stochastic_depth"
			  : !cfg_is(c, "inv_adapter", nul, true)   ? "inv_adapter"
			  : !cfg_is(c, "cross_adapter", f, true)   ? "cross_adapter"
			  : !cfg_is(c, "leave_out", empty, true)   ? "leave_out"
			  : (olb && !json_is_boolean(olb))         ? "original_ln_before"
								   : NULL;
	json_decref(t);
	json_decref(f);
	json_decref(one);
	json_decref(zero);
	json_decref(empty);
	if (bad) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "config.%s: ftlab builds only the sequential bottleneck adapters of "
			      "SeqBnConfig and DoubleSeqBnConfig (no adapter layer norms, gating, "
			      "parallel or PHM layers, scaling 1, every layer)", bad);
		goto done;
	}
	info->attn = json_is_true(mh);
	info->mlp = json_is_true(oa);
	info->pfeiffer = json_is_true(olb);
	info->reduction = json_number_value(rf);
	info->act = bottleneck_act_parse(nl);
	info->hidden_size = (int)json_integer_value(hs);
	info->model_type = NULL;
	info->name = NULL;
done:
	json_decref(j);
	return rc;
}

void bottleneck_free(struct bn_adapter *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++) {
		free(a->t[i].name);
		free(a->t[i].data);
	}
	free(a->t);
	free(a);
}

/* One header entry into a->t[a->n] (names checked, values converted to fp32). */
static int read_tensor(struct bn_adapter *a, struct st_range *rg, const char *key, json_t *e,
		       const unsigned char *data, size_t data_len, char an[64], const char *stp,
		       struct diag *d)
{
	const char *dt = json_string_value(json_object_get(e, "dtype"));
	json_t *shape = json_object_get(e, "shape"), *offs = json_object_get(e, "data_offsets");
	size_t es = dt ? st_dtype_size(dt) : 0;
	uint32_t ty = dt && strcmp(dt, "F32") == 0   ? GGML_F32
		      : dt && strcmp(dt, "F16") == 0 ? GGML_F16
		      : dt && strcmp(dt, "BF16") == 0 ? GGML_BF16
						       : UINT32_MAX;
	if (ty == UINT32_MAX)
		return diag_set(d, FT_EINVAL, stp, 0, 0, "tensor '%s': dtype must be F32, F16 or BF16",
				key);
	size_t nd = json_array_size(shape);
	if (!json_is_array(shape) || nd < 1 || nd > 2 || !json_is_array(offs) ||
	    json_array_size(offs) != 2)
		return diag_set(d, FT_EINVAL, stp, 0, 0,
				"tensor '%s': expected a 1-D or 2-D shape and data_offsets", key);
	json_int_t r = json_integer_value(json_array_get(shape, 0));
	json_int_t c = nd == 2 ? json_integer_value(json_array_get(shape, 1)) : 1;
	json_int_t lo = json_integer_value(json_array_get(offs, 0));
	json_int_t hi = json_integer_value(json_array_get(offs, 1));
	size_t numel, bytes;
	if (r <= 0 || c <= 0 || r > (1 << 24) || c > (1 << 24) || lo < 0 || hi < lo ||
	    !size_mul((size_t)r, (size_t)c, &numel) || !size_mul(numel, es, &bytes) ||
	    (uint64_t)(hi - lo) != bytes || (uint64_t)hi > data_len)
		return diag_set(d, FT_EINVAL, stp, 0, 0,
				"tensor '%s': shape, dtype and byte range disagree or lie outside "
				"the file", key);
	char nm[BN_NAME_MAX], this_an[64];
	if (!name_from_file(nm, sizeof nm, key, this_an))
		return diag_set(d, FT_EINVAL, stp, 0, 0,
				"tensor '%s' is not a bottleneck adapter weight (expected "
				"<block>.attention_adapters|output_adapters.adapters.<name>."
				"adapter_down.0|adapter_up.weight|bias)", key);
	if (an[0] && strcmp(an, this_an) != 0)
		return diag_set(d, FT_EINVAL, stp, 0, 0,
				"tensors of two adapters ('%s' and '%s'): one adapter per directory",
				an, this_an);
	snprintf(an, 64, "%s", this_an);
	bool is_bias = strcmp(nm + strlen(nm) - 5, ".bias") == 0;
	if (is_bias != (nd == 1))
		return diag_set(d, FT_EINVAL, stp, 0, 0,
				"tensor '%s': a bias must be 1-D and a weight 2-D", key);
	*rg = (struct st_range){(uint64_t)lo, (uint64_t)hi};
	struct lora_tensor *t = &a->t[a->n];
	t->name = ft_strdup(nm);
	t->data = malloc(numel * sizeof(float));
	t->rows = r;
	t->cols = c;
	a->n++;
	if (!t->name || !t->data)
		return diag_set(d, FT_ENOMEM, stp, 0, 0, "out of memory (%zu bytes)",
				numel * sizeof(float));
	dequant_to_f32(ty, data + lo, t->data, numel);
	return 0;
}

int bottleneck_read(struct bn_adapter **out, const char *dir, struct diag *d)
{
	*out = NULL;
	struct bn_adapter *a = calloc(1, sizeof(*a));
	char *stp = path_join(dir, "adapter.safetensors");
	char *cfp = path_join(dir, "adapter_config.json");
	struct st_file f = {0};
	struct st_range *ranges = NULL;
	int rc = 0;
	if (!a || !stp || !cfp) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	if ((rc = read_config(&a->info, cfp, d)) != 0 ||
	    (rc = st_read_whole(&f, stp, BN_FILE_MAX, BN_HEADER_MAX, d)) != 0)
		goto done;
	size_t cap = json_object_size(f.header);
	a->t = calloc(cap ? cap : 1, sizeof(*a->t));
	ranges = calloc(cap ? cap : 1, sizeof(*ranges));
	if (!a->t || !ranges) {
		rc = diag_set(d, FT_ENOMEM, stp, 0, 0, "out of memory");
		goto done;
	}
	size_t nr = 0;
	char an[64] = "";
	const char *key;
	json_t *e;
	json_object_foreach(f.header, key, e) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		if ((rc = read_tensor(a, &ranges[nr], key, e, f.data, f.data_len, an, stp, d)) != 0)
			goto done;
		nr++;
	}
	if (a->n == 0) {
		rc = diag_set(d, FT_EINVAL, stp, 0, 0, "no adapter tensors");
		goto done;
	}
	if ((rc = st_ranges_check(ranges, nr, stp, d)) != 0)
		goto done;
	*out = a;
	a = NULL;
done:
	bottleneck_free(a);
	st_file_free(&f);
	free(ranges);
	free(stp);
	free(cfp);
	return rc;
}
