// A WAGI module with `_routes`: sub-routes joined to its route, each served by an export that
// prints the CGI variables naming the route.
#include <stdio.h>
#include <stdlib.h>

static void show(const char* who) {
  printf("Content-Type: text/plain\n\n%s\nSCRIPT_NAME=%s\nX_MATCHED_ROUTE=%s\nPATH_INFO=%s\n", who,
         getenv("SCRIPT_NAME"), getenv("X_MATCHED_ROUTE"), getenv("PATH_INFO"));
}

__attribute__((export_name("_routes"))) void routes(void) {
  printf("/hello hello\n\n/files/... files\n");
}
__attribute__((export_name("hello"))) void hello(void) { show("hello export"); }
__attribute__((export_name("files"))) void files(void) { show("files export"); }

int main(void) {
  show("main");
  return 0;
}
