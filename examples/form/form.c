// A form handler: GET shows a form; POST (application/x-www-form-urlencoded) reads the body
// from stdin, decodes the fields and echoes them back, HTML-escaped.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void html_escape(const char* s) {
  for (; *s; ++s) {
    switch (*s) {
      case '<': fputs("&lt;", stdout); break;
      case '>': fputs("&gt;", stdout); break;
      case '&': fputs("&amp;", stdout); break;
      case '"': fputs("&quot;", stdout); break;
      default: putchar(*s);
    }
  }
}

// In place: '+' -> ' ', %XX -> byte.
static void url_decode(char* s) {
  char* out = s;
  for (; *s; ++s) {
    if (*s == '+') {
      *out++ = ' ';
    } else if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
      char hex[3] = {s[1], s[2], 0};
      *out++ = (char)strtol(hex, NULL, 16);
      s += 2;
    } else {
      *out++ = *s;
    }
  }
  *out = '\0';
}

int main(void) {
  const char* method = getenv("REQUEST_METHOD");
  if (method == NULL || strcmp(method, "POST") != 0) {
    printf("Content-Type: text/html; charset=utf-8\n\n");
    printf("<!doctype html><title>wasmlet form</title>\n"
           "<form method=\"post\">\n"
           "  <label>Name <input name=\"name\"></label>\n"
           "  <label>Message <input name=\"message\"></label>\n"
           "  <button>Send</button>\n"
           "</form>\n");
    return 0;
  }
  size_t cap = 1 << 16, len = 0, n;
  char* body = malloc(cap + 1);
  while ((n = fread(body + len, 1, cap - len, stdin)) > 0) {
    len += n;
    if (len == cap) {
      cap *= 2;
      body = realloc(body, cap + 1);
    }
  }
  body[len] = '\0';
  printf("Content-Type: text/html; charset=utf-8\n\n");
  printf("<!doctype html><title>wasmlet form</title>\n<p>Received %zu bytes:</p>\n<dl>\n", len);
  for (char* field = strtok(body, "&"); field != NULL; field = strtok(NULL, "&")) {
    char* eq = strchr(field, '=');
    char* value = "";
    if (eq != NULL) {
      *eq = '\0';
      value = eq + 1;
    }
    url_decode(field);
    url_decode(value);
    printf("<dt>");
    html_escape(field);
    printf("</dt><dd>");
    html_escape(value);
    printf("</dd>\n");
  }
  printf("</dl>\n");
  return 0;
}
