"""EMResult's documentation against what EM stores: the layout of every family's
covariance parameters, as the docstring's table states it."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from conftest import two_blobs

from bayesgmm.core.em import fit_em
from bayesgmm.core.em_result import EMResult
from bayesgmm.core.families import EM_COVARIANCE_TYPES, UNIVARIATE_MODELS, family

K, D = 2, 3
_ROW = re.compile(r"^\s*(\S.*?\S)\s{2,}(\([KD, 1]*\))\s{2,}\S")
_NAME = re.compile(r"\b(full|tied|diag|spherical|[EVI]{3}|[EV])\b")


def documented_layouts() -> dict[str, str]:
    """Family name -> the layout its row of EMResult's table gives, e.g. '(K, D, D)'."""
    rows = {}
    for line in EMResult.__doc__.splitlines():
        match = _ROW.match(line)
        if match:
            for name in _NAME.findall(match.group(1)):
                rows[name] = match.group(2)
    return rows


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return two_blobs(D, seed=7)


def test_the_docstring_gives_every_family_a_layout():
    assert set(documented_layouts()) == set(EM_COVARIANCE_TYPES)


@pytest.mark.parametrize("name", EM_COVARIANCE_TYPES)
def test_the_documented_layout_is_what_em_stores(name, data):
    d = 1 if name in UNIVARIATE_MODELS else D
    layout = documented_layouts()[name]
    sizes = {"K": K, "D": d, "1": 1}
    shape = tuple(sizes[part.strip()] for part in layout.strip("()").split(",") if part.strip())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_em(data[:, :d], K, covariance_type=name, prior=None, n_init=1, max_iter=5,
                     random_seed=0)  # fmt: skip
    assert shape == family(name).layout(K, d)
    assert fit.covariances.shape == shape and fit.prec_chol.shape == shape
    assert fit.chol_cov.shape == (K, d, d)
    full = fit.covariance_matrices()
    np.testing.assert_allclose(fit.chol_cov @ np.swapaxes(fit.chol_cov, 1, 2), full, rtol=1e-10)
