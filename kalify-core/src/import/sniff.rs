//! Reading ahead to the end of the header line to choose the delimiter.

use std::io::{self, Read};

use crate::error::{Error, Result};

/// Delimiters detected, in the order that breaks ties.
const CANDIDATES: [u8; 4] = [b';', b',', b'\t', b'|'];

/// Maximum header line length, in decoded bytes.
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Bytes read per step while looking for the end of the header line.
const STEP: usize = 16 * 1024;

/// The delimiter and the text read before the CSV reader starts.
#[derive(Debug)]
pub(crate) struct HeaderSniff {
    /// Decoded bytes already read, to replay before the rest of the stream.
    /// A `sep=` line is removed from them.
    pub(crate) prefix: Vec<u8>,
    /// The column delimiter.
    pub(crate) delimiter: u8,
    /// Physical lines removed from the start (the `sep=` line), to add to
    /// the line numbers the CSV reader counts.
    pub(crate) skipped_lines: u64,
}

/// Reads decoded text up to the end of the header line and chooses the
/// delimiter: `explicit` when given, then the `sep=X` line that Excel
/// writes and reads, then the candidate found most often outside quotes in
/// the header line (`;` wins ties, then `,`, tab and `|`).
///
/// # Errors
/// `InvalidInput` when the file is empty or blank, is a spreadsheet
/// workbook, ends its lines with bare carriage returns, or has a header
/// line longer than 1 MiB.
pub(crate) fn sniff_header<R: Read>(reader: &mut R, explicit: Option<u8>) -> Result<HeaderSniff> {
    let mut prefix = Vec::new();
    let mut at_end = false;
    let Some(first) = read_first_line(reader, &mut prefix, &mut at_end)? else {
        return Err(Error::invalid_input("the file is empty"));
    };

    if prefix.starts_with(b"PK\x03\x04") || prefix.starts_with("ÐÏ\u{11}à".as_bytes()) {
        return Err(Error::invalid_input(
            "the file is a spreadsheet workbook, not CSV; save it as CSV (UTF-8) and import that file",
        ));
    }

    let mut skipped_lines = 0;
    let mut declared = None;
    let mut header = first;
    if let Some(separator) = parse_sep_line(&prefix[first.start..first.end]) {
        declared = Some(separator);
        skipped_lines = 1;
        prefix.drain(..first.next);
        let Some(line) = read_first_line(reader, &mut prefix, &mut at_end)? else {
            return Err(Error::invalid_input("the file is empty"));
        };
        header = line;
    }

    let delimiter = explicit
        .or(declared)
        .unwrap_or_else(|| detect_delimiter(&prefix[header.start..header.end]));
    Ok(HeaderSniff {
        prefix,
        delimiter,
        skipped_lines,
    })
}

/// Reads into `prefix` until it contains the first line that is not blank.
/// Returns `None` when the stream ends before one.
fn read_first_line<R: Read>(
    reader: &mut R,
    prefix: &mut Vec<u8>,
    at_end: &mut bool,
) -> Result<Option<HeaderLine>> {
    loop {
        match find_header_line(prefix, *at_end) {
            LineSearch::Found(line) => return Ok(Some(line)),
            LineSearch::BareCarriageReturn => {
                return Err(Error::invalid_input(
                    "the file ends its lines with bare carriage returns (classic Mac OS); save it again as CSV with CRLF or LF line breaks",
                ));
            }
            LineSearch::NeedMore if *at_end => return Ok(None),
            LineSearch::NeedMore => {}
        }
        if prefix.len() > MAX_HEADER_BYTES {
            return Err(Error::invalid_input(
                "the header line is longer than 1 MiB; check that the file is a CSV file and that its quotes are closed",
            ));
        }
        *at_end = read_step(reader, prefix)?;
    }
}

/// Reads one step into `buffer`; returns true at the end of the stream.
fn read_step<R: Read>(reader: &mut R, buffer: &mut Vec<u8>) -> Result<bool> {
    let filled = buffer.len();
    buffer.resize(filled + STEP, 0);
    loop {
        match reader.read(&mut buffer[filled..]) {
            Ok(count) => {
                buffer.truncate(filled + count);
                return Ok(count == 0);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                buffer.truncate(filled);
                return Err(read_failed(error));
            }
        }
    }
}

pub(crate) fn read_failed(error: io::Error) -> Error {
    Error::unexpected("failed to read the import file").with_source(error)
}

/// Byte range of the header line, its line break excluded, and the
/// offset after the line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderLine {
    start: usize,
    end: usize,
    next: usize,
}

/// The outcome of looking for the header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineSearch {
    Found(HeaderLine),
    /// More text is needed, or every line is blank at the end of the stream.
    NeedMore,
    /// A carriage return outside quotes is followed by something other than
    /// a line feed.
    BareCarriageReturn,
}

/// Finds the first line that is not blank and where it ends outside quotes.
fn find_header_line(text: &[u8], at_end: bool) -> LineSearch {
    let Some(start) = text.iter().position(|byte| !byte.is_ascii_whitespace()) else {
        return LineSearch::NeedMore;
    };
    let line_start = text[..start]
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let mut in_quotes = false;
    for (offset, byte) in text[line_start..].iter().enumerate() {
        let position = line_start + offset;
        match byte {
            b'"' => in_quotes = !in_quotes,
            b'\r' if !in_quotes && text.get(position + 1).is_some_and(|next| *next != b'\n') => {
                return LineSearch::BareCarriageReturn;
            }
            b'\n' if !in_quotes => {
                let mut end = position;
                if end > line_start && text[end - 1] == b'\r' {
                    end -= 1;
                }
                return LineSearch::Found(HeaderLine {
                    start: line_start,
                    end,
                    next: position + 1,
                });
            }
            _ => {}
        }
    }
    if at_end {
        let end = text.len() - usize::from(text.ends_with(b"\r"));
        return LineSearch::Found(HeaderLine {
            start: line_start,
            end,
            next: text.len(),
        });
    }
    LineSearch::NeedMore
}

/// Reads Excel's `sep=X` line.
fn parse_sep_line(line: &[u8]) -> Option<u8> {
    let line = line.trim_ascii();
    match line {
        [s, e, p, b'=', separator]
            if s.eq_ignore_ascii_case(&b's')
                && e.eq_ignore_ascii_case(&b'e')
                && p.eq_ignore_ascii_case(&b'p') =>
        {
            Some(*separator)
        }
        _ => None,
    }
}

/// Returns the candidate found most often outside quotes, or `,` when none is found.
fn detect_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0_usize; CANDIDATES.len()];
    let mut in_quotes = false;
    for byte in line {
        if *byte == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes
            && let Some(index) = CANDIDATES.iter().position(|candidate| candidate == byte)
        {
            counts[index] += 1;
        }
    }
    let mut best = None;
    for (index, count) in counts.iter().enumerate() {
        if *count > 0 && best.is_none_or(|(_, best_count)| *count > best_count) {
            best = Some((index, *count));
        }
    }
    best.map_or(b',', |(index, _)| CANDIDATES[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(text: &str) -> Result<HeaderSniff> {
        sniff_header(&mut text.as_bytes(), None)
    }

    #[test]
    fn delimiters_are_detected() {
        assert_eq!(sniff("a;b;c\n1,5;2;3\n").unwrap().delimiter, b';');
        assert_eq!(sniff("a,b,c\n").unwrap().delimiter, b',');
        assert_eq!(sniff("a\tb\tc").unwrap().delimiter, b'\t');
        assert_eq!(sniff("a|b|c\r\n").unwrap().delimiter, b'|');
        assert_eq!(sniff("email\n").unwrap().delimiter, b',');
        assert_eq!(sniff("\"Nom, Prénom\";Email\n").unwrap().delimiter, b';');
        assert_eq!(sniff("\"Nom;\nPrénom\",Email\n").unwrap().delimiter, b',');
    }

    #[test]
    fn ties_prefer_semicolon() {
        assert_eq!(sniff("Nom, Prénom;Email\n").unwrap().delimiter, b';');
    }

    #[test]
    fn explicit_delimiter_wins() {
        let found = sniff_header(&mut "a;b,c,d\n".as_bytes(), Some(b';')).unwrap();
        assert_eq!(found.delimiter, b';');
    }

    #[test]
    fn sep_line_is_read_and_removed() {
        let found = sniff("sep=|\r\nNom;Email|Tel\nx|y|z\n").unwrap();
        assert_eq!(found.delimiter, b'|');
        assert_eq!(found.skipped_lines, 1);
        assert_eq!(found.prefix, b"Nom;Email|Tel\nx|y|z\n");
    }

    #[test]
    fn empty_and_blank_files() {
        for text in ["", "\n\n", "  \r\n\t", "sep=;\n"] {
            let error = sniff(text).unwrap_err();
            assert_eq!(error.message(), "the file is empty", "{text:?}");
        }
    }

    #[test]
    fn header_after_blank_lines() {
        let found = sniff("\n\n Nom;Email\n").unwrap();
        assert_eq!(found.delimiter, b';');
        assert_eq!(found.skipped_lines, 0);
    }

    #[test]
    fn bare_carriage_returns_are_rejected() {
        let error = sniff("Nom;Email\rAnn;a@example.fr\r").unwrap_err();
        assert!(error.message().contains("bare carriage returns"), "{error}");
        assert_eq!(
            sniff("Nom;Email\r\nAnn;a@example.fr\r\n")
                .unwrap()
                .delimiter,
            b';'
        );
        assert_eq!(sniff("\"Nom\rcomplet\";Email\n").unwrap().delimiter, b';');
    }

    #[test]
    fn workbooks_are_rejected() {
        let error = sniff("PK\u{3}\u{4}rest of a zip").unwrap_err();
        assert!(error.message().contains("spreadsheet workbook"), "{error}");
    }

    #[test]
    fn header_longer_than_the_limit() {
        let text = "a".repeat(MAX_HEADER_BYTES + 2 * STEP);
        let error = sniff(&text).unwrap_err();
        assert!(error.message().contains("longer than 1 MiB"), "{error}");
    }
}
