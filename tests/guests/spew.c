// Writes to stdout until a write fails, then reports why on stderr and exits 3: a guest whose
// reader went away stops instead of spinning.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
  static char block[4096];
  memset(block, 'x', sizeof block);
  unsigned long long total = 0;
  for (;;) {
    ssize_t n = write(1, block, sizeof block);
    if (n < 0) {
      fprintf(stderr, "write failed after %llu bytes: %s\n", total, strerror(errno));
      return 3;
    }
    total += (unsigned long long)n;
  }
}
