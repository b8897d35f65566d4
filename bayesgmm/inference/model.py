"""The Bayesian model: priors, internal standardisation and the marginalised likelihood.

The model samples on a standardised scale (``z = (x - loc) / scale``) so NUTS sees
parameters of order one whatever the data's units; every prior is stated, and every
reported quantity (``means``, ``sds``, ``covariance``) is given, in the data's own
units. The likelihood marginalises the discrete assignments: for each point,
``log p(x) = logsumexp_k [log w_k + log N(x | mu_k, Sigma_k)]``, vectorised over
points and components, registered as an observed variable so that the pointwise
log-likelihood (and hence LOO) is available.

The free variables' unconstrained coordinates (what a sampler moves in) are their usual
transforms' (log sds, PyMC's simplex and Cholesky-correlation coordinates) divided by
units held in ``pm.Data``: ones as built, and, once
:func:`~bayesgmm.inference.coordinates.set_coordinate_units` has set them from the EM
solution, such that every coordinate's posterior sd is about 0.01; see
:mod:`bayesgmm.inference.coordinates` for why (NUTS took half the leapfrog steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions import transforms
from pymc.distributions.distribution import support_point

from bayesgmm.core.data import check_sample_weight
from bayesgmm.core.eigen_params import shape_location_z
from bayesgmm.core.labels import check_labels
from bayesgmm.core.missing import Patterns
from bayesgmm.core.noise import check_noise_cov
from bayesgmm.core.priors import ResolvedPriors
from bayesgmm.core.spec import GMMSpec, make_spec
from bayesgmm.exceptions import ConfigError
from bayesgmm.inference.coordinates import ScaledTransform, corr_coordinate_rows, unit_name
from bayesgmm.inference.deconvolution import noise_loglik
from bayesgmm.inference.gaussian_logp import component_logp_z, missing_loglik

__all__ = ["build_model", "component_logp_z", "constant_values"]


def _free(name: str, dist, params: dict, base, unit_shape, signature: str, index=None, **kwargs):
    """The free variable ``name ~ dist(**params)``, its unconstrained coordinates those of
    the transform ``base`` (the variable's usual one) in units held by ``pm.Data``
    ``<name>_unit``.

    The units are ones until :func:`~bayesgmm.inference.coordinates.set_coordinate_units`
    sets them (see that module). The variable is a ``CustomDist`` with ``dist``'s own log
    density, random draws and support point, whose last parameter is the units, so that
    the (stateless) transform reads them from the variable's inputs. ``signature`` is
    ``dist``'s; the units' core dims are appended here (those of ``index``, when given,
    are the support's last: see :class:`~bayesgmm.inference.coordinates.ScaledTransform`).
    """
    unit = pm.Data(unit_name(name), np.ones(unit_shape))
    keys = tuple(params)

    def of(args, size=None):  # the distribution at the parameters (the units dropped)
        return dist.dist(**dict(zip(keys, args[:-1], strict=True)), size=size)

    transform = ScaledTransform(base, index)
    ins, out = signature.split("->")
    if not transform.ndim_supp:  # elementwise: one unit per value
        unit_core = "()"
    else:  # per coordinate, or (index) per entry of the support's last dim
        unit_core = "(u)" if index is None else f"({out.strip('()').split(',')[-1]})"
    return pm.CustomDist(
        name,
        *params.values(),
        unit,
        logp=lambda value, *args: pm.logp(of(args), value),
        random=lambda *args, rng=None, size=None: pm.draw(of(args, size), random_seed=rng),
        support_point=lambda rv, size, *args: support_point(of(args, size)),
        signature=f"{ins},{unit_core}->{out}",
        default_transform=None,
        transform=transform,
        **kwargs,
    )


class _LKJCorr:
    """``pm.LKJCorr`` of a fixed dimension (its log density needs ``n`` as a constant)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def dist(self, eta, size=None):
        return pm.LKJCorr.dist(n=self.n, eta=eta, size=size)


def _sd_prior(name: str, rp: ResolvedPriors, scale, nu, dims, shape):
    if rp.sds_dist == "HalfNormal":
        params, dist, sig = {"sigma": scale}, pm.HalfNormal, "()->()"
    else:
        params, dist, sig = {"nu": nu, "sigma": scale}, pm.HalfStudentT, "(),()->()"
    return _free(name, dist, params, transforms.log, shape, sig, dims=dims)


# pm.Data holding the data-dependent constants of the model (see build_model)
CONSTANT_DATA = (
    "loc",
    "scale",
    "weights_a",
    "means_mu_z",
    "means_sigma_z",
    "sds_sigma_z",
    "sds_nu",
    "corr_eta",
)  # and, for mclust's families with a shape, "shape_mu_z" and "shape_sigma"


def constant_values(spec: GMMSpec) -> dict[str, np.ndarray]:
    """Values of the model's constant data (:data:`CONSTANT_DATA`) for ``spec``.

    Locations and scales of the priors are given on the standardised scale
    ``z = (x - loc) / scale``, where the model samples.
    """
    rp, loc, scale = spec.priors, spec.loc, spec.scale
    D = spec.n_features
    fam = spec.family
    shape = {}
    if fam.parameterisation == "eigen" and fam.shape != "I" and D > 1:
        shape = {
            "shape_mu_z": shape_location_z(rp.shape_mu, np.broadcast_to(scale, (D,))),
            "shape_sigma": np.asarray(float(rp.shape_sigma)),
        }
    return shape | {
        "loc": np.broadcast_to(np.asarray(loc, dtype=float), (D,)).copy(),
        "scale": np.broadcast_to(np.asarray(scale, dtype=float), (D,)).copy(),
        "weights_a": np.broadcast_to(
            np.asarray(rp.weights_a, dtype=float), (spec.n_components,)
        ).copy(),
        "means_mu_z": np.broadcast_to((rp.means_mu - loc) / scale, (D,)).copy(),
        "means_sigma_z": np.broadcast_to(rp.means_sigma / scale, (D,)).copy(),
        "sds_sigma_z": np.broadcast_to(rp.sds_sigma / scale, (D,)).copy(),
        "sds_nu": np.asarray(float(rp.sds_nu)),
        "corr_eta": np.asarray(float(rp.corr_eta)),
    }


_DIMS = {"loc": "feature", "scale": "feature", "weights_a": "component"}


def _constant_data(spec: GMMSpec) -> dict:
    return {
        name: pm.Data(name, value, dims=_DIMS.get(name, "feature" if value.ndim else None))
        for name, value in constant_values(spec).items()
    }


def _covariance(model: pm.Model, spec: GMMSpec, c: dict, means_z):
    """The family's covariance parameters, as its record declares them: sds (dims
    ``fam.sd_dims``) and, for a correlated family, LKJ correlations (per component or
    shared); the deterministics ``means``, ``sds``, ``covariance`` (and ``correlation``)
    in the data's units. Returns the likelihood's covariance argument."""
    fam, rp = spec.family, spec.priors
    if fam.parameterisation == "eigen":  # volume, shape and orientation
        from bayesgmm.inference.eigen_model import eigen_covariance

        return eigen_covariance(model, spec, c, means_z)
    K, D = spec.n_components, spec.n_features
    loc, scale = c["loc"], c["scale"]
    sd_scale, nu = c["sds_sigma_z"], c["sds_nu"]
    sd_shape = tuple({"component": K, "feature": D}[d] for d in fam.sd_dims)
    sd_scale = sd_scale[0] if fam.isotropic else sd_scale
    sds_z = _sd_prior("sds_z", rp, sd_scale, nu, fam.sd_dims, sd_shape)
    comp_feature = ("component", "feature")
    if fam.correlated:
        column = sds_z[:, :, None] if fam.per_component else sds_z[:, None]
        if spec.has_corr:
            shape = (K, D, D) if fam.per_component else (D, D)
            chol_corr = _free(
                "chol_corr",
                _LKJCorr(D),
                {"eta": c["corr_eta"]},
                transforms.CholeskyCorrTransform(n=D, upper=False),  # LKJCorr's own
                shape[:-1],  # one unit per row of the factor
                "()->(d,d)",
                index=corr_coordinate_rows(D),
                shape=shape,
            )
            model.named_vars_to_dims["chol_corr"] = (*fam.corr_dims, "feature", "feature_bis")
            cov_param = column * chol_corr
        else:
            cov_param = column
        pm.Deterministic("sds", sds_z * scale, dims=fam.sd_dims)
    else:
        cov_param = sds_z
        sds = sds_z[:, None] * scale[None, :] if fam.isotropic else sds_z * scale
        sds = pm.Deterministic("sds", sds, dims=comp_feature)
    pm.Deterministic("means", loc + means_z * scale, dims=comp_feature)
    cov_dims = ("component", "feature", "feature_bis")
    if fam.correlated:
        chol_cov = scale[:, None] * cov_param  # diag(scale) @ L_z
        cov = chol_cov @ pt.swapaxes(chol_cov, -1, -2)
        if not fam.per_component:
            cov = pt.broadcast_to(cov, (K, D, D))
        pm.Deterministic("covariance", cov, dims=cov_dims)
        if spec.has_corr:
            corr = chol_corr @ pt.swapaxes(chol_corr, -1, -2)
            pm.Deterministic("correlation", corr, dims=(*fam.corr_dims, "feature", "feature_bis"))
    else:
        cov = pt.eye(D)[None, :, :] * (sds**2)[:, :, None]
        pm.Deterministic("covariance", cov, dims=cov_dims)
    return cov_param


def build_model(
    X,
    n_components: int | None = None,
    covariance_type: str = "full",
    priors=None,
    *,
    feature_names: Sequence[str] | None = None,
    spec: GMMSpec | None = None,
    batch_size: int | None = None,
    sample_weight=None,
    missing: str = "error",
    noise_cov=None,
    labels=None,
    background: float | None = None,
) -> pm.Model:
    """Build the marginalised Bayesian Gaussian mixture as a ``pm.Model``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
        Number of mixture components K (not needed when ``spec`` is given).
    covariance_type : {"full", "tied", "diag", "spherical"}
    priors : dict, optional
        Prior overrides, see :mod:`bayesgmm.core.priors`.
    feature_names : sequence of str, optional
    spec : GMMSpec, optional
        A ready specification (from :func:`make_spec`); then ``X`` must be validated data.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the rows: the likelihood is ``sum_i w_i log p(x_i)``, as for
        the data with row ``i`` repeated ``w_i`` times. ``pm.Data("sample_weight")`` and
        the potential ``x_weights`` (``sum_i (w_i - 1) log p(x_i)``) carry them, so that
        ``x``'s own pointwise log-likelihood stays one term per point. Give the same
        weights to :func:`make_spec`, whose data-scaled defaults are weighted.
    missing : {"error", "marginalize"}, default="error"
        With ``"marginalize"``, NaN entries of ``X`` are missing at random: each point's
        likelihood is the Gaussian marginal of its observed coordinates, one marginal per
        missingness pattern (``pm.Data("missing_rows_<p>")`` holds each pattern's rows).
    noise_cov : array-like of shape (n_samples, n_features[, n_features]), optional
        Known measurement errors (covariances, or variances of independent errors): the
        likelihood is the deconvolved mixture's, ``sum_k w_k N(x_i | mu_k, Sigma_k + S_i)``
        (``pm.Data("noise_cov")``, (n, D, D)); see :mod:`bayesgmm.core.noise`.
    labels : array-like of shape (n_samples,), optional
        Known components (``-1``: unknown; :mod:`bayesgmm.core.labels`): a labelled
        point's likelihood is ``log w_k + log N(x_i | mu_k, Sigma_k)`` of its own
        component ``k`` (``pm.Data("labels")``).
    background : float, optional
        ``log(1 / V)``: a uniform background-noise component of density ``1 / V`` in the
        data's units (:func:`bayesgmm.core.background.check_noise`; ``pm.Data
        ("background")``). Its weight ``noise_weight ~ Beta(a_0, sum(a))`` (``a_0`` the
        mean of the Dirichlet's ``a``), so that ``((1 - noise_weight) weights,
        noise_weight)`` is Dirichlet ``(a, a_0)``: ``weights`` are then the Gaussian
        components' shares of the clustered points, and component ``k``'s mixture weight is
        ``(1 - noise_weight) weights[k]``. Not with missing values, measurement errors or
        minibatches.
    batch_size : int, optional
        For minibatch ADVI (:mod:`bayesgmm.inference.advi`): when smaller than the number of
        points, ``x`` observes a random ``pm.Minibatch`` of this many rows of ``data``
        per evaluation, with ``total_size`` set so its log-likelihood is scaled to the
        full data. ``None`` (the default, and what NUTS uses) observes all the data.

    Returns
    -------
    pm.Model
        Free variables ``weights`` (component), ``means_z`` (component, feature) and, by
        family, ``sds_z`` / ``chol_corr``, their value variables ``weights_scaled_simplex__``,
        ``means_z_scaled__``, ``sds_z_scaled_log__``, ``chol_corr_scaled_cholesky_corr__``
        in the units of ``pm.Data`` ``<variable>_unit`` (ones; see
        :func:`~bayesgmm.inference.coordinates.set_coordinate_units`); deterministics in
        the data's units ``means``, ``sds``, ``covariance`` (component, feature,
        feature_bis) and, for full/tied, ``correlation``; observed ``x`` holding
        ``pm.Data("data")`` (obs, feature), or a minibatch of it when ``batch_size`` is
        given.

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> model = build_model(load_faithful(), 2)
    >>> sorted(v.name for v in model.free_RVs)
    ['chol_corr', 'means_z', 'sds_z', 'weights']
    >>> model.named_vars_to_dims["means"]
    ('component', 'feature')
    >>> model.rvs_to_values[model["sds_z"]].name
    'sds_z_scaled_log__'
    """
    if spec is None:
        if n_components is None:
            raise ConfigError("build_model needs n_components (or a spec).")
        X, spec = make_spec(X, n_components, covariance_type, priors, feature_names,
                            sample_weight=sample_weight, missing=missing)  # fmt: skip
    else:
        X = np.asarray(X, dtype=float)
    sample_weight = check_sample_weight(sample_weight, X)
    if sample_weight is not None and batch_size is not None:
        raise ConfigError(
            "sample_weight is not available with minibatch ADVI (inference='advi'); use NUTS."
        )
    fam = spec.family
    patterns = Patterns.of(X) if np.isnan(X).any() else None
    if patterns is not None and batch_size is not None:
        raise ConfigError(
            "missing values are not available with minibatch ADVI (inference='advi'); use NUTS."
        )

    noise_cov = check_noise_cov(noise_cov, X)  # refused with missing values
    if noise_cov is not None and batch_size is not None:
        raise ConfigError("noise_cov is not available with minibatch ADVI (yet).")
    labels = check_labels(labels, X.shape[0], spec.n_components)
    if labels is not None and batch_size is not None:
        raise ConfigError("known labels are not available with minibatch ADVI (yet); use NUTS.")
    if background is not None and (batch_size is not None or patterns is not None
                                   or noise_cov is not None):  # fmt: skip
        raise ConfigError(
            "a background-noise component (noise) is not available with missing values, "
            "measurement errors or minibatch ADVI (yet)."
        )

    with pm.Model(coords=spec.coords(X.shape[0])) as model:
        noise = None if noise_cov is None else pm.Data("noise_cov", noise_cov)
        known = None if labels is None else pm.Data("labels", labels, dims="obs")
        if patterns is not None:
            # pm.Data holds no NaN: the missing entries are zeros that the likelihood never
            # reads, flagged by "missing_mask" (training_data puts the NaN back), and the
            # rows of each missingness pattern are data of the model
            nan = np.isnan(X)
            pm.Data("missing_mask", nan.astype(np.int8), dims=("obs", "feature"))
            pattern_rows = [pm.Data(f"missing_rows_{p}", rows)
                            for p, (rows, _, _) in enumerate(patterns.groups())]  # fmt: skip
            X = np.where(nan, 0.0, X)
        X_data = pm.Data("data", X, dims=("obs", "feature"))
        # Everything that depends on the data's values (standardisation and priors on the
        # standardised scale) is pm.Data, not a graph constant: models of the same
        # structure then share one graph, and a compiled sampler can be reused across
        # datasets (bayesgmm.inference.jaxnuts).
        c = _constant_data(spec)
        loc, scale = c["loc"], c["scale"]
        log_scale_sum = pt.sum(pt.log(scale))
        # every free variable's unconstrained coordinates come in units that
        # set_coordinate_units sets from the EM solution (bayesgmm.inference.coordinates)
        K, D = spec.n_components, spec.n_features
        a = {"a": c["weights_a"]}
        weights = _free("weights", pm.Dirichlet, a, transforms.simplex, (K - 1,), "(k)->(k)",
                        dims="component")  # fmt: skip
        params = {"mu": c["means_mu_z"], "sigma": c["means_sigma_z"]}
        means_z = _free("means_z", pm.Normal, params, None, (K, D), "(),()->()",
                        dims=("component", "feature"))  # fmt: skip
        cov_param = _covariance(model, spec, c, means_z)
        mix_weights, log_bg = weights, None
        if background is not None:  # the background: one more Dirichlet component
            log_bg = pm.Data("background", np.asarray(float(background)))
            a_bg = {"alpha": pt.mean(c["weights_a"]), "beta": pt.sum(c["weights_a"])}
            noise_weight = _free("noise_weight", pm.Beta, a_bg, transforms.logodds, (),
                                 "(),()->()")  # fmt: skip
            mix_weights = pt.concatenate([(1.0 - noise_weight) * weights, noise_weight[None]])
        core_ndim = (1, 2, cov_param.ndim)
        observed = {"observed": X_data, "dims": ("obs", "feature")}
        if batch_size is not None and batch_size < X.shape[0]:
            batch = pm.Minibatch(X_data, batch_size=int(batch_size))
            observed = {"observed": batch, "total_size": X.shape[0]}

        def logp(value, *params):
            # PyMC broadcasts parameters to the observations' batch dims; drop those
            weights, means_z, cov_param = (
                p[(0,) * (p.ndim - nd)] for p, nd in zip(params, core_ndim, strict=True)
            )
            z = (value - loc) / scale
            log_w = pt.log(weights)  # (K + 1) with the background: its weight last
            if known is not None:  # known labels rule out the other components: (N, K)
                K = log_w.shape[-1]  # labelled points are never the background's
                other = pt.ge(known, 0)[:, None] & pt.neq(known[:, None], pt.arange(K)[None])
                log_w = pt.switch(other, -np.inf, log_w[None, :])
            if noise is not None:  # known measurement errors: the deconvolved mixture
                noise_z = noise / (scale[:, None] * scale[None, :])
                return noise_loglik(z, noise_z, log_w, means_z, cov_param,
                                    fam.kernel) - log_scale_sum  # fmt: skip
            if patterns is not None:  # NaN = missing: the marginal of the observed part
                return missing_loglik(z, pattern_rows, patterns, log_w, means_z,
                                      cov_param, pt.log(scale), fam.kernel)  # fmt: skip
            comp = component_logp_z(z, means_z, cov_param, fam.kernel)
            if log_bg is not None:  # the background's density on the standardised scale
                flat = pt.full((z.shape[0], 1), log_bg + log_scale_sum)
                comp = pt.concatenate([comp, flat], axis=-1)
            return pm.math.logsumexp(log_w + comp, axis=-1, keepdims=False) - log_scale_sum

        x = pm.CustomDist(
            "x",
            mix_weights,
            means_z,
            cov_param,
            logp=logp,
            signature=f"({'j' if log_bg is not None else 'k'}),(k,d),"
            f"{fam.kernel.sd_signature()}->(d)",
            **observed,
        )
        if sample_weight is not None:
            # frequency weights: sum_i w_i log p(x_i) = x's own term + sum_i (w_i - 1) ...
            # (the same graph as x's, merged when compiled); x stays one term per point
            w = pm.Data("sample_weight", np.asarray(sample_weight, dtype=float), dims="obs")
            pm.Potential("x_weights", pt.sum((w - 1.0) * pm.logp(x, X_data)))
    return model
