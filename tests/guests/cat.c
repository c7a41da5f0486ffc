// Copies stdin to stdout and reports the byte count on stderr.
#include <stdio.h>

int main(void) {
  static char buffer[65536];  // static: the default wasm shadow stack is only 64 KiB
  size_t total = 0, n;
  while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0) {
    fwrite(buffer, 1, n, stdout);
    total += n;
  }
  fprintf(stderr, "copied %zu bytes\n", total);
  return 0;
}
