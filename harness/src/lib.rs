//! `qmig-harness`: conformance harness for the QEMU live-migration protocol.
//!
//! Data flows one way: bytes → [`qmig_codec`] records → events → peer models → findings → report.
#![deny(unsafe_code)]

pub mod case;
pub mod cli;
pub mod events;
pub mod inspect;
pub mod model;
pub mod outcome;
pub mod peer;
pub mod prefault;
pub mod profile;
pub mod replay;
pub mod report;
pub mod rules;
pub mod synth;
