#!/usr/bin/env bash
# tfmirror against nginx proxy_cache on the same data, in one run, plain and over TLS. Installs
# nginx, wrk and h2load (nghttp2-client) from the distribution when missing, builds tfmirror
# optimised, and prints one Markdown table.
#   bench/run.sh            full run (1 MiB and 100 MiB archives; each comparison 3 × 3 s per side)
#   bench/run.sh --quick    a smoke run of a few seconds
# Extra flags: --duration SECS, --rounds N (alternations of tfmirror and nginx; medians are
# reported), --big-mib N, --upstream-mibps N, and --hold SECS (after warm-up,
# print the process ids and wait, to attach a profiler by hand), --profile DIR (perf profiles of
# both servers for the big-archive and download-document measurements, with the top of each
# report as text), --only SECTION,... (only those parts of the table: json, log, tls, archives,
# growth, idle, many, cold, startup).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v nginx >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1 ||
  ! command -v h2load >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx wrk nghttp2-client >/dev/null
fi
if [[ " $* " == *" --profile "* ]] && ! command -v perf >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq linux-perf >/dev/null
fi
exec cargo bench --bench perf -- "$@"
