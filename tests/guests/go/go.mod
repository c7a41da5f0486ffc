module wasmlet.dev/guests

go 1.24
