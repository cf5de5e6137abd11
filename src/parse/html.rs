//! HTML to text for pattern matching.
//!
//! Vendors put order tables in HTML. A regex over the text should see one line
//! per row with the cells in order, so block tags and `<tr>` end a line and
//! cells are separated by ` | `. mail-parser's own converter joins cells with
//! spaces, which makes "Status | Inspection Scheduled" unmatchable reliably.

/// Converts HTML to text: tags dropped, `<script>`/`<style>`/`<head>` content
/// dropped, entities decoded, whitespace collapsed within a line.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut line = String::new();
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    let mut row_has_cell = false;

    while !rest.is_empty() {
        if let Some(end_tag) = skip_until {
            match find_ci(rest, end_tag) {
                Some(i) => {
                    rest = &rest[i..];
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |i| &after[i + 3..]);
            continue;
        }
        if rest.starts_with('<') {
            let Some(end) = rest.find('>') else { break };
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            match name.as_str() {
                "script" if !closing => skip_until = Some("</script"),
                "style" if !closing => skip_until = Some("</style"),
                "head" if !closing => skip_until = Some("</head"),
                "td" | "th" if !closing => {
                    if row_has_cell {
                        push_sep(&mut line, " | ");
                    }
                    row_has_cell = true;
                }
                "tr" => {
                    flush(&mut out, &mut line);
                    row_has_cell = false;
                }
                "br" | "p" | "div" | "li" | "ul" | "ol" | "table" | "h1" | "h2" | "h3" | "h4"
                | "h5" | "h6" | "blockquote" | "pre" | "hr" | "section" | "article" | "header"
                | "footer" | "dt" | "dd" | "tbody" | "thead" => flush(&mut out, &mut line),
                _ => {}
            }
            continue;
        }
        let next = rest.find('<').unwrap_or(rest.len());
        push_text(&mut line, &rest[..next]);
        rest = &rest[next..];
    }
    flush(&mut out, &mut line);
    out.truncate(out.trim_end().len());
    out
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_lowercase().find(needle)
}

fn push_sep(line: &mut String, sep: &str) {
    line.truncate(line.trim_end().len());
    line.push_str(sep);
}

/// Appends text with entities decoded and runs of whitespace collapsed.
fn push_text(line: &mut String, text: &str) {
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '&'
            && let Some((decoded, len)) = decode_entity(rest)
        {
            push_char(line, decoded);
            rest = &rest[len..];
            continue;
        }
        push_char(line, c);
        rest = &rest[c.len_utf8()..];
    }
}

fn push_char(line: &mut String, c: char) {
    if c.is_whitespace() {
        if !line.is_empty() && !line.ends_with(' ') {
            line.push(' ');
        }
    } else {
        line.push(c);
    }
}

fn flush(out: &mut String, line: &mut String) {
    let l = line.trim();
    let l = l.strip_suffix(" |").unwrap_or(l).trim();
    if !l.is_empty() {
        out.push_str(l);
        out.push('\n');
    }
    line.clear();
}

fn decode_entity(s: &str) -> Option<(char, usize)> {
    // Byte search: `;` is ASCII, so the index is a char boundary.
    let end = s.as_bytes().iter().take(12).position(|&b| b == b';')?;
    let body = &s[1..end];
    let c = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        char::from_u32(code).unwrap_or('\u{FFFD}')
    } else {
        match body {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => ' ',
            "ndash" => '–',
            "mdash" => '—',
            "hellip" => '…',
            "copy" => '©',
            "reg" => '®',
            "trade" => '™',
            "euro" => '€',
            "pound" => '£',
            "rsquo" => '’',
            "lsquo" => '‘',
            "rdquo" => '”',
            "ldquo" => '“',
            "bull" => '•',
            _ => return None,
        }
    };
    Some((c, end + 1))
}

#[cfg(test)]
mod tests {
    use super::html_to_text;

    #[test]
    fn table_rows_become_lines_with_separated_cells() {
        let html = "<html><head><title>x</title><style>td{color:red}</style></head><body>\
            <p>Hello&nbsp;there</p><table><tr><th>Order</th><th>Status</th></tr>\
            <tr><td> 48213 </td><td>Inspection   Scheduled</td></tr></table>\
            <script>alert(1)</script>Done &amp; dusted &#8212; &#x41;</body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello there\nOrder | Status\n48213 | Inspection Scheduled\nDone & dusted — A"
        );
    }

    #[test]
    fn broken_html_never_panics() {
        for s in [
            "<",
            "<td",
            "&",
            "&#xZZ;",
            "<script>",
            "a<!--",
            "<<>>",
            "é<b>ü</b>&#99999999;",
        ] {
            let _ = html_to_text(s);
        }
        assert_eq!(html_to_text("é<b>ü</b>"), "éü");
    }
}
