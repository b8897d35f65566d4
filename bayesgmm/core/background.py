"""A background-noise component: scattered points that belong to no cluster.

Banfield & Raftery (1993), as mclust's ``Mclust(..., initialization = list(noise = ...))``:
the mixture gets one more component, uniform with density ``1 / V`` over the data's
region of volume ``V``, with its own weight ``w_0``,

``p(x) = sum_k w_k N(x | mu_k, Sigma_k) + w_0 / V``,

so outliers are explained by the background instead of widening the Gaussian components.
``V`` is the volume of the data's bounding box (the product of the columns' ranges) or
one the user gives; as in mclust, the background's density is ``1 / V`` at every point,
new points outside the box included. :func:`check_noise` turns the ``noise`` setting
into ``log(1 / V)``.
"""

from __future__ import annotations

import math

import numpy as np

from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["NOISE_START", "bounding_volume", "check_noise"]

#: The background's weight at the start of EM (mclust starts from a guessed noise set).
NOISE_START = 0.1


def bounding_volume(X: np.ndarray) -> float:
    """The volume of the axis-aligned bounding box of the rows of ``X``.

    Examples
    --------
    >>> bounding_volume(np.array([[0.0, 1.0], [2.0, 4.0], [1.0, 2.0]]))
    6.0
    """
    return float(np.prod(np.nanmax(X, axis=0) - np.nanmin(X, axis=0)))


def check_noise(noise, X: np.ndarray) -> float | None:
    """``log(1 / V)`` of the background component, or None without one.

    ``noise`` is False/None (no background), True (``V`` the bounding box's volume) or a
    positive number (the volume ``V`` itself, in the data's units).

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [2.0, 5.0]])
    >>> round(check_noise(True, X), 4)  # log(1 / 10): the box is 2 x 5
    -2.3026
    >>> check_noise(False, X) is None
    True
    """
    if noise is None or noise is False:
        return None
    if noise is True:
        volume = bounding_volume(X)
        if not (volume > 0 and math.isfinite(volume)):
            raise DataError(
                f"the data's bounding box has volume {volume:g}, so a uniform background "
                "cannot be placed on it; give the volume yourself (noise=V)."
            )
        return -math.log(volume)
    if isinstance(noise, bool | str) or not isinstance(noise, int | float | np.number):
        raise ConfigError(
            f"noise must be False, True (the bounding box's volume) or a positive volume; "
            f"got {noise!r}."
        )
    if not (noise > 0 and math.isfinite(noise)):
        raise ConfigError(f"noise (the background's volume) must be positive; got {noise!r}.")
    return -math.log(float(noise))
