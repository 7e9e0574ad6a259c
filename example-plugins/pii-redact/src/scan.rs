//! Hand-written scanners for card numbers, e-mail addresses and phone numbers.
//!
//! Both work on bytes: every character they match is ASCII, so a span's ends
//! are always on UTF-8 boundaries. Each runs in linear time (a phone candidate
//! is at most [`MAX_PHONE_LEN`] bytes long).

use std::ops::Range;

/// What to mask and with what.
pub struct Masks<'a> {
    pub card: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
}

/// `text` with every match replaced by its mask, and the number of matches.
pub fn redact(text: &str, masks: &Masks<'_>) -> (String, usize) {
    let mut count = 0;
    let mut out = text.to_string();
    // Cards first: a card number's first digit groups also look like a phone number.
    if let Some(mask) = masks.card {
        let spans = cards(&out);
        count += spans.len();
        out = replace(&out, &spans, mask);
    }
    if let Some(mask) = masks.email {
        let spans = emails(&out);
        count += spans.len();
        out = replace(&out, &spans, mask);
    }
    if let Some(mask) = masks.phone {
        let spans = phones(&out);
        count += spans.len();
        out = replace(&out, &spans, mask);
    }
    (out, count)
}

fn replace(text: &str, spans: &[Range<usize>], mask: &str) -> String {
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&text[at..span.start]);
        out.push_str(mask);
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

// Bytes >= 0x80 (non-ASCII characters) count as letters, so internationalised
// addresses (`jörg@exämple.de`) are masked whole. A span still starts and ends
// next to an ASCII byte (or the text's ends), so it is on UTF-8 boundaries.
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || matches!(b, b'.' | b'-')
}

/// Spans of e-mail addresses: `local@domain.tld`, the top-level domain being
/// at least two letters.
pub fn emails(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut floor = 0; // no span may start before the end of the previous one
    for at in memchr_all(b, b'@') {
        if at < floor {
            continue;
        }
        let mut start = at;
        while start > floor && is_local(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        if start == at {
            continue;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain(b[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
        if valid_domain(domain) {
            spans.push(start..end);
            floor = end;
        }
    }
    spans
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.starts_with('-')) {
        return false;
    }
    let tld = labels[labels.len() - 1];
    tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic() || c >= 0x80)
}

fn memchr_all(b: &[u8], needle: u8) -> impl Iterator<Item = usize> + '_ {
    b.iter().enumerate().filter(move |(_, c)| **c == needle).map(|(i, _)| i)
}

/// The longest text a phone number candidate may span.
pub const MAX_PHONE_LEN: usize = 24;

fn is_phone_char(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// Whether a phone number may start right after `prev`.
fn boundary_before(prev: Option<u8>) -> bool {
    match prev {
        None => true,
        Some(p) => !(p.is_ascii_alphanumeric() || matches!(p, b'_' | b'.' | b'/' | b'-' | b'+' | b'@')),
    }
}

/// Spans of phone numbers: 7 to 15 digits in groups separated by single
/// spaces, dashes, dots or parentheses, optionally led by `+`. Dates
/// (`2024-01-15`), IP addresses and decimals are not phone numbers; a bare
/// run of digits is one only with a `+` or 10–11 digits.
pub fn phones(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = (c.is_ascii_digit()
            || (matches!(c, b'+' | b'(') && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            && boundary_before(i.checked_sub(1).map(|p| b[p]));
        if !starts {
            i += 1;
            continue;
        }
        match phone_at(b, i) {
            Some(end) => {
                spans.push(i..end);
                i = end;
            }
            None => {
                // Skip the rest of this digit group: a number cannot start
                // in the middle of one.
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
    }
    spans
}

/// The end of the phone number starting at `start`, trying the longest
/// candidate first and shortening it a digit group at a time.
fn phone_at(b: &[u8], start: usize) -> Option<usize> {
    let limit = (start + MAX_PHONE_LEN).min(b.len());
    let mut end = start + 1; // past the `+`, `(` or first digit
    while end < limit && is_phone_char(b[end]) {
        end += 1;
    }
    // Candidate ends: just after each digit group, longest first.
    let mut ends: Vec<usize> = (start..end)
        .filter(|&k| b[k].is_ascii_digit() && b.get(k + 1).is_none_or(|n| !n.is_ascii_digit()))
        .map(|k| k + 1)
        .collect();
    ends.reverse();
    ends.into_iter().find(|&e| {
        let after_ok = b.get(e).is_none_or(|n| !(n.is_ascii_alphanumeric() || *n == b'_'))
            // `555-1234.` ends a sentence; `1.5` continues a number.
            && !(b.get(e) == Some(&b'.') && b.get(e + 1).is_some_and(|n| n.is_ascii_digit()));
        // A closing parenthesis may belong to the number: `(555) 123-4567`.
        after_ok && looks_like_phone(&b[start..e])
    })
}

fn looks_like_phone(s: &[u8]) -> bool {
    let plus = s.first() == Some(&b'+');
    let body = if plus { &s[1..] } else { s };
    let mut groups: Vec<usize> = Vec::new();
    let mut seps: Vec<u8> = Vec::new();
    let mut run = 0;
    let mut prev_sep = false;
    let mut depth = 0i32;
    for &c in body {
        if c.is_ascii_digit() {
            run += 1;
            prev_sep = false;
            continue;
        }
        if run > 0 {
            groups.push(run);
            run = 0;
        }
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'+' => return false,
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return false;
        }
        // At most a `) ` or ` (` pair between two groups.
        if prev_sep && !matches!(c, b'(' | b')' | b' ') {
            return false;
        }
        seps.push(c);
        prev_sep = true;
    }
    if run > 0 {
        groups.push(run);
    }
    if depth != 0 || prev_sep {
        return false;
    }
    let digits: usize = groups.iter().sum();
    if !(7..=15).contains(&digits) {
        return false;
    }
    if groups.len() == 1 {
        return plus || (10..=11).contains(&digits);
    }
    // Every group after the first has at least two digits.
    if groups[1..].iter().any(|&g| g < 2) {
        return false;
    }
    let dotted = seps.contains(&b'.');
    if dotted && (groups.len() != 3 || groups.iter().all(|&g| g <= 3)) {
        return false; // decimals, IP addresses, version numbers
    }
    let date_like = groups.len() == 3
        && !plus
        && ((groups[0] == 4 && groups[1] <= 2 && groups[2] <= 2)
            || (groups[0] <= 2 && groups[1] <= 2 && groups[2] == 4));
    !date_like
}

/// Spans of payment card numbers: 13 to 19 digits, alone or in groups
/// separated by single spaces or dashes, passing the Luhn check, not inside a
/// longer run of digits or letters.
pub fn cards(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || i > 0 && (b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'-' | b'+')) {
            i += 1;
            continue;
        }
        // Extend over digits and single separators; remember the end after
        // each digit group.
        let mut digits = Vec::new();
        let mut end = i;
        let mut j = i;
        while j < b.len() && digits.len() < 19 {
            if b[j].is_ascii_digit() {
                digits.push(b[j] - b'0');
                j += 1;
                end = j;
            } else if matches!(b[j], b' ' | b'-') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            } else {
                break;
            }
        }
        let after_ok = b.get(end).is_none_or(|n| !n.is_ascii_alphanumeric());
        if (13..=19).contains(&digits.len()) && after_ok && luhn(&digits) {
            spans.push(i..end);
            i = end;
        } else {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    spans
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = u32::from(d);
            if k % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether text ending like `text` may still be the first part of something
/// to mask, so a stream should wait for more before passing it on: it ends in
/// a run of digits and separators (a card or phone number being written), or
/// in a word holding an `@` (an e-mail address being written).
pub fn unfinished(text: &str) -> bool {
    let numeric = text.bytes().rev().take_while(|c| is_phone_char(*c) || *c == b'+').any(|c| c.is_ascii_digit());
    if numeric {
        return true;
    }
    let word = text.rsplit(|c: char| c.is_whitespace()).next().unwrap_or("");
    word.contains('@') && !text.ends_with(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_are_masked_before_phones() {
        assert_eq!(masked("card 4111 1111 1111 1111, thanks"), "card [CARD], thanks");
        assert_eq!(masked("card 4111-1111-1111-1111."), "card [CARD].");
        assert_eq!(masked("card 4111111111111111"), "card [CARD]");
        // Fails the Luhn check: not a card (and too long for a phone).
        assert_eq!(masked("id 4111111111111112"), "id 4111111111111112");
    }

    #[test]
    fn unfinished_tails() {
        assert!(unfinished("my card is 4111 1111"));
        assert!(unfinished("my card is 4111 1111 "));
        assert!(unfinished("write to bob@exam"));
        assert!(!unfinished("write to bob@example.com "));
        assert!(!unfinished("hello world"));
        assert!(!unfinished("it costs 5 dollars"));
    }

    fn masked(text: &str) -> String {
        redact(text, &Masks { card: Some("[CARD]"), email: Some("[EMAIL]"), phone: Some("[PHONE]") }).0
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(masked("mail jane.doe+x@example.co.uk now"), "mail [EMAIL] now");
        assert_eq!(masked("<a@b.io>, c_d@e-f.org."), "<[EMAIL]>, [EMAIL].");
        assert_eq!(masked("user@localhost stays"), "user@localhost stays");
        assert_eq!(masked("@handle and a@b.c"), "@handle and a@b.c");
        assert_eq!(masked("x@y.com@z.org"), "[EMAIL]@z.org");
    }

    #[test]
    fn phones_are_masked() {
        for phone in [
            "+1 (555) 123-4567",
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "+44 20 7946 0958",
            "0049 30 1234567",
            "555-1234",
            "+4915112345678",
            "5551234567",
        ] {
            assert_eq!(masked(&format!("call {phone} today")), "call [PHONE] today", "{phone}");
            assert_eq!(masked(&format!("call {phone}.")), "call [PHONE].", "{phone}");
        }
    }

    #[test]
    fn other_numbers_are_left_alone() {
        for text in [
            "on 2024-01-15 at 10:30",
            "15.01.2024",
            "host 192.168.100.200",
            "pi is 3.14159265",
            "order 12345 shipped",
            "1 2 3 4 5 6 7 8",
            "version 1.22.333",
            "id abc5551234567",
            "12345678901234567890",
        ] {
            assert_eq!(masked(text), text);
        }
    }

    #[test]
    fn phone_followed_by_number() {
        assert_eq!(masked("call 555-123-4567 2 times"), "call [PHONE] 2 times");
    }

    #[test]
    fn counts_and_unicode() {
        let (out, n) = redact(
            "Grüße an jörg@exämple.de oder +49 30 1234567 ✓",
            &Masks { card: Some("[CARD]"), email: Some("[EMAIL]"), phone: Some("[PHONE]") },
        );
        assert_eq!(out, "Grüße an [EMAIL] oder [PHONE] ✓");
        assert_eq!(n, 2);
    }

    #[test]
    fn long_input_is_linear() {
        let text = "1 ".repeat(20_000);
        assert_eq!(masked(&text), text);
    }
}
