"""Perspective correction of document photos (OpenCV): the automatic detector and the manual warp.

`correct_perspective` looks for the page's outline (a large convex quadrilateral with a clear
brightness step across its edges), and warps it to an upright rectangle; it returns None when it
is not convinced, and the workflow then asks a person. `warp_with_corners` is what the person's
four clicks become.

    >>> from topologies.perspective_correction.samples import make_sample
    >>> s = make_sample(0)
    >>> out = correct_perspective(s.img)
    >>> out is not None and image_size(out)[1] > image_size(out)[0]   # an upright portrait page
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "InvalidCorners",
    "correct_perspective",
    "detect_corners",
    "image_size",
    "order_corners",
    "preview_with_corners",
    "warp_with_corners",
]

Corner = tuple[float, float]

# A page must cover at least this fraction of the photo to be taken for the document.
_MIN_AREA_FRACTION = 0.12
# Corners closer than this to the frame (pixels) mean the page is probably cut by the frame.
_BORDER_MARGIN = 3
# Minimum median brightness step across the page outline (grey levels, 0-255) ...
_MIN_CONTRAST = 35.0
# ... and minimum fraction of the outline that lies on detected edges.
_MIN_EDGE_SUPPORT = 0.6
# Interior angles of the quad must stay within these bounds (degrees): no slivers.
_MIN_ANGLE, _MAX_ANGLE = 45.0, 135.0


class InvalidCorners(ValueError):
    """The corners given for a manual correction cannot describe a page (a `ValueError`)."""


def _decode(img: bytes) -> np.ndarray:
    # OpenCV asserts (cv2.error) on an empty buffer instead of returning None.
    arr = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR) if img else None
    if arr is None:
        raise ValueError(
            f"cannot decode the image ({len(img)} bytes): expected PNG or JPEG bytes"
        )
    return arr


def _encode_png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - encoding a uint8 BGR array does not fail
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def image_size(img: bytes) -> tuple[int, int]:
    """(width, height) of a PNG/JPEG image; `ValueError` if the bytes are not an image."""
    h, w = _decode(img).shape[:2]
    return w, h


def order_corners(corners: Sequence[Sequence[float]]) -> list[Corner]:
    """Order 4 points as top-left, top-right, bottom-right, bottom-left (image coordinates, y down).

    The points are sorted by angle around their centroid, which turns any order (even a
    self-intersecting one) into a simple polygon, then rotated so that the top-left point
    (smallest x + y) comes first and the rest follow clockwise on screen.

    >>> order_corners([(10, 90), (90, 10), (10, 10), (90, 90)])
    [(10.0, 10.0), (90.0, 10.0), (90.0, 90.0), (10.0, 90.0)]
    """
    pts = _as_points(corners)
    centre = pts.mean(axis=0)
    # atan2 with y pointing down: increasing angle = clockwise on screen.
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    ring = pts[np.argsort(angles, kind="stable")]
    start = int(np.argmin(ring[:, 0] + ring[:, 1]))
    ring = np.roll(ring, -start, axis=0)
    return [(float(x), float(y)) for x, y in ring]


def _as_points(corners: Sequence[Sequence[float]]) -> np.ndarray:
    if len(corners) != 4:
        raise InvalidCorners(f"expected 4 corners, got {len(corners)}")
    try:
        pts = np.array([[float(c[0]), float(c[1])] for c in corners], np.float64)
        if any(len(c) != 2 for c in corners):
            raise TypeError
    except (TypeError, ValueError, IndexError):
        raise InvalidCorners(
            f"each corner must be a pair of numbers [x, y], got {list(corners)!r}"
        ) from None
    if not np.isfinite(pts).all():
        raise InvalidCorners(f"corners must be finite numbers, got {pts.tolist()!r}")
    return pts


def _interior_angles(quad: np.ndarray) -> list[float]:
    out = []
    for i in range(4):
        a, b, c = quad[i - 1], quad[i], quad[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12))
        out.append(math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return out


def _is_convex(quad: np.ndarray) -> bool:
    signs = []
    for i in range(4):
        a, b, c = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        signs.append(cross)
    return all(s > 0 for s in signs) or all(s < 0 for s in signs)


def _target_size(quad: np.ndarray) -> tuple[int, int]:
    tl, tr, br, bl = quad
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    return max(1, round(float(width))), max(1, round(float(height)))


def _warp(arr: np.ndarray, quad: np.ndarray) -> np.ndarray:
    return _warp_to(arr, quad, _target_size(quad))


def _warp_to(arr: np.ndarray, quad: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    hom = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    return cv2.warpPerspective(arr, hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _checked_quad(corners: Sequence[Sequence[float]], w: int, h: int) -> np.ndarray:
    """The corners as an ordered quadrilateral, checked to describe a page of a `w`x`h` image."""
    pts = _as_points(corners)
    outside = [
        (float(x), float(y)) for x, y in pts if not (0 <= x <= w and 0 <= y <= h)
    ]
    if outside:
        raise InvalidCorners(
            f"corners outside the {w}x{h} image: {outside} (x must be within [0, {w}], y within [0, {h}])"
        )
    quad = np.array(order_corners(pts.tolist()), np.float64)
    if len({(round(x, 6), round(y, 6)) for x, y in quad.tolist()}) < 4:
        raise InvalidCorners(f"corners must be 4 distinct points, got {pts.tolist()}")
    if not _is_convex(quad):
        raise InvalidCorners(
            f"corners {pts.tolist()} do not form a convex quadrilateral "
            "(three are aligned, or one lies inside the triangle of the others)"
        )
    sides = [float(np.linalg.norm(quad[(i + 1) % 4] - quad[i])) for i in range(4)]
    area = abs(float(cv2.contourArea(quad.astype(np.float32))))
    if min(sides) < 4 or area < 64:
        raise InvalidCorners(
            f"the quadrilateral {quad.tolist()} is too small (sides {[round(s, 1) for s in sides]} px, "
            f"area {area:.0f} px²): click the page's 4 corners"
        )
    return quad


def warp_with_corners(img: bytes, corners: Sequence[Sequence[float]]) -> bytes:
    """Rectify the page whose 4 corners (any order, input pixel coordinates) a person clicked.

    Returns a PNG of the page as an upright rectangle, sized from the quadrilateral's sides.
    Raises `InvalidCorners` (a `ValueError`) when the corners are not 4 pairs of numbers, fall
    outside the image, or do not form a convex quadrilateral of some size; and `ValueError`
    when `img` is not an image.

    >>> from topologies.perspective_correction.samples import make_sample
    >>> s = make_sample(0)
    >>> image_size(warp_with_corners(s.img, [(0, 0), (100, 0), (100, 200), (0, 200)]))
    (100, 200)
    """
    arr = _decode(img)
    quad = _checked_quad(corners, arr.shape[1], arr.shape[0])
    return _encode_png(_warp(arr, quad))


def preview_with_corners(img: bytes, corners: Sequence[Sequence[float]], max_side: int = 800) -> bytes:
    """What `warp_with_corners` gives, at most `max_side` pixels on its longer side: a quick PNG to
    show a person before they submit. Refuses exactly the corners `warp_with_corners` refuses.

    The photo is decoded once for several previews of it (a person moving a corner asks again).

    >>> from topologies.perspective_correction.samples import make_sample
    >>> s = make_sample(0)
    >>> image_size(preview_with_corners(s.img, [(0, 0), (1000, 0), (1000, 2000), (0, 2000)], 400))
    Traceback (most recent call last):
      ...
    topologies.perspective_correction.imaging.InvalidCorners: corners outside the 640x480 image: ...
    >>> image_size(preview_with_corners(s.img, [(0, 0), (400, 0), (400, 200), (0, 200)], 100))
    (100, 50)
    """
    full = _decode_cached(img)
    quad = _checked_quad(corners, full.shape[1], full.shape[0])
    w, h = _target_size(quad)
    f = min(1.0, max_side / max(w, h))
    if f == 1.0:
        return _encode_png(_warp(full, quad))
    # Shrink the photo first (averaging, so that text does not alias), then warp the shrunk one.
    small = cv2.resize(full, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    scaled = quad * [small.shape[1] / full.shape[1], small.shape[0] / full.shape[0]]
    return _encode_png(_warp_to(small, scaled, (max(1, round(w * f)), max(1, round(h * f)))))


@functools.lru_cache(maxsize=2)
def _decode_cached(img: bytes) -> np.ndarray:
    arr = _decode(img)
    arr.flags.writeable = False  # shared between calls
    return arr


def _edge_map(gray: np.ndarray) -> np.ndarray:
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    median = float(np.median(blurred))
    # Thresholds from the image's own median (the usual "auto Canny"), never below a floor so
    # that noise on a flat, low-contrast photo does not become edges.
    lo = max(20.0, 0.66 * median)
    hi = max(60.0, 1.33 * median)
    edges = cv2.Canny(blurred, lo, hi)
    return cv2.dilate(edges, np.ones((3, 3), np.uint8))


def _contrast_and_support(gray: np.ndarray, edges: np.ndarray, quad: np.ndarray) -> tuple[float, float]:
    """Brightness step across the outline (median of inside-minus-outside samples), edge support."""
    h, w = gray.shape
    centre = quad.mean(axis=0)
    steps, on_edge, total = [], 0, 0
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        length = float(np.linalg.norm(b - a))
        n = max(8, int(length // 4))
        direction = (b - a) / max(length, 1e-9)
        normal = np.array([-direction[1], direction[0]])
        if np.dot(centre - (a + b) / 2, normal) < 0:
            normal = -normal  # point inwards
        for t in np.linspace(0.1, 0.9, n):
            p = a + t * (b - a)
            # An outline found from the bright region can sit a pixel or two off the edge line:
            # look for an edge within 2 px across the side.
            total += 1
            for k in (0, -1, 1, -2, 2):
                q = p + k * normal
                xi, yi = round(float(q[0])), round(float(q[1]))
                if 0 <= xi < w and 0 <= yi < h and edges[yi, xi] > 0:
                    on_edge += 1
                    break
            pin, pout = p + 6 * normal, p - 6 * normal
            if all(0 <= q[0] < w and 0 <= q[1] < h for q in (pin, pout)):
                inside = float(gray[int(pin[1]), int(pin[0])])
                outside = float(gray[int(pout[1]), int(pout[0])])
                steps.append(inside - outside)
    if not steps or total == 0:
        return 0.0, 0.0
    # Absolute value: a light page on a dark desk and a dark page on a light one both count.
    return abs(float(np.median(steps))), on_edge / total


def _candidate_contours(gray: np.ndarray, edges: np.ndarray, min_area: float) -> list[np.ndarray]:
    """Large contours that may be the page: bright regions first, then closed edge outlines.

    The brightness split (Otsu, then an opening that cuts thin bridges such as desk streaks
    touching the page) gives a clean outline when the page is lighter than its surroundings; the
    edge map covers the other cases. Each list is sorted by area, largest first.
    """
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    _, bright = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    out: list[np.ndarray] = []
    for binary, mode in ((bright, cv2.RETR_EXTERNAL), (edges, cv2.RETR_LIST)):
        contours, _ = cv2.findContours(binary, mode, cv2.CHAIN_APPROX_SIMPLE)
        big = sorted((c for c in contours if cv2.contourArea(c) >= min_area), key=cv2.contourArea, reverse=True)
        out.extend(big[:6])
    return out


def detect_corners(img: bytes) -> list[Corner] | None:
    """The page's corners (top-left, top-right, bottom-right, bottom-left) in `img`, or None.

    Candidates are the outer contours of the edge map simplified to 4 points; the largest one that
    is convex, big enough, away from the frame, without sliver angles, and with a clear brightness
    step along most of its outline wins. Deterministic.
    """
    arr = _decode(img)
    gray = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    edges = _edge_map(gray)
    min_area = _MIN_AREA_FRACTION * w * h
    for contour in _candidate_contours(gray, edges, min_area):
        hull = cv2.convexHull(contour)
        perimeter = cv2.arcLength(hull, True)
        for eps in (0.01, 0.02, 0.03, 0.05):
            approx = cv2.approxPolyDP(hull, eps * perimeter, True)
            if len(approx) == 4:
                break
        else:
            continue
        quad = np.array(order_corners(approx.reshape(4, 2).tolist()), np.float64)
        if not _is_convex(quad) or cv2.contourArea(quad.astype(np.float32)) < min_area:
            continue
        xs, ys = quad[:, 0], quad[:, 1]
        if (xs.min() < _BORDER_MARGIN or ys.min() < _BORDER_MARGIN
                or xs.max() > w - 1 - _BORDER_MARGIN or ys.max() > h - 1 - _BORDER_MARGIN):
            continue  # touches the frame: the page is probably cut
        if not all(_MIN_ANGLE <= a <= _MAX_ANGLE for a in _interior_angles(quad)):
            continue
        contrast, support = _contrast_and_support(gray, edges, quad)
        if contrast < _MIN_CONTRAST or support < _MIN_EDGE_SUPPORT:
            continue
        return [(float(x), float(y)) for x, y in quad]
    return None


def correct_perspective(img: bytes) -> bytes | None:
    """Find the document in a photo (PNG/JPEG) and return it rectified as a PNG, or None.

    None means "no convincing page outline" (too little contrast with the background, the page
    cut by the frame, clutter): the workflow routes such images to a person. Raises `ValueError`
    if `img` is not an image at all.
    """
    corners = detect_corners(img)
    if corners is None:
        return None
    return _encode_png(_warp(_decode(img), np.array(corners, np.float64)))
