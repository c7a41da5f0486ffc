// File access inside preopened directories.
//   files read PATH         prints the file
//   files write PATH TEXT   writes TEXT to PATH
//   files list DIR          prints the names in DIR
// Exit 1 with "error: <op> PATH: <strerror>" when the operation is refused.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int fail(const char* op, const char* path) {
  printf("error: %s %s: %s\n", op, path, strerror(errno));
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: files read|write|list PATH [TEXT]\n");
    return 2;
  }
  const char* op = argv[1];
  const char* path = argv[2];
  if (strcmp(op, "read") == 0) {
    FILE* f = fopen(path, "r");
    if (!f) return fail(op, path);
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, f)) > 0) fwrite(buffer, 1, n, stdout);
    fclose(f);
    return 0;
  }
  if (strcmp(op, "write") == 0 && argc >= 4) {
    FILE* f = fopen(path, "w");
    if (!f) return fail(op, path);
    if (fputs(argv[3], f) < 0 || fclose(f) != 0) return fail(op, path);
    printf("wrote %s\n", path);
    return 0;
  }
  if (strcmp(op, "list") == 0) {
    DIR* d = opendir(path);
    if (!d) return fail(op, path);
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) printf("%s\n", e->d_name);
    }
    closedir(d);
    return 0;
  }
  fprintf(stderr, "unknown operation %s\n", op);
  return 2;
}
