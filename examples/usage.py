"""Compress and restore an image with the shipped model, from Python."""

from pathlib import Path

import numpy as np

import nfcompress

here = Path(__file__).parent
pixels = nfcompress.load_image(here / "pizza-128.png")
data = nfcompress.encode(pixels)
print(f"{len(data)} bytes, {8 * len(data) / pixels.size:.3f} bits per sub-pixel")
assert np.array_equal(nfcompress.decode(data), pixels)

codec = nfcompress.Codec.load()  # a chosen model and device, with figures
result = codec.encode(pixels)
print(f"real {result.bpsp:.3f} bpsp, model's ideal {result.ideal_bpsp:.3f} bpsp")

smaller = nfcompress.Codec.load(effort=3).encode(pixels)  # every tile in its cheapest orientation
print(f"effort 3: {smaller.bpsp:.3f} bpsp (decodes as fast as any other)")
assert np.array_equal(nfcompress.decode(smaller.data), pixels)

# Many small images: coded together, the same files as one at a time, several times faster.
thumbs = [np.ascontiguousarray(pixels[y : y + 32, x : x + 32]) for y in (0, 32, 64, 96) for x in (0, 32, 64, 96)]
results = codec.encode_many(thumbs)
assert [r.data for r in results[:2]] == [codec.encode(t).data for t in thumbs[:2]]
back = codec.decode_many([r.data for r in results])  # each an array, or the NfcError of its file
assert all(np.array_equal(b, t) for b, t in zip(back, thumbs))
print(f"{len(thumbs)} thumbnails together: {sum(len(r.data) for r in results)} bytes")
