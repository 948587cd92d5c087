//! Decoders of the secondary channels: the return path and the postcopy-preempt channel.

use crate::context::Context;
use crate::error::{Channel, DecodeError, ErrorKind, PResult, Stop};
use crate::ram::{RamRecord, RamState};
use crate::rd::Rd;
use crate::return_path::{RpRecord, RpState};
use crate::stream::{ChannelDecoder, Decoded};

fn finish<'a, T>(r: PResult<T>, rd: &Rd<'a>, base: u64, complete: bool, channel: &Channel) -> Result<Option<Decoded<T>>, DecodeError> {
    match r {
        Ok(rec) => Ok(Some(Decoded { offset: base, len: rd.pos() as u64, depth: 0, section: None, record: rec })),
        Err(Stop::Incomplete(what)) if complete => {
            Err(DecodeError { offset: base, channel: channel.clone(), section: None, kind: ErrorKind::Truncated { what } })
        }
        Err(Stop::Incomplete(_)) => Ok(None),
        Err(Stop::Fail { at, kind }) => Err(DecodeError { offset: base + at as u64, channel: channel.clone(), section: None, kind }),
    }
}

/// Decoder of the return path (destination → source).
#[derive(Debug, Clone, Default)]
pub struct ReturnPathDecoder {
    state: RpState,
    eof: bool,
}

impl ChannelDecoder for ReturnPathDecoder {
    type Record<'a> = RpRecord<'a>;

    fn decode<'a>(&mut self, input: &'a [u8], base: u64, complete: bool) -> Result<Option<Decoded<RpRecord<'a>>>, DecodeError> {
        if input.is_empty() {
            self.eof |= complete;
            return Ok(None);
        }
        let mut rd = Rd::new(input);
        let mut st = self.state.clone();
        let r = st.next(&mut rd);
        if r.is_ok() {
            self.state = st;
        }
        finish(r, &rd, base, complete, &Channel::ReturnPath)
    }

    fn is_finished(&self) -> bool {
        self.eof
    }
}

/// Decoder of the postcopy-preempt channel: bare RAM records, ended by a single EOS.
#[derive(Debug, Clone)]
pub struct PreemptDecoder {
    /// Context (page size).
    pub ctx: Context,
    /// RAM state; seed `blocks` from the main channel to resolve names.
    pub ram: RamState,
    done: bool,
}

impl PreemptDecoder {
    /// A decoder.
    pub fn new(ctx: Context, ram: RamState) -> Self {
        PreemptDecoder { ctx, ram, done: false }
    }
}

impl ChannelDecoder for PreemptDecoder {
    type Record<'a> = RamRecord<'a>;

    fn decode<'a>(&mut self, input: &'a [u8], base: u64, complete: bool) -> Result<Option<Decoded<RamRecord<'a>>>, DecodeError> {
        if input.is_empty() {
            return Ok(None);
        }
        let mut rd = Rd::new(input);
        let mark = self.ram.mark();
        let r = self.ram.next(&mut rd, &self.ctx).map(|(r, _)| r);
        match &r {
            Ok(rec) => self.done |= matches!(rec, RamRecord::Eos { .. }),
            Err(_) => self.ram.reset(mark),
        }
        finish(r, &rd, base, complete, &Channel::Preempt)
    }

    fn is_finished(&self) -> bool {
        self.done
    }
}
