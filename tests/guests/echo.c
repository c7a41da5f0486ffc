// Prints its argv (one "arg[i]=..." per line) and its environment ("env NAME=value"), so tests
// can check exactly what the host granted.
#include <stdio.h>

extern char** environ;

int main(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) printf("arg[%d]=%s\n", i, argv[i]);
  for (char** e = environ; *e != NULL; ++e) printf("env %s\n", *e);
  return 0;
}
