// The cold-start benchmark's "realistic" C WAGI app (~150 KB as wasm): it parses the query
// string and a form body, validates fields with regular expressions, computes statistics over
// numbers (sorted, mean, deviation, percentiles with floating-point formatting), and renders an
// HTML report with a timestamp. The same source builds natively for the CGI peer.
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>
#include <locale.h>

#define MAX_FIELDS 64
#define MAX_VALUES 256

struct field {
  char name[64];
  char value[256];
};

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding in place.
static void url_decode(char* s) {
  char* out = s;
  for (; *s; ++s) {
    if (*s == '+') {
      *out++ = ' ';
    } else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
      *out++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
      s += 2;
    } else {
      *out++ = *s;
    }
  }
  *out = '\0';
}

static int parse_fields(const char* input, struct field* fields, int max) {
  int n = 0;
  char* copy = strdup(input ? input : "");
  char* save = NULL;
  for (char* item = strtok_r(copy, "&", &save); item && n < max; item = strtok_r(NULL, "&", &save)) {
    char* eq = strchr(item, '=');
    if (eq) *eq = '\0';
    snprintf(fields[n].name, sizeof fields[n].name, "%s", item);
    snprintf(fields[n].value, sizeof fields[n].value, "%s", eq ? eq + 1 : "");
    url_decode(fields[n].name);
    url_decode(fields[n].value);
    ++n;
  }
  free(copy);
  return n;
}

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

static int compare_doubles(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double percentile(const double* sorted, int n, double p) {
  if (n == 0) return NAN;
  double rank = p * (n - 1);
  int lo = (int)floor(rank), hi = (int)ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

static char* read_body(void) {
  const char* len_s = getenv("CONTENT_LENGTH");
  long len = len_s ? strtol(len_s, NULL, 10) : 0;
  if (len <= 0 || len > (1 << 20)) return strdup("");
  char* body = malloc((size_t)len + 1);
  size_t got = fread(body, 1, (size_t)len, stdin);
  body[got] = '\0';
  return body;
}

int main(void) {
  struct field fields[MAX_FIELDS];
  int n = parse_fields(getenv("QUERY_STRING"), fields, MAX_FIELDS);
  char* body = read_body();
  n += parse_fields(body, fields + n, MAX_FIELDS - n);
  free(body);

  regex_t number, email;
  regcomp(&number, "^[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?$", REG_EXTENDED | REG_NOSUB);
  regcomp(&email, "^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", REG_EXTENDED | REG_NOSUB);

  double values[MAX_VALUES];
  int count = 0, invalid = 0;
  const char* who = "anonymous";
  for (int i = 0; i < n; ++i) {
    if (strcmp(fields[i].name, "v") == 0) {
      if (regexec(&number, fields[i].value, 0, NULL, 0) == 0 && count < MAX_VALUES) {
        values[count++] = strtod(fields[i].value, NULL);
      } else {
        ++invalid;
      }
    } else if (strcmp(fields[i].name, "email") == 0 && regexec(&email, fields[i].value, 0, NULL, 0) == 0) {
      who = fields[i].value;
    }
  }
  if (count == 0) {  // a default data set, so a plain GET renders a full report
    for (int i = 0; i < 32; ++i) values[count++] = sin(i * 0.7) * 100.0 + i;
  }
  qsort(values, (size_t)count, sizeof values[0], compare_doubles);
  double sum = 0, sq = 0;
  for (int i = 0; i < count; ++i) sum += values[i];
  double mean = sum / count;
  for (int i = 0; i < count; ++i) sq += (values[i] - mean) * (values[i] - mean);
  double stddev = count > 1 ? sqrt(sq / (count - 1)) : 0;

  char when[64];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));

  // ?format=json: the same figures as JSON; `pairs=a:1,b:2` items are scanned with sscanf and
  // names are measured in characters (UTF-8), not bytes.
  setlocale(LC_ALL, "C.UTF-8");
  const char* format = "html";
  for (int i = 0; i < n; ++i) {
    if (strcmp(fields[i].name, "format") == 0) format = fields[i].value;
  }
  if (strcmp(format, "json") == 0) {
    printf("Content-Type: application/json\n\n{\"who\":\"%s\",\"count\":%d,\"mean\":%.17g,\"stddev\":%.17g,\"pairs\":[",
           who, count, mean, stddev);
    for (int i = 0, first = 1; i < n; ++i) {
      if (strcmp(fields[i].name, "pairs") != 0) continue;
      char* save = NULL;
      for (char* item = strtok_r(fields[i].value, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char key[64];
        double value;
        if (sscanf(item, "%63[^:]:%lf", key, &value) != 2) continue;
        wchar_t wide[64];
        size_t chars = mbstowcs(wide, key, 64);
        printf("%s{\"key\":\"%s\",\"chars\":%zu,\"value\":%g}", first ? "" : ",", key, chars, value);
        first = 0;
      }
    }
    printf("]}\n");
    regfree(&number);
    regfree(&email);
    return 0;
  }
  printf("Content-Type: text/html; charset=utf-8\n\n");
  printf("<!doctype html><html><head><title>Report</title></head><body>\n<h1>Report for ");
  html_escape(who);
  printf("</h1>\n<p>generated %s from %d values (%d rejected)</p>\n<table>\n", when, count, invalid);
  printf("<tr><th>mean</th><td>%.4f</td></tr>\n<tr><th>stddev</th><td>%.4g</td></tr>\n", mean, stddev);
  static const double ps[] = {0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; ++i) {
    printf("<tr><th>p%g</th><td>%.3e</td></tr>\n", ps[i] * 100, percentile(values, count, ps[i]));
  }
  printf("</table>\n</body></html>\n");
  regfree(&number);
  regfree(&email);
  return 0;
}
