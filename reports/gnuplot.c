/* gnuplot: quoting and the gnuplot child process (see gnuplot.h). The child gets the
 * script file name as argv[1]; no shell and no string concatenation of commands. */
#include "reports/gnuplot.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/banned.h"

extern char **environ;

int gnuplot_quote(struct strbuf *out, const char *text, size_t max_bytes)
{
	size_t n = strlen(text ? text : "");
	bool cut = false;
	if (max_bytes && n > max_bytes) {
		n = max_bytes;
		while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
			n--; /* do not split a UTF-8 sequence */
		cut = true;
	}
	if (strbuf_puts(out, "'"))
		return FT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '\'' && strbuf_puts(out, "''"))
			return FT_ENOMEM;
		if (c != '\'' && strbuf_append(out, (const char *)&text[i], 1))
			return FT_ENOMEM;
	}
	if (cut && strbuf_puts(out, "..."))
		return FT_ENOMEM;
	return strbuf_puts(out, "'") ? FT_ENOMEM : 0;
}

const char *gnuplot_program(void)
{
	const char *p = getenv("FTLAB_GNUPLOT");
	return p && *p ? p : "gnuplot";
}

/* environ with LC_ALL=C (decimal points in data files and labels); caller frees the
 * array (not the strings, which belong to environ). */
static char **child_env(void)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(char *));
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LC_ALL=", 7) != 0)
			env[k++] = environ[i];
	env[k++] = (char *)"LC_ALL=C";
	env[k] = NULL;
	return env;
}

/* gnuplot could not be started: the program is missing or not executable. */
static int not_found(struct diag *d, const char *prog)
{
	int rc = diag_set(d, FT_EUNSUPP, NULL, 0, 0,
			  "gnuplot not found ('%s'): report charts need it", prog);
	diag_hint(d, "install the Debian package gnuplot-nox "
		     "(apt-get install gnuplot-nox), or set FTLAB_GNUPLOT to its path");
	return rc;
}

int gnuplot_run(const char *dir, const char *script, double timeout_s, struct diag *d)
{
	const char *prog = gnuplot_program();
	int rc = 0, pfd[2] = {-1, -1};
	bool fa_init = false;
	posix_spawn_file_actions_t fa;
	char **env = child_env();
	char err[4096];
	size_t err_len = 0;
	pid_t pid = -1;
	if (!env)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory starting gnuplot");
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		rc = diag_set(d, FT_EIO, NULL, 0, 0, "cannot create a pipe for gnuplot: %s",
			      strerror(errno));
		goto done;
	}
	if (posix_spawn_file_actions_init(&fa) != 0) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory starting gnuplot");
		goto done;
	}
	fa_init = true;
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) ||
	    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) ||
	    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2) ||
	    posix_spawn_file_actions_addchdir_np(&fa, dir)) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory starting gnuplot");
		goto done;
	}
	char *argv[] = {(char *)prog, (char *)script, NULL};
	int e = strchr(prog, '/') ? posix_spawn(&pid, prog, &fa, NULL, argv, env)
				  : posix_spawnp(&pid, prog, &fa, NULL, argv, env);
	if (e != 0) {
		pid = -1;
		if (e == ENOENT || e == EACCES) {
			rc = not_found(d, prog);
		} else {
			rc = diag_set(d, FT_EIO, NULL, 0, 0, "cannot start gnuplot ('%s'): %s", prog,
				      strerror(e));
		}
		goto done;
	}
	close(pfd[1]);
	pfd[1] = -1;
	double deadline = time_monotonic() + timeout_s;
	bool timed_out = false, eof = false;
	int status = 0, wait_errno = 0;
	for (;;) {
		if (!eof) {
			struct pollfd p = {.fd = pfd[0], .events = POLLIN};
			int pr = poll(&p, 1, 50);
			if (pr > 0) {
				char buf[1024];
				ssize_t r = read(pfd[0], buf, sizeof(buf));
				if (r <= 0) {
					eof = (r == 0 || errno != EINTR);
				} else {
					size_t take = (size_t)r;
					if (take > sizeof(err) - 1 - err_len)
						take = sizeof(err) - 1 - err_len;
					memcpy(err + err_len, buf, take);
					err_len += take;
				}
			}
		} else {
			usleep(20000);
		}
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			pid = -1;
			break;
		}
		if (w < 0 && errno != EINTR) {
			/* ECHILD (SIGCHLD ignored by whoever started ftlab): no status, ever. */
			wait_errno = errno;
			pid = -1;
			break;
		}
		if (time_monotonic() > deadline) {
			kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			pid = -1;
			timed_out = true;
			break;
		}
	}
	err[err_len] = '\0';
	for (size_t i = 0; i < err_len; i++) /* one line of text for the message */
		if ((unsigned char)err[i] < 0x20)
			err[i] = ' ';
	if (wait_errno)
		rc = diag_set(d, FT_EIO, NULL, 0, 0, "cannot wait for gnuplot on %s/%s: %s", dir,
			      script, strerror(wait_errno));
	else if (timed_out)
		rc = diag_set(d, FT_EIO, NULL, 0, 0, "gnuplot took longer than %.0f s on %s/%s "
			      "and was stopped", timeout_s, dir, script);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && err_len == 0)
		rc = not_found(d, prog); /* POSIX: a failed exec may show as exit status 127 */
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rc = diag_set(d, FT_EIO, NULL, 0, 0, "gnuplot failed on %s/%s (%s %d): %s", dir,
			      script, WIFEXITED(status) ? "exit status" : "signal",
			      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), err);
done:
	if (pid > 0) {
		kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	free(env);
	return rc;
}
