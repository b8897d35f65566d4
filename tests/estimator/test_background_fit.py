"""A background-noise component under NUTS (``BayesianGMM(noise=True)``): Old Faithful
with 30 scattered outliers keeps its clusters, the outliers go to the background, and the
fit predicts, draws, flags anomalies and saves like any other."""

import numpy as np
import pytest
from conftest import faithful_with_outliers

from bayesgmm import BayesianGMM, load_faithful
from bayesgmm.exceptions import ConfigError

SAMPLER = {"draws": 400, "tune": 400, "chains": 2, "random_seed": 3, "progressbar": False}


@pytest.fixture(scope="module")
def fits():
    X, outliers, _ = faithful_with_outliers()
    noisy = np.vstack([X, outliers])
    clean = BayesianGMM(2, sampler=SAMPLER).fit(X)
    with_noise = BayesianGMM(2, sampler=SAMPLER, noise=True).fit(noisy)
    without = BayesianGMM(2, sampler=SAMPLER).fit(noisy)
    return X, noisy, clean, with_noise, without


def _gaps(fit, clean) -> dict[str, float]:
    """Largest distance of ``fit``'s posterior means of the Gaussians' means and sds from
    the clean fit's, in the clean fit's posterior sds."""
    out = {}
    for name in ("means", "sds"):
        a, b = fit.posterior[name], clean.posterior[name]
        gap = abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))) / b.std(("chain", "draw"))
        out[name] = float(gap.max())
    return out


@pytest.mark.slow
def test_outliers_go_to_the_background_and_the_clusters_stay(fits):
    X, noisy, clean, with_noise, without = fits
    gaps = _gaps(with_noise, clean)
    assert max(gaps.values()) < 2.0, gaps
    labels = with_noise.predict(noisy)
    assert (labels[len(X) :] == -1).mean() >= 0.9
    assert (labels[: len(X)] == -1).mean() < 0.02  # the clusters' points stay theirs
    # without the background, the outliers widen the components
    assert max(_gaps(without, clean).values()) > 2.0, _gaps(without, clean)
    assert with_noise.diagnostics_.verdict in ("ok", "warn")
    print(f"gaps with the background {gaps}, without {_gaps(without, clean)}; outliers to "
          f"the background {(labels[len(X):] == -1).mean():.3f}, clean points "
          f"{(labels[:len(X)] == -1).sum()}")  # fmt: skip


def test_a_fit_with_a_background(tmp_path):
    X, outliers, _ = faithful_with_outliers(12)
    noisy = np.vstack([X[::2], outliers])
    sampler = {"draws": 100, "tune": 150, "chains": 2, "random_seed": 1, "progressbar": False}
    gmm = BayesianGMM(2, sampler=sampler, noise=True).fit(noisy)
    post = gmm.posterior
    assert post["noise_weight"].dims == ("chain", "draw")
    assert np.allclose(post["weights"].sum("component"), 1.0)  # the Gaussians' shares
    proba = gmm.predict_proba(noisy)
    assert proba.shape == (len(noisy), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(gmm.predict(noisy))) <= {-1, 0, 1}
    assert gmm.assignments().columns[-3] == "prob_noise"
    assert gmm.membership_draws()["component"].values.tolist()[-1] == "noise"
    flags = gmm.flag_anomalies(noisy)
    assert (flags["is_anomaly"] == (gmm.predict(noisy) == -1)).all()
    np.testing.assert_allclose(flags["score"], gmm.score_samples(noisy), rtol=1e-12)
    np.testing.assert_allclose(flags["noise_prob"], proba[:, -1], rtol=1e-12)
    # a threshold is a density threshold; with by="noise" it is refused
    by_density = gmm.flag_anomalies(noisy, threshold=-10.0)
    assert (by_density["is_anomaly"] == (by_density["score"] < -10.0)).all()
    with pytest.raises(ConfigError, match="threshold is a log-density threshold"):
        gmm.flag_anomalies(noisy, by="noise", threshold=-10.0)
    # draws: the background's share of new points is its weight
    _, comp = gmm.sample(4000, random_seed=0)
    w0 = float(post["noise_weight"].mean())
    assert abs((comp == -1).mean() - w0) < 4 * np.sqrt(w0 * (1 - w0) / 4000) + 0.01
    # the pointwise log-likelihood is the fitted mixture's (the background's term included)
    loglik = gmm.idata_["log_likelihood"]["x"].mean(("chain", "draw")).values
    per_draw = np.log(np.exp(gmm.score_samples(noisy)))  # log of the mean over draws
    assert np.all(loglik <= per_draw + 1e-9)  # Jensen: mean of logs <= log of mean
    saved = gmm.save(tmp_path / "m")
    back = BayesianGMM.load(saved)
    assert back.noise is True
    np.testing.assert_allclose(back.predict_proba(noisy), proba, rtol=1e-12)
    assert "noise_weight" in {v.name for v in back.model_.free_RVs}


def test_the_background_is_refused_where_it_is_not_available():
    X = load_faithful().to_numpy()
    with pytest.raises(ConfigError, match="advi"):
        BayesianGMM(2, inference="advi", noise=True).fit(X)
    with pytest.raises(ConfigError, match="noise"):
        BayesianGMM(2, noise="yes").fit(X)
    gmm = BayesianGMM(2)
    with pytest.raises(ConfigError, match="must be positive"):
        gmm.set_params(noise=-1.0).fit(X)


def test_a_noise_guess_reaches_the_em_start(monkeypatch):
    """``fit(X, noise_init=...)`` checks the guess and hands it to EM, whose starts use
    it (tests/core/test_em_noise_start.py); without a background it is refused."""
    X, outliers, _ = faithful_with_outliers(12)
    noisy = np.vstack([X, outliers])
    guess = np.r_[np.zeros(len(X), bool), np.ones(len(outliers), bool)]
    with pytest.raises(ConfigError, match="needs one"):
        BayesianGMM(2).fit(noisy, noise_init=guess)
    seen = {}

    class Stop(Exception):
        pass

    def em_spy(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr("bayesgmm.core.em.fit_em_checked", em_spy)
    with pytest.raises(Stop):
        BayesianGMM(2, noise=True).fit(noisy, noise_init=guess.astype(int))
    assert seen["noise_init"].dtype == bool and (seen["noise_init"] == guess).all()
