//! The vmdesc trailer (`QEMU_VM_VMDESCRIPTION`, WIRE-FORMAT §3.4): `u8 0x06, be32 len,
//! JSON[len]` after EOF, and the VMState field walker it drives (like
//! `scripts/analyze-migration.py`, but bounded and typed).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::codes::SectionType;
use crate::error::{ErrorKind, PResult};
use crate::rd::Rd;

/// The raw trailer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VmDescTrailer<'a> {
    /// `len` as on the wire.
    pub len: u32,
    /// The JSON bytes.
    #[serde(serialize_with = "crate::ser::digest")]
    pub json: &'a [u8],
}

impl<'a> VmDescTrailer<'a> {
    pub(crate) fn parse(rd: &mut Rd<'a>) -> PResult<Self> {
        rd.u8("vmdesc type byte")?;
        let len = rd.be32("vmdesc length")?;
        let json = rd.bytes(len as usize, "vmdesc json")?;
        Ok(VmDescTrailer { len, json })
    }

    /// Append as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(SectionType::VMDESCRIPTION.0);
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(self.json);
    }
}

/// Find the vmdesc trailer at the very end of a whole stream file: `0x00 0x06 be32 len {json}`
/// where the JSON runs exactly to the end. Returns the offset of the `0x06` byte.
pub fn find_trailer(file: &[u8]) -> Option<usize> {
    // The JSON ends the file with '}' and starts with '{' 5 bytes after the 0x06.
    if file.last() != Some(&b'}') {
        return None;
    }
    let n = file.len();
    // Scan backwards for '{' candidates whose length prefix matches exactly.
    let lo = n.saturating_sub(64 << 20);
    let mut i = n;
    while i > lo + 6 {
        i -= 1;
        if file[i] != b'{' {
            continue;
        }
        let p = i - 5;
        if file[p] == SectionType::VMDESCRIPTION.0 && file[p - 1] == SectionType::EOF.0 {
            let len = u32::from_be_bytes([file[p + 1], file[p + 2], file[p + 3], file[p + 4]]) as usize;
            if len == n - i {
                return Some(p);
            }
        }
    }
    None
}

/// A parsed vmdesc: page size and per-device descriptions, indexed by `(idstr, instance_id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VmDesc {
    /// The whole JSON document.
    pub json: Value,
    /// `page_size`.
    pub page_size: Option<u64>,
    index: HashMap<(String, u32), usize>,
}

impl VmDesc {
    /// Parse the JSON bytes.
    pub fn parse(json: &[u8]) -> Result<Self, ErrorKind> {
        let json: Value = serde_json::from_slice(json).map_err(|e| ErrorKind::VmDesc(e.to_string()))?;
        let page_size = json.get("page_size").and_then(Value::as_u64);
        let mut index = HashMap::new();
        if let Some(devs) = json.get("devices").and_then(Value::as_array) {
            for (i, d) in devs.iter().enumerate() {
                let name = d.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let inst = d.get("instance_id").and_then(Value::as_u64).unwrap_or(0) as u32;
                index.entry((name, inst)).or_insert(i);
            }
        } else {
            return Err(ErrorKind::VmDesc("no \"devices\" array".into()));
        }
        Ok(VmDesc { json, page_size, index })
    }

    /// The description of one device section.
    pub fn device(&self, idstr: &[u8], instance_id: u32) -> Option<&Value> {
        let key = (String::from_utf8_lossy(idstr).into_owned(), instance_id);
        let i = *self.index.get(&key)?;
        self.json.get("devices")?.as_array()?.get(i)
    }

    /// The described devices, `(idstr, instance_id)`, in no particular order.
    pub fn devices(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.index.keys().map(|(n, i)| (n.as_str(), *i))
    }

    /// Number of device entries.
    pub fn device_count(&self) -> usize {
        self.index.len()
    }
}

/// Walk one VMState struct described by `desc` (an object with `fields` and optional
/// `subsections`), consuming its bytes. With `out`, fills a JSON object with the values.
/// `budget` bounds the work so that a hostile description cannot loop forever.
pub(crate) fn walk_struct<'a>(desc: &Value, rd: &mut Rd<'a>, mut out: Option<&mut Map<String, Value>>, budget: &mut u64) -> PResult<()> {
    let empty = Vec::new();
    let fields = desc.get("fields").and_then(Value::as_array).unwrap_or(&empty);
    for f in fields {
        let n = f.get("array_len").and_then(Value::as_u64).unwrap_or(1);
        let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
        let ty = f.get("type").and_then(Value::as_str).unwrap_or("unknown");
        let size = f.get("size").and_then(Value::as_u64).unwrap_or(0);
        for _ in 0..n {
            if *budget == 0 {
                return rd.fail(ErrorKind::VmDesc("description needs more work than the input justifies".into()));
            }
            *budget -= 1;
            let v = if let Some(st) = f.get("struct").filter(|_| ty == "struct" || ty == "vstruct") {
                let mut m = Map::new();
                walk_struct(st, rd, out.is_some().then_some(&mut m), budget)?;
                Value::Object(m)
            } else if ty == "capability" {
                Value::String(String::from_utf8_lossy(rd.cstr8("capability")?).into_owned())
            } else {
                let b = rd.bytes64(size, "vmstate field")?;
                field_value(ty, b)
            };
            if let Some(o) = out.as_deref_mut() {
                match o.get_mut(name) {
                    None => {
                        o.insert(name.to_string(), v);
                    }
                    Some(Value::Array(a)) if n > 1 || f.get("index").is_some() => a.push(v),
                    Some(prev) => {
                        let p = prev.take();
                        *prev = Value::Array(vec![p, v]);
                    }
                }
            }
        }
        if n > 1 {
            // keep arrays as arrays even when they were expanded from array_len
            if let Some(o) = out.as_deref_mut() {
                if let Some(v) = o.get_mut(name) {
                    if !v.is_array() {
                        let p = v.take();
                        *v = Value::Array(vec![p]);
                    }
                }
            }
        }
    }
    if let Some(subs) = desc.get("subsections").and_then(Value::as_array) {
        for s in subs {
            let b = rd.u8("subsection marker")?;
            if b != SectionType::SUBSECTION.0 {
                let want = s.get("vmsd_name").and_then(Value::as_str).unwrap_or("?");
                return rd.fail_back(1, ErrorKind::VmDesc(format!("subsection {want} not found (byte 0x{b:02x})")));
            }
            let name = String::from_utf8_lossy(rd.cstr8("subsection name")?).into_owned();
            let version = rd.be32("subsection version")?;
            let mut m = Map::new();
            walk_struct(s, rd, out.is_some().then_some(&mut m), budget)?;
            if let Some(o) = out.as_deref_mut() {
                m.insert("__version__".into(), Value::from(version));
                o.insert(name, Value::Object(m));
            }
        }
    }
    Ok(())
}

fn field_value(ty: &str, b: &[u8]) -> Value {
    let be = |b: &[u8]| b.iter().fold(0u64, |a, x| (a << 8) | *x as u64);
    match ty {
        "bool" if b.len() == 1 => Value::Bool(b[0] != 0),
        "nullptr" => Value::String("nullptr".into()),
        t if (t.starts_with("uint") || t.starts_with("int")) && !b.is_empty() && b.len() <= 8 => {
            let u = be(b);
            if t.starts_with("int") {
                let shift = 64 - 8 * b.len() as u32;
                Value::from(((u << shift) as i64) >> shift)
            } else {
                Value::from(u)
            }
        }
        _ => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

/// Decode a device section body field by field with its vmdesc description, into JSON
/// (like `analyze-migration.py --dump state`). Returns the values and the bytes used.
pub fn decode_device(desc: &Value, body: &[u8]) -> Result<(Map<String, Value>, usize), ErrorKind> {
    let mut rd = Rd::new(body);
    let mut m = Map::new();
    let mut budget = body.len() as u64 * 2 + 4096;
    match walk_struct(desc, &mut rd, Some(&mut m), &mut budget) {
        Ok(()) => Ok((m, rd.pos())),
        Err(crate::error::Stop::Fail { kind, .. }) => Err(kind),
        Err(crate::error::Stop::Incomplete(what)) => Err(ErrorKind::Truncated { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_is_found_and_fields_walk() {
        let json = br#"{"page_size":4096,"devices":[{"name":"timer","instance_id":0,"vmsd_name":"timer","version":2,"fields":[{"name":"cpu_ticks_offset","type":"int64","size":8},{"name":"flag","type":"bool","size":1},{"name":"arr","type":"uint16","size":2,"array_len":2}],"subsections":[{"vmsd_name":"timer/dc","version":1,"fields":[{"name":"x","type":"uint8","size":1}]}]}]}"#;
        let mut file = vec![0u8; 3];
        file.push(0x06);
        file.extend_from_slice(&(json.len() as u32).to_be_bytes());
        file.extend_from_slice(json);
        assert_eq!(find_trailer(&file), Some(3));
        let d = VmDesc::parse(json).unwrap();
        let dev = d.device(b"timer", 0).unwrap();
        let mut body = vec![0xff; 8];
        body.extend_from_slice(&[1, 0, 1, 0, 2]);
        body.push(5);
        body.push(8);
        body.extend_from_slice(b"timer/dc");
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(9);
        let mut rd = Rd::new(&body);
        let mut m = Map::new();
        let mut budget = 1000;
        walk_struct(dev, &mut rd, Some(&mut m), &mut budget).unwrap();
        assert_eq!(rd.remaining(), 0);
        assert_eq!(m["cpu_ticks_offset"], Value::from(-1));
        assert_eq!(m["flag"], Value::Bool(true));
        assert_eq!(m["arr"], serde_json::json!([1, 2]));
        assert_eq!(m["timer/dc"]["x"], Value::from(9));
    }

    #[test]
    fn hostile_array_len_is_bounded() {
        let desc = serde_json::json!({"fields":[{"name":"e","type":"struct","array_len": 4000000000u64,"struct":{"fields":[]}}]});
        let mut budget = 1000;
        assert!(walk_struct(&desc, &mut Rd::new(&[]), None, &mut budget).is_err());
    }
}
