//! `qmig-codec`: zero-copy codec for the QEMU live-migration wire protocol.
#![forbid(unsafe_code)]
