"""What an approximate (variational) fit is, read from its DataTree's attributes.

:func:`bayesgmm.inference.advi.fit_advi` marks its DataTree (``attrs["inference"] ==
"advi"``) and keeps its settings in the ``variational`` group; summaries, diagnostics
and reports say "approximate" from these functions without importing PyMC.
"""

from __future__ import annotations

import xarray as xr

__all__ = ["describe", "is_approximate", "label"]


def is_approximate(tree) -> bool:
    """Whether a DataTree holds a variational (approximate) fit rather than MCMC draws."""
    return isinstance(tree, xr.DataTree) and tree.attrs.get("inference") == "advi"


def label(tree: xr.DataTree) -> str:
    """Short name of an approximate fit's method: "minibatch ADVI", "full-rank ADVI", ...

    Examples
    --------
    >>> import xarray as xr
    >>> label(xr.DataTree.from_dict({"variational": xr.Dataset(attrs={
    ...     "method": "advi", "batch_size": 1024, "n_obs": 10**6})}))
    'minibatch ADVI'
    """
    a = tree["variational"].attrs if "variational" in tree.children else {}
    name = "full-rank ADVI" if a.get("method") == "fullrank_advi" else "ADVI"
    n, batch = a.get("n_obs"), a.get("batch_size")
    return f"minibatch {name}" if n is not None and batch is not None and batch < n else name


def describe(tree: xr.DataTree) -> str:
    """One line saying how an approximate fit was made, for summaries and reports.

    Examples
    --------
    >>> import xarray as xr
    >>> tree = xr.DataTree.from_dict({"variational": xr.Dataset(attrs={
    ...     "method": "advi", "n_steps": 20000, "batch_size": 1024, "n_obs": 10**6,
    ...     "draws": 1000})})
    >>> describe(tree)
    'approximate: minibatch mean-field ADVI (20,000 steps, batches of 1,024 of 1,000,000 points, 1,000 independent draws)'
    """  # noqa: E501
    a = tree["variational"].attrs if "variational" in tree.children else {}
    name = label(tree)
    if a.get("method") == "advi":
        name = name.replace("ADVI", "mean-field ADVI")
    n, batch = a.get("n_obs"), a.get("batch_size")
    if name.startswith("minibatch"):
        data = f"batches of {batch:,} of {n:,} points"
    else:
        data = f"all {n:,} points per step" if n is not None else "all points per step"
    steps, draws = a.get("n_steps"), a.get("draws")
    steps = f"{steps:,} steps" if steps is not None else "unknown steps"
    draws = f"{draws:,} independent draws" if draws is not None else "independent draws"
    return f"approximate: {name} ({steps}, {data}, {draws})"
