"""The mixture engine: weighted per-component log densities for many parameter sets at once.

Everything in bayesgmm that evaluates a mixture -- EM's E-step, predictions and
densities from posterior draws, relabelling, the pointwise log-likelihood, counts of
non-empty components -- goes through :class:`Kernel` and :func:`normalise`:

* a :class:`Kernel` holds ``S`` parameter sets (one for EM, one per posterior draw) of
  ``K`` components, turned once into a matrix ``A`` (from the covariance family's
  triangular factors, see :meth:`~bayesgmm.core.families.CovarianceFamily.kernel_terms`)
  so that the log densities of every set, component and point come from one matrix
  product with the points' design rows (:func:`design`), in column chunks that stay in
  cache;
* :func:`normalise` turns a block of log densities into memberships and mixture log
  densities in log space (logsumexp over components);
* :class:`Stream` walks posterior draws in blocks and points in chunks, so memory stays
  bounded whatever their numbers.

Points too far from every component for float64 (their best log density below
``-FAR_LOG_DENSITY``, or below float64's range altogether) get the exact limit of their
memberships (:func:`limit_memberships`) and, where it underflows, a log density of
``-inf``, never a floored constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from bayesgmm.core.families import FAMILIES, CovarianceFamily
from bayesgmm.core.labels import restrict
from bayesgmm.core.missing import Patterns
from bayesgmm.core.noise import noise_terms
from bayesgmm.exceptions import ConfigError

__all__ = [
    "FAR_LOG_DENSITY",
    "Kernel",
    "Stream",
    "design",
    "fix_labelled",
    "limit_memberships",
    "memberships",
    "mixture_pass",
    "normalise",
]

#: Points whose best component log density is below minus this are "far": the spacing of
#: float64 numbers there (2**40 * 2**-52 = 2.4e-4 nats) is too coarse for the differences
#: between components' log densities, so their memberships come from
#: :func:`limit_memberships` instead of a logsumexp of rounded values.
FAR_LOG_DENSITY = float(2**40)
_CHUNK_ELEMS = 1 << 17  # float64 elements per work buffer (1 MB): stays in cache
# logsumexp terms more than 600 nats below the largest are raised to exp(-600) ~ 3e-261 of
# it: invisible in double precision, and it keeps exp() off numpy's very slow underflow
# path and keeps subnormal numbers out of the later matrix products (2-15x faster E-steps).
_LOG_FLOOR = -600.0
_WORK_ELEMS = 1 << 20  # float64 elements of a Stream's matrix-product buffer (8 MB)
_KERNEL_CACHE_ELEMS = 1 << 25  # a Stream caches kernels up to 256 MB, else recomputes
_FULL = FAMILIES["full"]


def design(X: np.ndarray, fam: CovarianceFamily, center: np.ndarray | None = None) -> np.ndarray:
    """Design rows ``[1, x_1..x_D, extra]`` of the points, shape ``(rows, n)``, C-contiguous.

    ``extra`` is what the family's kernel needs beyond ``[1, x]`` (``x_d**2`` for diag,
    ``||x||**2`` for spherical, nothing for full and tied); ``center`` is subtracted first.
    """
    n, d = X.shape
    ZT = np.empty((1 + d + fam.design_extra(d), n))
    ZT[0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # far points
        ZT[1 : 1 + d] = X.T if center is None else (X - center).T
    fam.fill_design_extra(ZT, d)
    return ZT


class Kernel:
    """Weighted component log densities ``log w_sk + log N(x | mu_sk, Sigma_sk)``.

    Parameters
    ----------
    fam : CovarianceFamily
    means : ndarray of shape (S, K, D)
    prec_chol : ndarray of shape (S, *layout)
        Precision factors in the family's layout, for each of the ``S`` parameter sets.
    log_weights : ndarray of shape (S, K), optional
        Without them the log densities are the components' own.

    :meth:`fill` evaluates a column chunk of the design (:func:`design`) into ``out`` of
    shape ``(S * K, chunk)``.
    """

    def __init__(
        self,
        fam: CovarianceFamily,
        means: np.ndarray,
        prec_chol: np.ndarray,
        log_weights: np.ndarray | None = None,
    ) -> None:
        S, K, D = means.shape
        self.fam, self.S, self.K, self.D = fam, S, K, D
        self.M = S * K  # parameter sets x components, the kernel's rows of densities
        self.means = means.reshape(self.M, D)
        self.prec = fam.flat_prec(prec_chol, K, D)
        self.log_weights = None if log_weights is None else log_weights.reshape(self.M)
        self.A, self.const = fam.kernel_terms(self.means, self.prec, self.log_weights)

    def chunk_size(self, n: int) -> int:
        width = self.M * self.D if self.fam.quadratic else self.M
        return int(min(n, max(256, _CHUNK_ELEMS // max(width, 1))))

    def work_buffer(self, n: int) -> np.ndarray:
        size = self.M * self.D * self.chunk_size(n)
        return np.empty(size if self.fam.quadratic else 0)

    def fill(self, ZT: np.ndarray, start: int, stop: int, out: np.ndarray, work=None):
        """Write the weighted log densities of columns ``start:stop`` into ``out``.

        ``work`` is a buffer of at least ``M * D * (stop - start)`` numbers (from
        :meth:`work_buffer`, for chunks of :meth:`chunk_size`), or None to allocate one.
        """
        M, D, c = self.M, self.D, stop - start
        rows = self.A.shape[1]
        with np.errstate(over="ignore", invalid="ignore"):  # far points overflow: see module
            if not self.fam.quadratic:
                np.matmul(self.A, ZT[:rows, start:stop], out=out)
                return
            # the product in column tiles of at most _CHUNK_ELEMS numbers, which stay in
            # cache between the product, the square and the sum (one pass over a larger
            # buffer runs at the memory's pace: 3-6x slower, bench/bench_predict.py)
            step = max(1, min(c, _CHUNK_ELEMS // (M * D)))
            size = M * D * step
            buf = np.empty(size) if work is None or work.size < size else work
            for a in range(0, c, step):
                b = min(c, a + step)
                g = buf[: M * D * (b - a)].reshape(M * D, b - a)
                np.matmul(self.A, ZT[:rows, start + a : start + b], out=g)
                np.square(g, out=g)
                part = out[:, a:b]
                np.sum(g.reshape(M, D, b - a), axis=1, out=part)
                np.subtract(self.const, part, out=part)

    def far_memberships(self, X: np.ndarray, center: np.ndarray | None = None) -> np.ndarray:
        """:func:`limit_memberships` of the points ``X`` (n, D) -- in the coordinates of
        the kernel's means, after subtracting ``center`` -- shape (S, K, n)."""
        S, K, D = self.S, self.K, self.D
        # (M, D, D) upper factors: the matrix families' flat factors are full already
        U = self.prec if self.fam.quadratic else self.fam.full_prec_chol(self.prec, self.M, D)
        scale = np.maximum(1.0, np.abs(X).max(axis=1))
        if center is not None:
            scale = np.maximum(scale, np.abs(center).max())
            u = X / scale[:, None] - center / scale[:, None]
        else:
            u = X / scale[:, None]
        Uu = np.einsum("mde,nd->men", U, u)  # U_m^T u, (M, D, n)
        Um = np.einsum("mde,md->me", U, self.means)  # U_m^T mu_m, (M, D)
        log_det = np.log(np.diagonal(U, axis1=1, axis2=2)).sum(axis=1)
        log_norm = log_det - 0.5 * D * math.log(2.0 * math.pi)
        if self.log_weights is not None:
            log_norm = log_norm + self.log_weights
        a = np.square(Uu).sum(axis=1).reshape(S, K, -1)
        b = np.einsum("men,me->mn", Uu, Um).reshape(S, K, -1)
        c = (log_norm - 0.5 * np.square(Um).sum(axis=1)).reshape(S, K, 1)
        return limit_memberships(a, b, np.broadcast_to(c, a.shape))


def normalise(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Memberships from weighted log densities ``lp`` (..., K, c), in place.

    ``lp`` is overwritten with ``exp(lp - logsumexp)`` (summing to 1 over components).
    Returns the mixture log densities (..., c) and a mask (..., c) of far points (see
    :data:`FAR_LOG_DENSITY`), whose memberships the caller replaces by their limit. The
    shift by the column maximum keeps it stable; a column below float64's range for every
    component has log density ``-inf``.
    """
    m = lp.max(axis=-2, keepdims=True)
    far = ~(m > -FAR_LOG_DENSITY)  # also NaN: every term overflowed
    overflowed = ~np.isfinite(m)
    m[overflowed] = 0.0
    lp -= m
    with np.errstate(invalid="ignore"):
        np.maximum(lp, _LOG_FLOOR, out=lp)
    np.exp(lp, out=lp)
    total = lp.sum(axis=-2, keepdims=True)
    lp /= total
    log_dens = np.log(total) + m
    log_dens[overflowed] = -np.inf
    return log_dens[..., 0, :], far[..., 0, :]


def memberships(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Memberships (n, K) and the points' mixture log densities (n,) from one parameter
    set's weighted component log densities ``lp`` (n, K), in log space: for the densities
    computed outside the kernels (missing values' marginals, measurement errors), in EM's
    E-steps, ``EMResult``'s predictions and imputation.

    Examples
    --------
    >>> resp, log_dens = memberships(np.log([[0.1, 0.3]]))
    >>> resp.round(2).tolist(), round(float(np.exp(log_dens[0])), 2)
    ([[0.25, 0.75]], 0.4)
    """
    top = lp.max(axis=1, keepdims=True)
    resp = np.exp(lp - top)
    total = resp.sum(axis=1, keepdims=True)
    resp /= total
    return resp, (top + np.log(total))[:, 0]


def mixture_pass(
    ZT: np.ndarray,
    kernel: Kernel,
    resp_out: np.ndarray | None = None,
    labels=None,
    background: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pass of a single parameter set over the data (EM's E-step): mixture log density
    per point (n,) and memberships (K, n), chunk by chunk. With known ``labels`` (n,) (see
    :mod:`bayesgmm.core.labels`) a labelled point's log density is its own component's
    term and its memberships are one-hot. ``background``: the weighted log density of a
    uniform background component (``log w_0 - log V``, :mod:`bayesgmm.core.background`),
    which then gets the last of K + 1 rows of memberships (labelled points never
    belong to it)."""
    n = ZT.shape[1]
    K = kernel.K
    rows = K + (background is not None)
    resp = np.empty((rows, n)) if resp_out is None else resp_out
    log_norm = np.empty(n)
    chunk, work = kernel.chunk_size(n), kernel.work_buffer(n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = resp[:, start:stop]
        kernel.fill(ZT, start, stop, block[:K], work)
        if background is not None:
            block[K] = background
        if labels is not None:
            restrict(block[:K], labels[start:stop], axis=-2)
            if background is not None:
                block[K, labels[start:stop] >= 0] = -np.inf
        log_norm[start:stop], _ = normalise(block)
    far = ~(log_norm > -FAR_LOG_DENSITY)
    if far.any():
        if background is None:
            resp[:, far] = kernel.far_memberships(ZT[1 : 1 + kernel.D, far].T)[0]
        else:  # far from every component: the background's (its density is constant)
            resp[:, far] = 0.0
            resp[K, far] = 1.0
        fix_labelled(resp, labels)
    return log_norm, resp


def fix_labelled(resp: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Set the memberships (..., K, n) of labelled points to their component, in place."""
    if labels is not None:
        known = np.flatnonzero(labels >= 0)
        resp[..., known] = 0.0
        resp[..., labels[known], known] = 1.0
    return resp


def limit_memberships(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Membership probabilities of a point far from every component, exactly in the limit.

    With the point written ``x = s u`` (``s`` its size, ``u`` its direction), component
    ``k``'s weighted log density is ``c_k - s**2 a_k / 2 + s b_k`` with
    ``a_k = u^T P_k u``, ``b_k = u^T P_k mu_k`` and ``c_k`` what is left (log weight,
    log determinant, ``-mu_k^T P_k mu_k / 2``), ``P_k`` the precision. Far away (large
    ``s``) the component with the smallest ``a_k`` -- the widest along ``u`` -- takes
    the point; ties in ``a`` (equal covariances, as in the tied family) are broken by the
    largest ``b_k`` and then shared in proportion to ``exp(c_k)``. These are the limits of
    the memberships as the point moves away, computed without forming ``s**2``, so they
    are well defined where float64 cannot resolve (or overflows on) the log densities.

    Parameters
    ----------
    a, b, c : ndarray of shape (..., n_components, n_points)

    Returns
    -------
    ndarray of the same shape, summing to 1 over components.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0], [0.25]])      # component 1 is twice as wide along u
    >>> limit_memberships(a, np.zeros_like(a), np.zeros_like(a)).ravel().tolist()
    [0.0, 1.0]
    >>> limit_memberships(np.ones((2, 1)), np.array([[0.0], [1.0]]), np.zeros((2, 1))).ravel()
    array([0., 1.])
    """
    rtol = 1e-9
    a_min = a.min(axis=-2, keepdims=True)
    keep = a <= a_min + rtol * np.abs(a).max(axis=-2, keepdims=True)
    b = np.where(keep, b, -np.inf)
    b_max = b.max(axis=-2, keepdims=True)
    keep &= b >= b_max - rtol * np.abs(np.where(keep, b, 0.0)).max(axis=-2, keepdims=True)
    lp = np.where(keep, c, -np.inf)
    lp = lp - lp.max(axis=-2, keepdims=True)
    p = np.exp(lp)
    return p / p.sum(axis=-2, keepdims=True)


class Stream:
    """Memberships and log densities of posterior draws x points, block by block.

    With a background-noise component (``draws.log_background``) the memberships have
    K + 1 rows, the background's last (not with missing values or measurement errors).

    Draws are taken ``draw_block`` at a time (each block one :class:`Kernel` of the full
    family, cached across point chunks while the cache stays small) and points
    ``point_chunk`` at a time, so the work buffer holds at most about ``_WORK_ELEMS``
    numbers. Points and means are centred on the draws' mean of means (less cancellation).

    Parameters
    ----------
    draws : bayesgmm.core.draws.Draws
    X : ndarray of shape (n, D)
    point_chunk : int
    """

    def __init__(self, draws, X: np.ndarray, point_chunk: int, noise_cov=None, labels=None) -> None:
        S, K, D = draws.shape
        if draws.log_noise_weight is not None and (noise_cov is not None or np.isnan(X).any()):
            raise ConfigError(
                "a fit with a background-noise component predicts points without missing "
                "values or measurement errors only."
            )
        self.draws, self.X = draws, X
        self.noise_cov = noise_cov  # (n, D, D): points measured with known errors
        self.labels = labels  # (n,): training rows with known components (-1: unknown)
        # partially observed points (NaN = missing): each pattern's marginal mixture
        self.patterns = Patterns.of(X) if np.isnan(X).any() else None
        self.point_chunk = int(max(1, min(point_chunk, X.shape[0])))
        self.draw_block = int(max(1, min(S, _WORK_ELEMS // (K * D * self.point_chunk))))
        n_blocks = math.ceil(S / self.draw_block)
        self._cache: dict[int, Kernel] | None = (
            {} if S * K * D * (D + 1) <= _KERNEL_CACHE_ELEMS and X.shape[0] > point_chunk else None
        )
        self.blocks = [
            (b * self.draw_block, min(S, (b + 1) * self.draw_block)) for b in range(n_blocks)
        ]

    def _kernel(self, lo: int, hi: int) -> Kernel:
        if self._cache is not None and lo in self._cache:
            return self._cache[lo]
        d = self.draws
        kernel = Kernel(_FULL, d.means[lo:hi] - d.center, d.prec_chol(lo, hi), d.log_weights[lo:hi])
        if self._cache is not None:
            self._cache[lo] = kernel
        return kernel

    def chunks(self) -> Iterator[tuple[int, int, Iterator]]:
        """Yield ``(start, stop, blocks)`` per point chunk; ``blocks`` yields
        ``(lo, hi, resp, log_dens)``: memberships of shape (hi - lo, K, stop - start) and
        mixture log densities (hi - lo, stop - start). Both may be views of buffers the
        next block reuses: use (or copy) them before taking the next."""
        n = self.X.shape[0]
        for start in range(0, n, self.point_chunk):
            stop = min(n, start + self.point_chunk)
            blocks = self._blocks(start, stop)
            if self.labels is not None:  # known components: one-hot memberships
                labels = self.labels[start:stop]
                blocks = ((lo, hi, fix_labelled(lp, labels), dens) for lo, hi, lp, dens in blocks)
            yield start, stop, blocks

    def _blocks(self, start: int, stop: int):
        if self.noise_cov is not None:
            yield from self._noise_blocks(start, stop)
            return
        if self.patterns is not None:
            yield from self._pattern_blocks(start, stop)
            return
        _, K, _ = self.draws.shape
        c = stop - start
        ZT = design(self.X[start:stop], _FULL, self.draws.center)
        log_bg = self.draws.log_background
        # one product buffer and one block of densities for every block: fresh memory
        # for each would be paged in (and, for numpy's large arrays, huge pages compacted)
        # block after block
        rows = self.draw_block * K
        work, block = np.empty(rows * self.draws.shape[2] * c), np.empty(rows * c)
        for lo, hi in self.blocks:
            kernel = self._kernel(lo, hi)
            lp = block[: kernel.M * c].reshape(kernel.M, c)
            kernel.fill(ZT, 0, c, lp, work)
            lp = lp.reshape(hi - lo, K, c)
            if log_bg is not None:  # the background: a constant last row (never far)
                lp = np.concatenate([lp, np.broadcast_to(log_bg[lo:hi, None, None],
                                                         (hi - lo, 1, c))], axis=1)  # fmt: skip
                if self.labels is not None:  # labelled points are never the background's
                    lp[:, K, self.labels[start:stop] >= 0] = -np.inf
            log_dens, far = normalise(lp)
            if far.any() and log_bg is None:  # (the background's density is never far)
                cols = np.flatnonzero(far.any(axis=0))
                lim = kernel.far_memberships(self.X[start:stop][cols], self.draws.center)
                rows, where = np.nonzero(far[:, cols])
                lp[rows, :, cols[where]] = lim[rows, :, where]
            yield lo, hi, lp, log_dens

    def _noise_blocks(self, start: int, stop: int):
        """:meth:`_blocks` for points with known measurement errors: each draw's mixture
        with every covariance widened by the point's error covariance
        (:func:`bayesgmm.core.noise.noise_terms`)."""
        d = self.draws
        X, S = self.X[start:stop] - d.center, self.noise_cov[start:stop]
        for lo, hi in self.blocks:
            lp = np.stack([
                noise_terms(X, S, d.means[s] - d.center, d.covariance[s], False)[0].T
                + d.log_weights[s][:, None] for s in range(lo, hi)
            ])  # fmt: skip
            log_dens, _ = normalise(lp)
            yield lo, hi, lp, log_dens

    def _pattern_blocks(self, start: int, stop: int):
        """:meth:`_blocks` for points with missing coordinates: each pattern's points
        against the marginal mixture of its observed coordinates (no kernel cache)."""
        _, K, _ = self.draws.shape
        c = stop - start
        X = self.X[start:stop]
        index = self.patterns.index[start:stop]
        present = np.unique(index)
        marginals = {p: self.draws.marginal(np.flatnonzero(self.patterns.observed[p]))
                     for p in present}  # fmt: skip
        for lo, hi in self.blocks:
            lp = np.empty((hi - lo, K, c))
            log_dens = np.empty((hi - lo, c))
            for p in present:
                cols = np.flatnonzero(index == p)
                sub = marginals[p]
                x = X[np.ix_(cols, np.flatnonzero(self.patterns.observed[p]))]
                kernel = Kernel(
                    _FULL, sub.means[lo:hi] - sub.center, sub.prec_chol(lo, hi),
                    sub.log_weights[lo:hi],
                )  # fmt: skip
                part = np.empty((kernel.M, cols.size))
                kernel.fill(design(x, _FULL, sub.center), 0, cols.size, part)
                part = part.reshape(hi - lo, K, cols.size)
                dens, far = normalise(part)
                if far.any():
                    fc = np.flatnonzero(far.any(axis=0))
                    lim = kernel.far_memberships(x[fc], sub.center)
                    rows, where = np.nonzero(far[:, fc])
                    part[rows, :, fc[where]] = lim[rows, :, where]
                lp[:, :, cols] = part
                log_dens[:, cols] = dens
            yield lo, hi, lp, log_dens
