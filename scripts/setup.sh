#!/usr/bin/env bash
# Install everything dockyard needs on a Debian machine, idempotently: apt packages (the
# reference etcd for differential tests, wrk for benchmarks) and the Python package in .venv.
# Run as root. Safe to run again and again.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# docker.io: the reference dockerd (20.10) for the engine's differential tests and benchmark;
# docker-registry: the real Registry v2 the pull/push tests start on loopback; mmdebstrap:
# `dockyard image bootstrap debian:…` builds Debian base images from Debian's archive.
# iptables: the engine's NAT, published ports and isolation; dnsmasq-base: the real upstream
# resolver the embedded-DNS tests forward to.
apt_packages=(etcd-server etcd-client wrk curl ca-certificates iproute2 util-linux runc busybox-static tini
  iptables dnsmasq-base docker.io docker-registry mmdebstrap)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$(command -v "$candidate"); break
  fi
done
[[ -n $python ]] || missing+=(python3 python3-venv)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ -z $python ]]; then python=$(command -v python3); fi
# Debian's etcd-server and docker.io start system services (etcd on 2379, dockerd, which sets
# the FORWARD policy to DROP); dockyard wants the port, and tests start their own references.
for unit in etcd docker.socket docker containerd docker-registry; do
  if systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

stamp=.venv/.dockyard-installed
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
# docker-compose 1.29.2, the Compose reference of tests/e2e/compose and
# benchmarks/compose_bench.py: its own venv under /var/tmp (PyPI only), reused when it runs.
.venv/bin/python -c 'from tests.support.compose_reference import install_docker_compose as i; i()'
