//! What the bytes do not carry: dialect, page size, capabilities, compat properties.
//!
//! See WIRE-FORMAT §14: a decoder needs some facts from outside the stream. Code asks
//! this value (`ctx.sends_footers()`), it never compares version numbers inline.

use std::fmt;
use std::str::FromStr;

/// A QEMU release, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Version {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
}

impl Version {
    /// Build a version.
    pub const fn new(major: u8, minor: u8) -> Self {
        Version { major, minor }
    }
    /// The newest release this codec knows.
    pub const LATEST: Version = Version::new(10, 2);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.split('.');
        let major = it.next().and_then(|m| m.parse().ok());
        let minor = it.next().unwrap_or("0").parse().ok();
        match (major, minor) {
            (Some(major), Some(minor)) => Ok(Version { major, minor }),
            _ => Err(format!("bad QEMU version '{s}'")),
        }
    }
}

/// Which variant of the protocol to speak: the merged protocol, or an RFC dialect (§12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// The protocol as merged upstream (the default).
    #[default]
    Merged,
    /// RFC v1 "precopy initial data" (May 2023): `MIG_CMD_INITIAL_DATA_ENABLE` = 11 (len 268).
    PrecopyInitialData,
    /// Borisov fixed-ram RFC (Oct 2022): `be32 bitmap_size, be64 pages_offset` per block.
    FixedRamBorisov,
    /// Rosas fixed-ram RFC v2+ (2023-2024): the 28-byte header, capability name `fixed-ram`.
    FixedRam,
    /// virtio-iterative RFC (Jul 2025).
    VirtioIterative,
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "merged" | "" => Dialect::Merged,
            "precopy-initial-data" | "rfc:precopy-initial-data" => Dialect::PrecopyInitialData,
            "fixed-ram-borisov" | "rfc:fixed-ram-borisov" => Dialect::FixedRamBorisov,
            "fixed-ram" | "rfc:fixed-ram" => Dialect::FixedRam,
            "virtio-iterative" | "rfc:virtio-iterative" => Dialect::VirtioIterative,
            _ => return Err(format!("unknown dialect '{s}'")),
        })
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Merged => "merged",
            Dialect::PrecopyInitialData => "precopy-initial-data",
            Dialect::FixedRamBorisov => "fixed-ram-borisov",
            Dialect::FixedRam => "fixed-ram",
            Dialect::VirtioIterative => "virtio-iterative",
        })
    }
}

/// Decoder context for one channel (or a whole case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Protocol dialect.
    pub dialect: Dialect,
    /// Version of the peer that wrote the bytes, when known.
    pub version: Option<Version>,
    /// `log2(TARGET_PAGE_SIZE)`; updated from the configuration section or vmdesc.
    pub target_page_bits: u8,
    /// Whether the writer sends section footers (`send-section-footer`; on since 2.4).
    pub section_footers: bool,
    /// Whether a configuration section is expected: `Some(true/false)` to insist, `None` to peek.
    pub configuration: Option<bool>,
    /// Capabilities known to be on (QAPI names); the configuration section adds validated ones.
    pub caps: Vec<String>,
    /// MEM_SIZE block entries carry a `be64 page_size` (postcopy with huge-page blocks).
    pub block_page_size: bool,
    /// Bound on PACKAGED nesting.
    pub max_depth: usize,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            dialect: Dialect::Merged,
            version: None,
            target_page_bits: 12,
            section_footers: true,
            configuration: None,
            caps: Vec::new(),
            block_page_size: false,
            max_depth: 4,
        }
    }
}

impl Context {
    /// `TARGET_PAGE_SIZE` in bytes.
    pub fn page_size(&self) -> u64 {
        1u64 << self.target_page_bits.min(30)
    }

    /// Is capability `name` on?
    pub fn has_cap(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c == name)
    }

    /// Turn a capability on (idempotent).
    pub fn set_cap(&mut self, name: &str) {
        if !self.has_cap(name) {
            self.caps.push(name.to_string());
        }
    }

    /// RAM blocks carry a mapped-ram (or fixed-ram RFC) header.
    pub fn mapped_ram(&self) -> bool {
        self.has_cap("mapped-ram") || self.has_cap("fixed-ram")
    }

    /// RAM blocks carry a GPA (`x-ignore-shared`).
    pub fn ignore_shared(&self) -> bool {
        self.has_cap("x-ignore-shared")
    }

    /// Does the writer send section footers?
    pub fn sends_footers(&self) -> bool {
        self.section_footers
    }

    /// Multifd packets carry the `zero_pages` field (9.0+; assumed when unknown).
    pub fn multifd_zero_pages(&self) -> bool {
        self.version.is_none_or(|v| v >= Version::new(9, 0))
    }

    /// Command 11 is the RFC `INITIAL_DATA_ENABLE`.
    pub fn rfc_initial_data(&self) -> bool {
        self.dialect == Dialect::PrecopyInitialData
    }

    /// Capabilities checked in the configuration section by this writer/reader.
    pub fn validated_caps(&self) -> &'static [&'static str] {
        match (self.dialect, self.version) {
            (Dialect::FixedRam | Dialect::FixedRamBorisov, _) => &["x-ignore-shared", "fixed-ram"],
            (Dialect::VirtioIterative, _) => &["x-ignore-shared", "mapped-ram", "virtio-iterative"],
            (_, Some(v)) if v < Version::new(9, 0) => &["x-ignore-shared"],
            _ => &["x-ignore-shared", "mapped-ram"],
        }
    }
}
