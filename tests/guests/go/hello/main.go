// A Go guest (GOOS=wasip1): greets, echoes its arguments and one variable, and reads a file when
// asked. At about 2 MB it is the "large module" of the runtime tests and benchmarks.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Println("Hello from Go!")
	if len(os.Args) > 1 {
		fmt.Println("args:", strings.Join(os.Args[1:], " "))
	}
	if v, ok := os.LookupEnv("GREETING"); ok {
		fmt.Println("GREETING:", v)
	}
	if path, ok := os.LookupEnv("READ_FILE"); ok {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Print(string(data))
	}
}
