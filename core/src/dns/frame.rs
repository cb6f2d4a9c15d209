//! DNS over TCP framing (RFC 1035 4.2.2: a 2-byte length, then the message), read and
//! written a piece at a time from nonblocking streams. A message's buffer is allocated
//! at its announced size once the length is in, and handed over when complete.

use std::io::{self, Read, Write};
use std::mem;

/// One length-prefixed message being read.
#[derive(Debug)]
pub struct FrameReader {
    len: [u8; 2],
    /// Bytes read of this frame, length included.
    got: usize,
    body: Vec<u8>,
    max: usize,
}

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// More is needed; the stream has nothing now.
    Pending,
    Message(Vec<u8>),
    /// End of stream between messages.
    Closed,
}

impl FrameReader {
    /// Messages longer than `max` are an error as soon as their length is read.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            len: [0; 2],
            got: 0,
            body: Vec::new(),
            max,
        }
    }

    /// Nothing read of the current frame yet, nothing allocated.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.got == 0 && self.body.capacity() == 0
    }

    /// Reads what `r` has, up to the end of one message. Errors: `r`'s, an end of
    /// stream inside a message (`UnexpectedEof`), a length over the maximum
    /// (`InvalidData`).
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<Frame> {
        loop {
            let dst = if self.got < 2 {
                &mut self.len[self.got..]
            } else if self.got - 2 < self.body.len() {
                &mut self.body[self.got - 2..]
            } else {
                self.got = 0;
                return Ok(Frame::Message(mem::take(&mut self.body)));
            };
            match r.read(dst) {
                Ok(0) if self.got == 0 => return Ok(Frame::Closed),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.got += n;
                    if self.got == 2 {
                        let len = u16::from_be_bytes(self.len) as usize;
                        if len > self.max {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("{len}-byte message (at most {} taken)", self.max),
                            ));
                        }
                        self.body = vec![0; len];
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Frame::Pending),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One length-prefixed message being written.
#[derive(Debug)]
pub struct FrameWriter {
    buf: Vec<u8>,
    done: usize,
}

impl FrameWriter {
    /// `msg` framed; a message over 65535 bytes cannot be framed.
    pub fn new(msg: &[u8]) -> io::Result<FrameWriter> {
        let len = u16::try_from(msg.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}-byte message does not fit a TCP frame", msg.len()),
            )
        })?;
        let mut buf = Vec::with_capacity(msg.len() + 2);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(msg);
        Ok(FrameWriter { buf, done: 0 })
    }

    /// Writes what `w` takes; `Ok(true)` once all is written.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while self.done < self.buf.len() {
            match w.write(&self.buf[self.done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A stream that hands out the scripted pieces, `None` as "would block", then EOF.
    struct Script(VecDeque<Option<Vec<u8>>>);

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(None) => Err(io::ErrorKind::WouldBlock.into()),
                Some(Some(mut piece)) => {
                    let n = piece.len().min(buf.len());
                    buf[..n].copy_from_slice(&piece[..n]);
                    if n < piece.len() {
                        self.0.push_front(Some(piece.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    fn script(pieces: &[Option<&[u8]>]) -> Script {
        Script(pieces.iter().map(|p| p.map(<[u8]>::to_vec)).collect())
    }

    #[test]
    fn messages_come_in_pieces_and_back_to_back() {
        let mut s = script(&[
            Some(&[0]),
            None,
            Some(&[3, b'a']),
            None,
            Some(&[b'b', b'c', 0, 0, 0, 1]),
            Some(b"z"),
        ]);
        let mut f = FrameReader::new(10);
        assert_eq!(f.read_from(&mut s).unwrap(), Frame::Pending);
        assert!(!f.is_idle());
        assert_eq!(f.read_from(&mut s).unwrap(), Frame::Pending);
        assert_eq!(
            f.read_from(&mut s).unwrap(),
            Frame::Message(b"abc".to_vec())
        );
        assert!(f.is_idle());
        assert_eq!(f.read_from(&mut s).unwrap(), Frame::Message(vec![]));
        assert_eq!(f.read_from(&mut s).unwrap(), Frame::Message(b"z".to_vec()));
        assert_eq!(f.read_from(&mut s).unwrap(), Frame::Closed);
    }

    #[test]
    fn a_long_length_fails_before_the_body_and_a_cut_message_fails() {
        let mut f = FrameReader::new(4096);
        let e = f
            .read_from(&mut script(&[Some(&[0xff, 0xff])]))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(f.body.capacity() == 0, "nothing allocated for it");
        let mut f = FrameReader::new(4096);
        let e = f
            .read_from(&mut script(&[Some(&[0, 3, 1, 2])]))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut f = FrameReader::new(4096);
        let e = f.read_from(&mut script(&[Some(&[0])])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Takes at most `step` bytes per write, and would block every other call.
    struct Slow {
        out: Vec<u8>,
        step: usize,
        block: bool,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.block = !self.block;
            if self.block {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_go_out_in_pieces_with_their_length() {
        let mut w = FrameWriter::new(b"hello").unwrap();
        let mut s = Slow {
            out: vec![],
            step: 3,
            block: false,
        };
        let mut calls = 0;
        while !w.write_to(&mut s).unwrap() {
            calls += 1;
        }
        assert_eq!(s.out, b"\x00\x05hello");
        assert_eq!(calls, 3);
        assert!(FrameWriter::new(&vec![0; 65536]).is_err());
    }
}
