"""Scanners for payment card numbers, e-mail addresses and phone numbers:
the same rules as the Rust `pii-redact` (example-plugins/pii-redact/src/scan.rs).

They work on UTF-8 bytes: every character they match is ASCII, so a span's
ends are always on character boundaries; bytes >= 0x80 count as letters in
e-mail addresses. Each runs in linear time.
"""

from typing import List, Optional, Tuple

Span = Tuple[int, int]

MAX_PHONE_LEN = 24

_DIGITS = frozenset(b"0123456789")
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOCAL = _ALNUM | frozenset(b"._%+-")
_DOMAIN = _ALNUM | frozenset(b".-")
_PHONE = _DIGITS | frozenset(b" -.()")


def redact(text: str, card: Optional[str], email: Optional[str], phone: Optional[str]) -> Tuple[str, int]:
    """`text` with every match replaced by its mask, and the number of matches.
    Cards first: a card number's first digit groups also look like a phone number."""
    count = 0
    out = text.encode()
    for mask, find in ((card, cards), (email, emails), (phone, phones)):
        if mask is None:
            continue
        spans = find(out)
        count += len(spans)
        out = _replace(out, spans, mask.encode())
    return out.decode(), count


def _replace(b: bytes, spans: List[Span], mask: bytes) -> bytes:
    if not spans:
        return b
    parts = []
    at = 0
    for start, end in spans:
        parts.append(b[at:start])
        parts.append(mask)
        at = end
    parts.append(b[at:])
    return b"".join(parts)


def _is_local(c: int) -> bool:
    return c >= 0x80 or c in _LOCAL


def _is_domain(c: int) -> bool:
    return c >= 0x80 or c in _DOMAIN


def emails(b: bytes) -> List[Span]:
    """`local@domain.tld`, the top-level domain being at least two letters."""
    spans = []
    floor = 0
    at = b.find(b"@")
    while at != -1:
        if at >= floor:
            start = at
            while start > floor and _is_local(b[start - 1]):
                start -= 1
            while start < at and b[start] == 0x2E:  # '.'
                start += 1
            if start != at:
                end = at + 1
                while end < len(b) and _is_domain(b[end]):
                    end += 1
                while end > at + 1 and b[end - 1] in b".-":
                    end -= 1
                if _valid_domain(b[at + 1:end]):
                    spans.append((start, end))
                    floor = end
        at = b.find(b"@", at + 1)
    return spans


def _valid_domain(domain: bytes) -> bool:
    labels = domain.split(b".")
    if len(labels) < 2 or any(not label or label.startswith(b"-") for label in labels):
        return False
    tld = labels[-1]
    return len(tld) >= 2 and all(c in _ALPHA or c >= 0x80 for c in tld)


def _boundary_before(prev: Optional[int]) -> bool:
    return prev is None or not (prev in _ALNUM or prev in b"_./-+@")


def phones(b: bytes) -> List[Span]:
    """7 to 15 digits in groups separated by single spaces, dashes, dots or
    parentheses, optionally led by `+`; not dates, IP addresses or decimals;
    a bare run of digits only with a `+` or 10-11 digits."""
    spans = []
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        starts = (c in _DIGITS or (c in b"+(" and i + 1 < n and b[i + 1] in _DIGITS)) and _boundary_before(
            b[i - 1] if i > 0 else None)
        if not starts:
            i += 1
            continue
        end = _phone_at(b, i)
        if end is not None:
            spans.append((i, end))
            i = end
        else:
            i += 1
            while i < n and b[i] in _DIGITS:
                i += 1
    return spans


def _phone_at(b: bytes, start: int) -> Optional[int]:
    n = len(b)
    limit = min(start + MAX_PHONE_LEN, n)
    end = start + 1
    while end < limit and b[end] in _PHONE:
        end += 1
    ends = [k + 1 for k in range(start, end) if b[k] in _DIGITS and (k + 1 >= n or b[k + 1] not in _DIGITS)]
    for e in reversed(ends):
        after_ok = (e >= n or not (b[e] in _ALNUM or b[e] == 0x5F)) and not (
            e < n and b[e] == 0x2E and e + 1 < n and b[e + 1] in _DIGITS)
        if after_ok and _looks_like_phone(b[start:e]):
            return e
    return None


def _looks_like_phone(s: bytes) -> bool:
    plus = s[:1] == b"+"
    body = s[1:] if plus else s
    groups: List[int] = []
    seps: List[int] = []
    run = 0
    prev_sep = False
    depth = 0
    for c in body:
        if c in _DIGITS:
            run += 1
            prev_sep = False
            continue
        if run > 0:
            groups.append(run)
            run = 0
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
        elif c == 0x2B:
            return False
        if not 0 <= depth <= 1:
            return False
        if prev_sep and c not in b"() ":
            return False
        seps.append(c)
        prev_sep = True
    if run > 0:
        groups.append(run)
    if depth != 0 or prev_sep:
        return False
    digits = sum(groups)
    if not 7 <= digits <= 15:
        return False
    if len(groups) == 1:
        return plus or 10 <= digits <= 11
    if any(g < 2 for g in groups[1:]):
        return False
    if 0x2E in seps and (len(groups) != 3 or all(g <= 3 for g in groups)):
        return False
    date_like = len(groups) == 3 and not plus and (
        (groups[0] == 4 and groups[1] <= 2 and groups[2] <= 2) or (groups[0] <= 2 and groups[1] <= 2 and groups[2] == 4))
    return not date_like


def cards(b: bytes) -> List[Span]:
    """13 to 19 digits, alone or in groups separated by single spaces or
    dashes, passing the Luhn check, not inside a longer run of digits or letters."""
    spans = []
    i = 0
    n = len(b)
    while i < n:
        if b[i] not in _DIGITS or (i > 0 and (b[i - 1] in _ALNUM or b[i - 1] in b"-+")):
            i += 1
            continue
        digits: List[int] = []
        end = i
        j = i
        while j < n and len(digits) < 19:
            if b[j] in _DIGITS:
                digits.append(b[j] - 0x30)
                j += 1
                end = j
            elif b[j] in b" -" and j + 1 < n and b[j + 1] in _DIGITS:
                j += 1
            else:
                break
        after_ok = end >= n or b[end] not in _ALNUM
        if 13 <= len(digits) <= 19 and after_ok and _luhn(digits):
            spans.append((i, end))
            i = end
        else:
            i += 1
            while i < n and b[i] in _DIGITS:
                i += 1
    return spans


def _luhn(digits: List[int]) -> bool:
    total = 0
    for k, d in enumerate(reversed(digits)):
        if k % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def unfinished(text: str) -> bool:
    """Whether text ending like this may still be the start of something to
    mask (a stream should wait): it ends in a run of digits and separators,
    or in a word holding an `@`."""
    for c in reversed(text.encode()):
        if c in _DIGITS:
            return True
        if not (c in _PHONE or c == 0x2B):
            break
    words = text.split()
    word = "" if not text or text[-1].isspace() else (words[-1] if words else "")
    return "@" in word
