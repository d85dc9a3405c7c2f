/* clockshift: an LD_PRELOAD shim that moves the wall clock (CLOCK_REALTIME, gettimeofday, time) of one
 * process by VT_CLOCK_OFFSET seconds (may be negative); monotonic clocks are left alone, so timers and
 * tokio run as usual. ci/e2e/security.sh uses it to give one daemon (and one hostctl run) a wall clock
 * other than the machine's: a certificate that is valid to its holder and expired to the VN. Built at
 * test time with `cc -shared -fPIC -o clockshift.so clockshift.c -ldl`.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long offset(void) {
    const char *s = getenv("VT_CLOCK_OFFSET");
    return s ? strtol(s, NULL, 10) : 0;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, ts);
    if (r == 0 && ts && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset();
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    (void)tz;
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
