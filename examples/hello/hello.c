// The smallest WAGI app: a CGI header block, a blank line, a body.
#include <stdio.h>

int main(void) {
  printf("Content-Type: text/plain\n\nHello from wasmlet!\n");
  return 0;
}
