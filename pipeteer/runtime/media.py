"""What kind of image a `bytes` value is, from its first bytes (the console shows it, `pull` names its file).

>>> image_type(b"\\x89PNG\\r\\n\\x1a\\n..."), extension(b"\\xff\\xd8\\xff\\xe0..."), extension(b"plain")
('image/png', '.jpg', '.bin')
"""

from __future__ import annotations

IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


def image_type(data: bytes) -> str | None:
    """The image's media type, or None when the bytes are not an image this knows."""
    for magic, media in IMAGE_MAGIC.items():
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def extension(data: bytes) -> str:
    """A file name extension for the bytes: the image's, else `.bin`."""
    media = image_type(data)
    return EXTENSIONS[media] if media is not None else ".bin"
