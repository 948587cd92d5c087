#!/bin/sh
# Build the 512-byte dirtier boot sector and a 1 MiB raw disk image holding it.
# Usage: [DEFS="-DDIRTY_END=0x120000"] build.sh [OUTDIR]   (default: a "build" directory beside this script;
#                             sources are never modified)
set -e
SRC="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$SRC/build}"
mkdir -p "$OUT"
gcc -m32 -ffreestanding ${DEFS:-} -c -o "$OUT/dirtier.o" "$SRC/dirtier.S"
ld -m elf_i386 -Ttext=0x7c00 -e _start -o "$OUT/dirtier.elf" "$OUT/dirtier.o"
objcopy -O binary -j .text "$OUT/dirtier.elf" "$OUT/dirtier.bin"
test "$(stat -c %s "$OUT/dirtier.bin")" = 512
python3 - "$OUT" <<'PY'
import sys, os
out = sys.argv[1]
d = open(os.path.join(out, 'dirtier.bin'), 'rb').read()
assert d[510:] == b'\x55\xaa', 'missing boot signature'
open(os.path.join(out, 'boot.img'), 'wb').write(d + b'\0' * (1024 * 1024 - 512))
PY
echo "built $OUT/boot.img"
