//! Live sockets: the recording proxy, the stand-in destination and the source replayer.

pub mod listen;
pub mod record;
pub mod send;
