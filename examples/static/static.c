// Static files over a preopened directory: PATH_INFO names a file below the volume mounted at
// /public (see modules.toml). The sandbox, not this code, keeps requests inside the volume.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* content_type(const char* path) {
  const char* dot = strrchr(path, '.');
  if (dot == NULL) return "application/octet-stream";
  if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
  if (strcmp(dot, ".css") == 0) return "text/css";
  if (strcmp(dot, ".js") == 0) return "text/javascript";
  if (strcmp(dot, ".txt") == 0) return "text/plain; charset=utf-8";
  if (strcmp(dot, ".json") == 0) return "application/json";
  if (strcmp(dot, ".png") == 0) return "image/png";
  if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
  return "application/octet-stream";
}

int main(void) {
  const char* info = getenv("PATH_INFO");
  if (info == NULL || info[0] == '\0' || strcmp(info, "/") == 0) info = "/index.html";
  char path[1024];
  snprintf(path, sizeof path, "/public%s", info);
  FILE* f = fopen(path, "rb");
  if (f == NULL) {
    printf("Status: 404 Not Found\nContent-Type: text/plain\n\nnot found: %s\n", info);
    return 0;
  }
  printf("Content-Type: %s\n\n", content_type(path));
  static char buf[65536];  // static: the default wasm stack is only 64 KiB
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
  fclose(f);
  return 0;
}
