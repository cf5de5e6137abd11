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

/// Named entities: Latin-1 and the common typographic ones, sorted by name
/// for binary search. Vendors' HTML generators use these; an unknown name is
/// left as written.
const ENTITIES: &[(&str, char)] = &[
    ("AElig", '\u{c6}'),
    ("Aacute", '\u{c1}'),
    ("Acirc", '\u{c2}'),
    ("Agrave", '\u{c0}'),
    ("Aring", '\u{c5}'),
    ("Atilde", '\u{c3}'),
    ("Auml", '\u{c4}'),
    ("Ccedil", '\u{c7}'),
    ("Dagger", '\u{2021}'),
    ("ETH", '\u{d0}'),
    ("Eacute", '\u{c9}'),
    ("Ecirc", '\u{ca}'),
    ("Egrave", '\u{c8}'),
    ("Euml", '\u{cb}'),
    ("Iacute", '\u{cd}'),
    ("Icirc", '\u{ce}'),
    ("Igrave", '\u{cc}'),
    ("Iuml", '\u{cf}'),
    ("Ntilde", '\u{d1}'),
    ("OElig", '\u{152}'),
    ("Oacute", '\u{d3}'),
    ("Ocirc", '\u{d4}'),
    ("Ograve", '\u{d2}'),
    ("Oslash", '\u{d8}'),
    ("Otilde", '\u{d5}'),
    ("Ouml", '\u{d6}'),
    ("Prime", '\u{2033}'),
    ("Scaron", '\u{160}'),
    ("THORN", '\u{de}'),
    ("Uacute", '\u{da}'),
    ("Ucirc", '\u{db}'),
    ("Ugrave", '\u{d9}'),
    ("Uuml", '\u{dc}'),
    ("Yacute", '\u{dd}'),
    ("Yuml", '\u{178}'),
    ("aacute", '\u{e1}'),
    ("acirc", '\u{e2}'),
    ("acute", '\u{b4}'),
    ("aelig", '\u{e6}'),
    ("agrave", '\u{e0}'),
    ("amp", '\u{26}'),
    ("apos", '\u{27}'),
    ("aring", '\u{e5}'),
    ("atilde", '\u{e3}'),
    ("auml", '\u{e4}'),
    ("bdquo", '\u{201e}'),
    ("brvbar", '\u{a6}'),
    ("bull", '\u{2022}'),
    ("ccedil", '\u{e7}'),
    ("cedil", '\u{b8}'),
    ("cent", '\u{a2}'),
    ("circ", '\u{2c6}'),
    ("copy", '\u{a9}'),
    ("curren", '\u{a4}'),
    ("dagger", '\u{2020}'),
    ("darr", '\u{2193}'),
    ("deg", '\u{b0}'),
    ("divide", '\u{f7}'),
    ("eacute", '\u{e9}'),
    ("ecirc", '\u{ea}'),
    ("egrave", '\u{e8}'),
    ("emsp", '\u{2003}'),
    ("ensp", '\u{2002}'),
    ("eth", '\u{f0}'),
    ("euml", '\u{eb}'),
    ("euro", '\u{20ac}'),
    ("frac12", '\u{bd}'),
    ("frac14", '\u{bc}'),
    ("frac34", '\u{be}'),
    ("gt", '\u{3e}'),
    ("hellip", '\u{2026}'),
    ("iacute", '\u{ed}'),
    ("icirc", '\u{ee}'),
    ("iexcl", '\u{a1}'),
    ("igrave", '\u{ec}'),
    ("iquest", '\u{bf}'),
    ("iuml", '\u{ef}'),
    ("laquo", '\u{ab}'),
    ("larr", '\u{2190}'),
    ("ldquo", '\u{201c}'),
    ("lrm", '\u{200e}'),
    ("lsaquo", '\u{2039}'),
    ("lsquo", '\u{2018}'),
    ("lt", '\u{3c}'),
    ("macr", '\u{af}'),
    ("mdash", '\u{2014}'),
    ("micro", '\u{b5}'),
    ("middot", '\u{b7}'),
    ("minus", '\u{2212}'),
    ("nbsp", '\u{a0}'),
    ("ndash", '\u{2013}'),
    ("not", '\u{ac}'),
    ("ntilde", '\u{f1}'),
    ("oacute", '\u{f3}'),
    ("ocirc", '\u{f4}'),
    ("oelig", '\u{153}'),
    ("ograve", '\u{f2}'),
    ("ordf", '\u{aa}'),
    ("ordm", '\u{ba}'),
    ("oslash", '\u{f8}'),
    ("otilde", '\u{f5}'),
    ("ouml", '\u{f6}'),
    ("para", '\u{b6}'),
    ("permil", '\u{2030}'),
    ("plusmn", '\u{b1}'),
    ("pound", '\u{a3}'),
    ("prime", '\u{2032}'),
    ("quot", '\u{22}'),
    ("raquo", '\u{bb}'),
    ("rarr", '\u{2192}'),
    ("rdquo", '\u{201d}'),
    ("reg", '\u{ae}'),
    ("rlm", '\u{200f}'),
    ("rsaquo", '\u{203a}'),
    ("rsquo", '\u{2019}'),
    ("sbquo", '\u{201a}'),
    ("scaron", '\u{161}'),
    ("sect", '\u{a7}'),
    ("shy", '\u{ad}'),
    ("sup1", '\u{b9}'),
    ("sup2", '\u{b2}'),
    ("sup3", '\u{b3}'),
    ("szlig", '\u{df}'),
    ("thinsp", '\u{2009}'),
    ("thorn", '\u{fe}'),
    ("tilde", '\u{2dc}'),
    ("times", '\u{d7}'),
    ("trade", '\u{2122}'),
    ("uacute", '\u{fa}'),
    ("uarr", '\u{2191}'),
    ("ucirc", '\u{fb}'),
    ("ugrave", '\u{f9}'),
    ("uml", '\u{a8}'),
    ("uuml", '\u{fc}'),
    ("yacute", '\u{fd}'),
    ("yen", '\u{a5}'),
    ("yuml", '\u{ff}'),
    ("zwj", '\u{200d}'),
    ("zwnj", '\u{200c}'),
];

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
        let i = ENTITIES.binary_search_by(|(n, _)| (*n).cmp(body)).ok()?;
        ENTITIES[i].1
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
    fn named_entities_decode() {
        assert_eq!(
            html_to_text("Zo&euml; O&rsquo;Brien &middot; &eacute;t&eacute; &bogus;"),
            "Zoë O’Brien · été &bogus;"
        );
        assert!(
            super::ENTITIES.windows(2).all(|w| w[0].0 < w[1].0),
            "table sorted"
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
