#!/usr/bin/env bash
# dockyard's main job on its embedded defaults. Today: start the store (etcd v2 API on
# 127.0.0.1:2379 and :4001) if it is not running, and walk through the classic example.
#   scripts/run.sh          start (if needed) and run the example
#   scripts/run.sh stop     stop the store this script started
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
run_dir=/run/dockyard
[[ $(id -u) -eq 0 ]] || run_dir="${XDG_RUNTIME_DIR:-/tmp}/dockyard"
pid_file=$run_dir/store.pid
log_file=$run_dir/store.log

if [[ ${1:-} == stop ]]; then
  if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    kill "$(cat "$pid_file")"
    while kill -0 "$(cat "$pid_file")" 2>/dev/null; do sleep 0.1; done
    rm -f "$pid_file"; echo "store stopped"
  else
    echo "store not running (no live $pid_file)"
  fi
  exit 0
fi

scripts/setup.sh
mkdir -p "$run_dir"
if curl -fsS --max-time 2 http://127.0.0.1:2379/health >/dev/null 2>&1; then
  echo "store: already serving on http://127.0.0.1:2379"
else
  echo "store: starting (log: $log_file)"
  setsid .venv/bin/dockyard store serve >>"$log_file" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  for _ in $(seq 1 100); do
    curl -fsS --max-time 1 http://127.0.0.1:4001/health >/dev/null 2>&1 && break
    kill -0 "$(cat "$pid_file")" 2>/dev/null || { echo "store failed to start:"; tail -20 "$log_file"; exit 1; }
    sleep 0.1
  done
fi

show() { echo; echo "\$ $*"; "$@"; echo; }
echo
echo "== The classic example (etcd v2 API) =="
show curl -sS -L -X PUT http://127.0.0.1:4001/v2/keys/message -d value="Hello"
show curl -sS -L http://127.0.0.1:4001/v2/keys/message
show curl -sS -L -X PUT 'http://127.0.0.1:4001/v2/keys/services/web/host1' -d value=10.0.0.1:80 -d ttl=30
show curl -sS -L 'http://127.0.0.1:4001/v2/keys/services/?recursive=true&sorted=true'
show .venv/bin/dockyard store ls --recursive /services
echo "\$ curl -sS -L 'http://127.0.0.1:4001/v2/keys/message?wait=true' &   # a watcher"
watch_out=$(mktemp)
curl -sS -L 'http://127.0.0.1:4001/v2/keys/message?wait=true' >"$watch_out" &
watcher=$!
# The store answers a watch with headers once the watcher is armed; give curl a moment to
# connect, then change the key and wait for the watcher to finish.
for _ in $(seq 1 50); do
  [[ $(curl -sS http://127.0.0.1:4001/v2/stats/store | grep -o '"watchers":[0-9]*') != '"watchers":0' ]] && break
  sleep 0.05
done
show curl -sS -L -X PUT http://127.0.0.1:4001/v2/keys/message -d value="Hello again"
wait "$watcher"
echo "the watcher saw:"; cat "$watch_out"; rm -f "$watch_out"; echo
echo "The store is serving: http://127.0.0.1:2379 and http://127.0.0.1:4001 (etcd v2 keys API)."
echo "Data: $( [[ $(id -u) -eq 0 ]] && echo /var/lib/dockyard/store || echo ~/.local/share/dockyard/store )"
echo "Use it with curl, python-etcd, etcdctl (ETCDCTL_API=2) or 'dockyard store ...'."
echo "Stop it with: scripts/run.sh stop"
