// nsenter: runs before the Go runtime starts (a constructor), while the process is still single
// threaded, to join the namespaces a multi-threaded Go program cannot join (user and mount), and,
// when the container joins a user namespace, to do what runc's nsexec does there.
//
// The runtime passes "_OVRT_SETNS=user:5,mnt:6" (namespace type : inherited fd, in the order to
// join: the user namespace first, as runc). Without that variable it does nothing, so every binary
// linking the runtime is unaffected.
//
// "_OVRT_UNSHARE=FLAGS" (decimal clone flags, possibly 0) is set when a container's init joins a
// user namespace: the namespaces it creates must be owned by that user namespace, so they are made
// here, after the joins, with unshare. The process then becomes root of the user namespace (its
// maps are the namespace's own: nothing is written). A pid namespace, joined or new, holds only the
// children of who entered it: the process then clones the init with CLONE_PARENT (so the runtime
// is its parent, as for any container) and exits. Either way it reports the init's pid on the sync
// socket as {"pid":N}.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// fd 3 is the runtime's sync socket; the parent reads JSON messages from it.
static void ovrt_say(const char *buf, int n)
{
	if (n > 0 && write(3, buf, (size_t)n) < 0) {
		/* nothing more we can do */
	}
}

static void ovrt_fail(const char *what, int err)
{
	char buf[256];
	ovrt_say(buf, snprintf(buf, sizeof(buf), "{\"error\":\"%s: %s\"}\n", what, strerror(err)));
	_exit(1);
}

static int ovrt_nstype(const char *name)
{
	static const struct {
		const char *name;
		int type;
	} types[] = {
		{"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET},
		{"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS}, {"cgroup", CLONE_NEWCGROUP},
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(name, types[i].name) == 0)
			return types[i].type;
	return 0;
}

// ovrt_join joins the namespaces of spec in order and returns the types it joined.
static int ovrt_join(const char *spec)
{
	char what[64];
	int joined = 0;
	char *copy = strdup(spec);
	if (copy == NULL)
		ovrt_fail("join namespaces", ENOMEM);
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		if (colon != NULL)
			*colon = '\0';
		snprintf(what, sizeof(what), "join %s namespace", tok);
		int type = ovrt_nstype(tok);
		if (colon == NULL || type == 0)
			ovrt_fail(what, EINVAL);
		int fd = atoi(colon + 1);
		if (setns(fd, type) < 0)
			ovrt_fail(what, errno);
		close(fd);
		joined |= type;
	}
	free(copy);
	return joined;
}

// ovrt_unshare makes the namespaces of flags, becomes root of the joined user namespace and
// reports the init's pid; only the init returns.
static void ovrt_unshare(const char *flags_s, int joined)
{
	char buf[64];
	int flags = atoi(flags_s);
	if (flags != 0 && unshare(flags & ~CLONE_NEWPID) < 0)
		ovrt_fail("create namespaces in the joined user namespace", errno);
	if (flags & CLONE_NEWPID && unshare(CLONE_NEWPID) < 0)
		ovrt_fail("create pid namespace in the joined user namespace", errno);
	if (joined & CLONE_NEWUSER) {
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			ovrt_fail("become root in the joined user namespace (its maps must map uid and gid 0)", errno);
	}
	if ((flags | joined) & CLONE_NEWPID) {
		pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (pid < 0)
			ovrt_fail("start the init in its pid namespace", errno);
		if (pid > 0) {
			ovrt_say(buf, snprintf(buf, sizeof(buf), "{\"pid\":%d}\n", (int)pid));
			_exit(0);
		}
	} else {
		ovrt_say(buf, snprintf(buf, sizeof(buf), "{\"pid\":%d}\n", (int)getpid()));
	}
}

__attribute__((constructor)) static void ovrt_nsenter(void)
{
	const char *spec = getenv("_OVRT_SETNS");
	const char *flags = getenv("_OVRT_UNSHARE");
	int joined = 0;
	if (spec != NULL && *spec != '\0')
		joined = ovrt_join(spec);
	if (flags != NULL)
		ovrt_unshare(flags, joined);
	unsetenv("_OVRT_SETNS");
	unsetenv("_OVRT_UNSHARE");
}
