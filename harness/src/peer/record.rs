//! `qmig record`: a recording TCP proxy between a source and a destination QEMU.
