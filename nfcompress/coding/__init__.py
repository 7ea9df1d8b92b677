"""Entropy coding: integer frequency tables from prior parameters, and ANS over them."""

__all__ = [
    "PRECISION",
    "Bucket",
    "plan_buckets",
    "coarse_weights",
    "fine_weights",
    "det_exp",
    "Encoder",
    "Decoder",
    "push_latents",
    "pop_latents",
]

from nfcompress.coding.ans import Decoder, Encoder, pop_latents, push_latents
from nfcompress.coding.primitives import PRECISION, det_exp
from nfcompress.coding.tables import Bucket, coarse_weights, fine_weights, plan_buckets
