//! The scan as it was before it copied unchanged runs of a line in one go and took a
//! fast path for plain words (test only). The scan must give the same template for
//! every input (the ids are a versioned contract), so the tests below run both on the
//! proptest lines and compare.

use super::*;

/// One pass over `bytes` (already cut to the limit) into `out`, cleared first. Returns
/// whether it wrote a quote into `out` (a closed phrase may have taken it out again).
pub(super) fn scan(bytes: &[u8], out: &mut String) -> bool {
    out.clear();
    let n = bytes.len();
    // Checked once: words of valid UTF-8 are copied without checking each again.
    let text = std::str::from_utf8(bytes).ok();
    let mut i = 0;
    // The previous delimiter was `=`: the next word is a value.
    let mut after_eq = false;
    // Whitespace was skipped since the last output.
    let mut pending_space = false;
    // Quote kinds with no closing quote left in the line (keeps the scan linear).
    let mut unclosed = [false; 3];
    // The last output is a number's mask and only whitespace followed: a unit joins it.
    let mut after_number = false;
    // The open quoted phrases, outermost first.
    let mut phrases = Phrases::default();
    // A quote was written to `out`.
    let mut kept_quote = false;
    while i < n {
        phrases.close_before(i, out);
        let c = bytes[i];
        let class = CLASS[c as usize];
        if class & WS != 0 {
            pending_space = !out.is_empty();
            after_eq = false;
            i += 1;
            continue;
        }
        if matches!(c, b'<' | b'>' | b'~') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // `<1 sec`, `>5`: the comparison belongs to the value.
            i += 1;
            continue;
        }
        if c == b'<' && bytes[i..].starts_with(MASK.as_bytes()) {
            // An already masked value (a template replayed): stays one mask.
            let low = push_mask(out, pending_space);
            phrases.follow(out, low);
            pending_space = false;
            after_eq = false;
            i += MASK.len();
            continue;
        }
        if class & QUOTE != 0 {
            // A quote opens a value at the start, after whitespace or after a
            // delimiter (not after a masked word, so replaying a template is stable).
            let opens = pending_space
                || out.is_empty()
                || (!out.ends_with(MASK)
                    && out
                        .as_bytes()
                        .last()
                        .is_some_and(|&b| CLASS[b as usize] & DELIM != 0));
            let kind = match c {
                b'"' => 0,
                b'\'' => 1,
                _ => 2,
            };
            let end = if opens && !unclosed[kind] {
                closing_quote(bytes, i)
            } else {
                None
            };
            unclosed[kind] |= opens && end.is_none();
            // Quotes nest: one that closes a phrase, or would close past the end of
            // the phrase it is in, opens nothing.
            let end = end.filter(|&end| phrases.admits(i, end));
            if let Some(end) = end {
                let spaced = bytes[i + 1..end]
                    .iter()
                    .any(|&b| CLASS[b as usize] & WS != 0);
                if !after_eq
                    && (out.is_empty() || pending_space && out.ends_with(':'))
                    && matches!(bytes.get(end + 1), None | Some(b':'))
                    && is_error_code(&bytes[i + 1..end])
                {
                    // `"OOM": command not allowed` (redis-rs 1.x), also after a prefix
                    // (`query failed: "OOM": …`): the server's error code says which
                    // error it is, so it stays, quotes and all.
                    if pending_space {
                        out.push(' ');
                    }
                    push_bytes(out, &bytes[i..=end]);
                    kept_quote = true;
                    pending_space = false;
                    after_number = false;
                    i = end + 1;
                    continue;
                }
                if after_eq || !spaced {
                    let low = push_mask(out, pending_space);
                    phrases.follow(out, low);
                    pending_space = false;
                    after_eq = false;
                    i = end + 1;
                    continue;
                }
                // A quoted phrase (`"GET /v2/x HTTP/1.1"`) keeps its words; if none
                // stays apart once masked, it is one value after all.
                phrases.open(Phrase {
                    end,
                    mark: out.len(),
                    space: pending_space,
                });
                // Its opening quote stays apart from its first word, so a mask there
                // never takes the quote with it (a replayed template finds the same
                // phrase again).
                if pending_space {
                    out.push(' ');
                }
                out.push(c as char);
                kept_quote = true;
                pending_space = false;
                after_number = false;
                i += 1;
                continue;
            }
            // An apostrophe or an unclosed quote: part of the word.
        } else if class & DELIM != 0 {
            after_number = false;
            if c == b'(' && pending_space && bytes.get(i + 1) == Some(&b')') {
                // ` ()`: an empty value.
                let low = push_mask(out, true);
                phrases.follow(out, low);
                pending_space = false;
                i += 2;
                continue;
            }
            if c == b')' && out.ends_with(" (<*>") && out[..out.len() - 5].ends_with(MASK) {
                // `451 bytes (0.44 KB)`: a value and its other form are one value.
                out.truncate(out.len() - 5);
                phrases.follow(out, out.len());
                pending_space = false;
                i += 1;
                continue;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c as char);
            after_eq = c == b'=';
            i += 1;
            continue;
        }
        // A word: up to the next whitespace or delimiter.
        let start = i;
        // Classes seen in the word and classes of every byte. A quote may open the
        // word (an apostrophe, an unclosed quote); any other ends it.
        let mut classes = WordClasses::NONE;
        if class & QUOTE != 0 {
            classes.add(class);
            i += 1;
        }
        i = word_end(bytes, i, &mut classes);
        let digit = classes.any(DIGIT);
        let dot = classes.any(DOT);
        let all_hex = classes.every(HEX);
        let all_name = classes.every(NAME);
        let special = classes.any(AT);
        // `https://h/p`: the scheme is part of the URL, so `http` and `https` give one
        // template.
        let url = bytes[i..].starts_with(b"://") && is_scheme(&bytes[start..i]);
        if bytes[start] == b'/' || url {
            i = path_end(bytes, i);
        }
        let word = &bytes[start..i];
        let variable = after_eq
            || url
            || digit
            || (all_hex && word.len() >= 8)
            || matches!(word[0], b'/' | b'\\') && word.len() > 1
            || (special && dot)
            // A host name: `proxy.example.com` (two dots or more, a lowercase top label).
            || (all_name
                && dot
                && word[0] != b'.'
                && word.iter().filter(|&&b| b == b'.').count() >= 2
                && host_like(word))
            || is_calendar_word(word);
        if variable {
            let low = push_mask(out, pending_space);
            phrases.follow(out, low);
            after_number = digit;
        } else if after_number
            && pending_space
            && (is_unit(word) || is_time_zone(word) && ends_with_time(&bytes[..start]))
        {
            // The unit of the number just masked, or the zone of the time just masked
            // (`10:00:00.123 UTC`).
            after_number = false;
        } else {
            if pending_space {
                out.push(' ');
            }
            match text.and_then(|t| t.get(start..i)) {
                Some(w) => out.push_str(w),
                None => push_bytes(out, word),
            }
            // Only a word's first byte can be a quote (any other ends the word).
            kept_quote |= CLASS[usize::from(word[0])] & QUOTE != 0;
            after_number = false;
        }
        pending_space = false;
        after_eq = false;
    }
    phrases.close_before(usize::MAX, out);
    kept_quote
}

mod tests {
    use super::super::tests::props::*;
    use proptest::prelude::*;

    /// Both scans give the same template and say the same about quotes.
    fn same(bytes: &[u8]) -> Result<(), TestCaseError> {
        let (mut new, mut old) = (String::new(), String::new());
        let kept_new = super::super::scan(bytes, &mut new);
        let kept_old = super::scan(bytes, &mut old);
        prop_assert_eq!(&new, &old, "bytes: {:?}", String::from_utf8_lossy(bytes));
        prop_assert_eq!(
            kept_new,
            kept_old,
            "bytes: {:?}",
            String::from_utf8_lossy(bytes)
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            same(&bytes)?;
        }

        #[test]
        fn log_like_text(line in "[a-zA-Z0-9 :.=/'\"`<>*(),@_~\t-]{0,64}") {
            same(line.as_bytes())?;
        }

        #[test]
        fn tricky_lines(line in tricky_line()) {
            same(line.as_bytes())?;
        }

        #[test]
        fn nested_lines(line in nested_line()) {
            same(line.as_bytes())?;
        }

        #[test]
        fn quoted_multibyte_lines(line in quoted_multibyte()) {
            same(line.as_bytes())?;
        }

        #[test]
        fn quote_heavy(bytes in quote_heavy_bytes()) {
            same(&bytes)?;
        }
    }
}
