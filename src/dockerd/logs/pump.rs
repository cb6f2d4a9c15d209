//! The tokio reader of dockerd's output pipe, feeding the core's
//! [`LogSink`] line by line (the poll loop's reader is
//! `ws_init_core::logs::LogPipes`).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::{LineSplitter, LogSink};

/// Reads dockerd's output pipe to its end (dockerd and every process that
/// inherited the pipe, such as containerd, have closed it).
pub async fn pump(mut pipe: tokio::net::unix::pipe::Receiver, sink: Rc<RefCell<LogSink>>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let now = Instant::now();
                let mut sink = sink.borrow_mut();
                splitter.push(&buf[..n], |line| sink.line(line, now));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading dockerd's output failed: {e}");
                break;
            }
        }
    }
    let now = Instant::now();
    let mut sink = sink.borrow_mut();
    splitter.finish(|line| sink.line(line, now));
}
