// Opens the file argv[1] again and again, keeping every descriptor, until open fails or
// argv[2] descriptors are open; prints "opened N: <error>" (or "opened N") and, after closing
// them all, whether the file opens again ("reopen ok").
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  int max = atoi(argv[2]);
  int* fds = malloc(sizeof(int) * (size_t)max);
  int n = 0, err = 0;
  while (n < max) {
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
      err = errno;
      break;
    }
    fds[n++] = fd;
  }
  if (err != 0) {
    printf("opened %d: %s\n", n, strerror(err));
  } else {
    printf("opened %d\n", n);
  }
  for (int i = 0; i < n; ++i) close(fds[i]);
  int fd = open(argv[1], O_RDONLY);
  printf(fd >= 0 ? "reopen ok\n" : "reopen failed\n");
  return 0;
}
