//! Streaming text decoding with encoding detection, and a guard against
//! records that never end.

use std::io::{self, Read};

use encoding_rs::{Decoder, Encoding, UTF_8, WINDOWS_1252};

/// Bytes examined to choose between UTF-8 and Windows-1252.
pub(crate) const SNIFF_LEN: usize = 64 * 1024;

/// Bytes read from the source per refill after the first one.
const CHUNK_LEN: usize = 64 * 1024;

/// Decodes a byte stream to UTF-8 while it is read.
///
/// A byte order mark selects UTF-8, UTF-16LE or UTF-16BE and is removed.
/// Without one, the encoding is chosen at the first non-ASCII byte: when
/// the [`SNIFF_LEN`] bytes from there are valid UTF-8 (a sequence cut by the
/// end of that window counts as valid), the stream is UTF-8, and otherwise
/// Windows-1252. ASCII text before that byte reads the same in both. Bytes
/// that are invalid in the chosen encoding become U+FFFD, and
/// [`DecodingReader::had_replacements`] then returns true.
pub(crate) struct DecodingReader<R> {
    source: R,
    /// Bytes read from the source and not decoded yet.
    raw: Vec<u8>,
    /// Decoded bytes and the position of the next one to hand out.
    decoded: Vec<u8>,
    decoded_pos: usize,
    decoder: Option<Decoder>,
    started: bool,
    source_done: bool,
    finished: bool,
    replaced: bool,
}

impl<R: Read> DecodingReader<R> {
    pub(crate) fn new(source: R) -> Self {
        DecodingReader {
            source,
            raw: Vec::new(),
            decoded: Vec::new(),
            decoded_pos: 0,
            decoder: None,
            started: false,
            source_done: false,
            finished: false,
            replaced: false,
        }
    }

    /// Returns the name of the chosen encoding, `UTF-8` for a stream that was ASCII throughout.
    pub(crate) fn encoding_name(&self) -> &'static str {
        self.decoder
            .as_ref()
            .map(|decoder| decoder.encoding().name())
            .unwrap_or(UTF_8.name())
    }

    /// True once a byte sequence invalid in the chosen encoding was replaced with U+FFFD.
    pub(crate) fn had_replacements(&self) -> bool {
        self.replaced
    }

    /// Reads from the source until `raw` contains `target` bytes or the source ends.
    fn fill_raw(&mut self, target: usize) -> io::Result<()> {
        while self.raw.len() < target && !self.source_done {
            let filled = self.raw.len();
            let wanted = (target - filled).min(CHUNK_LEN);
            self.raw.resize(filled + wanted, 0);
            let outcome = self.source.read(&mut self.raw[filled..]);
            self.raw.truncate(filled + *outcome.as_ref().unwrap_or(&0));
            match outcome {
                Ok(0) => self.source_done = true,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn start(&mut self) -> io::Result<()> {
        self.started = true;
        self.fill_raw(SNIFF_LEN)?;
        if let Some((encoding, bom_len)) = Encoding::for_bom(&self.raw) {
            self.raw.drain(..bom_len);
            self.decoder = Some(encoding.new_decoder_without_bom_handling());
        }
        Ok(())
    }

    /// Chooses the encoding from `raw`, which starts at the first non-ASCII byte.
    fn choose_encoding(&mut self) -> io::Result<()> {
        self.fill_raw(SNIFF_LEN)?;
        let valid_utf8 = match std::str::from_utf8(&self.raw) {
            Ok(_) => true,
            Err(error) => error.error_len().is_none() && !self.source_done,
        };
        let encoding = if valid_utf8 { UTF_8 } else { WINDOWS_1252 };
        self.decoder = Some(encoding.new_decoder_without_bom_handling());
        Ok(())
    }

    /// Refills `decoded`. Leaves it empty only at the end of the stream.
    fn refill(&mut self) -> io::Result<()> {
        self.decoded.clear();
        self.decoded_pos = 0;
        while self.decoded.is_empty() && !self.finished {
            if !self.started {
                self.start()?;
            } else if self.raw.is_empty() {
                self.fill_raw(CHUNK_LEN)?;
            }

            if self.decoder.is_none() {
                match self.raw.iter().position(|byte| !byte.is_ascii()) {
                    None => {
                        self.decoded.append(&mut self.raw);
                        self.finished = self.source_done;
                        continue;
                    }
                    Some(0) => self.choose_encoding()?,
                    Some(first) => {
                        self.decoded.extend(self.raw.drain(..first));
                        continue;
                    }
                }
            }
            self.decode_raw()?;
        }
        Ok(())
    }

    fn decode_raw(&mut self) -> io::Result<()> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(());
        };
        let last = self.source_done;
        let capacity = decoder
            .max_utf8_buffer_length(self.raw.len())
            .ok_or_else(|| io::Error::other("the decoded chunk is too large"))?;
        self.decoded.resize(capacity, 0);
        let (_, read, written, replaced) =
            decoder.decode_to_utf8(&self.raw, &mut self.decoded, last);
        self.decoded.truncate(written);
        self.raw.drain(..read);
        self.replaced |= replaced;
        if last && self.raw.is_empty() {
            self.finished = true;
        }
        Ok(())
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.decoded_pos >= self.decoded.len() {
            self.refill()?;
        }
        let available = &self.decoded[self.decoded_pos..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.decoded_pos += count;
        Ok(count)
    }
}

/// Maximum record length, in decoded bytes.
pub(crate) const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// Slack for the CSV reader's read-ahead buffer, which the limit must not count.
const READ_AHEAD_SLACK: u64 = 64 * 1024;

/// The message of the I/O error [`CsvInput`] raises for a record that is too long.
pub(crate) const RECORD_TOO_LONG: &str = "record longer than the limit";

/// The stream the CSV reader reads.
///
/// It fails the read when the current record grows past
/// [`MAX_RECORD_BYTES`], so that a quote that is never closed cannot pull
/// the rest of the file into memory as one field. The importer sets the
/// byte offset of each record's start before reading it. It also remembers
/// how the stream ended, to tell whether the last record ends with a line break.
pub(crate) struct CsvInput<R> {
    inner: R,
    delivered: u64,
    record_start: u64,
    exhausted: bool,
    last_byte: Option<u8>,
}

impl<R> CsvInput<R> {
    pub(crate) fn new(inner: R) -> Self {
        CsvInput {
            inner,
            delivered: 0,
            record_start: 0,
            exhausted: false,
            last_byte: None,
        }
    }

    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Sets the byte offset where the next record starts.
    pub(crate) fn set_record_start(&mut self, offset: u64) {
        self.record_start = offset;
    }

    /// True when `offset` is the end of the stream and the stream's last
    /// byte is not a line feed.
    pub(crate) fn ends_without_newline_at(&self, offset: u64) -> bool {
        self.exhausted && offset == self.delivered && self.last_byte != Some(b'\n')
    }
}

impl<R: Read> Read for CsvInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.delivered.saturating_sub(self.record_start) > MAX_RECORD_BYTES + READ_AHEAD_SLACK {
            return Err(io::Error::new(io::ErrorKind::InvalidData, RECORD_TOO_LONG));
        }
        let count = self.inner.read(buf)?;
        if count == 0 && !buf.is_empty() {
            self.exhausted = true;
        }
        if let Some(last) = buf[..count].last() {
            self.last_byte = Some(*last);
        }
        self.delivered += count as u64;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (String, &'static str, bool) {
        let mut reader = DecodingReader::new(bytes);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        (text, reader.encoding_name(), reader.had_replacements())
    }

    /// Hands out one byte per read, to cut every multi-byte sequence.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((first, rest)) if !buf.is_empty() => {
                    buf[0] = *first;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn utf8_with_bom() {
        let (text, encoding, replaced) = decode("\u{feff}Prénom;Nom\n".as_bytes());
        assert_eq!(text, "Prénom;Nom\n");
        assert_eq!(encoding, "UTF-8");
        assert!(!replaced);
    }

    #[test]
    fn windows_1252_is_detected() {
        let (text, encoding, _) = decode(b"Pr\xe9nom;Soci\xe9t\xe9\nFran\xe7ois;80\x80\n");
        assert_eq!(text, "Prénom;Société\nFrançois;80€\n");
        assert_eq!(encoding, "windows-1252");
    }

    #[test]
    fn late_non_ascii_byte_decides() {
        let mut bytes = b"email\n".repeat(30_000);
        bytes.extend_from_slice(b"Andr\xe9\n");
        let (text, encoding, _) = decode(&bytes);
        assert!(text.ends_with("André\n"));
        assert_eq!(encoding, "windows-1252");
        assert_eq!(text.len(), 6 * 30_000 + "André\n".len());
    }

    #[test]
    fn invalid_utf8_after_the_window_is_replaced() {
        let mut bytes = "é\n".as_bytes().to_vec();
        bytes.extend_from_slice(&b"a\n".repeat(SNIFF_LEN));
        bytes.extend_from_slice(b"Andr\xe9\n");
        let (text, encoding, replaced) = decode(&bytes);
        assert_eq!(encoding, "UTF-8");
        assert!(replaced);
        assert!(text.ends_with("Andr\u{fffd}\n"));
    }

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xff, 0xfe];
        for unit in "Prénom\tEmail\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let (text, encoding, _) = decode(&bytes);
        assert_eq!(text, "Prénom\tEmail\n");
        assert_eq!(encoding, "UTF-16LE");
    }

    #[test]
    fn sequences_split_across_reads() {
        let source = "Zoë;Šárka;日本\n".as_bytes();
        let mut reader = DecodingReader::new(OneByte(source));
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "Zoë;Šárka;日本\n");
        assert_eq!(reader.encoding_name(), "UTF-8");
    }

    #[test]
    fn empty_input() {
        let (text, _, replaced) = decode(b"");
        assert_eq!(text, "");
        assert!(!replaced);
    }

    #[test]
    fn csv_input_stops_runaway_records() {
        let data = vec![b'a'; (MAX_RECORD_BYTES + READ_AHEAD_SLACK) as usize + 10];
        let mut input = CsvInput::new(data.as_slice());
        let mut sink = Vec::new();
        let error = input.read_to_end(&mut sink).unwrap_err();
        assert_eq!(error.to_string(), RECORD_TOO_LONG);

        input.set_record_start(sink.len() as u64);
        assert!(input.read_to_end(&mut sink).is_ok());
        assert_eq!(sink.len(), data.len());
    }

    #[test]
    fn csv_input_tells_how_the_stream_ends() {
        let mut input = CsvInput::new(&b"a\nb"[..]);
        let mut sink = Vec::new();
        input.read_to_end(&mut sink).unwrap();
        assert!(input.ends_without_newline_at(3));
        assert!(!input.ends_without_newline_at(2));

        let mut input = CsvInput::new(&b"a\n"[..]);
        input.read_to_end(&mut sink).unwrap();
        assert!(!input.ends_without_newline_at(2));
    }
}
