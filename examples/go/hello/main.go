// A WAGI app in Go (GOOS=wasip1): the request arrives as CGI variables, the response is
// printed to stdout as a header block, a blank line and a body.
package main

import (
	"fmt"
	"net/url"
	"os"
	"sort"
)

func main() {
	query, _ := url.ParseQuery(os.Getenv("QUERY_STRING"))
	name := query.Get("name")
	if name == "" {
		name = "world"
	}
	fmt.Print("Content-Type: text/plain; charset=utf-8\n\n")
	fmt.Printf("Hello, %s, from Go!\n", name)
	fmt.Printf("%s %s\n", os.Getenv("REQUEST_METHOD"), os.Getenv("X_FULL_URL"))
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("query %s = %q\n", k, query[k])
	}
}
