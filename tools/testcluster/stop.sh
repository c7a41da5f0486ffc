#!/usr/bin/env bash
# Stops the test control plane started in DIR (see cluster.sh).
exec "$(dirname "$0")/cluster.sh" stop "$@"
