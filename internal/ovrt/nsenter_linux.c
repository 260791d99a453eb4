// nsenter: runs before the Go runtime starts (a constructor), while the process is still single
// threaded, to join the namespaces a multi-threaded Go program cannot join: user and mount.
// The runtime passes "_OVRT_SETNS=user:5,mnt:6" (namespace type : inherited fd, in the order to
// join). Without that variable it does nothing, so every binary linking the runtime is unaffected.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void ovrt_fail(const char *what, int err)
{
	// fd 3 is the runtime's sync socket; the parent reads one JSON message from it.
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "{\"error\":\"join %s namespace: %s\"}\n", what, strerror(err));
	if (n > 0 && write(3, buf, (size_t)n) < 0) {
		/* nothing more we can do */
	}
	_exit(1);
}

__attribute__((constructor)) static void ovrt_nsenter(void)
{
	const char *spec = getenv("_OVRT_SETNS");
	if (spec == NULL || *spec == '\0')
		return;
	char *copy = strdup(spec);
	if (copy == NULL)
		ovrt_fail("(memory)", ENOMEM);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		if (colon == NULL)
			ovrt_fail(tok, EINVAL);
		*colon = '\0';
		int fd = atoi(colon + 1);
		int type = 0;
		if (strcmp(tok, "user") == 0)
			type = CLONE_NEWUSER;
		else if (strcmp(tok, "mnt") == 0)
			type = CLONE_NEWNS;
		else
			ovrt_fail(tok, EINVAL);
		if (setns(fd, type) < 0)
			ovrt_fail(tok, errno);
		close(fd);
	}
	free(copy);
	unsetenv("_OVRT_SETNS");
}
