// Allocates and touches 1 MiB blocks until allocation fails, then aborts (like most programs
// that run out of memory). Blocks are chained so the compiler cannot drop the allocations.
// Prints progress every 16 MiB.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block {
  struct block* previous;
  char payload[(1 << 20) - sizeof(struct block*)];
};

int main(void) {
  struct block* head = NULL;
  size_t total = 0;
  for (;;) {
    struct block* b = malloc(sizeof *b);
    if (b == NULL) {
      size_t count = 0;
      for (struct block* p = head; p != NULL; p = p->previous) count += (unsigned char)p->payload[7];
      fprintf(stderr, "allocation failed after %zu MiB (checksum %zu)\n", total >> 20, count);
      abort();
    }
    memset(b->payload, 0xab, sizeof b->payload);
    b->previous = head;
    head = b;
    total += 1 << 20;
    if ((total >> 20) % 16 == 0) printf("%zu MiB\n", total >> 20);
  }
}
