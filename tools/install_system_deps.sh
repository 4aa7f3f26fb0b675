#!/usr/bin/env bash
# Installs, with Debian's apt-get, the system packages that are missing: a Java 17
# runtime and Maven (to resolve and run Kafka and Cassandra), Chromium and its driver
# and a Japanese font (browser tests), docker-compose (to validate docker-compose.yml;
# no engine needed), wrk (the benchmarks' HTTP load generator, in C: it does not take the
# CPU of the server it measures the way a Python client would).
# Does nothing when everything is present. Needs root (or sudo) only when installing.
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
for package in chromium chromium-driver fonts-ipafont-gothic; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v wrk >/dev/null || missing+=(wrk)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
