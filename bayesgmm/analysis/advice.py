"""What to do, per diagnostic check: the advice :func:`bayesgmm.diagnose` attaches to a
``warn`` or ``fail`` verdict (``OK_ADVICE`` for ``ok``)."""

__all__ = ["ADVICE", "OK_ADVICE"]

ADVICE = {
    "r_hat": "Chains disagree. Run more tuning and draws; check the 'modes' row for chains in "
    "different modes, and that the posterior was relabelled.",
    "ess_bulk": "Too few effective draws for the posterior centre: raise draws (and tune); a "
    "higher target_accept, a stronger prior or fewer components help poorly identified "
    "components mix.",
    "ess_tail": "Too few effective draws in the tails (intervals are unreliable): raise draws "
    "and tune; consider a stronger prior on sds or fewer components.",
    "mcse": "Posterior means are noisy relative to the posterior sd: raise draws.",
    "divergences": "Divergent transitions bias the posterior: raise target_accept (0.95-0.99); "
    "in mixtures they usually come from a nearly empty component, so try fewer components or a "
    "stronger prior (Dirichlet a > 1 on weights, tighter sds prior).",
    "tree_depth": "Trajectories hit the maximum tree depth (slow, possibly incomplete "
    "exploration): more tuning, a stronger prior, or fewer components.",
    "e_bfmi": "Low E-BFMI: the sampler explores the energy distribution poorly. More tuning; a "
    "stronger prior or fewer components often fixes the geometry.",
    "elbo_trend": "The ELBO was still changing at the end of the optimisation: raise n_steps "
    "(advi={'n_steps': ...}); if it oscillates, lower learning_rate or raise batch_size.",
    "elbo_progress": "The ELBO ended worse than it started at the EM solution: the optimisation "
    "diverged or left the mode. Lower learning_rate, raise batch_size, use more EM restarts, or "
    "use NUTS (inference='nuts').",
    "modes_stacked": "Chains settled in different posterior modes (not permuted labels); they "
    "were combined by stacking (Yao, Vehtari & Gelman 2022), weighting each mode by its "
    "leave-one-out predictive performance, and every sampled chain is kept in "
    "idata_['posterior_chains']. A mode with a nearly empty component suggests fewer "
    "components; to check the stacked answer, refit with more tuning (sampler={'tune': 3000}) "
    "or another random_seed.",
    "modes": "Chains sit in genuinely different modes (e.g. one chain merged two clusters), not "
    "just permuted labels: the pooled posterior is not trustworthy. Compare per-chain summaries "
    "(az.summary(idata.posterior.sel(chain=c))), use more EM restarts (em={'n_init': 50}), fewer "
    "components, or a stronger prior.",
}
OK_ADVICE = "-"
