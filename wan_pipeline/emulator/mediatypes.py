"""What an uploaded file is, read from its first bytes: the emulator's own sniffing, as a host would do it.

Hosts check signatures, not file names (Rivya sheet "Files/uploads": MIME types per kind; Runware sheet
"Files/uploads"; DashScope sheet "Files/uploads"), so the emulator sniffs too. The signatures are the formats'
own magic numbers (PNG, JPEG/JFIF, GIF, RIFF/WEBP, ISO-BMFF `ftyp`, EBML/WebM). This is a copy kept apart from
the client's ``providers/mediatypes.py`` on purpose; ``tests/test_emulator_limits.py`` checks the two agree.
"""

from __future__ import annotations

#: (magic, offset, MIME) for formats identified by a fixed prefix
PREFIXES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),
)


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of a file starting with `head` (32 bytes are plenty), or None when unrecognised."""
    for magic, offset, mime in PREFIXES:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        # ISO base media: QuickTime declares brand "qt  "; every other brand here is an MP4 flavour.
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    return None
