"""The bundled fonts: registered once per process, and text split into runs per font.

reportlab has no per-glyph fallback: a character missing from the font draws as an empty
box. So text is split into runs, and the characters DejaVu Sans lacks (CJK) are wrapped in
a span set in Droid Sans Fallback. Every piece of text from the records goes through
`text_html`, which also escapes it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT_DIR = Path(__file__).resolve().parent / "fonts"
SANS = "ibp-sans"
SANS_BOLD = "ibp-sans-bold"
FALLBACK = "ibp-cjk"
FONT_FILES = {
    SANS: FONT_DIR / "DejaVuSans.ttf",
    SANS_BOLD: FONT_DIR / "DejaVuSans-Bold.ttf",
    FALLBACK: FONT_DIR / "DroidSansFallbackFull.ttf",
}

_lock = threading.Lock()
_registered = False
_sans_chars: frozenset[int] = frozenset()
_fallback_chars: frozenset[int] = frozenset()


def fonts_register() -> None:
    """Register the fonts with reportlab and xhtml2pdf, once (parsing the CJK font takes ~0.3 s)."""
    global _registered, _sans_chars, _fallback_chars
    if _registered:
        return
    with _lock:
        if _registered:
            return
        from reportlab.lib.fonts import addMapping
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont
        from xhtml2pdf import default

        fonts = {name: TTFont(name, str(path)) for name, path in FONT_FILES.items()}
        for font in fonts.values():
            pdfmetrics.registerFont(font)
        for italic in (0, 1):
            addMapping(SANS, 0, italic, SANS)
            addMapping(SANS, 1, italic, SANS_BOLD)
            for bold in (0, 1):  # no bold CJK face: bold CJK text uses the regular one
                addMapping(FALLBACK, bold, italic, FALLBACK)
        # xhtml2pdf resolves CSS font-family names through this table (copied per document).
        default.DEFAULT_FONT[SANS] = SANS
        default.DEFAULT_FONT[FALLBACK] = FALLBACK
        _sans_chars = frozenset(fonts[SANS].face.charToGlyph) & frozenset(fonts[SANS_BOLD].face.charToGlyph)
        _fallback_chars = frozenset(fonts[FALLBACK].face.charToGlyph)
        _registered = True


def font_runs(text: str) -> list[tuple[str, bool]]:
    """Split text into (run, needs_fallback) pieces. A character neither font has stays in the
    main run (it shows as a box but is still extractable text)."""
    fonts_register()
    runs: list[tuple[str, bool]] = []
    for ch in text:
        code = ord(ch)
        fallback = code not in _sans_chars and code in _fallback_chars and not ch.isspace()
        if runs and runs[-1][1] == fallback:
            runs[-1] = (runs[-1][0] + ch, fallback)
        else:
            runs.append((ch, fallback))
    return runs


def text_html(text: object) -> SafeString:
    """Escaped HTML for any text from the records, CJK runs set in the fallback font.

    No break characters are added: long words wrap through the renderer's line breaking
    (billing/pdf/linebreak.py), so the text extracted from a PDF is the record's text."""
    value = "" if text is None else str(text)
    parts = []
    for run, fallback in font_runs(value):
        escaped = escape(run)
        parts.append(f'<span style="font-family: {FALLBACK}">{escaped}</span>' if fallback else escaped)
    return mark_safe("".join(parts))  # noqa: S308 - every run is escaped above
