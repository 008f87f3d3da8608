"""Defect renderers: one per class, grade-independent.

A renderer draws one defect instance on a supersampled canvas covering only the defect's
bounding box and returns maps of relief, reflectance, bare metal and (patches only) texture
smoothing; :mod:`.render` composites them onto any grade. The same random draws therefore give the same defect
geometry on every grade, which is what ``paired=True`` relies on.

Coordinates are final-image pixels (x right = rolling direction, y down). Region sizes scale with
the image (fixed field of view); line widths and pit sizes are in pixels of a 256 px image and
never shrink below that at smaller sizes, so defects stay visible on tiny test images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from anomalib_defectgan.data.steel_world.noise import smooth_noise, smoothstep

SUPERSAMPLE = 3  # drawing happens at 3x resolution, then is averaged down (anti-aliasing)
_SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing
_LIGHT = (0.6, 0.8)  # light from the upper left: slopes rising right/down catch it


@dataclass
class DefectLayer:
    """One defect instance at final resolution, restricted to its bounding box.

    Attributes:
        box: ``(x0, y0, x1, y1)`` of the maps inside the image (x1, y1 exclusive).
        shade: Slope of the relief towards the light, ``float32`` (0 where flat).
        albedo: Reflectance factor (1 = unchanged, < 1 darker).
        expose: Fraction of bare metal showing (0..1), e.g. the floor of a scratch.
        smooth: Fraction (0..1) of the surface texture replaced by its local mean, or None.
    """

    box: tuple[int, int, int, int]
    shade: np.ndarray
    albedo: np.ndarray
    expose: np.ndarray
    smooth: np.ndarray | None = None


class Canvas:
    """A supersampled drawing surface over a box of the final image."""

    def __init__(self, size: int, box: tuple[float, float, float, float], supersample: int = SUPERSAMPLE) -> None:
        self.ss = supersample
        x0, y0, x1, y1 = box
        self.x0, self.y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        self.x1, self.y1 = min(size, int(np.ceil(x1)) + 1), min(size, int(np.ceil(y1)) + 1)
        self.x1, self.y1 = max(self.x1, self.x0 + 1), max(self.y1, self.y0 + 1)
        self.shape = ((self.y1 - self.y0) * self.ss, (self.x1 - self.x0) * self.ss)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in final pixels, clipped to the image (x1, y1 exclusive)."""
        return self.x0, self.y0, self.x1, self.y1

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Final-pixel coordinates ``[N, 2]`` -> fixed-point canvas coordinates for OpenCV."""
        xy = np.asarray(xy, np.float64)
        canvas = (xy - (self.x0, self.y0)) * self.ss + (self.ss - 1) / 2
        return np.round(canvas * (1 << _SHIFT)).astype(np.int32)

    def ellipse_distance(self, centre: np.ndarray, radii: np.ndarray, angle: float = 0.0) -> np.ndarray:
        """Normalised elliptic radius of every canvas pixel (1 on the ellipse), ``float32``."""
        ys = (np.arange(self.shape[0], dtype=np.float32) + 0.5) / self.ss + np.float32(self.y0 - 0.5 - centre[1])
        xs = (np.arange(self.shape[1], dtype=np.float32) + 0.5) / self.ss + np.float32(self.x0 - 0.5 - centre[0])
        cos, sin = np.float32(np.cos(np.deg2rad(angle))), np.float32(np.sin(np.deg2rad(angle)))
        u = (xs[None, :] * cos + ys[:, None] * sin) / np.float32(radii[0])
        v = (ys[:, None] * cos - xs[None, :] * sin) / np.float32(radii[1])
        return np.sqrt(u * u + v * v)

    def blank(self) -> np.ndarray:
        """An empty ``uint8`` canvas to draw on with OpenCV (anti-aliasing needs 8 bits)."""
        return np.zeros(self.shape, np.uint8)

    def noise(self, rng: np.random.Generator, cell: float) -> np.ndarray:
        """Smooth noise with features about ``cell`` final pixels wide."""
        rows = self.shape[0] / self.ss / cell + 1
        cols = self.shape[1] / self.ss / cell + 1
        return smooth_noise(rng, self.shape, (rows, cols))

    def blur(self, image: np.ndarray, sigma: float) -> np.ndarray:
        """Gaussian blur by ``sigma`` final pixels, ``uint8`` 0..255 in, ``float32`` 0..1 out."""
        image = image.astype(np.float32) * np.float32(1 / 255)
        return cv2.GaussianBlur(image, (0, 0), sigma * self.ss) if sigma > 0 else image

    def stroke(self, image: np.ndarray, xy: np.ndarray, widths: np.ndarray, values: np.ndarray) -> None:
        """Draw a polyline whose width (final px) and grey value (0..255) vary per segment."""
        pts = self.points(xy)
        for i in range(len(pts) - 1):
            thickness = max(1, round(float(widths[i]) * self.ss))
            value = round(float(values[i]))
            if value > 0:
                cv2.line(image, tuple(map(int, pts[i])), tuple(map(int, pts[i + 1])), value, thickness,
                         cv2.LINE_AA, _SHIFT)

    def finish(self, height: np.ndarray, darkness: np.ndarray, expose: np.ndarray,
               smooth: np.ndarray | None = None) -> DefectLayer:
        """Shade the relief and average everything down to final resolution."""
        height, darkness, expose = (np.asarray(m, np.float32) for m in (height, darkness, expose))
        slope = np.float32(self.ss / 8)  # Sobel sums 8 neighbour differences; per final pixel
        shade = _LIGHT[0] * cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        shade += _LIGHT[1] * cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        final = (self.x1 - self.x0, self.y1 - self.y0)

        def down(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, final, interpolation=cv2.INTER_AREA)

        return DefectLayer(self.box, down(shade * slope), 1.0 - down(np.clip(darkness, 0.0, 0.95)),
                           down(np.clip(expose, 0.0, 1.0)),
                           None if smooth is None else down(np.clip(np.asarray(smooth, np.float32), 0.0, 1.0)))


def _scale(size: int) -> float:
    """Pixel sizes are given for 256 px images; they grow with larger images, never shrink."""
    return max(1.0, size / 256)


def _count(rng: np.random.Generator, low: int, high: int, size: int) -> int:
    """How many small elements (pits, flakes, crack cells) a cluster gets: ``low..high`` at 256 px,
    fewer on smaller images, whose elements do not shrink, so clusters do not clog into blobs."""
    return max(4, round(int(rng.integers(low, high)) * min(1.0, size / 256)))


def _bounds(xy: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    return xy[:, 0].min() - margin, xy[:, 1].min() - margin, xy[:, 0].max() + margin, xy[:, 1].max() + margin


def _taper(t: np.ndarray, power: float) -> np.ndarray:
    return np.sin(np.pi * np.clip(t, 0.0, 1.0)) ** power


def scratches(rng: np.random.Generator, size: int) -> DefectLayer:
    """1-3 long thin, nearly parallel grooves, mostly along rolling, some diagonal or across."""
    px = _scale(size)
    mode = rng.choice(3, p=[0.55, 0.3, 0.15])
    angle = [rng.normal(0, 4), rng.choice([-1, 1]) * rng.uniform(20, 60), 90 + rng.uniform(-10, 10)][mode]
    count = int(rng.integers(1, 4))
    length = rng.uniform(0.35, 0.95) * size
    centre = rng.uniform(0.2, 0.8, 2) * size
    bow = rng.uniform(-0.04, 0.04)
    lines = []
    for _ in range(count):
        theta = np.deg2rad(angle + rng.normal(0, 1.5))
        direction, normal = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
        t = np.linspace(0.0, 1.0, 25)
        own = length * rng.uniform(0.6, 1.0)
        start = centre + normal * rng.uniform(-0.06, 0.06) * size + direction * rng.uniform(-0.1, 0.1) * size
        sag = (bow + rng.normal(0, 0.004)) * own * 4 * t * (1 - t)
        wiggle = np.cumsum(rng.normal(0, 0.15, t.size))
        xy = start + np.outer(t - 0.5, direction) * own + np.outer(sag + wiggle - wiggle.mean(), normal)
        width = rng.uniform(0.8, 2.0) * px
        strength = _taper(t[:-1] + 0.02, 0.4) * rng.uniform(0.6, 1.0, t.size - 1)
        lines.append((xy, width * (0.5 + 0.5 * strength), 255 * strength))
    canvas = Canvas(size, _bounds(np.vstack([xy for xy, _, _ in lines]), 3 * px))
    groove = canvas.blank()
    for xy, widths, values in lines:
        canvas.stroke(groove, xy, widths, values)
    groove_f = canvas.blur(groove, 0.35)
    depth = rng.uniform(0.5, 1.2)
    return canvas.finish(-depth * groove_f, 0.0 * groove_f, rng.uniform(0.35, 0.7) * groove_f)


def inclusion(rng: np.random.Generator, size: int) -> DefectLayer:
    """1-2 long, dark, spindle-shaped streaks along rolling (non-metallic stringers), sometimes broken."""
    px = _scale(size)
    centre = rng.uniform(0.15, 0.85, 2) * size
    streaks = []
    for k in range(int(rng.integers(1, 3))):
        length = rng.uniform(0.12, 0.4) * size + 6 * px
        theta = np.deg2rad(rng.normal(0, 2))
        direction = np.array([np.cos(theta), np.sin(theta)])
        start = centre + (rng.normal(0, 0.05 * size), k * rng.uniform(3, 8) * px)
        t = np.linspace(0.0, 1.0, 20)
        xy = start + np.outer(t - 0.5, direction) * length + np.outer(np.cumsum(rng.normal(0, 0.1, t.size)), (0, 1))
        thickness = rng.uniform(2.0, 5.0) * px * (0.15 + 0.85 * _taper(t[:-1] + 0.025, 1.0))
        unbroken = rng.random(t.size - 1) > 0.12
        streaks.append((xy, thickness, 255.0 * unbroken))
    canvas = Canvas(size, _bounds(np.vstack([xy for xy, _, _ in streaks]), 6 * px))
    body = canvas.blank()
    for xy, widths, values in streaks:
        canvas.stroke(body, xy, widths, values)
    bitten = smoothstep(-1.6, -0.6, canvas.noise(rng, 2.0 * px))  # a few nicks in the outline
    shape = canvas.blur(body, 0.4) * bitten
    darkness = rng.uniform(0.6, 0.85) * shape * (0.85 + 0.15 * canvas.noise(rng, 1.5 * px))
    return canvas.finish(-0.3 * shape, darkness, 0.0 * shape)


def patches(rng: np.random.Generator, size: int) -> DefectLayer:
    """Soft, irregular dark (mostly) or bright blotches."""
    centre = rng.uniform(0.25, 0.75, 2) * size
    radii = np.array([rng.uniform(0.12, 0.3), 0.0]) * size
    radii[1] = radii[0] * rng.uniform(0.45, 1.0)
    # Soft blotches have no edges to alias: no supersampling needed.
    canvas = Canvas(size, tuple(np.concatenate([centre - 1.2 * radii, centre + 1.2 * radii])), supersample=1)
    soft = smoothstep(1.15, 0.55, canvas.ellipse_distance(centre, radii, rng.normal(0, 8)))
    blotch = smoothstep(-0.5, 0.5, canvas.noise(rng, 0.35 * radii[1]) + 1.5 * (soft - 0.5))
    alpha = soft * blotch
    smooth = rng.uniform(0.4, 0.75) * alpha  # a patch has its own, smoother finish
    if rng.random() < 0.75:
        return canvas.finish(0.0 * alpha, rng.uniform(0.35, 0.6) * alpha, 0.0 * alpha, smooth)
    return canvas.finish(0.0 * alpha, 0.0 * alpha, rng.uniform(0.45, 0.7) * alpha, smooth)


def pitted_surface(rng: np.random.Generator, size: int) -> DefectLayer:
    """A cluster of small round pits with dark floors and lit rims."""
    px = _scale(size)
    centre = rng.uniform(0.2, 0.8, 2) * size
    spread = rng.uniform(0.04, 0.12) * size * np.array([rng.uniform(1.0, 2.2), 1.0])
    count = _count(rng, 30, 90, size)
    xy = centre + rng.normal(0, 1, (count, 2)) * spread
    xy = np.clip(xy, 2, size - 3)
    radii = rng.uniform(0.6, 2.2, count) * px
    depths = rng.uniform(0.4, 1.0, count)
    canvas = Canvas(size, _bounds(xy, 4 * px))
    pits = canvas.blank()
    centres = canvas.points(xy)
    for (x, y), r, d in zip(centres, radii, depths):
        cv2.circle(pits, (int(x), int(y)), round(float(r) * canvas.ss * (1 << _SHIFT)), int(255 * d), -1,
                   cv2.LINE_AA, _SHIFT)
    bowl = canvas.blur(pits, 0.5)
    return canvas.finish(-1.5 * bowl, 0.45 * bowl, 0.0 * bowl)


def crazing(rng: np.random.Generator, size: int) -> DefectLayer:
    """A network of fine dark cracks (jittered Voronoi edges) fading out at the region's rim."""
    px = _scale(size)
    centre = rng.uniform(0.25, 0.75, 2) * size
    radii = np.array([rng.uniform(0.12, 0.3), 0.0]) * size
    radii[1] = radii[0] * rng.uniform(0.4, 0.9)
    count = _count(rng, 25, 70, size)
    angle = rng.uniform(0, 2 * np.pi, count)
    dist = np.sqrt(rng.uniform(0, 1, count))
    seeds = centre + np.stack([np.cos(angle), np.sin(angle)], 1) * dist[:, None] * radii
    subdiv = cv2.Subdiv2D((-size, -size, 3 * size, 3 * size))
    subdiv.insert([(float(x), float(y)) for x, y in seeds])
    facets, _ = subdiv.getVoronoiFacetList([])
    ends = np.round(np.concatenate([np.stack([f, np.roll(f, -1, axis=0)], 1) for f in facets]).astype(np.float64), 3)
    swap = (ends[:, 0, 0] > ends[:, 1, 0]) | ((ends[:, 0, 0] == ends[:, 1, 0]) & (ends[:, 0, 1] > ends[:, 1, 1]))
    ends[swap] = ends[swap, ::-1]  # orient edges so the copy in each neighbouring facet is identical
    _, first = np.unique(ends.reshape(-1, 4), axis=0, return_index=True)
    ends = ends[np.sort(first)]
    rim = np.sum(((ends.mean(1) - centre) / radii) ** 2, axis=1)
    ends = ends[(rim <= 1.0) & (rng.random(len(ends)) < 0.85 * (1.2 - rim))]
    bends = np.linspace(0, 1, 4)[None, :, None]
    along = ends[:, 1] - ends[:, 0]
    normal = np.stack([-along[:, 1], along[:, 0]], 1)
    jitter = np.concatenate([np.zeros((len(ends), 1)), rng.normal(0, 0.12, (len(ends), 2)), np.zeros((len(ends), 1))], 1)
    paths = ends[:, :1] + bends * along[:, None] + jitter[..., None] * normal[:, None]
    canvas = Canvas(size, tuple(np.concatenate([centre - radii, centre + radii]) + (-2, -2, 2, 2)), supersample=2)
    cracks = canvas.blank()
    width = max(1, round(rng.uniform(0.5, 0.9) * px * canvas.ss))
    cv2.polylines(cracks, [canvas.points(path) for path in paths], False, 255, width, cv2.LINE_AA, _SHIFT)
    fade = smoothstep(1.05, 0.3, canvas.ellipse_distance(centre, radii))
    crack = canvas.blur(cracks, 0.25) * fade
    return canvas.finish(-0.8 * crack, rng.uniform(0.45, 0.7) * crack, 0.0 * crack)


def rolled_in_scale(rng: np.random.Generator, size: int) -> DefectLayer:
    """Flaky dark scale particles pressed in, scattered along a band in the rolling direction."""
    px = _scale(size)
    centre = rng.uniform(0.2, 0.8, 2) * size
    band_x = rng.uniform(0.2, 0.45) * size
    band_y = rng.uniform(0.02, 0.08) * size
    count = _count(rng, 20, 70, size)
    flakes = []
    for _ in range(count):
        at = centre + (rng.uniform(-1, 1) * band_x, rng.normal(0, 0.6) * band_y)
        vertices = int(rng.integers(5, 9))
        phi = np.sort(rng.uniform(0, 2 * np.pi, vertices))
        reach = rng.uniform(1.2, 4.5) * px * rng.uniform(0.6, 1.2, vertices)
        aspect = rng.uniform(1.3, 3.0)
        flakes.append((at + np.stack([np.cos(phi) * aspect, np.sin(phi)], 1) * reach[:, None], rng.uniform(0.5, 1.0)))
    canvas = Canvas(size, _bounds(np.vstack([xy for xy, _ in flakes]), 3 * px))
    body = canvas.blank()
    for xy, tone in flakes:
        cv2.fillPoly(body, [canvas.points(xy)], int(255 * tone), cv2.LINE_AA, _SHIFT)
    flake = canvas.blur(body, 0.3)
    rough = 0.75 + 0.25 * canvas.noise(rng, 1.0 * px)
    return canvas.finish(1.6 * flake, rng.uniform(0.45, 0.7) * flake * rough, 0.0 * flake)


DEFECTS: dict[str, Callable[[np.random.Generator, int], DefectLayer]] = {
    "scratches": scratches,
    "inclusion": inclusion,
    "patches": patches,
    "pitted_surface": pitted_surface,
    "crazing": crazing,
    "rolled-in_scale": rolled_in_scale,
}
