//! Open newtypes for every wire code, with named constants.
//!
//! A value that is not one of the named constants survives as itself, is shown as
//! `unknown (0x..)` and re-encodes exactly. [`known_since`](SectionType::known_since)-style
//! tables say which QEMU release introduced each value, so a guard test can notice
//! when QEMU's enums grow.

use std::fmt;

macro_rules! open_code {
    (
        $(#[$m:meta])* $name:ident($repr:ty) {
            $( $(#[$cm:meta])* $c:ident = $v:expr, $label:expr, $since:expr; )*
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cm])* pub const $c: Self = Self($v); )*

            /// Every named value, in numeric order.
            pub const ALL: &'static [Self] = &[$(Self::$c),*];

            /// QEMU's name for this value, or `None` when it is not classified.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( v if v == $v => Some($label), )*
                    _ => None,
                }
            }

            /// The first QEMU release (as `(major, minor)`) that defines this value,
            /// or `None` when unclassified or RFC-only.
            pub fn known_since(self) -> Option<(u8, u8)> {
                match self.0 {
                    $( v if v == $v => $since, )*
                    _ => None,
                }
            }

            /// True when the value is one of the named constants.
            pub fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "unknown (0x{:x})", self.0),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
    };
}

const PRE72: Option<(u8, u8)> = Some((7, 2));

open_code! {
    /// Top-level item type byte of the main stream (`QEMU_VM_*`, `migration/savevm.h`).
    SectionType(u8) {
        /// `QEMU_VM_EOF`.
        EOF = 0x00, "EOF", PRE72;
        /// `QEMU_VM_SECTION_START`.
        START = 0x01, "SECTION_START", PRE72;
        /// `QEMU_VM_SECTION_PART`.
        PART = 0x02, "SECTION_PART", PRE72;
        /// `QEMU_VM_SECTION_END`.
        END = 0x03, "SECTION_END", PRE72;
        /// `QEMU_VM_SECTION_FULL`.
        FULL = 0x04, "SECTION_FULL", PRE72;
        /// `QEMU_VM_SUBSECTION` (inside VMState payloads only).
        SUBSECTION = 0x05, "SUBSECTION", PRE72;
        /// `QEMU_VM_VMDESCRIPTION` (after EOF).
        VMDESCRIPTION = 0x06, "VMDESCRIPTION", PRE72;
        /// `QEMU_VM_CONFIGURATION` (right after the header).
        CONFIGURATION = 0x07, "CONFIGURATION", PRE72;
        /// `QEMU_VM_COMMAND`.
        COMMAND = 0x08, "COMMAND", PRE72;
        /// `QEMU_VM_SECTION_FOOTER`.
        FOOTER = 0x7e, "SECTION_FOOTER", PRE72;
    }
}

open_code! {
    /// `enum qemu_vm_cmd` (`migration/savevm.c`). Value 11 is `SWITCHOVER_START` in the
    /// merged protocol (10.0+) and `INITIAL_DATA_ENABLE` in the precopy-initial-data RFC.
    CommandCode(u16) {
        /// `MIG_CMD_INVALID` (rejected).
        INVALID = 0, "MIG_CMD_INVALID", PRE72;
        /// `MIG_CMD_OPEN_RETURN_PATH`.
        OPEN_RETURN_PATH = 1, "MIG_CMD_OPEN_RETURN_PATH", PRE72;
        /// `MIG_CMD_PING`.
        PING = 2, "MIG_CMD_PING", PRE72;
        /// `MIG_CMD_POSTCOPY_ADVISE`.
        POSTCOPY_ADVISE = 3, "MIG_CMD_POSTCOPY_ADVISE", PRE72;
        /// `MIG_CMD_POSTCOPY_LISTEN`.
        POSTCOPY_LISTEN = 4, "MIG_CMD_POSTCOPY_LISTEN", PRE72;
        /// `MIG_CMD_POSTCOPY_RUN`.
        POSTCOPY_RUN = 5, "MIG_CMD_POSTCOPY_RUN", PRE72;
        /// `MIG_CMD_POSTCOPY_RAM_DISCARD`.
        POSTCOPY_RAM_DISCARD = 6, "MIG_CMD_POSTCOPY_RAM_DISCARD", PRE72;
        /// `MIG_CMD_PACKAGED`.
        PACKAGED = 7, "MIG_CMD_PACKAGED", PRE72;
        /// `MIG_CMD_ENABLE_COLO`.
        ENABLE_COLO = 8, "MIG_CMD_ENABLE_COLO", PRE72;
        /// `MIG_CMD_POSTCOPY_RESUME`.
        POSTCOPY_RESUME = 9, "MIG_CMD_POSTCOPY_RESUME", PRE72;
        /// `MIG_CMD_RECV_BITMAP`.
        RECV_BITMAP = 10, "MIG_CMD_RECV_BITMAP", PRE72;
        /// `MIG_CMD_SWITCHOVER_START` (10.0).
        SWITCHOVER_START = 11, "MIG_CMD_SWITCHOVER_START", Some((10, 0));
    }
}

impl CommandCode {
    /// RFC precopy-initial-data (May 2023): `MIG_CMD_INITIAL_DATA_ENABLE`, same value as
    /// [`SWITCHOVER_START`](Self::SWITCHOVER_START), told apart by the dialect and its length 268.
    pub const INITIAL_DATA_ENABLE: Self = Self(11);
}

open_code! {
    /// `enum mig_rp_message_type` (`migration/migration.c`).
    RpMessageType(u16) {
        /// `MIG_RP_MSG_INVALID`.
        INVALID = 0, "MIG_RP_MSG_INVALID", PRE72;
        /// `MIG_RP_MSG_SHUT`.
        SHUT = 1, "MIG_RP_MSG_SHUT", PRE72;
        /// `MIG_RP_MSG_PONG`.
        PONG = 2, "MIG_RP_MSG_PONG", PRE72;
        /// `MIG_RP_MSG_REQ_PAGES_ID`.
        REQ_PAGES_ID = 3, "MIG_RP_MSG_REQ_PAGES_ID", PRE72;
        /// `MIG_RP_MSG_REQ_PAGES`.
        REQ_PAGES = 4, "MIG_RP_MSG_REQ_PAGES", PRE72;
        /// `MIG_RP_MSG_RECV_BITMAP`.
        RECV_BITMAP = 5, "MIG_RP_MSG_RECV_BITMAP", PRE72;
        /// `MIG_RP_MSG_RESUME_ACK`.
        RESUME_ACK = 6, "MIG_RP_MSG_RESUME_ACK", PRE72;
        /// `MIG_RP_MSG_SWITCHOVER_ACK` (8.1); `INITIAL_DATA_LOADED_ACK` in the RFC dialect.
        SWITCHOVER_ACK = 7, "MIG_RP_MSG_SWITCHOVER_ACK", Some((8, 1));
    }
}

impl RpMessageType {
    /// RFC precopy-initial-data name of value 7.
    pub const INITIAL_DATA_LOADED_ACK: Self = Self(7);
}

open_code! {
    /// VFIO device-state markers (`VFIO_MIG_FLAG_*`, `hw/vfio/migration.c`).
    VfioTag(u64) {
        /// `VFIO_MIG_FLAG_END_OF_STATE`.
        END_OF_STATE = 0xffff_ffff_ef10_0001, "VFIO_MIG_FLAG_END_OF_STATE", PRE72;
        /// `VFIO_MIG_FLAG_DEV_CONFIG_STATE`.
        DEV_CONFIG_STATE = 0xffff_ffff_ef10_0002, "VFIO_MIG_FLAG_DEV_CONFIG_STATE", PRE72;
        /// `VFIO_MIG_FLAG_DEV_SETUP_STATE`.
        DEV_SETUP_STATE = 0xffff_ffff_ef10_0003, "VFIO_MIG_FLAG_DEV_SETUP_STATE", PRE72;
        /// `VFIO_MIG_FLAG_DEV_DATA_STATE`.
        DEV_DATA_STATE = 0xffff_ffff_ef10_0004, "VFIO_MIG_FLAG_DEV_DATA_STATE", PRE72;
        /// `VFIO_MIG_FLAG_DEV_INIT_DATA_SENT` (8.1).
        DEV_INIT_DATA_SENT = 0xffff_ffff_ef10_0005, "VFIO_MIG_FLAG_DEV_INIT_DATA_SENT", Some((8, 1));
        /// `VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY` (10.1).
        DEV_CONFIG_LOAD_READY = 0xffff_ffff_ef10_0006, "VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY", Some((10, 1));
    }
}

bitflags::bitflags! {
    /// `RAM_SAVE_FLAG_*`: the low bits of a RAM record's `addr|flags` be64.
    /// Decoded with `from_bits_retain`, so unknown bits survive.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct RamFlags: u64 {
        /// `RAM_SAVE_FLAG_FULL` (obsolete since 2009, rejected by the loader).
        const FULL = 0x001;
        /// `RAM_SAVE_FLAG_ZERO` (ex `COMPRESS`).
        const ZERO = 0x002;
        /// `RAM_SAVE_FLAG_MEM_SIZE`.
        const MEM_SIZE = 0x004;
        /// `RAM_SAVE_FLAG_PAGE`.
        const PAGE = 0x008;
        /// `RAM_SAVE_FLAG_EOS`.
        const EOS = 0x010;
        /// `RAM_SAVE_FLAG_CONTINUE`.
        const CONTINUE = 0x020;
        /// `RAM_SAVE_FLAG_XBZRLE`.
        const XBZRLE = 0x040;
        /// `RAM_SAVE_FLAG_HOOK` (RDMA).
        const HOOK = 0x080;
        /// `RAM_SAVE_FLAG_COMPRESS_PAGE` (removed in 9.1).
        const COMPRESS_PAGE = 0x100;
        /// `RAM_SAVE_FLAG_MULTIFD_FLUSH` (8.1).
        const MULTIFD_FLUSH = 0x200;
    }
}

impl RamFlags {
    /// First release defining each flag; `None` for bits QEMU never defined.
    pub fn known_since(bit: u64) -> Option<(u8, u8)> {
        match bit {
            0x001..=0x100 if bit.is_power_of_two() => PRE72,
            0x200 => Some((8, 1)),
            _ => None,
        }
    }
}

bitflags::bitflags! {
    /// Multifd packet header `flags` (`MULTIFD_FLAG_*`). The compression field (bits 1..5)
    /// is a value, see [`MultifdCompression`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MultifdFlags: u32 {
        /// `MULTIFD_FLAG_SYNC`.
        const SYNC = 0x01;
        /// `MULTIFD_FLAG_ZLIB` (1<<1).
        const ZLIB = 0x02;
        /// `MULTIFD_FLAG_ZSTD` (2<<1).
        const ZSTD = 0x04;
        /// `MULTIFD_FLAG_QPL` (4<<1, 9.1).
        const QPL = 0x08;
        /// `MULTIFD_FLAG_UADK` (8<<1, 9.1).
        const UADK = 0x10;
        /// `MULTIFD_FLAG_QATZIP` (16<<1, 9.2).
        const QATZIP = 0x20;
        /// `MULTIFD_FLAG_DEVICE_STATE` (32<<1, 10.0).
        const DEVICE_STATE = 0x40;
    }
}

/// Multifd compression method carried in `flags & 0x3e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultifdCompression {
    /// No compression (0).
    None,
    /// zlib (0x02).
    Zlib,
    /// zstd (0x04).
    Zstd,
    /// QPL (0x08, 9.1+).
    Qpl,
    /// UADK (0x10, 9.1+).
    Uadk,
    /// QATzip (0x20, 9.2+).
    Qatzip,
    /// Any other value of the field, kept.
    Other(u32),
}

impl MultifdCompression {
    /// Decode from a packet's flags word.
    pub fn from_flags(flags: u32) -> Self {
        match flags & 0x3e {
            0 => Self::None,
            0x02 => Self::Zlib,
            0x04 => Self::Zstd,
            0x08 => Self::Qpl,
            0x10 => Self::Uadk,
            0x20 => Self::Qatzip,
            v => Self::Other(v),
        }
    }
}
