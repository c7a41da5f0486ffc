// The gateway tests' WAGI module: what it does is chosen by the query string (the first '&'
// item, e.g. "?status" or "?big=1000000"); with no query it dumps its argv and environment.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void dump(int argc, char** argv) {
  printf("Content-Type: text/plain\n\n");
  for (int i = 0; i < argc; ++i) printf("ARG%d=%s\n", i, argv[i]);
  for (char** e = environ; *e != NULL; ++e) printf("ENV %s\n", *e);
}

static const char* mode_arg(const char* mode, const char* name) {
  size_t n = strlen(name);
  if (strncmp(mode, name, n) == 0 && mode[n] == '=') return mode + n + 1;
  return NULL;
}

int main(int argc, char** argv) {
  const char* query = getenv("QUERY_STRING");
  char mode[256] = "";
  if (query != NULL) {
    strncpy(mode, query, sizeof mode - 1);
    char* amp = strchr(mode, '&');
    if (amp != NULL) *amp = '\0';
  }
  const char* v;
  if (mode[0] == '\0' || strcmp(mode, "dump") == 0) {
    dump(argc, argv);
  } else if (strcmp(mode, "status") == 0) {
    printf("Status: 404 Not Found\nContent-Type: text/plain\n\nnot here\n");
  } else if (strcmp(mode, "location") == 0) {
    printf("Location: /elsewhere\n\n");
  } else if (strcmp(mode, "location_status") == 0) {
    printf("Location: /moved\nStatus: 301 Moved Permanently\n\n");
  } else if (strcmp(mode, "cookies") == 0) {
    printf("Content-Type: text/plain\nSet-Cookie: a=1\nSet-Cookie: b=2\nX-Custom: yes\n\ncookies\n");
  } else if (strcmp(mode, "crlf") == 0) {
    printf("Content-Type: text/html\r\nX-Line: crlf\r\n\r\n<p>crlf body</p>\r\n");
  } else if (strcmp(mode, "noheaders") == 0) {
    printf("hello without headers\n");
  } else if (strcmp(mode, "badstatus") == 0) {
    printf("Status: abc\nContent-Type: text/plain\n\nbody\n");
  } else if (strcmp(mode, "badheader") == 0) {
    printf("Content-Type: text/plain\nBad Header: x\nNo colon here\nX-Ok: fine\nX-Ctl: a\x01" "b\n\nok\n");
  } else if (strcmp(mode, "trap") == 0) {
    printf("Content-Type: text/plain\n\npartial\n");
    __builtin_trap();
  } else if (strcmp(mode, "exit3") == 0) {
    printf("Content-Type: text/plain\n\npartial\n");
    exit(3);
  } else if (strcmp(mode, "procexit0") == 0) {
    printf("Content-Type: text/plain\n\nexited cleanly\n");
    fflush(stdout);
    _Exit(0);
  } else if ((v = mode_arg(mode, "slow")) != NULL) {
    // Head and a first line, then a pause of `v` ms, then the rest.
    printf("Content-Type: text/plain\n\nfirst\n");
    fflush(stdout);
    sleep_ms(atol(v));
    printf("second\n");
  } else if ((v = mode_arg(mode, "slowfail")) != NULL) {
    printf("Content-Type: text/plain\n\nfirst\n");
    fflush(stdout);
    sleep_ms(atol(v));
    __builtin_trap();
  } else if ((v = mode_arg(mode, "big")) != NULL) {
    // `v` bytes of a repeating pattern, written in 64 KiB pieces.
    long total = atol(v);
    printf("Content-Type: application/octet-stream\n\n");
    static char buf[65536];
    for (size_t i = 0; i < sizeof buf; ++i) buf[i] = (char)('a' + i % 26);
    long done = 0;
    while (done < total) {
      long n = total - done < (long)sizeof buf ? total - done : (long)sizeof buf;
      fwrite(buf, 1, (size_t)n, stdout);
      done += n;
    }
  } else if ((v = mode_arg(mode, "cl")) != NULL) {
    // Declares Content-Length `v` but writes 5 bytes.
    printf("Content-Type: text/plain\nContent-Length: %s\n\nhello", v);
  } else if (strcmp(mode, "echo") == 0) {
    // Copies the request body to the response.
    printf("Content-Type: application/octet-stream\n\n");
    static char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
  } else if (strcmp(mode, "count") == 0) {
    // Counts the request body bytes.
    static char buf[65536];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) total += n;
    printf("Content-Type: text/plain\n\n%zu\n", total);
  } else if (strcmp(mode, "loop") == 0) {
    volatile unsigned long x = 0;
    for (;;) ++x;
  } else if (strcmp(mode, "hog") == 0) {
    // Blocks are chained so the compiler cannot drop the allocations.
    void** head = NULL;
    size_t total = 0;
    for (;;) {
      void** p = malloc(1 << 20);
      if (p == NULL) {
        fprintf(stderr, "allocation failed after %zu MiB\n", total >> 20);
        abort();
      }
      memset(p, 1, 1 << 20);
      *p = head;
      head = p;
      total += 1 << 20;
      if (total == 1) printf("%p\n", (void*)head);
    }
  } else if (strcmp(mode, "stderr") == 0) {
    fprintf(stderr, "probe says hello on stderr\n");
    printf("Content-Type: text/plain\n\nlogged\n");
  } else if ((v = mode_arg(mode, "sleep")) != NULL) {
    sleep_ms(atol(v));
    printf("Content-Type: text/plain\n\nslept\n");
  } else if (strcmp(mode, "nocontent") == 0) {
    printf("Status: 204 No Content\n\n");
  } else if (strcmp(mode, "file") == 0) {
    // Reads /data/hello.txt from a preopened volume.
    FILE* f = fopen("/data/hello.txt", "r");
    if (f == NULL) {
      printf("Status: 404 Not Found\nContent-Type: text/plain\n\nno file\n");
      return 0;
    }
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    printf("Content-Type: text/plain\n\n");
    fwrite(buf, 1, n, stdout);
  } else {
    printf("Status: 400 Bad Request\nContent-Type: text/plain\n\nunknown mode %s\n", mode);
  }
  return 0;
}
