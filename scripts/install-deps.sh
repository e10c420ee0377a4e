#!/usr/bin/env bash
# Installs the Debian packages oprm builds and tests with (.ci/packages).
# Uses sudo when not run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# shellcheck disable=SC2046
$SUDO apt-get install -y --no-install-recommends $(grep -v '^#' "$here/.ci/packages")
