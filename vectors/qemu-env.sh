# Source me: `. vectors/qemu-env.sh` (after `bash vectors/setup-qemu.sh`).
# Exports the two QEMU binaries and their firmware search paths (-L args).
QMIG_QEMU_PREFIX=${QMIG_QEMU_PREFIX:-${PREFIX:-/opt/qmig-qemu}}
export QMIG_QEMU_PREFIX
export QEMU72="$QMIG_QEMU_PREFIX/qemu-7.2/usr/bin/qemu-system-x86_64"
export QEMU100="$QMIG_QEMU_PREFIX/qemu-10.0/usr/bin/qemu-system-x86_64"
export QEMU72_L="-L $QMIG_QEMU_PREFIX/qemu-7.2/usr/share/qemu -L $QMIG_QEMU_PREFIX/qemu-7.2/usr/share/seabios"
export QEMU100_L="-L $QMIG_QEMU_PREFIX/qemu-10.0/usr/share/qemu -L $QMIG_QEMU_PREFIX/qemu-10.0/usr/share/seabios"
