/* store_claims: who owns a running run. A claim records a random token, known only to
 * the claiming process, with that process's pid, host and start time (table run_claims);
 * the store's writes for a run check the token inside their own transaction, and the
 * liveness test behind reaping tells a live process from a dead or reused pid. */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

/* Field 22 (starttime) of /proc/PID/stat, or -1; *out_state gets field 3. The command
 * name (field 2) may hold spaces and parentheses, so fields are counted after the last
 * ')'. */
static int64_t proc_start(int64_t pid, char *out_state)
{
	char path[64], buf[1024];
	*out_state = '?';
	if (pid <= 0 || pid > INT32_MAX)
		return -1;
	snprintf(path, sizeof path, "/proc/%" PRId64 "/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -1;
	*out_state = p[2];
	/* p + 2 is field 3; starttime is 19 fields further. */
	p += 2;
	for (int f = 3; f < 22; f++) {
		p = strchr(p, ' ');
		if (!p)
			return -1;
		p++;
	}
	int64_t v;
	char field[32];
	size_t len = strcspn(p, " ");
	if (len == 0 || len >= sizeof field)
		return -1;
	memcpy(field, p, len);
	field[len] = '\0';
	return parse_i64(field, &v) ? v : -1;
}

int64_t store_self_start(void)
{
	char state;
	return proc_start((int64_t)getpid(), &state);
}

bool store_pid_alive(int64_t pid, int64_t start)
{
	if (pid <= 0 || pid > INT32_MAX)
		return false;
	if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
		return false;
	char state;
	int64_t st = proc_start(pid, &state);
	if (st < 0)
		return true; /* no /proc here: kill() said it exists */
	if (state == 'Z' || state == 'X')
		return false;
	/* Another process got the pid since the claim (a reused pid is not the claimer). */
	return start < 0 || st == start;
}

static int new_token(char out[STORE_TOKEN_SIZE], struct diag *d)
{
	unsigned char raw[(STORE_TOKEN_SIZE - 1) / 2];
	size_t got = 0;
	while (got < sizeof raw) {
		ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return diag_set(d, FT_EIO, "", 0, 0, "cannot make a claim token: %s",
					strerror(errno));
		}
		got += (size_t)n;
	}
	hex_encode(out, raw, sizeof raw);
	return 0;
}

int store_claim_record(struct store *s, const char *run_id, char out[STORE_TOKEN_SIZE],
		       struct diag *d)
{
	char token[STORE_TOKEN_SIZE];
	int r = new_token(token, d);
	if (r)
		return r;
	sqlite3_stmt *st = NULL;
	r = store_prepare(s, &st,
			  "INSERT INTO run_claims(run, token, pid, host, proc_start, claimed)"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(run) DO UPDATE SET"
			  " token = excluded.token, pid = excluded.pid, host = excluded.host,"
			  " proc_start = excluded.proc_start, claimed = excluded.claimed",
			  d);
	if (r)
		return r;
	int64_t start = store_self_start();
	store_bind_text(s, st, 1, run_id);
	store_bind_text(s, st, 2, token);
	store_bind_int64(s, st, 3, (int64_t)getpid());
	store_bind_text(s, st, 4, store_host());
	if (start >= 0)
		store_bind_int64(s, st, 5, start);
	else
		store_bind_null(s, st, 5);
	store_bind_double(s, st, 6, time_wall());
	r = store_step_done(s, st, d, "recording a claim");
	sqlite3_finalize(st);
	if (!r)
		memcpy(out, token, STORE_TOKEN_SIZE);
	return r;
}

int store_claim_check(struct store *s, const char *run_id, const char *token, struct diag *d)
{
	if (!token || !token[0])
		return diag_set(d, FT_ESTORE, "", 0, 0,
				"run %s: a write without the run's claim token is refused", run_id);
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st,
			      "SELECT 1 FROM run_claims c JOIN runs r ON r.id = c.run"
			      " WHERE c.run = ?1 AND c.token = ?2 AND r.status = 'running'",
			      d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	store_bind_text(s, st, 2, token);
	r = store_step_row(s, st, d, "checking the claim of a run");
	sqlite3_finalize(st);
	if (r < 0)
		return r;
	if (r == 0) {
		r = diag_set(d, FT_ESTORE, "", 0, 0,
			     "this process no longer owns run %s (another process claimed it, or "
			     "it was marked crashed); its write is refused", run_id);
		diag_hint(d, "'ftlab show %s' says who ran it last", run_id);
		return r;
	}
	return 0;
}
