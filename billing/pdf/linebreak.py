"""Line breaking for the PDFs: long cells wrap, and never inside a character.

xhtml2pdf 0.2.17 breaks a paragraph only at whitespace, so a 75-character endpoint or a name
of 60 CJK characters is one "word" that runs over the next column or off the page. It
honours no zero-width break character: U+200B, U+00AD and `<wbr>` are all ignored (U+200B
even lands in the extracted text). Its only other mode, `-pdf-word-wrap: CJK`, cuts at any
character, mid-word for Latin text too, and drops `<br>`.

So the templates set `-pdf-word-wrap: CJK` and, while a PDF is rendered, that mode's line
breaker (`xhtml2pdf.reportlab_paragraph.cjkFragSplit`) is replaced by `break_lines` below:
break at spaces first, as xhtml2pdf does; a word too long for its line breaks after
`/ . - _ , : ; ? & = @`, or before or after a wide (CJK) character; a run with none of those
is cut between two characters. The text itself is untouched, so what is extracted from the
PDF is exactly the record's text, with line ends where it wrapped.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

# A line may end after one of these when the word does not fit (URLs, hosts, numbers).
BREAK_AFTER = frozenset("/.-_,:;?&=@")
# Spaces that must not break a line.
NO_BREAK_SPACES = frozenset("\xa0\u2007\u202f\ufeff")
# Overflow tolerance, as reportlab uses (rl_settings._FUZZ).
FUZZ = 1e-6


def is_space(text: str) -> bool:
    return len(text) == 1 and text.isspace() and text not in NO_BREAK_SPACES


def is_wide(text: str) -> bool:
    """CJK ideographs, kana, hangul and full-width forms: a line may break around each one."""
    return len(text) == 1 and unicodedata.east_asian_width(text) in ("W", "F")


def break_lines(
    texts: Sequence[str],
    widths: Sequence[float],
    max_widths: Sequence[float],
    *,
    line_breaks: Sequence[bool] | None = None,
    cannot_start: frozenset[str] = frozenset(),
) -> list[tuple[int, int, bool]]:
    """Greedy line breaking of a paragraph given as units (a character each, or "" for an
    image or a `<br>`, flagged in `line_breaks`) and their widths in points.

    Returns (start, end, ends_with_br) per line, as slices of the units. Spaces at a break
    are dropped (no line starts or ends with one). A unit wider than the line stays on a line
    of its own: there is nothing narrower to cut.
    """
    n = len(texts)
    hard = line_breaks if line_breaks is not None else [False] * n
    lines: list[tuple[int, int, bool]] = []
    spaces = [is_space(t) for t in texts]

    def width_at(line: int) -> float:
        return max_widths[min(line, len(max_widths) - 1)]

    def skip_spaces(i: int) -> int:
        while i < n and spaces[i] and not hard[i]:
            i += 1
        return i

    def trim(start: int, end: int) -> int:
        while end > start and spaces[end - 1]:
            end -= 1
        return end

    start = i = skip_spaces(0)
    if not any(hard) and sum(widths) <= width_at(0) + FUZZ:  # most cells: one line
        return [(start, trim(start, n), False)]
    used = 0.0
    has_content = False  # a non-space unit since `start`
    opportunity: int | None = None  # the line may end just before units[opportunity]
    while i < n:
        text = texts[i]
        if hard[i]:
            lines.append((start, trim(start, i), True))
            start = i = skip_spaces(i + 1)
            used, has_content, opportunity = 0.0, False, None
            continue
        if spaces[i]:
            opportunity = i
            used += widths[i]
            i += 1
            continue
        wide = is_wide(text)
        if wide and has_content and text not in cannot_start:
            opportunity = i  # before a CJK character
        if has_content and used + widths[i] > width_at(len(lines)) + FUZZ:
            end = opportunity if opportunity is not None and opportunity > start else i
            lines.append((start, trim(start, end), False))
            start = skip_spaces(end)
            i = max(i, start)
            used = sum(widths[start:i])
            has_content = trim(start, i) > start
            opportunity = None
            continue
        used += widths[i]
        has_content = True
        i += 1
        if i < n and texts[i] not in cannot_start and (wide or text in BREAK_AFTER):
            opportunity = i
    if start < n or not lines:
        lines.append((start, trim(start, n), False))
    return lines


# --- xhtml2pdf ---------------------------------------------------------------------------------


@functools.cache
def _cannot_start() -> frozenset[str]:
    from reportlab.lib.textsplit import ALL_CANNOT_START

    return frozenset(ALL_CANNOT_START)


@functools.cache
def _char_width(ch: str, font_name: str, font_size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return stringWidth(ch, font_name, font_size)


def _frag_split(frags: Sequence[Any], maxWidths: Sequence[float], calcBounds: bool, encoding: str = "utf8") -> Any:
    """`cjkFragSplit` of xhtml2pdf (its lines: kind 1, each a list of frags) with `break_lines`
    as the rule. Each line's words are runs of one frag, as xhtml2pdf's own breaker makes."""
    from reportlab.pdfbase.pdfmetrics import getAscentDescent
    from xhtml2pdf import reportlab_paragraph as rp

    texts: list[str] = []
    widths: list[float] = []
    hard: list[bool] = []
    owner: list[int] = []  # the frag of each unit
    for index, frag in enumerate(frags):
        text = frag.text
        if not isinstance(text, str):
            text = text.decode(encoding)
        if text:
            texts.extend(text)
            widths.extend(_char_width(ch, frag.fontName, frag.fontSize) for ch in text)
            hard.extend([False] * len(text))
            owner.extend([index] * len(text))
        else:  # an image, a <br>, or an empty run: one unit of its own
            texts.append("")
            widths.append(getattr(getattr(frag, "cbDefn", None), "width", 0) or 0)
            hard.append(hasattr(frag, "lineBreak"))
            owner.append(index)

    lines = []
    breaks = break_lines(texts, widths, maxWidths, line_breaks=hard, cannot_start=_cannot_start())
    for number, (start, end, ends_with_br) in enumerate(breaks):
        words = []
        max_size = max_ascent = min_descent = 0.0
        run_start = start
        for position in range(start, end + 1):
            if position < end and owner[position] == owner[run_start]:
                continue
            if position > run_start:
                frag = frags[owner[run_start]]
                size = frag.fontSize
                cb = getattr(frag, "cbDefn", None)
                if calcBounds and getattr(cb, "width", 0):
                    descent, ascent = rp.imgVRange(cb.height, cb.valign, size)
                else:
                    ascent, descent = getAscentDescent(frag.fontName, size)
                max_size, max_ascent, min_descent = (
                    max(max_size, size),
                    max(max_ascent, ascent),
                    min(min_descent, descent),
                )
                word = frag.clone()
                word.text = "".join(texts[run_start:position])
                words.append(word)
            run_start = position
        max_width = maxWidths[min(number, len(maxWidths) - 1)]
        line = rp.FragLine(
            kind=1,
            extraSpace=max_width - sum(widths[start:end]),
            wordCount=1,
            words=words,
            fontSize=max_size,
            ascent=max_ascent,
            descent=min_descent,
        )
        if ends_with_br:
            line.lineBreak = True
        lines.append(line)
    return rp.ParaLines(kind=1, lines=lines)


def text_line_count(text: str, *, width: float, font_size: float, bold: bool = False) -> int:
    """How many lines `text` takes in a cell `width` points wide, as the PDFs break it (the
    bundled fonts, CJK in the fallback font). For sizing what xhtml2pdf cannot grow (frames)."""
    from billing.pdf.fonts import FALLBACK, SANS, SANS_BOLD, font_runs

    texts: list[str] = []
    widths: list[float] = []
    for run, fallback in font_runs(" ".join(text.split())):  # HTML collapses whitespace
        font = FALLBACK if fallback else (SANS_BOLD if bold else SANS)
        texts.extend(run)
        widths.extend(_char_width(ch, font, font_size) for ch in run)
    return len(break_lines(texts, widths, [width], cannot_start=_cannot_start()))


_patch_lock = threading.RLock()


@contextlib.contextmanager
def xhtml2pdf_line_breaking() -> Iterator[None]:
    """Render with `break_lines` as xhtml2pdf's `-pdf-word-wrap: CJK` breaker, then restore it.

    xhtml2pdf looks the function up in its module at each call, so swapping the module
    attribute is enough; the lock keeps two renders from restoring each other's swap.
    """
    from xhtml2pdf import reportlab_paragraph as rp

    with _patch_lock:
        original = rp.cjkFragSplit
        rp.cjkFragSplit = _frag_split
        try:
            yield
        finally:
            rp.cjkFragSplit = original
