// Small C helpers for the Linux calls Swift's Glibc module does not expose
// (they need _GNU_SOURCE).
#ifndef CFLEET_SHIMS_H
#define CFLEET_SHIMS_H

/// The number of CPUs in the calling process's affinity mask, or -1.
int cfleet_affinity_count(void);

/// Names the calling thread (at most 15 bytes are kept). Returns 0 on success.
int cfleet_set_thread_name(const char *name);

/// Sets glibc's mmap threshold (fixing it, so it no longer adapts).
/// Returns 1 on success, 0 where unsupported.
int cfleet_set_mmap_threshold(int bytes);

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (posix_spawn, no fork), after making
/// `fds[2i]` the child's descriptor `fds[2i+1]` for each of `npairs` pairs,
/// opening /dev/null as its stdin and closing every other descriptor from
/// `first_free` up, in a process group of its own. Returns 0 and sets
/// `*pid`, or an errno value.
int cfleet_spawn(const char *path, char *const argv[], char *const envp[],
                 const int *fds, int npairs, int first_free, pid_t *pid);

/// A descriptor that becomes readable when process `pid` exits (pidfd_open,
/// close-on-exec); -1 with errno ENOSYS where the kernel has none.
int cfleet_pidfd_open(pid_t pid);

/// memfd_create with MFD_CLOEXEC; -1 on failure.
int cfleet_memfd(const char *name);

/// Sets a pipe's capacity (F_SETPIPE_SZ); returns the new size or -1.
int cfleet_set_pipe_size(int fd, int bytes);

/// pipe2 with O_CLOEXEC; 0 on success.
int cfleet_pipe_cloexec(int fds[2]);

/// The environment of this process (the `environ` array).
char **cfleet_environ(void);

/// Makes C's stdout line-buffered (a worker's stdout is a pipe, which C
/// would buffer by the block).
void cfleet_line_buffer_stdout(void);

#endif
