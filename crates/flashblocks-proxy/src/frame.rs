//! Minimal server-side WebSocket framing (RFC 6455).
//!
//! Server-to-client frames are not masked, so a message is encoded once and the same bytes are
//! written to every subscriber. Client frames are parsed only far enough to answer pings, notice
//! pongs and closes; data frames from subscribers are skipped without being buffered.

use bytes::{BufMut, Bytes, BytesMut};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Continuation of a fragmented message.
    Continuation = 0x0,
    /// UTF-8 text.
    Text = 0x1,
    /// Binary data.
    Binary = 0x2,
    /// Connection close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

/// Largest control-frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Encodes one final, unmasked frame.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

/// A close frame with status `code`.
pub fn close(code: u16) -> Bytes {
    encode(Opcode::Close, &code.to_be_bytes())
}

/// What a subscriber sent.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A ping; answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame (payload echoed back).
    Close(Vec<u8>),
    /// A data frame (ignored: subscribers have nothing to say).
    Data,
}

/// A violation of the framing rules by a subscriber.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Client frames must be masked (RFC 6455 §5.1).
    #[error("unmasked client frame")]
    Unmasked,
    /// Control frame longer than 125 bytes or fragmented.
    #[error("malformed control frame")]
    BadControl,
    /// Reserved opcode or RSV bits set.
    #[error("reserved opcode or bits")]
    Reserved,
}

/// Incremental parser of client frames with a fixed-size state (header + one control payload).
#[derive(Debug, Default)]
pub struct FrameReader {
    pending: Vec<u8>,
    skip: u64,
}

const MAX_HEADER: usize = 14;

impl FrameReader {
    /// A reader with no buffered bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes needed in `pending` before the current frame is complete, or an error.
    fn needed(&self) -> Result<usize, ProtocolError> {
        let p = &self.pending;
        if p.len() < 2 {
            return Ok(2);
        }
        if p[0] & 0x70 != 0 {
            return Err(ProtocolError::Reserved);
        }
        if p[1] & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        let ext = match p[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + ext + 4;
        let opcode = p[0] & 0x0f;
        if opcode >= 8 {
            if ext != 0 || p[0] & 0x80 == 0 {
                return Err(ProtocolError::BadControl);
            }
            return Ok(header + usize::from(p[1] & 0x7f));
        }
        Ok(header)
    }

    fn payload_len(&self) -> u64 {
        let p = &self.pending;
        match p[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([p[2], p[3]])),
            127 => u64::from_be_bytes([p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]]),
            n => u64::from(n),
        }
    }

    /// Feeds bytes read from the socket, calling `on_event` for each complete frame.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on_event: impl FnMut(ClientEvent),
    ) -> Result<(), ProtocolError> {
        while !input.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                input = &input[n..];
                self.skip -= n as u64;
                continue;
            }
            let need = self.needed()?;
            let take = need.saturating_sub(self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            // The header may reveal that more bytes are needed (extended length, mask, payload).
            if self.pending.len() < 2 || self.pending.len() < self.needed()? {
                continue;
            }
            debug_assert!(self.pending.len() <= MAX_HEADER + MAX_CONTROL_PAYLOAD);
            let opcode = self.pending[0] & 0x0f;
            let ext = match self.pending[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let header = 2 + ext + 4;
            match opcode {
                0x8..=0xA => {
                    let mask = [
                        self.pending[header - 4],
                        self.pending[header - 3],
                        self.pending[header - 2],
                        self.pending[header - 1],
                    ];
                    let payload: Vec<u8> = self.pending[header..]
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[i % 4])
                        .collect();
                    on_event(match opcode {
                        0x8 => ClientEvent::Close(payload),
                        0x9 => ClientEvent::Ping(payload),
                        _ => ClientEvent::Pong,
                    });
                }
                0x0..=0x2 => {
                    self.skip = self.payload_len();
                    on_event(ClientEvent::Data);
                }
                _ => return Err(ProtocolError::Reserved),
            }
            self.pending.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut v = vec![0x80 | opcode];
        if payload.len() < 126 {
            v.push(0x80 | payload.len() as u8);
        } else {
            v.push(0x80 | 126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    #[test]
    fn encodes_all_length_forms() {
        assert_eq!(&encode(Opcode::Text, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = encode(Opcode::Binary, &[0u8; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = encode(Opcode::Binary, &vec![0u8; 70_000]);
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn parses_frames_split_at_every_byte() {
        let mut stream = masked(0x9, b"abc");
        stream.extend(masked(0x1, &[7u8; 1000]));
        stream.extend(masked(0xA, b""));
        stream.extend(masked(0x8, &[3, 232]));
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut r = FrameReader::new();
            let mut events = Vec::new();
            for c in stream.chunks(chunk) {
                r.feed(c, |e| events.push(e)).unwrap();
            }
            assert_eq!(
                events,
                vec![
                    ClientEvent::Ping(b"abc".to_vec()),
                    ClientEvent::Data,
                    ClientEvent::Pong,
                    ClientEvent::Close(vec![3, 232])
                ]
            );
        }
    }

    #[test]
    fn rejects_unmasked_and_oversized_control_frames() {
        let mut r = FrameReader::new();
        assert_eq!(
            r.feed(&[0x81, 0x02, b'h', b'i'], |_| {}),
            Err(ProtocolError::Unmasked)
        );
        let mut r = FrameReader::new();
        assert_eq!(
            r.feed(&[0x89, 0x80 | 126, 0, 200], |_| {}),
            Err(ProtocolError::BadControl)
        );
        let mut r = FrameReader::new();
        assert_eq!(r.feed(&[0xC1, 0x80], |_| {}), Err(ProtocolError::Reserved));
    }
}
