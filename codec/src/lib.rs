//! `qmig-codec`: a zero-copy codec for the QEMU live-migration wire protocol.
//!
//! Every wire unit has one module with its decoder and encoder side by side. Records
//! borrow from the input (`&'a [u8]`), page data is never copied, and the same decoders
//! work on a whole file ([`stream::decode_all`]) and on chunks from a socket
//! ([`stream::Chunked`]).
//!
//! | channel | decoder |
//! |---|---|
//! | main stream (file or socket) | [`stream::MainDecoder`] |
//! | return path | [`channels::ReturnPathDecoder`] |
//! | multifd channel | [`multifd::MultifdDecoder`] |
//! | postcopy-preempt channel | [`channels::PreemptDecoder`] |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod channels;
pub mod codes;
pub mod command;
pub mod config;
pub mod context;
pub mod error;
pub mod header;
pub mod mapped_ram;
pub mod multifd;
pub mod ram;
mod rd;
pub mod return_path;
pub mod section;
mod ser;
pub mod stream;
pub mod vfio;
pub mod virtio_iterative;
pub mod vmdesc;

pub use context::{Context, Dialect, Version};
pub use error::{Channel, DecodeError, ErrorKind, SectionRef};
pub use rd::lossy;
pub use ser::fnv64;
pub use stream::{decode_all, ChannelDecoder, Chunked, Decoded, MainDecoder, Record};
