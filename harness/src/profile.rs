//! One side's settings: QEMU version or dialect, machine type, capabilities, parameters.
//!
//! Version differences live here: the checker asks `side.validated_caps()`,
//! `side.sends_switchover_start()`, … and never compares version numbers itself.

use qmig_codec::{Context, Dialect, Version};
use serde::{Deserialize, Serialize};

/// A peer as the models see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideProfile {
    /// QEMU release the peer behaves like.
    pub version: Version,
    /// Protocol dialect (merged or an RFC).
    pub dialect: Dialect,
    /// Machine type, e.g. `pc-i440fx-7.2`.
    pub machine: Option<String>,
    /// Capabilities that are on (QAPI names).
    pub caps: Vec<String>,
    /// Migration parameters that were set.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// A third-party peer's name (profiles), for reports.
    pub label: Option<String>,
    /// `-uuid`, when given.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The guest was running when migration started (a stopped VM skips the switchover-ack wait).
    #[serde(default = "yes")]
    pub vm_running: bool,
}

fn yes() -> bool {
    true
}

impl Default for SideProfile {
    fn default() -> Self {
        SideProfile {
            version: Version::new(10, 0),
            dialect: Dialect::Merged,
            machine: None,
            caps: Vec::new(),
            params: Default::default(),
            label: None,
            uuid: None,
            vm_running: true,
        }
    }
}

/// Machine-type version, e.g. `pc-i440fx-7.2` → 7.2; `None` for unversioned names.
pub fn machine_version(machine: &str) -> Option<Version> {
    let tail = machine.rsplit('-').next()?;
    tail.parse().ok().filter(|v: &Version| v.major > 0 && tail.contains('.'))
}

impl SideProfile {
    /// Parse the `qemu` field of case.json: `7.2`, `10.0`, `rfc:<dialect>`, or a third-party name.
    pub fn from_case_qemu(qemu: &str) -> (Version, Dialect, Option<String>) {
        if let Some(d) = qemu.strip_prefix("rfc:") {
            let dialect: Dialect = d.parse().unwrap_or_default();
            // The release each RFC series was posted against.
            let base = match dialect {
                Dialect::FixedRamBorisov => Version::new(7, 2),
                Dialect::PrecopyInitialData => Version::new(8, 0),
                Dialect::FixedRam => Version::new(8, 2),
                Dialect::VirtioIterative => Version::new(10, 1),
                Dialect::Merged => Version::LATEST,
            };
            return (base, dialect, None);
        }
        match qemu.parse::<Version>() {
            Ok(v) => (v, Dialect::Merged, None),
            Err(_) => (Version::LATEST, Dialect::Merged, Some(qemu.to_string())),
        }
    }

    /// `-uuid` as the 32 lowercase hex digits the stream carries (configuration, multifd).
    pub fn uuid_hex(&self) -> Option<String> {
        self.uuid.as_deref().map(|u| u.chars().filter(|c| *c != '-').collect::<String>().to_lowercase())
    }

    /// Is capability `c` on?
    pub fn has(&self, c: &str) -> bool {
        self.caps.iter().any(|x| x == c)
    }

    /// The version whose compat properties the machine type selects (defaults to the release).
    pub fn machine_compat(&self) -> Version {
        self.machine.as_deref().and_then(machine_version).map(|m| m.min(self.version)).unwrap_or(self.version)
    }

    /// Capabilities this peer checks in the configuration section.
    pub fn validated_caps(&self) -> &'static [&'static str] {
        self.codec_context().validated_caps()
    }

    /// Capabilities QEMU of this version knows (for `Received unknown capability`).
    pub fn known_caps(&self) -> Vec<&'static str> {
        let mut v = vec![
            "xbzrle",
            "rdma-pin-all",
            "auto-converge",
            "zero-blocks",
            "events",
            "postcopy-ram",
            "x-colo",
            "release-ram",
            "return-path",
            "pause-before-switchover",
            "multifd",
            "dirty-bitmaps",
            "postcopy-blocktime",
            "late-block-activate",
            "x-ignore-shared",
            "validate-uuid",
            "background-snapshot",
            "zero-copy-send",
            "postcopy-preempt",
        ];
        if self.version < Version::new(9, 1) {
            v.extend(["compress", "block"]);
        }
        if self.version >= Version::new(8, 1) {
            v.extend(["switchover-ack", "dirty-limit"]);
        }
        if self.version >= Version::new(9, 0) {
            v.push("mapped-ram");
        }
        match self.dialect {
            Dialect::PrecopyInitialData => v.push("precopy-initial-data"),
            Dialect::FixedRam | Dialect::FixedRamBorisov => v.push("fixed-ram"),
            Dialect::VirtioIterative => v.push("virtio-iterative"),
            Dialect::Merged => {}
        }
        v
    }

    /// Opens the return path (`postcopy-ram || return-path`).
    pub fn uses_return_path(&self) -> bool {
        self.has("return-path") || self.has("postcopy-ram")
    }

    /// Sends `MIG_CMD_SWITCHOVER_START` (10.0+, machine types ≥ 10.0).
    pub fn sends_switchover_start(&self) -> bool {
        self.version >= Version::new(10, 0) && self.machine_compat() >= Version::new(10, 0)
    }

    /// Understands `MIG_CMD_SWITCHOVER_START`.
    pub fn knows_switchover_start(&self) -> bool {
        self.version >= Version::new(10, 0)
    }

    /// Knows `RAM_SAVE_FLAG_MULTIFD_FLUSH`.
    pub fn knows_multifd_flush(&self) -> bool {
        self.version >= Version::new(8, 1)
    }

    /// A boolean migration property or parameter (`true`, `"on"`), if set.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.params.get(name)? {
            serde_json::Value::Bool(b) => Some(*b),
            serde_json::Value::String(s) => Some(matches!(s.as_str(), "on" | "true" | "yes")),
            _ => None,
        }
    }

    /// Syncs multifd channels at the end of every RAM section (legacy mode): releases
    /// before 8.1, machine types ≤ 8.0 (`hw_compat_8_0`), or
    /// `multifd-flush-after-each-section=on`. Otherwise once per dirty round, marked by
    /// `MULTIFD_FLUSH` (modern mode).
    pub fn multifd_legacy_sync(&self) -> bool {
        if self.version < Version::new(8, 1) {
            return true;
        }
        self.flag("multifd-flush-after-each-section").unwrap_or(self.machine_compat() < Version::new(8, 1))
    }

    /// SYNC packets per channel that a source sends beyond its sync markers: 9.1 and 9.2
    /// still sync the channels at completion but dropped the final `MULTIFD_FLUSH`.
    pub fn multifd_unmarked_syncs(&self) -> u32 {
        u32::from(!self.multifd_legacy_sync() && self.version >= Version::new(9, 1) && self.version < Version::new(10, 0))
    }

    /// Knows `RAM_SAVE_FLAG_COMPRESS_PAGE`.
    pub fn knows_compress_page(&self) -> bool {
        self.version < Version::new(9, 1)
    }

    /// Rejects a zero page whose fill byte is not 0 (8.2+).
    pub fn rejects_nonzero_fill(&self) -> bool {
        self.version >= Version::new(8, 2)
    }

    /// Has `MIG_RP_MSG_SWITCHOVER_ACK` (8.1+ or the RFC dialect).
    pub fn knows_switchover_ack(&self) -> bool {
        self.version >= Version::new(8, 1) || self.dialect == Dialect::PrecopyInitialData
    }

    /// Speaks the precopy-initial-data RFC (command 11 is INITIAL_DATA_ENABLE).
    pub fn rfc_initial_data(&self) -> bool {
        self.dialect == Dialect::PrecopyInitialData
    }

    /// Does this destination support precopy initial data for device `idstr` (RFC v1)? The
    /// `initial-data-devices` parameter lists them; by default VFIO devices do.
    pub fn initial_data_device(&self, idstr: &str) -> bool {
        match self.params.get("initial-data-devices").and_then(|v| v.as_array()) {
            Some(a) => a.iter().any(|v| v.as_str() == Some(idstr)),
            None => idstr.ends_with("/vfio"),
        }
    }

    /// The switchover-ack capability in this dialect's spelling is on.
    pub fn switchover_ack(&self) -> bool {
        self.has("switchover-ack") || self.has("precopy-initial-data")
    }

    /// The codec context for bytes written by this peer.
    pub fn codec_context(&self) -> Context {
        let mut ctx = Context { dialect: self.dialect, version: Some(self.version), ..Context::default() };
        for c in &self.caps {
            ctx.set_cap(c);
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_compat_and_switchover_start() {
        let mut p = SideProfile { machine: Some("pc-i440fx-7.2".into()), ..SideProfile::default() };
        assert_eq!(p.machine_compat(), Version::new(7, 2));
        assert!(!p.sends_switchover_start());
        p.machine = Some("pc-q35-10.0".into());
        assert!(p.sends_switchover_start());
        p.machine = Some("microvm".into());
        assert!(p.sends_switchover_start());
    }
}
