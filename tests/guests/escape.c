// Tries to leave its sandbox; prints one line per attempt: "<attempt>: denied" or
// "<attempt>: ESCAPED". Run with a preopened directory at /sandbox.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int escaped = 0;

static void attempt(const char* label, const char* path) {
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    printf("%s: ESCAPED\n", label);
    escaped = 1;
    close(fd);
  } else {
    printf("%s: denied\n", label);
  }
}

int main(void) {
  attempt("dotdot", "/sandbox/../etc/passwd");
  attempt("deep-dotdot", "/sandbox/sub/../../../../etc/passwd");
  attempt("absolute", "/etc/passwd");
  attempt("proc", "/proc/self/environ");
  attempt("symlink", "/sandbox/link-to-etc/passwd");
  const char* secret = getenv("SECRET");
  printf("env SECRET: %s\n", secret ? "VISIBLE" : "absent");
  return escaped ? 1 : 0;
}
