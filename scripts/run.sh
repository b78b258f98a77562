#!/usr/bin/env bash
# dockyard's main job on its embedded defaults: start the store (etcd v2 API on
# 127.0.0.1:2379 and :4001) and the engine (Docker API on unix:///run/dockyard/dockyard.sock)
# if they are not running, walk through the store's classic example, then bring up the
# example application (examples/compose-app: a web app counting visits in a key-value
# backend) with dockyard compose and say where to reach it.
#   scripts/run.sh          start (if needed) and run the examples
#   scripts/run.sh stop     bring the app down, stop the engine and the store this script started
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
run_dir=/run/dockyard
[[ $(id -u) -eq 0 ]] || run_dir="${XDG_RUNTIME_DIR:-/tmp}/dockyard"
pid_file=$run_dir/store.pid
log_file=$run_dir/store.log

engine_sock=/run/dockyard/dockyard.sock
engine_pid_file=$run_dir/engine.pid
engine_log=$run_dir/engine.log
app_dir=examples/compose-app
app_url=http://127.0.0.1:5000/
engine_up() { curl -fsS --max-time 2 --unix-socket "$engine_sock" http://engine/_ping >/dev/null 2>&1; }
compose() { DOCKER_HOST=unix://$engine_sock .venv/bin/dockyard compose -f "$app_dir/docker-compose.yml" "$@"; }
stop_pid() {  # by PID (never by name), waiting for it to go
  local file=$1 what=$2
  if [[ -f $file ]] && kill -0 "$(cat "$file")" 2>/dev/null; then
    kill "$(cat "$file")"
    while kill -0 "$(cat "$file")" 2>/dev/null; do sleep 0.1; done
    rm -f "$file"; echo "$what stopped"
  else
    echo "$what not running (no live $file)"
  fi
}

if [[ ${1:-} == stop ]]; then
  if engine_up; then compose down || true; fi
  stop_pid "$engine_pid_file" engine
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

echo
echo "== The example application (examples/compose-app, dockyard compose) =="
if [[ $(id -u) -ne 0 ]]; then
  echo "the engine needs root (namespaces, cgroups, mounts): run scripts/run.sh as root for this part"
  exit 0
fi
if engine_up; then
  echo "engine: already serving on unix://$engine_sock"
else
  echo "engine: starting (log: $engine_log)"
  setsid .venv/bin/dockyard daemon >>"$engine_log" 2>&1 < /dev/null &
  echo $! > "$engine_pid_file"
  for _ in $(seq 1 300); do
    engine_up && break
    kill -0 "$(cat "$engine_pid_file")" 2>/dev/null || { echo "engine failed to start:"; tail -20 "$engine_log"; exit 1; }
    sleep 0.1
  done
  engine_up || { echo "engine did not answer within 30 s:"; tail -20 "$engine_log"; exit 1; }
fi
# The app's images are built FROM debian:bookworm with python3, made without a registry
# (mmdebstrap from the Debian archive; about a minute the first time, cached after).
show .venv/bin/dockyard image bootstrap debian bookworm --include python3
show compose up -d --build
for _ in $(seq 1 100); do
  curl -fsS --max-time 2 "$app_url" >/dev/null 2>&1 && break
  sleep 0.1
done
show curl -sS "$app_url"
show curl -sS "$app_url"
show compose ps
echo "The example app is serving: $app_url (edit $app_dir and run 'dockyard compose up -d' again:"
echo "only what changed is recreated). The engine: DOCKER_HOST=unix://$engine_sock docker ps"
echo "Stop everything with: scripts/run.sh stop"
