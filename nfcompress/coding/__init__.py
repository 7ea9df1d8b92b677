"""Entropy coding: integer frequency tables from prior parameters, and ANS over them."""

__all__ = ["PRECISION", "Bucket", "plan_buckets", "coarse_weights", "fine_weights", "det_exp", "Encoder", "Decoder"]

from nfcompress.coding.ans import Decoder, Encoder
from nfcompress.coding.tables import PRECISION, Bucket, coarse_weights, det_exp, fine_weights, plan_buckets
