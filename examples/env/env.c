// Shows what a WAGI module sees: argv, the CGI environment and the request body size.
#include <stdio.h>
#include <stdlib.h>

extern char** environ;

int main(int argc, char** argv) {
  printf("Content-Type: text/plain; charset=utf-8\n\n");
  printf("argv:\n");
  for (int i = 0; i < argc; ++i) printf("  [%d] %s\n", i, argv[i]);
  printf("environment:\n");
  for (char** e = environ; *e != NULL; ++e) printf("  %s\n", *e);
  size_t total = 0, n;
  char buf[4096];
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) total += n;
  printf("body: %zu bytes\n", total);
  return 0;
}
