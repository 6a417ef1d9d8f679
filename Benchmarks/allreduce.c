/* The allreduce workload in C: the limit `fleet bench` sets the mpi
 * backend's allreduce against (scripts/bench builds it with mpicc).
 *
 *   mpirun -np 3 fleet-allreduce-c WORKERS
 *
 * Every rank sums 8 MiB of doubles (element j of rank r = (r + 1) * (j % 1000))
 * in place with MPI_Allreduce, after three untimed calls; each of the 40
 * timed calls starts from the same data, after a barrier, and only the call
 * is timed. Rank 0 prints one JSON line, as `fleet run-one` does (WORKERS is
 * echoed into it: the ranks are WORKERS + 1, as for Fleet's mpi runs). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { COUNT = 1 << 20, WARMUP = 3, CALLS = 40 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int workers = argc > 1 ? atoi(argv[1]) : size - 1;
    double *pristine = malloc(COUNT * sizeof(double)), *buffer = malloc(COUNT * sizeof(double));
    for (int j = 0; j < COUNT; j++) pristine[j] = (double)((rank + 1) * (j % 1000));
    double total = 0;
    for (int call = 0; call < WARMUP + CALLS; call++) {
        memcpy(buffer, pristine, COUNT * sizeof(double));
        MPI_Barrier(MPI_COMM_WORLD);
        double began = now();
        MPI_Allreduce(MPI_IN_PLACE, buffer, COUNT, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (call >= WARMUP) total += now() - began;
    }
    long ranks_sum = (long)size * (size + 1) / 2;
    int wrong = 0;
    for (int j = 0; j < COUNT; j++) wrong += buffer[j] != (double)(ranks_sum * (j % 1000));
    int wrong_anywhere = 0;
    MPI_Reduce(&wrong, &wrong_anywhere, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    long peak = usage.ru_maxrss * 1024L, peaks = 0;
    MPI_Reduce(&peak, &peaks, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("{\"workload\":\"allreduce\",\"backend\":\"mpi-c\",\"workers\":%d,\"tasks\":%d,\"seconds\":%.9f,"
               "\"figure\":%.3f,\"unit\":\"us/call\",\"check\":\"%s\",\"peak_rss_bytes\":%ld}\n",
               workers, CALLS, total, total / CALLS * 1e6, wrong_anywhere == 0 ? "ok" : "wrong sums", peaks);
    }
    free(pristine);
    free(buffer);
    MPI_Finalize();
    return 0;
}
