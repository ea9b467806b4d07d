#!/usr/bin/env bash
# `make wheel`: the release wheel, repaired by auditwheel so that every library outside the
# manylinux policy is inside it (README "Install"). Output: dist/images_to_zarr-*-manylinux_*.whl,
# and the unrepaired linux_x86_64 wheel in build/wheel-plain/ (make test-wheel uses both).
#
# The wheel links cfitsio statically and a minimal static libcurl (CMakeLists.txt, I2Z_WHEEL):
# Debian's libcurl4 needs ~25 libraries the engine never uses, two of which pull GnuTLS beside
# OpenSSL. That libcurl is built here from Debian's own source package of the host's release
# (security patches included), fetched with apt through a private source list, and cached in
# build/wheel-deps/ so that reruns skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-2}
DEPS=$PWD/build/wheel-deps
CURL_PREFIX=$DEPS/curl
DIST=$PWD/dist
PLAIN=$PWD/build/wheel-plain

build_curl() {
  local apt=$DEPS/apt codename
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  rm -rf "$DEPS/src" && mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/cache/archives/partial" "$DEPS/src"
  cat > "$apt/parts/debian-src.sources" <<EOF
Types: deb-src
URIs: ${I2Z_DEBIAN_MIRROR:-http://deb.debian.org/debian}
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: ${I2Z_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/parts"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" -qq update
  (cd "$DEPS/src" && apt-get "${opts[@]}" -qq source curl)   # unpacks with Debian's patches applied
  local src
  src=$(ls -d "$DEPS"/src/curl-*/ | head -n 1)
  # HTTP(S) only, OpenSSL + zlib; no CA path compiled in: OpenSSL's default locations and
  # SSL_CERT_FILE / SSL_CERT_DIR decide (README "Install").
  cmake -S "$src" -B "$DEPS/curl-build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$CURL_PREFIX" -DCMAKE_INSTALL_LIBDIR=lib \
    -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_CURL_EXE=OFF \
    -DBUILD_TESTING=OFF -DENABLE_MANUAL=OFF -DHTTP_ONLY=ON -DCURL_USE_OPENSSL=ON \
    -DCURL_USE_LIBSSH2=OFF -DCURL_USE_LIBPSL=OFF -DUSE_LIBIDN2=OFF -DUSE_NGHTTP2=OFF \
    -DCURL_BROTLI=OFF -DCURL_ZSTD=OFF -DCURL_USE_GSSAPI=OFF -DUSE_LIBRTMP=OFF \
    -DCURL_DISABLE_LDAP=ON -DCURL_DISABLE_LDAPS=ON -DCURL_CA_BUNDLE=none -DCURL_CA_PATH=none \
    -DCURL_CA_FALLBACK=ON -DENABLE_THREADED_RESOLVER=ON -DCURL_HIDDEN_SYMBOLS=ON >/dev/null
  cmake --build "$DEPS/curl-build" -j "$JOBS" >/dev/null
  cmake --install "$DEPS/curl-build" >/dev/null
}

[ -f "$CURL_PREFIX/lib/libcurl.a" ] || build_curl

rm -rf "$PLAIN" && mkdir -p "$PLAIN" "$DIST"
"$PYTHON" -m pip wheel -q --no-build-isolation --no-deps -w "$PLAIN" \
  -Cbuild-dir=build/wheel -Ccmake.define.I2Z_WHEEL=ON -Ccmake.define.I2Z_CURL_PREFIX="$CURL_PREFIX" .
rm -f "$DIST"/images_to_zarr-*.whl
# --plat auto: the most compatible manylinux tag the wheel's symbol versions allow.
"$PYTHON" -m auditwheel repair -w "$DIST" "$PLAIN"/images_to_zarr-*.whl
wheel=$(ls "$DIST"/images_to_zarr-*.whl)
"$PYTHON" -m auditwheel show "$wheel"
echo "wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
"$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
libs = sorted(n.split("/")[-1] for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith("images_to_zarr.libs/") and not n.endswith("/"))
print(f"bundled ({len(libs)}):", " ".join(libs))
EOF
