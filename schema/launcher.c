/* launcher: the value formats of the `launcher:` keys that Slurm defines (time limits and
 * memory sizes), checked here so that `ftlab check` reports them with their position; the
 * launcher (runner/slurm.c) reads the parsed values from struct config. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "schema/schema.h"
#include "common/banned.h"

bool schema_slurm_time(const char *s, double *out_s)
{
	if (!s || !*s)
		return false;
	double v;
	size_t len = strlen(s);
	if (strchr("smhd", s[len - 1]) && !strchr(s, ':') && !strchr(s, '-')) {
		if (!parse_duration(s, &v) || !(v > 0))
			return false;
		*out_s = v;
		return true;
	}
	/* [D-]A[:B[:C]] with a day count only before '-'. */
	int64_t days = 0, f[3] = {0, 0, 0};
	int nf = 0;
	const char *p = s, *dash = strchr(s, '-');
	if (dash) {
		char tmp[32];
		if ((size_t)(dash - s) >= sizeof tmp || dash == s)
			return false;
		snprintf(tmp, sizeof tmp, "%.*s", (int)(dash - s), s);
		if (!parse_i64(tmp, &days) || days < 0 || days > 3650)
			return false;
		p = dash + 1;
	}
	while (*p) {
		if (nf == 3 || !isdigit((unsigned char)*p))
			return false;
		int64_t x = 0;
		while (isdigit((unsigned char)*p)) {
			x = x * 10 + (*p - '0');
			if (x > 10000000)
				return false;
			p++;
		}
		f[nf++] = x;
		if (*p == ':')
			p++;
		else if (*p)
			return false;
	}
	if (nf == 0)
		return false;
	double sec;
	if (dash) /* D-HH, D-HH:MM, D-HH:MM:SS */
		sec = (double)days * 86400 + (double)f[0] * 3600 + (double)f[1] * 60 + (double)f[2];
	else if (nf == 1) /* MM */
		sec = (double)f[0] * 60;
	else if (nf == 2) /* MM:SS */
		sec = (double)f[0] * 60 + (double)f[1];
	else /* HH:MM:SS */
		sec = (double)f[0] * 3600 + (double)f[1] * 60 + (double)f[2];
	if (!(sec > 0))
		return false;
	*out_s = sec;
	return true;
}

bool schema_slurm_mem_ok(const char *s)
{
	if (!s || !isdigit((unsigned char)s[0]))
		return false;
	size_t i = 0;
	while (isdigit((unsigned char)s[i]))
		i++;
	if (i > 12)
		return false;
	if (!s[i])
		return true;
	return strchr("KMGT", s[i]) && !s[i + 1];
}
