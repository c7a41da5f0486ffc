// A test guest for `wasmlet node` pods: runs the operations in argv[1..] in order.
//   print:TEXT       print TEXT and a newline
//   env:NAME         print NAME=<value> (or NAME=<unset>)
//   cat:PATH         print the file's content (and a newline)
//   write:PATH=TEXT  write TEXT to PATH
//   exit:N           exit with N
//   sleep:N          print "tick" every second for N seconds
//   forever          print "tick" every second until stdout fails (the pod was deleted)
//   hog              allocate and touch 1 MiB blocks until stopped
// Any failure prints a message to stderr and exits 2.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int tick(void) {
  struct timespec ts = {1, 0};
  nanosleep(&ts, NULL);
  if (printf("tick\n") < 0 || fflush(stdout) != 0) return -1;
  return 0;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* op = argv[i];
    if (strncmp(op, "print:", 6) == 0) {
      printf("%s\n", op + 6);
    } else if (strncmp(op, "env:", 4) == 0) {
      const char* v = getenv(op + 4);
      printf("%s=%s\n", op + 4, v ? v : "<unset>");
    } else if (strncmp(op, "cat:", 4) == 0) {
      FILE* f = fopen(op + 4, "r");
      if (!f) {
        fprintf(stderr, "cat %s: %s\n", op + 4, strerror(errno));
        return 2;
      }
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
      fclose(f);
      printf("\n");
    } else if (strncmp(op, "write:", 6) == 0) {
      char path[1024];
      const char* eq = strchr(op + 6, '=');
      if (!eq || (size_t)(eq - (op + 6)) >= sizeof path) {
        fprintf(stderr, "write: expected PATH=TEXT\n");
        return 2;
      }
      memcpy(path, op + 6, (size_t)(eq - (op + 6)));
      path[eq - (op + 6)] = 0;
      FILE* f = fopen(path, "w");
      if (!f) {
        fprintf(stderr, "write %s: %s\n", path, strerror(errno));
        return 2;
      }
      fputs(eq + 1, f);
      fclose(f);
    } else if (strncmp(op, "exit:", 5) == 0) {
      fflush(stdout);
      return atoi(op + 5);
    } else if (strncmp(op, "sleep:", 6) == 0) {
      int n = atoi(op + 6);
      fflush(stdout);
      for (int s = 0; s < n; ++s) {
        if (tick() != 0) return 0;
      }
    } else if (strcmp(op, "forever") == 0) {
      fflush(stdout);
      while (tick() == 0) {
      }
      return 0;
    } else if (strcmp(op, "hog") == 0) {
      printf("allocating\n");
      fflush(stdout);
      // Blocks are chained so the compiler cannot drop the allocations.
      void** head = NULL;
      for (size_t total = 0;; total += 1 << 20) {
        void** p = malloc(1 << 20);
        if (!p) {
          size_t n = 0;
          for (void** q = head; q; q = (void**)*q) ++n;
          fprintf(stderr, "malloc failed after %zu MiB (%zu blocks)\n", total >> 20, n);
          return 3;
        }
        memset(p, 1, 1 << 20);
        *p = head;
        head = p;
      }
    } else {
      fprintf(stderr, "unknown operation '%s'\n", op);
      return 2;
    }
    fflush(stdout);
  }
  return 0;
}
