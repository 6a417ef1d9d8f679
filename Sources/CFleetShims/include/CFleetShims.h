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

#endif
