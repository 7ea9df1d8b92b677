"""Entropy coding: integer frequency tables from prior parameters, and ANS over them."""

__all__ = ["PRECISION", "Bucket", "build_tables", "Encoder", "Decoder"]

from nfcompress.coding.ans import Decoder, Encoder
from nfcompress.coding.tables import PRECISION, Bucket, build_tables
