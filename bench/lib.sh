# Helpers shared by the bench scripts (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL: polls URL (every 10 ms, up to 10 s) until it answers 2xx.
wait_http() {
  for _ in $(seq 1 1000); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.01; done
  echo "$(basename "$0"): $1 did not come up" >&2
  return 1
}

# The median of the numbers on stdin, one per line (the mean of the middle two for an even count).
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
