// A WAGI module that misbehaves on purpose (tests/hostile/modules_test.cc). The query string
// chooses the attack: "?escape" (tries to leave its /data volume), "?env" (dumps the
// environment), "?link" (tries to create links out of the volume), "?stdout" (writes forever),
// "?stderr=N" (writes N bytes to stderr, forever when N is 0), "?fds" / "?fds&hold" (opens
// /data/file.txt until that fails; "hold" then spins until the deadline), "?sleep" (sleeps
// forever in poll_oneoff), "?hello".
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int escaped = 0;

// Prints "<label>: opened (<first bytes>)" or "<label>: denied".
static void attempt_open(const char* label, const char* path) {
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    char buf[64] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    printf("%s: opened (%.20s)\n", label, n > 0 ? buf : "");
    fprintf(stderr, "hostile: %s: opened %s\n", label, path);
    if (strcmp(label, "inside") != 0 && strcmp(label, "hardlink-host") != 0) escaped = 1;
    close(fd);
  } else {
    printf("%s: denied\n", label);
    fprintf(stderr, "hostile: %s: open(%s) denied: %s\n", label, path, strerror(errno));
  }
}

static void escape(void) {
  printf("Content-Type: text/plain\n\n");
  attempt_open("dotdot", "/data/../secret.txt");
  attempt_open("deep-dotdot", "/data/sub/../../../../etc/passwd");
  attempt_open("absolute", "/etc/passwd");
  attempt_open("absolute-secret", "/secret.txt");
  attempt_open("proc-environ", "/proc/self/environ");
  attempt_open("proc-maps", "/proc/self/maps");
  attempt_open("proc-via-volume", "/data/../../../../proc/self/environ");
  attempt_open("symlink-dir", "/data/link-dir/secret.txt");
  attempt_open("symlink-abs", "/data/link-abs");
  attempt_open("symlink-rel", "/data/link-rel");
  // A hard link the host put in the volume is the file itself, wherever its other names are:
  // readable by design (docs/gateway.md, "Limits and hostile input").
  attempt_open("hardlink-host", "/data/hard");
  attempt_open("inside", "/data/file.txt");  // the control: the volume itself is readable
  printf("escaped=%d\n", escaped);
}

static void links(void) {
  printf("Content-Type: text/plain\n\n");
  // A hard link from inside the volume to a file outside it.
  if (link("/data/../secret.txt", "/data/hard-made") == 0) {
    printf("hardlink-create: opened\n");
  } else {
    printf("hardlink-create: denied\n");
  }
  // A symlink the guest makes itself, then follows.
  if (symlink("/secret.txt", "/data/sym-made-abs") == 0) attempt_open("symlink-made-abs", "/data/sym-made-abs");
  else printf("symlink-made-abs: denied\n");
  if (symlink("../secret.txt", "/data/sym-made-rel") == 0) attempt_open("symlink-made-rel", "/data/sym-made-rel");
  else printf("symlink-made-rel: denied\n");
}

static void spin(void) {
  volatile unsigned long n = 0;
  for (;;) ++n;
}

int main(void) {
  const char* query = getenv("QUERY_STRING");
  char mode[256] = "";
  if (query != NULL) {
    strncpy(mode, query, sizeof mode - 1);
    char* amp = strchr(mode, '&');
    if (amp != NULL) *amp = '\0';
  }
  if (strcmp(mode, "escape") == 0) {
    escape();
  } else if (strcmp(mode, "link") == 0) {
    links();
  } else if (strcmp(mode, "env") == 0) {
    printf("Content-Type: text/plain\n\n");
    for (char** e = environ; *e != NULL; ++e) printf("%s\n", *e);
  } else if (strcmp(mode, "stdout") == 0) {
    static char block[65536];
    memset(block, 'x', sizeof block);
    printf("Content-Type: application/octet-stream\n\n");
    for (;;) fwrite(block, 1, sizeof block, stdout);  // errors (EPIPE) are ignored
  } else if (strncmp(mode, "stderr=", 7) == 0) {
    long long total = atoll(mode + 7), done = 0;
    static char line[1024];
    memset(line, 'e', sizeof line - 1);
    line[sizeof line - 2] = '\n';
    printf("Content-Type: text/plain\n\nflooding stderr\n");
    fflush(stdout);
    while (total == 0 || done < total) {
      fputs(line, stderr);
      done += (long long)strlen(line);
    }
    printf("done\n");
  } else if (strcmp(mode, "fds") == 0) {
    int count = 0;
    while (open("/data/file.txt", O_RDONLY) >= 0) ++count;
    fprintf(stderr, "hostile: opened %d files before: %s\n", count, strerror(errno));
    if (query != NULL && strstr(query, "hold") != NULL) spin();
    printf("Content-Type: text/plain\n\nopened %d\n", count);
  } else if (strcmp(mode, "sleep") == 0) {
    printf("Content-Type: text/plain\n\n");
    struct timespec ts = {1000000000, 0};
    nanosleep(&ts, NULL);
    printf("woke up\n");
  } else {
    printf("Content-Type: text/plain\n\nhello\n");
  }
  return 0;
}
