//! The configuration section (`QEMU_VM_CONFIGURATION`, vmsd `configuration`): machine type
//! and its subsections `target-page-bits`, `capabilities`, `uuid` (WIRE-FORMAT §2).

use crate::codes::SectionType;
use crate::error::{ErrorKind, PResult};
use crate::rd::{put_cstr8, Rd};

/// Subsection name prefix of the configuration vmsd.
pub const CONFIG_PREFIX: &[u8] = b"configuration/";

/// Upper bound on `caps_count` (QEMU 10.2 has 24 migration capabilities).
pub const MAX_CAPS: u32 = 256;

/// One configuration subsection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConfigSubsection<'a> {
    /// `configuration/target-page-bits`.
    TargetPageBits {
        /// Subsection version (1).
        version: u32,
        /// `TARGET_PAGE_BITS`.
        bits: u32,
    },
    /// `configuration/capabilities`.
    Capabilities {
        /// Subsection version (1).
        version: u32,
        /// `caps_count` as on the wire.
        count: u32,
        /// Capability names (QAPI strings), borrowed.
        #[serde(serialize_with = "crate::ser::names")]
        names: Vec<&'a [u8]>,
    },
    /// `configuration/uuid`.
    Uuid {
        /// Subsection version (1).
        version: u32,
        /// The 16-byte UUID.
        #[serde(serialize_with = "crate::ser::hex")]
        uuid: &'a [u8],
    },
}

/// The configuration section (the `0x07` byte included).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Configuration<'a> {
    /// Machine type name, e.g. `pc-q35-10.0`.
    #[serde(serialize_with = "crate::ser::text")]
    pub machine: &'a [u8],
    /// Subsections in wire order.
    pub subsections: Vec<ConfigSubsection<'a>>,
}

impl<'a> Configuration<'a> {
    /// Parse from the `0x07` type byte on.
    pub(crate) fn parse(rd: &mut Rd<'a>) -> PResult<Self> {
        let ty = rd.u8("configuration type byte")?;
        debug_assert_eq!(ty, SectionType::CONFIGURATION.0);
        let len = rd.be32("machine type length")?;
        if len as usize > rd.remaining() && len > 256 {
            return rd.fail_back(4, ErrorKind::LengthTooLarge { what: "machine type", len: len as u64, avail: rd.remaining() as u64 });
        }
        let machine = rd.bytes(len as usize, "machine type")?;
        let mut subsections = Vec::new();
        loop {
            // Peek: a subsection only if 0x05 + a name starting with "configuration/".
            let b = rd.peek_u8("configuration subsection")?;
            if b != SectionType::SUBSECTION.0 {
                break;
            }
            let head = rd.peek(2, "configuration subsection name")?;
            let nlen = head[1] as usize;
            let name = &rd.peek(2 + nlen, "configuration subsection name")?[2..];
            if !name.starts_with(CONFIG_PREFIX) {
                break;
            }
            rd.u8("subsection byte")?;
            rd.cstr8("subsection name")?;
            let version = rd.be32("subsection version")?;
            let sub = match &name[CONFIG_PREFIX.len()..] {
                b"target-page-bits" => ConfigSubsection::TargetPageBits { version, bits: rd.be32("target page bits")? },
                b"capabilities" => {
                    let count = rd.be32("caps_count")?;
                    // Only validated capabilities are sent (a handful); QEMU has fewer than
                    // MAX_CAPS capabilities in all. A larger count is garbage, and reading it
                    // name by name would re-parse the whole input on every chunk.
                    if count > MAX_CAPS {
                        return rd.fail_back(4, ErrorKind::Configuration(format!("implausible caps_count {count} (> {MAX_CAPS})")));
                    }
                    // Each name takes at least one byte: never reserve more than the input holds.
                    let mut names = Vec::with_capacity((count as usize).min(rd.remaining()));
                    for _ in 0..count {
                        names.push(rd.cstr8("capability name")?);
                    }
                    ConfigSubsection::Capabilities { version, count, names }
                }
                b"uuid" => ConfigSubsection::Uuid { version, uuid: rd.bytes(16, "uuid")? },
                other => {
                    return rd
                        .fail(ErrorKind::Configuration(format!("unknown subsection 'configuration/{}'", String::from_utf8_lossy(other))))
                }
            };
            subsections.push(sub);
        }
        Ok(Configuration { machine, subsections })
    }

    /// Capability names announced (validated capabilities that are on).
    pub fn capabilities(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.subsections.iter().flat_map(|s| match s {
            ConfigSubsection::Capabilities { names, .. } => names.clone(),
            _ => Vec::new(),
        })
    }

    /// `TARGET_PAGE_BITS` if announced.
    pub fn target_page_bits(&self) -> Option<u32> {
        self.subsections.iter().find_map(|s| match s {
            ConfigSubsection::TargetPageBits { bits, .. } => Some(*bits),
            _ => None,
        })
    }

    /// UUID if announced.
    pub fn uuid(&self) -> Option<&'a [u8]> {
        self.subsections.iter().find_map(|s| match s {
            ConfigSubsection::Uuid { uuid, .. } => Some(*uuid),
            _ => None,
        })
    }

    /// Append the section as given (`caps_count` is written as stored, so it may lie).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(SectionType::CONFIGURATION.0);
        out.extend_from_slice(&(self.machine.len() as u32).to_be_bytes());
        out.extend_from_slice(self.machine);
        for s in &self.subsections {
            out.push(SectionType::SUBSECTION.0);
            match s {
                ConfigSubsection::TargetPageBits { version, bits } => {
                    put_cstr8(out, b"configuration/target-page-bits");
                    out.extend_from_slice(&version.to_be_bytes());
                    out.extend_from_slice(&bits.to_be_bytes());
                }
                ConfigSubsection::Capabilities { version, count, names } => {
                    put_cstr8(out, b"configuration/capabilities");
                    out.extend_from_slice(&version.to_be_bytes());
                    out.extend_from_slice(&count.to_be_bytes());
                    for n in names {
                        put_cstr8(out, n);
                    }
                }
                ConfigSubsection::Uuid { version, uuid } => {
                    put_cstr8(out, b"configuration/uuid");
                    out.extend_from_slice(&version.to_be_bytes());
                    out.extend_from_slice(uuid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_with_all_subsections_round_trips() {
        let uuid = [7u8; 16];
        let c = Configuration {
            machine: b"pc-q35-10.0",
            subsections: vec![
                ConfigSubsection::TargetPageBits { version: 1, bits: 12 },
                ConfigSubsection::Capabilities { version: 1, count: 2, names: vec![b"x-ignore-shared", b"mapped-ram"] },
                ConfigSubsection::Uuid { version: 1, uuid: &uuid },
            ],
        };
        let mut out = Vec::new();
        c.encode(&mut out);
        out.push(0x00); // next item, so the subsection loop can stop
        let mut rd = Rd::new(&out);
        let d = Configuration::parse(&mut rd).unwrap();
        assert_eq!(d, c);
        assert_eq!(rd.pos(), out.len() - 1);
        assert_eq!(d.capabilities().count(), 2);
    }

    #[test]
    fn huge_caps_count_does_not_allocate() {
        let mut out = vec![0x07, 0, 0, 0, 1, b'x', 0x05];
        put_cstr8(&mut out, b"configuration/capabilities");
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Configuration::parse(&mut Rd::new(&out)).is_err());
    }
}
