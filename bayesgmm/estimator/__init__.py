"""The estimator: :class:`~bayesgmm.BayesianGMM`, its fitted state and its saved form.

Runs the pipeline of the tiers below (core, inference, analysis), importing the
inference and analysis tiers only inside the methods that need them.
"""
