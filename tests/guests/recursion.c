// Recurses without bound: the host must stop it with a stack-overflow trap.
#include <stdio.h>

static volatile int sink;

static int deeper(int n) {
  volatile char frame[256];
  frame[0] = (char)n;
  sink = frame[0];
  return deeper(n + 1) + frame[0];
}

int main(void) {
  printf("%d\n", deeper(0));
  return 0;
}
