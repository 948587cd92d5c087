//! Section headers (`START`/`FULL`/`PART`/`END`) and the section footer (WIRE-FORMAT §1.3-1.4).

use crate::codes::SectionType;
use crate::error::{ErrorKind, PResult};
use crate::rd::{put_cstr8, Rd};

/// A section header. `idstr`/`instance_id`/`version_id` are present for START and FULL only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SectionHeader<'a> {
    /// START, PART, END or FULL.
    pub ty: SectionType,
    /// Section id.
    pub section_id: u32,
    /// START/FULL: idstr, instance id and version id.
    #[serde(flatten)]
    pub full: Option<SectionIdent<'a>>,
}

/// The identity carried by START and FULL headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SectionIdent<'a> {
    /// idstr, e.g. `ram`, `0000:00:02.0/virtio-net`.
    #[serde(serialize_with = "crate::ser::text")]
    pub idstr: &'a [u8],
    /// Instance id.
    pub instance_id: u32,
    /// Version id.
    pub version_id: u32,
}

impl<'a> SectionHeader<'a> {
    /// True for the types that carry an identity.
    pub fn has_ident(ty: SectionType) -> bool {
        ty == SectionType::START || ty == SectionType::FULL
    }

    /// True for the four section types.
    pub fn is_section(ty: SectionType) -> bool {
        matches!(ty.0, 0x01..=0x04)
    }

    pub(crate) fn parse(rd: &mut Rd<'a>) -> PResult<Self> {
        let ty = SectionType(rd.u8("section type")?);
        let section_id = rd.be32("section id")?;
        let full = if Self::has_ident(ty) {
            let idstr = rd.cstr8("section idstr")?;
            if idstr.is_empty() {
                return rd.fail_back(1, ErrorKind::Malformed("empty section idstr"));
            }
            Some(SectionIdent { idstr, instance_id: rd.be32("instance id")?, version_id: rd.be32("version id")? })
        } else {
            None
        };
        Ok(SectionHeader { ty, section_id, full })
    }

    /// Append the header as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.ty.0);
        out.extend_from_slice(&self.section_id.to_be_bytes());
        if let Some(f) = &self.full {
            put_cstr8(out, f.idstr);
            out.extend_from_slice(&f.instance_id.to_be_bytes());
            out.extend_from_slice(&f.version_id.to_be_bytes());
        }
    }
}

/// `QEMU_VM_SECTION_FOOTER` + `be32 section_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Footer {
    /// Section id in the footer.
    pub section_id: u32,
}

impl Footer {
    /// Encoded length.
    pub const LEN: usize = 5;

    /// Parse a footer; `expected` is the open section's id.
    pub(crate) fn parse(rd: &mut Rd<'_>, expected: u32) -> PResult<Self> {
        let b = rd.u8("section footer")?;
        if b != SectionType::FOOTER.0 {
            return rd.fail_back(1, ErrorKind::MissingFooter(b));
        }
        let section_id = rd.be32("footer section id")?;
        if section_id != expected {
            return rd.fail_back(4, ErrorKind::FooterMismatch { expected, found: section_id });
        }
        Ok(Footer { section_id })
    }

    /// Append the footer as given (a wrong id emits a mismatching footer).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(SectionType::FOOTER.0);
        out.extend_from_slice(&self.section_id.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stop;

    #[test]
    fn start_and_part_round_trip() {
        let h = SectionHeader {
            ty: SectionType::START,
            section_id: 2,
            full: Some(SectionIdent { idstr: b"ram", instance_id: 0, version_id: 4 }),
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, [1, 0, 0, 0, 2, 3, b'r', b'a', b'm', 0, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(SectionHeader::parse(&mut Rd::new(&out)).unwrap(), h);
        let p = SectionHeader { ty: SectionType::PART, section_id: 2, full: None };
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(out, [2, 0, 0, 0, 2]);
        assert_eq!(SectionHeader::parse(&mut Rd::new(&out)).unwrap(), p);
    }

    #[test]
    fn footer_mismatch_is_typed() {
        let mut out = Vec::new();
        Footer { section_id: 9 }.encode(&mut out);
        assert!(Footer::parse(&mut Rd::new(&out), 9).is_ok());
        assert!(matches!(
            Footer::parse(&mut Rd::new(&out), 8),
            Err(Stop::Fail { kind: ErrorKind::FooterMismatch { expected: 8, found: 9 }, .. })
        ));
        assert!(matches!(Footer::parse(&mut Rd::new(&[0x00]), 8), Err(Stop::Fail { kind: ErrorKind::MissingFooter(0), .. })));
    }
}
