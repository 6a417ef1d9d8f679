#define _GNU_SOURCE
#include "CFleetShims.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int cfleet_spawn(const char *path, char *const argv[], char *const envp[],
                 const int *fds, int npairs, int first_free, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    for (int i = 0; rc == 0 && i < npairs; i++) {
        rc = posix_spawn_file_actions_adddup2(&actions, fds[2 * i], fds[2 * i + 1]);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, first_free);
#else
    (void)first_free;
#endif
    /* The worker leads a process group of its own, so that killing the
       group ends whatever its tasks started too. */
    posix_spawnattr_t attr;
    int arc = posix_spawnattr_init(&attr);
    if (arc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return arc;
    }
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    if (rc == 0) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0) rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

int cfleet_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int cfleet_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int cfleet_set_pipe_size(int fd, int bytes) { return fcntl(fd, F_SETPIPE_SZ, bytes); }

int cfleet_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

char **cfleet_environ(void) { return environ; }
