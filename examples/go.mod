module wasmlet.dev/examples

go 1.24
