//! A small HTML-to-text converter for HTML-only mail.
//!
//! It is a tolerant scanner, not an HTML parser: it accepts any input,
//! and unbalanced or unknown tags are skipped. It keeps what the reply-text
//! extraction needs:
//!
//! - block elements (`p`, `div`, `li`, `tr`, headings, …) and `br` end lines;
//! - `blockquote` content is prefixed with `> ` per level, as plain-text
//!   clients quote, so quoted text is recognised the same way;
//! - elements that mail clients mark as signatures (Gmail's
//!   `gmail_signature`, Outlook's `Signature` id) start with a `-- ` line;
//! - `head`, `script`, `style`, `title`, `template` and comments are dropped;
//! - character references (`&amp;`, `&#233;`, `&#xE9;`) are decoded;
//! - runs of white space collapse to one space, except inside `pre`.

/// Converts HTML to plain text with one line per block.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = Output::default();
    let mut pre_depth = 0usize;
    let mut rest = html;

    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(rest, pre_depth > 0);
            break;
        };
        if lt > 0 {
            out.text(&rest[..lt], pre_depth > 0);
        }
        rest = &rest[lt..];

        // Comments, doctype, CDATA and processing instructions.
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
            continue;
        }

        let Some(tag) = Tag::parse(rest) else {
            // A '<' that opens no tag, as in "a < b", is text.
            out.text("<", pre_depth > 0);
            rest = &rest[1..];
            continue;
        };
        rest = &rest[tag.len..];

        match tag.name.as_str() {
            // Their content is not text. Script content may hold '<' and
            // quotes, so the end tag is searched for as text.
            "head" | "script" | "style" | "title" | "template" | "noscript"
                if !tag.closing && !tag.self_closing =>
            {
                let end_tag = format!("</{}", tag.name);
                rest = match find_ignore_ascii_case(rest, &end_tag) {
                    Some(start) => rest[start..]
                        .find('>')
                        .map_or("", |end| &rest[start + end + 1..]),
                    None => "",
                };
            }
            "br" => out.line_break(),
            "hr" => {
                out.end_line();
                out.text("-----", true);
                out.end_line();
            }
            "blockquote" => {
                out.end_line();
                if tag.closing {
                    out.quote_depth = out.quote_depth.saturating_sub(1);
                } else if !tag.self_closing {
                    out.quote_depth += 1;
                }
            }
            "pre" => {
                out.end_line();
                if tag.closing {
                    pre_depth = pre_depth.saturating_sub(1);
                } else if !tag.self_closing {
                    pre_depth += 1;
                }
            }
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "ul" | "ol" => {
                out.paragraph()
            }
            "li" if !tag.closing => {
                out.end_line();
                out.text("- ", true);
            }
            name if is_block(name) => {
                out.end_line();
                if !tag.closing && tag.is_signature {
                    out.text("-- ", true);
                    out.end_line();
                }
            }
            "td" | "th" if tag.closing => out.text(" ", false),
            _ => {}
        }
    }
    out.finish()
}

/// Finds `needle`, which is ASCII, in `haystack` ignoring ASCII case.
fn find_ignore_ascii_case(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "div"
            | "li"
            | "tr"
            | "dl"
            | "dt"
            | "dd"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "aside"
            | "nav"
            | "main"
            | "address"
            | "figure"
            | "figcaption"
            | "center"
            | "tbody"
            | "thead"
            | "tfoot"
            | "caption"
            | "form"
            | "fieldset"
            | "body"
            | "html"
    )
}

/// One tag as scanned: its lower-case name and the flags the converter uses.
struct Tag {
    name: String,
    closing: bool,
    self_closing: bool,
    is_signature: bool,
    /// Bytes from the `<` through the `>`.
    len: usize,
}

impl Tag {
    /// Reads a tag at the start of `text`, which begins with `<`. Returns
    /// `None` when no tag name follows the `<`.
    fn parse(text: &str) -> Option<Tag> {
        let bytes = text.as_bytes();
        let mut index = 1;
        let closing = bytes.get(index) == Some(&b'/');
        if closing {
            index += 1;
        }
        let name_start = index;
        while bytes.get(index).is_some_and(|b| b.is_ascii_alphanumeric()) {
            index += 1;
        }
        if index == name_start || !bytes[name_start].is_ascii_alphabetic() {
            return None;
        }
        let name = text[name_start..index].to_ascii_lowercase();

        // Attributes end at the first '>' outside quotes; an unterminated
        // tag swallows the rest of the input.
        let attributes_start = index;
        let mut quote: Option<u8> = None;
        while let Some(&byte) = bytes.get(index) {
            match (quote, byte) {
                (Some(open), _) if byte == open => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(byte),
                (None, b'>') => break,
                _ => {}
            }
            index += 1;
        }
        let attributes = &text[attributes_start..index.min(text.len())];
        let len = (index + 1).min(text.len());
        let self_closing = attributes.trim_end().ends_with('/');
        let lowered = attributes.to_ascii_lowercase();
        let is_signature = lowered.contains("gmail_signature")
            || lowered.contains("id=\"signature\"")
            || lowered.contains("id='signature'")
            || lowered.contains("moz-signature");
        Some(Tag {
            name,
            closing,
            self_closing,
            is_signature,
            len,
        })
    }
}

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    line: String,
    line_depth: usize,
    quote_depth: usize,
    pending_space: bool,
}

impl Output {
    fn text(&mut self, raw: &str, preformatted: bool) {
        let decoded = decode_entities(raw);
        if preformatted {
            for (index, piece) in decoded.split('\n').enumerate() {
                if index > 0 {
                    self.line_break();
                }
                self.push(piece.trim_end_matches('\r'));
            }
            return;
        }
        for (index, word) in decoded.split(is_collapsible_space).enumerate() {
            if index > 0 {
                self.pending_space = true;
            }
            if !word.is_empty() {
                if self.pending_space && !self.line.is_empty() {
                    self.line.push(' ');
                }
                self.pending_space = false;
                self.push(word);
            }
        }
    }

    fn push(&mut self, text: &str) {
        if self.line.is_empty() {
            self.line_depth = self.quote_depth;
        }
        self.line.push_str(text);
    }

    /// Ends the current line, even when it is empty (`<br>`).
    fn line_break(&mut self) {
        if self.line.is_empty() {
            self.line_depth = self.quote_depth;
        }
        let line = std::mem::take(&mut self.line);
        // The signature delimiter is the one line whose trailing space counts.
        let text = if line == "-- " {
            line.as_str()
        } else {
            line.trim_end()
        };
        self.lines.push(render(self.line_depth, text));
        self.pending_space = false;
    }

    /// Ends the current line when it contains text.
    fn end_line(&mut self) {
        if !self.line.trim().is_empty() {
            self.line_break();
        } else {
            self.line.clear();
            self.pending_space = false;
        }
    }

    /// Ends the current line and leaves one blank line after it.
    fn paragraph(&mut self) {
        self.end_line();
        if self
            .lines
            .last()
            .is_some_and(|last| !last.trim_start_matches('>').trim().is_empty())
        {
            self.lines.push(render(self.quote_depth, ""));
        }
    }

    fn finish(mut self) -> String {
        self.end_line();
        while self
            .lines
            .last()
            .is_some_and(|last| last.trim_start_matches('>').trim().is_empty())
        {
            self.lines.pop();
        }
        let first = self
            .lines
            .iter()
            .position(|line| !line.trim_start_matches('>').trim().is_empty());
        let lines = first.map_or(&[][..], |first| &self.lines[first..]);
        lines.join("\n")
    }
}

fn render(depth: usize, text: &str) -> String {
    if depth == 0 {
        return text.to_owned();
    }
    let mut line = "> ".repeat(depth);
    if text.is_empty() {
        line.truncate(line.trim_end().len());
    }
    line.push_str(text);
    line
}

/// HTML white space, plus the no-break space left by `&nbsp;` is kept.
fn is_collapsible_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}')
}

/// Decodes character references. Unknown or malformed references stay as written.
pub(crate) fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // References are short: the longest name here is 6 characters.
        let window_end = rest
            .char_indices()
            .nth(12)
            .map_or(rest.len(), |(index, _)| index);
        let decoded = rest[..window_end]
            .find(';')
            .and_then(|semi| decode_reference(&rest[1..semi]).map(|c| (c, semi)));
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_reference(reference: &str) -> Option<char> {
    if let Some(number) = reference.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        // NUL and surrogates become U+FFFD, as HTML parsers do.
        return Some(
            char::from_u32(code)
                .filter(|&c| c != '\0')
                .unwrap_or('\u{fffd}'),
        );
    }
    let c = match reference {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "shy" => '\u{ad}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "deg" => '°',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "lsaquo" => '‹',
        "rsaquo" => '›',
        "times" => '×',
        "divide" => '÷',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "auml" => 'ä',
        "atilde" => 'ã',
        "aring" => 'å',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "icirc" => 'î',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ocirc" => 'ô',
        "ouml" => 'ö',
        "otilde" => 'õ',
        "oslash" => 'ø',
        "oelig" => 'œ',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "yuml" => 'ÿ',
        "szlig" => 'ß',
        "Agrave" => 'À',
        "Aacute" => 'Á',
        "Acirc" => 'Â',
        "Auml" => 'Ä',
        "Ccedil" => 'Ç',
        "Egrave" => 'È',
        "Eacute" => 'É',
        "Ecirc" => 'Ê',
        "Euml" => 'Ë',
        "Icirc" => 'Î',
        "Iuml" => 'Ï',
        "Ocirc" => 'Ô',
        "Ouml" => 'Ö',
        "OElig" => 'Œ',
        "Ugrave" => 'Ù',
        "Ucirc" => 'Û',
        "Uuml" => 'Ü',
        "Yuml" => 'Ÿ',
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_lines() {
        let html = "<html><body><div>Hello Marie,</div><div><br></div><div>Budget is 20k.</div><p>Thanks</p></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello Marie,\n\nBudget is 20k.\n\nThanks"
        );
    }

    #[test]
    fn scripts_styles_and_head_dropped() {
        let html = "<head><title>T</title><style>p{color:red}</style></head><script>alert('x<y')</script><p>Visible</p><!-- hidden -->";
        assert_eq!(html_to_text(html), "Visible");
    }

    #[test]
    fn entities_decoded() {
        assert_eq!(
            html_to_text(
                "<p>R&eacute;ponse&nbsp;: 10&#8239;000&nbsp;&euro; &amp; &#x2014; &lt;ok&gt;</p>"
            ),
            "Réponse\u{a0}: 10\u{202f}000\u{a0}€ & — <ok>"
        );
        assert_eq!(
            decode_entities("a &unknown; b & c &#xZZ; &#0;"),
            "a &unknown; b & c &#xZZ; \u{fffd}"
        );
    }

    #[test]
    fn blockquote_prefixed() {
        let html = "<div>Yes, next month.</div><div class=\"gmail_quote\"><div>On Mon, 3 Mar 2025, Ana wrote:<br></div><blockquote>When can you start?<blockquote>Inner</blockquote></blockquote></div>";
        assert_eq!(
            html_to_text(html),
            "Yes, next month.\nOn Mon, 3 Mar 2025, Ana wrote:\n> When can you start?\n> > Inner"
        );
    }

    #[test]
    fn signature_marked() {
        let html = "<div>Sure.</div><div class=\"gmail_signature\">Paul<br>CEO</div>";
        assert_eq!(html_to_text(html), "Sure.\n-- \nPaul\nCEO");
    }

    #[test]
    fn whitespace_collapses_outside_pre() {
        assert_eq!(
            html_to_text("<p>a \n\t b</p><pre>x  y\n  z</pre>"),
            "a b\n\nx  y\n  z"
        );
    }

    #[test]
    fn malformed_html_survives() {
        for html in [
            "<",
            "<<<>>>",
            "a < b",
            "<div",
            "<p>unclosed",
            "</div></div>",
            "<a href='x>y'>link</a>",
            "&",
            "&#",
            "<!--",
            "<!DOCTYPE",
            "<script>never closed",
            "<\u{e9}>",
            "<1>",
        ] {
            let _ = html_to_text(html);
        }
        assert_eq!(html_to_text("a < b"), "a < b");
        assert_eq!(html_to_text("<a href='x>y'>link</a>"), "link");
    }

    #[test]
    fn list_items_dashed() {
        assert_eq!(
            html_to_text("<ul><li>one</li><li>two</li></ul>"),
            "- one\n- two"
        );
    }
}
