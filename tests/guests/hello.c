// Prints a greeting and exits 0: the smallest WASI command.
#include <stdio.h>

int main(void) {
  printf("Hello from WebAssembly!\n");
  return 0;
}
