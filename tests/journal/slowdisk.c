/* A slow disk for the crash trials (crash.py --slow-disk MS): preloaded into
 * `interlock serve` (LD_PRELOAD), it delays every write to the files whose path starts
 * with $SLOWDISK_PREFIX (the journal and its -wal; not the -shm, which is memory) by
 * $SLOWDISK_US microseconds before doing it. That widens the moment between an engine
 * deciding a batch and the batch reaching the file, so that a kill -9 lands there
 * often: an engine that answered before writing would be caught. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static long delay_us(void) {
    static long us = -1;
    if (us < 0) {
        const char *v = getenv("SLOWDISK_US");
        us = v ? atol(v) : 0;
    }
    return us;
}

static int slow_fd(int fd) {
    const char *prefix = getenv("SLOWDISK_PREFIX");
    char link[64], path[4096];
    ssize_t n;
    if (!prefix || delay_us() <= 0)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    if (strncmp(path, prefix, strlen(prefix)) != 0)
        return 0;
    return !(n >= 4 && strcmp(path + n - 4, "-shm") == 0);
}

static void pause_if_slow(int fd) {
    if (slow_fd(fd)) {
        long us = delay_us();
        struct timespec t = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&t, NULL);
    }
}

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    static pwrite_fn real = NULL;
    if (!real)
        real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite64");
    pause_if_slow(fd);
    return real(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    static pwrite_fn real = NULL;
    if (!real)
        real = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
    pause_if_slow(fd);
    return real(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
    static write_fn real = NULL;
    if (!real)
        real = (write_fn)dlsym(RTLD_NEXT, "write");
    pause_if_slow(fd);
    return real(fd, buf, n);
}
