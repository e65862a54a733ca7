"""Generated inputs for the perspective-correction example: photos of documents, nothing downloaded.

A sample is a flat document page (white paper, a title, paragraphs, sometimes a table) rendered
with OpenCV, then pasted onto a background through a random homography, as if photographed at an
angle. Everything comes from a seeded numpy RNG, so `make_sample(7)` is the same image on every
machine and every run.

*Easy* samples put the page on a dark or saturated, textured surface: the automatic correction
should find it. *Hard* samples are photos the automatic correction must refuse, so the workflow's
manual path gets exercised: the page lies on a surface almost as light as the paper (low contrast),
sometimes under a shading gradient and with paper-coloured clutter around it; or the page lies on
a larger blank sheet (a "decoy": the detector finds the sheet, a wrong rectification that the
reviewer must reject). The true corners of
every sample stay inside the frame, so a person (or the demo's simulated person) can click them.

    >>> s = make_sample(3)
    >>> s.img[:4] == b"\\x89PNG", len(s.corners), s.hard
    (True, 4, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["IMAGE_SIZE", "PAGE_SIZE", "Sample", "make_sample", "make_samples", "similarity"]

IMAGE_SIZE = (640, 480)
"""(width, height) of the generated photos."""

PAGE_SIZE = (300, 420)
"""(width, height) of the rendered flat page, the ground truth of a correction (about A4's ratio)."""

_WORDS = (
    "invoice total amount date order customer account payment due item quantity price tax net "
    "shipping address reference number balance credit note terms delivery service period "
    "contract signed approved report summary review page section annex"
).split()


@dataclass(frozen=True)
class Sample:
    """One generated photo of a document.

    `img` is the photo (PNG), `corners` the page's true corners in `img` pixel coordinates
    (top-left, top-right, bottom-right, bottom-left of the page), `page` the flat page the photo
    was made from (PNG, `PAGE_SIZE`), `hard` whether the photo is meant to defeat automatic
    detection, and `kind` says how ("easy", "low-contrast", "shaded-clutter", "decoy").
    """

    seed: int
    img: bytes
    corners: list[tuple[float, float]]
    page: bytes
    hard: bool
    kind: str


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - encoding a uint8 BGR array does not fail
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _render_page(rng: np.random.Generator) -> np.ndarray:
    """A white page with a title, paragraphs of words and sometimes a table; layout varies by seed."""
    w, h = PAGE_SIZE
    paper = int(rng.integers(236, 252))
    page = np.full((h, w, 3), paper, np.uint8)
    ink = (int(rng.integers(10, 60)),) * 3
    font = cv2.FONT_HERSHEY_SIMPLEX
    margin = int(rng.integers(16, 30))
    y = margin + int(rng.integers(14, 30))
    title = " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 3)))).upper()
    title_x = margin if rng.random() < 0.5 else max(margin, (w - 16 * len(title)) // 2)
    cv2.putText(page, title, (title_x, y), font, 0.75, ink, 2, cv2.LINE_AA)
    y += int(rng.integers(20, 36))
    # The table's place among the paragraphs is random too, so two pages rarely line up.
    table_at = int(rng.integers(0, 3)) if rng.random() < 0.6 else -1
    block = 0
    while y < h - margin - 10:
        if block == table_at and y < h - margin - 90:
            rows, cols = int(rng.integers(3, 6)), int(rng.integers(2, 4))
            row_h = 16
            x0, x1 = margin, w - margin
            for r in range(rows + 1):
                cv2.line(page, (x0, y + r * row_h), (x1, y + r * row_h), ink, 1)
            for c in range(cols + 1):
                x = x0 + (x1 - x0) * c // cols
                cv2.line(page, (x, y), (x, y + rows * row_h), ink, 1)
            for r in range(rows):
                for c in range(cols):
                    cell = str(int(rng.integers(1, 9999)))
                    x = x0 + (x1 - x0) * c // cols + 4
                    cv2.putText(page, cell, (x, y + r * row_h + 12), font, 0.35, ink, 1, cv2.LINE_AA)
            y += rows * row_h + 22
        else:
            for _ in range(int(rng.integers(2, 6))):
                if y >= h - margin - 4:
                    break
                x = margin + (int(rng.integers(10, 30)) if rng.random() < 0.2 else 0)
                limit = w - margin - int(rng.integers(0, 90))
                while True:
                    word = str(rng.choice(_WORDS))
                    size = cv2.getTextSize(word, font, 0.38, 1)[0][0]
                    if x + size > limit:
                        break
                    cv2.putText(page, word, (x, y), font, 0.38, ink, 1, cv2.LINE_AA)
                    x += size + 6
                y += 14
            y += int(rng.integers(8, 20))
        block += 1
    return page


def _background(rng: np.random.Generator, hard: bool, kind: str) -> np.ndarray:
    """The surface the page lies on (float BGR): textured and dark, or light for hard samples."""
    w, h = IMAGE_SIZE
    if hard:
        # A surface nearly as light as the paper: the page's outline is lost in the noise.
        base = rng.integers(222, 240, size=3).astype(np.float32)
    else:
        # A dark or saturated desk / wood / cloth colour.
        base = rng.integers(25, 130, size=3).astype(np.float32)
    coarse = rng.normal(0.0, 1.0, size=(h // 8, w // 8)).astype(np.float32)
    grain = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 1.0, size=(h, w)).astype(np.float32)
    texture = (6.0 if hard else 14.0) * grain + (4.0 if hard else 6.0) * fine
    bg = base[None, None, :] + texture[:, :, None]
    if not hard:
        # Streaks, like wood grain or a fabric weave.
        for _ in range(int(rng.integers(4, 12))):
            y = int(rng.integers(0, h))
            shade = float(rng.uniform(-25, 25))
            cv2.line(bg, (0, y), (w, y + int(rng.integers(-40, 40))), (shade + base).tolist(), 2)
    elif kind == "shaded-clutter":
        # Paper-coloured scraps around the page.
        for _ in range(int(rng.integers(3, 7))):
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            rw, rh = int(rng.integers(30, 120)), int(rng.integers(20, 90))
            shade = float(rng.uniform(228, 250))
            cv2.rectangle(bg, (cx, cy), (cx + rw, cy + rh), (shade, shade, shade), -1)
    return bg


def _inside(quad: np.ndarray, margin: float = 12) -> bool:
    w, h = IMAGE_SIZE
    return bool(quad[:, 0].min() >= margin and quad[:, 0].max() <= w - margin
                and quad[:, 1].min() >= margin and quad[:, 1].max() <= h - margin)


def _sheet_around(rng: np.random.Generator, quad: np.ndarray) -> np.ndarray | None:
    """A larger blank sheet under the page (the "decoy" kind), or None if it would leave the frame."""
    centre = quad.mean(axis=0)
    for _ in range(50):
        sheet = centre + (quad - centre) * rng.uniform(1.2, 1.35) + rng.uniform(-8, 8, size=(4, 2))
        if _inside(sheet):
            return sheet.astype(np.float32)
    return None


def _paste(photo: np.ndarray, layer: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """`layer` (an upright image) seen through the homography that sends its frame onto `quad`."""
    lh, lw = layer.shape[:2]
    src = np.array([[0, 0], [lw - 1, 0], [lw - 1, lh - 1], [0, lh - 1]], np.float32)
    hom = cv2.getPerspectiveTransform(src, quad)
    size = IMAGE_SIZE
    warped = cv2.warpPerspective(layer.astype(np.float32), hom, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((lh, lw), np.float32), hom, size, flags=cv2.INTER_LINEAR)
    return photo * (1.0 - mask[:, :, None]) + warped * mask[:, :, None]


def _random_quad(rng: np.random.Generator, size: tuple[float, float] = (0.75, 1.0)) -> np.ndarray:
    """Where the page lands in the photo: scaled, rotated and tilted, fully inside the frame."""
    w, h = IMAGE_SIZE
    pw, ph = PAGE_SIZE
    for _ in range(100):
        scale = rng.uniform(*size) * (h - 40) / ph
        angle = np.deg2rad(rng.uniform(-25, 25))
        cx = w / 2 + rng.uniform(-60, 60)
        cy = h / 2 + rng.uniform(-25, 25)
        hw, hh = pw * scale / 2, ph * scale / 2
        rect = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        quad = rect @ rot.T + [cx, cy]
        # Tilt: move each corner independently, up to 12% of the page width.
        quad = quad + rng.uniform(-0.12, 0.12, size=(4, 2)) * pw * scale
        if _inside(quad):
            return quad.astype(np.float32)
    raise RuntimeError("could not place the page inside the frame")  # pragma: no cover


def make_sample(seed: int, *, hard: bool = False) -> Sample:
    """Generate the photo of a document for `seed`; `hard` photos defeat automatic detection.

    >>> make_sample(1).corners == make_sample(1).corners
    True
    """
    rng = np.random.default_rng([seed, int(hard)])
    kind = "easy"
    if hard:
        kind = str(rng.choice(["low-contrast", "shaded-clutter", "decoy"], p=[0.4, 0.35, 0.25]))
    page = _render_page(rng)
    # The decoy's light sheet sits on an ordinary dark desk: only the page on it is hard to see.
    photo = _background(rng, hard and kind != "decoy", kind)
    sheet = None
    while sheet is None:
        quad = _random_quad(rng, (0.55, 0.7) if kind == "decoy" else (0.75, 1.0))
        sheet = _sheet_around(rng, quad) if kind == "decoy" else quad
    if kind == "decoy":
        blank = np.full((PAGE_SIZE[1], PAGE_SIZE[0], 3), float(page[0, 0, 0]) + rng.uniform(-4, 4))
        photo = _paste(photo, blank, sheet)
    photo = _paste(photo, page, quad)
    w, h = IMAGE_SIZE
    if hard or rng.random() < 0.5:
        # Uneven lighting: a linear gradient across the whole photo (strong on hard samples).
        gx, gy = rng.uniform(-1, 1, size=2)
        xs, ys = np.meshgrid(np.linspace(-1, 1, w), np.linspace(-1, 1, h))
        strength = 30.0 if hard and kind == "shaded-clutter" else 12.0
        photo = photo + (strength * (gx * xs + gy * ys))[:, :, None]
    # Sensor noise and a little blur, as a phone camera would give.
    photo = photo + rng.normal(0.0, 3.0, size=photo.shape)
    photo = cv2.GaussianBlur(np.clip(photo, 0, 255).astype(np.uint8), (3, 3), 0)
    corners = [(float(x), float(y)) for x, y in quad]
    return Sample(seed=seed, img=_png(photo), corners=corners, page=_png(page), hard=hard, kind=kind)


def make_samples(n: int, *, seed: int = 0, hard_ratio: float = 0.25) -> list[Sample]:
    """`n` samples from `seed` on; about `hard_ratio` of them hard, spread evenly, deterministically.

    >>> [s.hard for s in make_samples(4, hard_ratio=0.5)]
    [False, True, False, True]
    """
    if n < 0:
        raise ValueError(f"make_samples: n must be >= 0, got {n}")
    if not 0.0 <= hard_ratio <= 1.0:
        raise ValueError(f"make_samples: hard_ratio must be within [0, 1], got {hard_ratio}")
    out = []
    for i in range(n):
        # Sample i is hard when the running count of hard samples crosses an integer at i.
        hard = int((i + 1) * hard_ratio) > int(i * hard_ratio)
        out.append(make_sample(seed + i, hard=hard))
    return out


def _gray(png: bytes, size: tuple[int, int]) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE) if png else None
    if arr is None:
        raise ValueError("similarity: the bytes are not a PNG/JPEG image that OpenCV can decode")
    small = cv2.resize(arr, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    return cv2.GaussianBlur(small, (3, 3), 0)


def similarity(a_png: bytes, b_png: bytes) -> float:
    """How alike two images are, in [0, 1]: normalized cross-correlation at a common size.

    Both images are resized to 150x210 (the page's ratio), blurred a little so that a one-pixel
    offset does not matter, and correlated; negative correlation counts as 0. A correct
    rectification scores well above 0.5 against its page, a different page or a wrong crop well
    below.
    """
    size = (150, 210)
    a, b = _gray(a_png, size), _gray(b_png, size)
    a -= a.mean()
    b -= b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denom == 0.0:
        # Flat images: alike only if both are flat.
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(min(1.0, max(0.0, (a * b).sum() / denom)))
