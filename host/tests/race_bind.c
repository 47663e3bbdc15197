// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * LD_PRELOAD shim for abuse.py's socket_symlink_race: an attacker with
 * write access to the socket's directory who wins the race between
 * bind() and whatever the daemon does to the path next.  Right after a
 * bind() to $B13_RACE_PATH succeeds, the path becomes a symlink to
 * $B13_RACE_TARGET.  A daemon that then chmod()s or chown()s the path
 * changes the target instead.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	const char *path = getenv("B13_RACE_PATH");
	const char *target = getenv("B13_RACE_TARGET");
	const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
	int ret;

	if (!real)
		real = (int (*)(int, const struct sockaddr *, socklen_t))
			dlsym(RTLD_NEXT, "bind");
	ret = real(fd, sa, len);
	if (!ret && path && target && sa->sa_family == AF_UNIX &&
	    !strcmp(un->sun_path, path) && !unlink(path) &&
	    symlink(target, path))
		return -1;
	return ret;
}
