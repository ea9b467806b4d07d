#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need. Idempotent; run as root
# (or with sudo available). Skips apt entirely when every package is already present.
set -euo pipefail
pkgs=(
  build-essential pkg-config
  libpng-dev libjpeg62-turbo-dev libtiff-dev libcfitsio-dev
  libblosc-dev libzstd-dev liblz4-dev zlib1g-dev libdeflate-dev
  nlohmann-json3-dev libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  debootstrap
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
