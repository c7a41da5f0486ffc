// Allocates and touches 1 MiB blocks until allocation fails, then aborts (like most programs
// that run out of memory). Prints progress every 16 MiB.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  size_t total = 0;
  for (;;) {
    char* block = malloc(1 << 20);
    if (block == NULL) {
      fprintf(stderr, "allocation failed after %zu MiB\n", total >> 20);
      abort();
    }
    memset(block, 0xab, 1 << 20);
    total += 1 << 20;
    if ((total >> 20) % 16 == 0) printf("%zu MiB\n", total >> 20);
  }
}
