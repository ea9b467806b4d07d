#!/usr/bin/env bash
# `make test-wheel` (after `make wheel`; run as root): the release wheel on a system without the
# libraries it bundles, and the sdist.
#
#  1. A minimal Debian root (debootstrap --variant=minbase, plus python3 and python3-venv; cached
#     in I2Z_WHEEL_ROOT, created from scratch when missing). It has no image or curl libraries;
#     the compression libraries apt needs are present on disk, so step 3 hides them behind an
#     empty file (/dev/null bind-mounted over it) in a private mount namespace. (OpenSSL stays:
#     the root's Python needs it.)
#  2. Fresh virtual environments in that root: the repaired wheel and the plain linux_x86_64
#     wheel (build/wheel-plain), each with its PyPI dependencies (pip's cache stays in the root).
#  3. Hidden: the hiding works (dlopen of each hidden library fails), the plain wheel's import
#     fails, and the repaired wheel converts examples/data, runs `inspect`, reads the store back.
#  4. On the host: the store read with zarr-python equals the wheel's read-back and the sources
#     decoded by Pillow / tifffile / astropy (scripts/check_wheel.py); the sdist holds every
#     tracked source file and nothing of build/, dist/, bench/.data, bench/.venv-peers, and a
#     wheel built from it imports.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROOT=${I2Z_WHEEL_ROOT:-/var/cache/i2z-wheel-root}
MIRROR=${I2Z_DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=/i2z-test                       # inside the root
wheel=$(ls dist/images_to_zarr-*manylinux*.whl)
plain=$(ls build/wheel-plain/images_to_zarr-*linux_x86_64.whl)
step() { echo; echo "== [${SECONDS}s] $*"; }

if [ ! -f "$ROOT/.i2z-root-ready" ]; then
  step "creating the minimal Debian root $ROOT"
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  rm -rf "$ROOT.tmp"
  debootstrap --variant=minbase --include=python3,python3-venv "$codename" "$ROOT.tmp" "$MIRROR" >/dev/null
  touch "$ROOT.tmp/.i2z-root-ready"
  rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# pip in the root trusts the host's CA bundle (a proxy's own CA, if the host has one).
host_ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -f "$host_ca" ] && cp "$host_ca" "$ROOT/etc/i2z-host-ca.crt"

step "the root has no image, FITS, Zarr-codec or curl library"
absent=$(find "$ROOT/usr/lib" "$ROOT/usr/local" -name 'lib*.so*' \
  | grep -E '/lib(png|jpeg|tiff|cfitsio|blosc|deflate|webp|Lerc|jbig|snappy|curl)[-.]' || true)
[ -z "$absent" ] || { echo "FAIL: the root has $absent"; exit 1; }
echo ok

# The libraries the wheel bundles, by original name (libzstd-6bb594bb.so.1.5.4 -> libzstd),
# and every file of the root that provides one of them.
bundled=$("$PYTHON" -c '
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(" ".join(sorted({re.sub(r"-[0-9a-f]{8}\.so.*", "", n.split("/")[-1])
                      for n in names if n.startswith("images_to_zarr.libs/lib")})))' "$wheel")
# The root's own Python needs its OpenSSL (pyarrow imports ssl), so those two stay visible:
# the wheel's renamed copies (libssl-<hash>.so.3) cannot be satisfied by them anyway, and
# check_wheel.py asserts from /proc/self/maps that the extension used its own.
hide=()
for lib in $bundled; do
  case $lib in libssl|libcrypto) continue ;; esac
  while IFS= read -r f; do hide+=("${f#"$ROOT"}"); done \
    < <(find "$ROOT/usr/lib" -name "$lib.so*" -type f)
done
echo "bundled: $bundled"
echo "present in the root, hidden during the test: ${hide[*]:-none}"

rm -rf "${ROOT:?}$WORK" && mkdir -p "$ROOT$WORK/examples"
cp -r examples/data "$ROOT$WORK/examples/"
cp "$wheel" "$plain" "$ROOT$WORK/"

# Runs a bash script inside the root, in a private mount namespace: /proc, /dev, and with
# --hide the bundled libraries' system copies masked.
in_root() {
  local mask=""
  if [ "${1:-}" = --hide ]; then
    shift
    for f in "${hide[@]}"; do mask+="mount --bind /dev/null '$ROOT$f'; "; done
  fi
  unshare --mount --propagation private bash -c "set -e
    mount -t proc proc '$ROOT/proc'; mount --rbind /dev '$ROOT/dev'; $mask
    exec chroot '$ROOT' /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 bash -euo pipefail -c \"\$0\"" "$1"
}

step "fresh virtual environments in the root: repaired and plain wheel (dependencies from PyPI)"
in_root "cd $WORK
  for v in repaired:$(basename "$wheel") plain:$(basename "$plain"); do
    python3 -m venv venv-\${v%%:*}
    PIP_CERT=\$(ls /etc/i2z-host-ca.crt 2>/dev/null || true) \\
      venv-\${v%%:*}/bin/pip install -q --disable-pip-version-check ./\${v#*:}
  done"

step "the bundled libraries' system copies in the root load, unhidden, and fail to load, hidden"
in_root "for f in ${hide[*]}; do python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' \$f; done; echo ok"
in_root --hide "for f in ${hide[*]}; do
    if python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' \$f 2>/dev/null; then
      echo \"FAIL: \$f loads\"; exit 1
    fi
  done; echo ok"

step "hidden: the plain linux_x86_64 wheel does not import"
in_root --hide "cd $WORK
  if out=\$(venv-plain/bin/python -c 'import images_to_zarr._core' 2>&1); then
    echo 'FAIL: the plain wheel imported without the system libraries'; exit 1
  fi
  echo \"\$out\" | tail -n 1
  echo \"\$out\" | grep -q 'cannot open shared object file' || { echo 'FAIL: unexpected error'; exit 1; }
  echo 'ok: fails as expected'"

step "hidden: the repaired wheel converts examples/data, inspects and reads back"
in_root --hide "cd $WORK && . venv-repaired/bin/activate
  ldd venv-repaired/lib/python3*/site-packages/images_to_zarr/_core*.so > ldd.txt
  echo \"extension's shared libraries (ldd): \$(grep -vc vdso ldd.txt)\"
  ! grep 'not found' ldd.txt
  images_to_zarr convert examples/data --recursive --metadata examples/data/metadata.csv --out out --no-progress
  images_to_zarr inspect out/metadata.zarr
  python - <<'EOF'
import json
import numpy as np
from images_to_zarr import open_store
s = open_store('out/metadata.zarr')
np.save('readback.npy', s[0:len(s)])
rows = s.metadata.select(['source_path', 'fits_extension', 'error']).to_pylist()
json.dump(rows, open('rows.json', 'w'))
maps = {l.split()[-1] for l in open('/proc/self/maps') if '.so' in l.split()[-1]}
json.dump(sorted(maps), open('maps.json', 'w'))
EOF"

# HTTPS through the bundled curl + OpenSSL: with the host's CA bundle the request reaches the
# server (an HTTP error from it, not a TLS one); with an empty CA file verification refuses it.
step "hidden: HTTPS from the wheel (an S3 HEAD to the Debian mirror's host)"
https_url=https://$(echo "$MIRROR" | sed -E 's|^[a-z]+://||; s|/.*||')
cat > "$ROOT$WORK/tls.py" <<'EOF'
import sys
from images_to_zarr import open_store
try:
    open_store("s3://no-such-bucket/x.zarr", storage_options={"endpoint_url": sys.argv[1], "anon": True, "max_retries": 0})
except OSError as e:
    print(e)
EOF
in_root --hide "cd $WORK
  ok=\$(SSL_CERT_FILE=/etc/i2z-host-ca.crt venv-repaired/bin/python tls.py $https_url)
  bad=\$(SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent venv-repaired/bin/python tls.py $https_url)
  echo \"host CA bundle: \$ok\"; echo \"no CA: \$bad\"
  echo \"\$ok\" | grep -q 'failed: HTTP [0-9]' || { echo 'FAIL: HTTPS did not reach the server'; exit 1; }
  echo \"\$bad\" | grep -qi 'certificate' || { echo 'FAIL: an unverifiable server was accepted'; exit 1; }
  echo ok"

step "host: the store against zarr-python, the wheel's read-back and the reference decoders"
"$PYTHON" scripts/check_wheel.py store "$ROOT$WORK"

step "host: the sdist"
"$PYTHON" scripts/check_wheel.py sdist build/sdist-check
echo; echo "test-wheel: all passed in ${SECONDS}s ($(basename "$wheel"))"
