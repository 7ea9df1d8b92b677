"""The model: integer bijections, the networks that parametrise them, priors, the IDF."""

__all__ = [
    "IDF",
    "IDFConfig",
    "AdditiveCoupling",
    "Permutation",
    "squeeze",
    "unsqueeze",
    "round_ste",
    "MixtureParams",
    "split_params",
    "log2_prob",
]

from nfcompress.flows.bijections import AdditiveCoupling, Permutation, round_ste, squeeze, unsqueeze
from nfcompress.flows.idf import IDF, IDFConfig
from nfcompress.flows.priors import MixtureParams, log2_prob, split_params
