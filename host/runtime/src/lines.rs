//! Reading a command's output line by line in bounded memory.
//!
//! A line longer than the cap, terminated or not, keeps its first `cap` bytes; the rest of it is
//! read and discarded up to the next newline (or the end of the stream), so a gigabyte printed
//! without a newline costs the host the cap and one read buffer, never the gigabyte.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Bytes read from the pipe at a time.
const READ_BUFFER: usize = 64 * 1024;

/// One line of output, without its newline (and without a trailing `\r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The first bytes of the line, at most the cap (cut back to a UTF-8 boundary; invalid UTF-8
    /// replaced).
    pub(crate) text: String,
    /// How many bytes of the line were discarded (0: the whole line is in `text`).
    pub(crate) dropped: u64,
}

impl Line {
    /// Whether the line was longer than the cap.
    pub(crate) fn is_truncated(&self) -> bool {
        self.dropped > 0
    }
}

/// Splits a byte stream into [`Line`]s of at most `cap` bytes each.
pub(crate) struct BoundedLines<R> {
    reader: BufReader<R>,
    cap: usize,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    /// Lines of `reader`, each cut at `cap` bytes.
    pub(crate) fn new(reader: R, cap: usize) -> Self {
        BoundedLines {
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            cap: cap.max(1),
        }
    }

    /// The next line; `None` at the end of the stream. A last line without a newline is returned
    /// like any other.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut kept: Vec<u8> = Vec::new();
        let mut dropped: u64 = 0;
        let mut read_any = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            let take = chunk.len().min(self.cap - kept.len());
            kept.extend_from_slice(&chunk[..take]);
            dropped += (chunk.len() - take) as u64;
            let consumed = newline.map_or(available.len(), |i| i + 1);
            self.reader.consume(consumed);
            if newline.is_some() {
                break;
            }
        }
        if dropped == 0 && kept.last() == Some(&b'\r') {
            kept.pop();
        }
        if dropped > 0 {
            // Do not end on half a character.
            if let Err(e) = std::str::from_utf8(&kept)
                && e.error_len().is_none()
            {
                dropped += (kept.len() - e.valid_up_to()) as u64;
                kept.truncate(e.valid_up_to());
            }
        }
        let text = match String::from_utf8(kept) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(Some(Line { text, dropped }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], cap: usize) -> Vec<Line> {
        let mut reader = BoundedLines::new(input, cap);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    fn line(text: &str, dropped: u64) -> Line {
        Line {
            text: text.into(),
            dropped,
        }
    }

    #[tokio::test]
    async fn splits_and_strips_line_endings() {
        assert_eq!(
            lines(b"one\r\ntwo\n\nlast", 100).await,
            vec![line("one", 0), line("two", 0), line("", 0), line("last", 0)]
        );
        assert_eq!(lines(b"", 100).await, vec![]);
        assert_eq!(lines(b"x\n", 100).await, vec![line("x", 0)]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_with_or_without_a_newline() {
        assert_eq!(
            lines(b"abcdefgh\nij\nklmnopq", 4).await,
            vec![line("abcd", 4), line("ij", 0), line("klmn", 3)]
        );
    }

    #[tokio::test]
    async fn a_cut_never_splits_a_character() {
        // "é" is two bytes; a cap of 2 after "a" would split it.
        assert_eq!(lines("aé!\n".as_bytes(), 2).await, vec![line("a", 3)]);
        assert_eq!(lines(b"ok\xff\n", 100).await, vec![line("ok\u{fffd}", 0)]);
    }

    #[tokio::test]
    async fn a_huge_unterminated_line_is_read_in_bounded_memory() {
        // 64 MiB of one line through a pipe: the reader keeps the cap, counts the rest.
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let block = vec![b'y'; 1 << 20];
            for _ in 0..64 {
                tx.write_all(&block).await.unwrap();
            }
        });
        let mut reader = BoundedLines::new(rx, 1000);
        let first = reader.next_line().await.unwrap().unwrap();
        assert_eq!(first.text.len(), 1000);
        assert_eq!(first.dropped, (64 << 20) - 1000);
        assert!(reader.next_line().await.unwrap().is_none());
        writer.await.unwrap();
    }
}
