// Exercises poll_oneoff (the runtime's own, interruptible implementation) for runtime_test.
// Runs the operations in argv[1..] in order, printing one line each:
//   sleep:MS      nanosleep (a relative realtime clock subscription), then "slept MS"
//   forever       sleep(100000) in a loop: only a deadline or a CancelToken stops it
//   abs-mono:MS   clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, now + MS): "abs-mono ok"
//   abs-real:MS   the same on CLOCK_REALTIME: "abs-real ok"
//   multi         three clocks (60, 20, 20 ms): the events that are ready, in order
//   fd            stdin read + a 10 s clock: stdin is ready at once
//   errors        errno of bad calls: no subscriptions, bad pointers, CPU-time clock, bad tag
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

static long long now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void abs_sleep(const char* name, clockid_t clock, int ms) {
  long long target = now_ns(clock) + (long long)ms * 1000000LL;
  struct timespec ts = {(time_t)(target / 1000000000LL), (long)(target % 1000000000LL)};
  int rc = clock_nanosleep(clock, TIMER_ABSTIME, &ts, NULL);
  long long late = now_ns(clock) - target;
  if (rc != 0) {
    printf("%s failed: %s\n", name, strerror(rc));
  } else if (late < 0) {
    printf("%s early by %lld ns\n", name, -late);
  } else {
    printf("%s ok\n", name);
  }
}

static __wasi_subscription_t clock_sub(__wasi_userdata_t userdata, __wasi_clockid_t id,
                                       __wasi_timestamp_t timeout) {
  __wasi_subscription_t s;
  memset(&s, 0, sizeof s);
  s.userdata = userdata;
  s.u.tag = __WASI_EVENTTYPE_CLOCK;
  s.u.u.clock.id = id;
  s.u.u.clock.timeout = timeout;
  return s;
}

static void print_events(const __wasi_event_t* events, __wasi_size_t n) {
  printf("n=%u", (unsigned)n);
  for (__wasi_size_t i = 0; i < n; ++i) {
    printf(" [ud=%llu type=%u err=%u nbytes=%llu]", (unsigned long long)events[i].userdata,
           (unsigned)events[i].type, (unsigned)events[i].error,
           (unsigned long long)events[i].fd_readwrite.nbytes);
  }
  printf("\n");
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  for (int i = 1; i < argc; ++i) {
    const char* op = argv[i];
    if (strncmp(op, "sleep:", 6) == 0) {
      int ms = atoi(op + 6);
      struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
      printf("slept %d\n", ms);
    } else if (strcmp(op, "forever") == 0) {
      printf("sleeping forever\n");
      for (;;) sleep(100000);
    } else if (strncmp(op, "abs-mono:", 9) == 0) {
      abs_sleep("abs-mono", CLOCK_MONOTONIC, atoi(op + 9));
    } else if (strncmp(op, "abs-real:", 9) == 0) {
      abs_sleep("abs-real", CLOCK_REALTIME, atoi(op + 9));
    } else if (strcmp(op, "multi") == 0) {
      __wasi_subscription_t subs[3] = {clock_sub(1, __WASI_CLOCKID_MONOTONIC, 60000000),
                                       clock_sub(2, __WASI_CLOCKID_MONOTONIC, 20000000),
                                       clock_sub(3, __WASI_CLOCKID_REALTIME, 20000000)};
      __wasi_event_t events[3];
      __wasi_size_t n = 99;
      long long t0 = now_ns(CLOCK_MONOTONIC);
      __wasi_errno_t err = __wasi_poll_oneoff(subs, events, 3, &n);
      long long waited_ms = (now_ns(CLOCK_MONOTONIC) - t0) / 1000000;
      printf("multi err=%u waited>=20ms:%s ", (unsigned)err, waited_ms >= 20 ? "yes" : "no");
      print_events(events, n);
    } else if (strcmp(op, "fd") == 0) {
      __wasi_subscription_t subs[2] = {clock_sub(8, __WASI_CLOCKID_MONOTONIC, 10000000000ULL)};
      memset(&subs[1], 0, sizeof subs[1]);
      subs[1].userdata = 7;
      subs[1].u.tag = __WASI_EVENTTYPE_FD_READ;
      subs[1].u.u.fd_read.file_descriptor = 0;
      __wasi_event_t events[2];
      __wasi_size_t n = 99;
      __wasi_errno_t err = __wasi_poll_oneoff(subs, events, 2, &n);
      printf("fd err=%u ", (unsigned)err);
      print_events(events, n);
    } else if (strcmp(op, "errors") == 0) {
      __wasi_subscription_t sub = clock_sub(1, __WASI_CLOCKID_MONOTONIC, 0);
      __wasi_event_t event;
      __wasi_size_t n = 0;
      printf("none=%u", (unsigned)__wasi_poll_oneoff(&sub, &event, 0, &n));
      // A pointer near the end of the 4 GiB space: past the end of memory.
      __wasi_subscription_t* far = (__wasi_subscription_t*)(uintptr_t)0xfffffff0u;
      printf(" far-in=%u", (unsigned)__wasi_poll_oneoff(far, &event, 1, &n));
      printf(" far-out=%u", (unsigned)__wasi_poll_oneoff(&sub, (__wasi_event_t*)far, 1, &n));
      printf(" far-n=%u", (unsigned)__wasi_poll_oneoff(&sub, &event, 1, (__wasi_size_t*)far));
      __wasi_subscription_t cpu = clock_sub(1, __WASI_CLOCKID_PROCESS_CPUTIME_ID, 0);
      printf(" cputime=%u", (unsigned)__wasi_poll_oneoff(&cpu, &event, 1, &n));
      __wasi_subscription_t bad = sub;
      bad.u.tag = 7;
      printf(" tag=%u", (unsigned)__wasi_poll_oneoff(&bad, &event, 1, &n));
      bad = sub;
      bad.u.u.clock.flags = 0x10;
      printf(" flags=%u\n", (unsigned)__wasi_poll_oneoff(&bad, &event, 1, &n));
    } else {
      fprintf(stderr, "unknown operation %s\n", op);
      return 2;
    }
  }
  return 0;
}
