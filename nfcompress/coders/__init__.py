"""The models that code an image, a package each, behind one interface (`Coder`).

- `flow`: the integer discrete flow, a learned model with an exact integer form (needs torch).
- `linear`: the per-image linear model, fitted to each image by least squares.
- `jpeg`: JPEG-history recovery, for images that were JPEGs once.
- `causal`: a small learned network in exact integer arithmetic, for thumbnails.

Which of them codes an image is nfcompress.policy's choice; nfcompress.codec writes the file.
"""

__all__ = ["Coder", "Payload", "undecodable"]

from nfcompress.coders.base import Coder, Payload, undecodable
