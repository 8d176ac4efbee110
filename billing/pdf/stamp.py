"""Stamping a kept PDF as superseded, without rendering it again (DECISIONS 16).

The issued bytes stay as they are: the stamp is a PDF incremental update appended after
them (pypdf's incremental writer). It adds a red band across the top margin of every page,
drawn over the page, and a marker in the document information. So the file's first bytes
are still exactly the PDF the member received (their sha256 is `Statement.pdf_sha256`),
any reader shows the band, and its text is the original text plus the band's.
"""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, IndirectObject, NameObject
from reportlab.pdfbase.pdfmetrics import stringWidth

# The document information key that says a file is stamped (and with what).
MARKER = "/IBPSuperseded"
BAND_POINTS = 17.0  # 0.6 cm: the page margin above the header
FONT = "Helvetica-Bold"  # a standard font: nothing to embed
FONT_POINTS = 8.5
_RED = "0.776 0.157 0.157"  # #c62828, the banner colour of the templates


def pdf_is_stamped(data: bytes) -> bool:
    metadata = PdfReader(io.BytesIO(data)).metadata
    return metadata is not None and MARKER in metadata


def _pdf_string(text: str) -> bytes:
    encoded = text.encode("cp1252", errors="replace")  # WinAnsiEncoding, the font's
    return b"(" + encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def pdf_stamp(data: bytes, *, text: str) -> bytes:
    """`data` followed by an update that draws `text` in a band at the top of every page."""
    writer = PdfWriter(PdfReader(io.BytesIO(data)), incremental=True)

    def add(obj: DictionaryObject | DecodedStreamObject) -> IndirectObject:
        return writer._add_object(obj)  # pypdf has no public call for a new indirect object

    font = add(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/" + FONT),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
    )
    save = DecodedStreamObject()
    save.set_data(b"q\n")
    save_ref = add(save)
    width_of_text = stringWidth(text, FONT, FONT_POINTS)
    for page in writer.pages:
        box = page.mediabox
        left, top, width = float(box.left), float(box.top), float(box.width)
        # The page's own content runs between q and Q, so whatever graphics state it leaves
        # behind, the band is drawn in the page's plain coordinates.
        band = (
            (
                f"Q\nq\n{_RED} rg\n{left:.2f} {top - BAND_POINTS:.2f} {width:.2f} {BAND_POINTS:.2f} re f\n"
                f"1 1 1 rg\nBT /IBPStamp {FONT_POINTS} Tf {left + (width - width_of_text) / 2:.2f} "
                f"{top - BAND_POINTS + 5.5:.2f} Td "
            ).encode()
            + _pdf_string(text)
            + b" Tj ET\nQ\n"
        )
        stream = DecodedStreamObject()
        stream.set_data(band)
        resources = page.setdefault(NameObject("/Resources"), DictionaryObject()).get_object()
        fonts = resources.setdefault(NameObject("/Font"), DictionaryObject()).get_object()
        fonts[NameObject("/IBPStamp")] = font
        contents = page.get("/Contents")
        if contents is None:
            parts = []
        elif isinstance(contents.get_object(), ArrayObject):
            parts = list(contents.get_object())
        else:
            parts = [contents]
        page[NameObject("/Contents")] = ArrayObject([save_ref, *parts, add(stream)])
    writer.add_metadata({MARKER: text})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
