#!/usr/bin/env bash
# Makes sure `redis-server` is installed (Debian/Ubuntu: apt-get), then, unless
# `--install-only` is given, runs one in the foreground on loopback for manual testing:
#   scripts/start-redis.sh [--install-only] [PORT]   (default port 6379)
# The flashblocks-proxy integration tests start their own redis-server on a free port; they only
# need the binary on PATH.
set -euo pipefail

install_only=false
if [[ "${1:-}" == "--install-only" ]]; then
  install_only=true
  shift
fi
port="${1:-6379}"

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  sudo_cmd=""
  if [[ "$(id -u)" != "0" ]]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

if [[ "$install_only" == "true" ]]; then
  exit 0
fi
exec redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no
