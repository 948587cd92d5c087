#!/bin/bash
# Install two QEMU versions side by side for qmig's vector capture, WITHOUT touching
# /etc/apt sources:
#   $PREFIX/qemu-7.2   Debian bookworm      qemu-system-x86 1:7.2+dfsg-7+deb12u18+b3 (+ seabios 1.16.2-1)
#   $PREFIX/qemu-10.0  Debian bookworm-bpo  qemu-system-x86 1:10.0.2+ds-2+deb13u1~bpo12+1 (+ seabios 1.16.3-2~bpo12+1)
# Both are unpacked with `dpkg -x` (not installed), so they conflict neither with each
# other nor with a system qemu. Shared libraries come from plain bookworm via apt-get.
# Run them with (or `source vectors/qemu-env.sh`):
#   $PREFIX/qemu-X/usr/bin/qemu-system-x86_64 -L $PREFIX/qemu-X/usr/share/qemu -L $PREFIX/qemu-X/usr/share/seabios ...
# 7.2 is not `apt-get install`ed because a qemu-utils from backports (if present)
# Breaks: qemu-system-common (<< 8.0); unpacking side-steps that.
#
# Idempotent: re-running skips what is in place. Concurrent runs serialise on a lock.
# Env: PREFIX (default /opt/qmig-qemu), QMIG_QEMU_LOCK (default /var/tmp/qmig-qemu-setup.lock)
set -euo pipefail

PREFIX=${PREFIX:-/opt/qmig-qemu}
LOCK=${QMIG_QEMU_LOCK:-/var/tmp/qmig-qemu-setup.lock}

if [ -z "${QMIG_SETUP_LOCKED:-}" ]; then
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  flock -w 1800 9 || { echo "setup-qemu.sh: could not take $LOCK" >&2; exit 1; }
  export QMIG_SETUP_LOCKED=1
fi

V72=1:7.2+dfsg-7+deb12u18+b3
V72DATA=1:7.2+dfsg-7+deb12u18
SEABIOS72=1.16.2-1
V100=1:10.0.2+ds-2+deb13u1~bpo12+1
SEABIOS100=1.16.3-2~bpo12+1

BP=/var/tmp/qmig-qemu-apt-backports   # private apt state for bookworm-backports
O=(-o Dir::Etc::sourcelist=$BP/sources.list -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$BP/lists -o Dir::Cache=$BP/cache)

export DEBIAN_FRONTEND=noninteractive

need_libs=(libaio1 libbpf1 libcapstone4 libfdt1 libfuse3-3 libibverbs1 libjpeg62-turbo libnuma1
           libpixman-1-0 libpmem1 libpng16-16 librdmacm1 libsasl2-2 libseccomp2 libslirp0 liburing2
           libvdeplug2 libzstd1 libglib2.0-0 libgnutls30 libasound2 libbrlapi0.8 libcacard0 libcap-ng0
           libusb-1.0-0 libusbredirparser1 binutils gcc python3)

ok() { "$1" --version 2>/dev/null | head -1 | grep -q "$2"; }

missing=()
for p in "${need_libs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

Q72=$PREFIX/qemu-7.2/usr/bin/qemu-system-x86_64
Q100=$PREFIX/qemu-10.0/usr/bin/qemu-system-x86_64

unpack() {  # unpack DEST DEB... into DEST atomically (tmp dir + rename)
  local dest=$1; shift
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  for f in "$@"; do dpkg -x "$f" "$tmp"; done
  rm -rf "$dest"; mv "$tmp" "$dest"
}

if ! ok "$Q72" "version 7.2" || [ ! -f "$PREFIX/qemu-7.2/usr/share/seabios/bios-256k.bin" ]; then
  d=$(mktemp -d); chmod 755 "$d"
  (cd "$d" && apt-get download qemu-system-x86=$V72 qemu-system-common=$V72 \
      qemu-system-data=$V72DATA qemu-utils=$V72 seabios=$SEABIOS72 \
   || { apt-get update && apt-get download qemu-system-x86=$V72 qemu-system-common=$V72 \
      qemu-system-data=$V72DATA qemu-utils=$V72 seabios=$SEABIOS72; })
  mkdir -p "$PREFIX"
  unpack "$PREFIX/qemu-7.2" "$d"/*.deb
  rm -rf "$d"
fi

if ! ok "$Q100" "version 10.0.2" || [ ! -f "$PREFIX/qemu-10.0/usr/share/seabios/bios-256k.bin" ]; then
  mkdir -p $BP/lists/partial $BP/cache/archives/partial
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" > $BP/sources.list
  apt-get "${O[@]}" update
  d=$(mktemp -d); chmod 755 "$d"
  (cd "$d" && apt-get "${O[@]}" download qemu-system-x86=$V100 qemu-system-common=$V100 \
      qemu-system-data=$V100 qemu-utils=$V100 seabios=$SEABIOS100)
  mkdir -p "$PREFIX"
  unpack "$PREFIX/qemu-10.0" "$d"/*.deb
  rm -rf "$d"
fi

for q in "$Q72" "$Q100"; do
  if ldd "$q" | grep "not found"; then echo "missing shared libraries for $q" >&2; exit 1; fi
done
ok "$Q72" "version 7.2" && ok "$Q100" "version 10.0.2"
echo "QEMU72=$Q72   ($("$Q72" --version | head -1))"
echo "QEMU100=$Q100   ($("$Q100" --version | head -1))"
echo "firmware 7.2:  -L $PREFIX/qemu-7.2/usr/share/qemu -L $PREFIX/qemu-7.2/usr/share/seabios"
echo "firmware 10.0: -L $PREFIX/qemu-10.0/usr/share/qemu -L $PREFIX/qemu-10.0/usr/share/seabios"
echo "setup-qemu.sh: OK"
