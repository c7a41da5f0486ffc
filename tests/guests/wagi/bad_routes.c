// `_routes` prints a malformed line: loading the config must fail naming the module and line.
#include <stdio.h>

__attribute__((export_name("_routes"))) void routes(void) { printf("/ok ok\nnot-a-route\n"); }
__attribute__((export_name("ok"))) void ok(void) { printf("Content-Type: text/plain\n\nok\n"); }
int main(void) { return 0; }
