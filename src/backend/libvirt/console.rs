//! A VM's serial console log as `hdev logs` shows it: the last lines, then (with `-F`)
//! new lines as the guest writes them, until Ctrl-C.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use crate::backend::{BackendError, LogLine};

pub(super) async fn follow(
    path: &Path,
    follow: bool,
    tail: Option<u32>,
    sink: &(dyn Fn(LogLine) + Send + Sync),
) -> Result<(), BackendError> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let skip = tail.map_or(0, |t| lines.len().saturating_sub(t as usize));
    for l in &lines[skip..] {
        sink(LogLine {
            stderr: false,
            text: l.trim_end_matches('\r').to_string(),
        });
    }
    if !follow {
        return Ok(());
    }
    let mut pos = text.len() as u64;
    let mut partial = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(mut f) = std::fs::File::open(path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // the log was truncated (the VM was recreated)
        }
        if len == pos {
            continue;
        }
        let io = |source| BackendError::Io {
            path: path.to_path_buf(),
            source,
        };
        f.seek(SeekFrom::Start(pos)).map_err(io)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io)?;
        pos += buf.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&buf));
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            sink(LogLine {
                stderr: false,
                text: line.trim_end_matches(['\r', '\n']).to_string(),
            });
        }
    }
}
