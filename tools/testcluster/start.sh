#!/usr/bin/env bash
# Starts the test control plane in DIR (see cluster.sh).
exec "$(dirname "$0")/cluster.sh" start "$@"
