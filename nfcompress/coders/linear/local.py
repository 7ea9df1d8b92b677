"""The linear model's local predictor (scheme 3): each sub-pixel's texture predicted from its W, N,
NW and NE texture by weights fitted, by least squares, to the pixels of a small causal window
around it. The global weights then take this prediction as one more feature: where the image's
texture turns, the window has turned with it.

Every sum is an exact integer (row prefix sums of products), and the 5x5 systems are solved by a
Cholesky decomposition in float64 operations, each correctly rounded and none fused (compiled
without fast-math): the prediction is the same on every machine, for the encoder's whole image
at once as for the decoder's wavefronts.
"""

__all__ = [
    "TERMS",
    "STEPS",
    "prefix_sums",
    "window_at",
    "add_at",
    "predict",
    "predict_at",
    "predict_plane",
]

import numpy as np

from nfcompress.compiled import compiled

K = 5  # features: the texture's W, N, NW and NE, and 1
PAIRS = tuple((a, b) for a in range(K) for b in range(a, K))
# A pixel's terms, what it adds to the sums of the windows it lies in: its features (texture and 1)
# pairwise, then each times its own texture value; a window's sums are its pixels' terms summed.
TERMS = len(PAIRS) + K
# The window: for each row up, the last column (right of the pixel) it reaches, from LEFT columns
# left of the pixel. Every cell lies on an earlier wavefront (right <= 2 up - 1).
ROWS = ((0, -1), (1, 1), (2, 3), (3, 3))
LEFT = 3
# The weights are drawn towards PRIOR (of W, N, NW, NE, 1) as RIDGE more pixels would: every system
# is solvable, and a window of few pixels predicts about (W + N) / 2.
RIDGE = 10.0
PRIOR = (0.5, 0.5, -0.25, 0.25, 0.0)
STEPS = 16  # the prediction's unit, 1/16
LOW, HIGH = -256 * STEPS, 512 * STEPS
# Columns of each row's prefix sums a decoder keeps: from the oldest a window reads to the newest
# decoded, a row up to 3 rows above spans 3 slope + 4 of them (`wavefronts`; 10 at slope 2, 13 at 3).
RING = 16


def prefix_sums(h: int) -> np.ndarray:
    """A decoder's row prefix sums of terms (`TERMS`) for a plane of h rows, none added yet: the last RING
    columns of each row, filled a pixel at a time (`add_at`) and read by `window_at`."""
    # Row r's prefix through column c at row (r + 3) * (RING + 1) + c % RING; the last cell of
    # each row stays zero, the prefix through column -1.
    return np.zeros(((h + 3) * (RING + 1), TERMS), np.int64)


@compiled
def _cell(r: int, c: int) -> int:
    """`prefix_sums`'s row of row r's prefix through column c."""
    return (r + 3) * (RING + 1) + (RING if c < 0 else c % RING)


@compiled
def window_at(pre: np.ndarray, r: int, col: int, w: int, out: np.ndarray) -> None:
    """Add the window sums (its window's pixels' terms, summed) of the pixel at row r, column col,
    all of whose window is added, to out (TERMS,), from prefix sums `pre`, for a plane of width w."""
    for up, right in ROWS:
        high, low = _cell(r - up, min(col + right, w - 1)), _cell(r - up, col - LEFT - 1)
        for t in range(TERMS):
            out[t] += pre[high, t] - pre[low, t]


@compiled
def add_at(pre: np.ndarray, r: int, col: int, f: np.ndarray, y: int) -> None:
    """Add to prefix sums `pre` the terms (`TERMS`) of one pixel, at row r and column col (its row's pixels
    left of it added), of features f (K,: its texture and 1) and texture value y."""
    _accumulate(pre, _cell(r, col), _cell(r, col - 1), f, y)


@compiled
def _accumulate(pre: np.ndarray, at: int, left: int, f: np.ndarray, y: int) -> None:
    """A row's prefix sums through a pixel (pre[at], TERMS): those through the pixel left of it
    (pre[left]) plus its terms (`TERMS`), of features f (K,) and texture value y."""
    for t in range(len(PAIRS)):
        pre[at, t] = pre[left, t] + f[_FIRST[t]] * f[_SECOND[t]]
    for a in range(K):
        pre[at, len(PAIRS) + a] = pre[left, len(PAIRS) + a] + f[a] * y


_FIRST, _SECOND = (np.array(v, np.int64) for v in zip(*PAIRS))
_SYMMETRIC = np.array([[PAIRS.index((min(p, q), max(p, q))) for q in range(K)] for p in range(K)])
_RIDGES = RIDGE * np.eye(K)[:, :, None]
_PRIORS = RIDGE * np.array(PRIOR)[:, None]


def predict(sums: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Integer predictions (n,), in 1/STEPS, of texture values from their window sums (n, TERMS)
    and their texture (4, n), within LOW..HIGH.

    With A w = b the window's system and f the pixel's features, the prediction f.w is u.z for
    L u = f and L z = b, L the Cholesky factor of A: both come out of the factorisation of A
    bordered by b and f (rows K and K + 1), a column at a time, each step updating the rest.
    """
    return _predict(np.ascontiguousarray(sums, np.int64), np.ascontiguousarray(tex, np.int64))


@compiled
def _predict(sums: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """`predict`, a pixel at a time (`predict_at`)."""
    n = sums.shape[0]
    out = np.empty(n, np.int64)
    m = np.zeros((K + 2, K))
    for at in range(n):
        out[at] = predict_at(m, sums[at], tex[0, at], tex[1, at], tex[2, at], tex[3, at])
    return out


@compiled
def predict_at(m: np.ndarray, s: np.ndarray, w: int, n: int, nw: int, ne: int) -> int:
    """`predict` of one pixel from its window sums s (TERMS,) and texture, with m a scratch
    (K + 2, K): the lower triangle of the bordered system (the part its factorisation reads),
    with the operations of the whole matrix's elementwise form (the one files before 0.15 were
    written with) in the same order."""
    for a in range(K):
        for b in range(a + 1):
            m[a, b] = s[_SYMMETRIC[a, b]] + _RIDGES[a, b, 0]
        m[K, a] = s[len(PAIRS) + a] + _PRIORS[a, 0]
    m[K + 1, 0], m[K + 1, 1], m[K + 1, 2], m[K + 1, 3], m[K + 1, 4] = w, n, nw, ne, 1.0
    for k in range(K):
        m[k, k] = np.sqrt(m[k, k])
        for a in range(k + 1, K + 2):
            m[a, k] /= m[k, k]
        for a in range(k + 1, K + 2):
            for b in range(k + 1, min(a + 1, K)):
                m[a, b] -= m[a, k] * m[b, k]
    p = m[K, 0] * m[K + 1, 0]
    for k in range(1, K):
        p = p + m[K, k] * m[K + 1, k]
    return min(max(np.floor(p * STEPS + 0.5), LOW), HIGH)


def predict_plane(tex: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The predictions (H W,), in 1/STEPS, raster order, of every texture value y (H, W) of a
    plane from its texture (4, H, W): the encoder's whole plane at once, each pixel's window
    summed from its rows' prefix sums, the same integers as a decoder's."""
    h, w = y.shape
    out = np.empty(h * w, np.int64)
    _predict_plane(np.ascontiguousarray(tex, np.int64), np.ascontiguousarray(y, np.int64), out)
    return out


_REACH = max(right for _, right in ROWS)


@compiled
def _predict_plane(tex: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    """`predict_plane` into out, a row at a time: each row's prefix sums of its terms (`TERMS`) (columns
    -LEFT - 1 .. w - 1 + _REACH: zeros, the sums, then the row's total), kept for the 3 rows below."""
    h, w = y.shape
    pre = np.zeros((4, LEFT + 1 + w + _REACH, TERMS), np.int64)
    f = np.empty(K, np.int64)
    s = np.empty(TERMS, np.int64)
    m = np.zeros((K + 2, K))
    for r in range(h):
        row = pre[r % 4]
        for col in range(w):
            for a in range(4):
                f[a] = tex[a, r, col]
            f[4] = 1
            _accumulate(row, LEFT + 1 + col, LEFT + col, f, y[r, col])
        for c in range(LEFT + 1 + w, LEFT + 1 + w + _REACH):
            row[c] = row[LEFT + w]
        for col in range(w):
            s[:] = 0
            for up, right in ROWS:
                if r - up >= 0:
                    above = pre[(r - up) % 4]
                    for t in range(TERMS):
                        s[t] += above[LEFT + 1 + col + right, t] - above[col, t]
            out[r * w + col] = int(predict_at(m, s, tex[0, r, col], tex[1, r, col], tex[2, r, col], tex[3, r, col]))
