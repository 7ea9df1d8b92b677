"""A Pillow plugin: `Image.open("x.nfc")` and `image.save("x.nfc")` after `import nfcompress`."""

__all__ = ["NfcImageFile", "register"]

import numpy as np
from PIL import Image, ImageFile

from nfcompress.container import MAGIC, VERSIONS


def _accept(prefix: bytes) -> bool:
    return prefix[:3] == MAGIC and len(prefix) > 3 and prefix[3] in VERSIONS


class NfcImageFile(ImageFile.ImageFile):
    """Reads the header on open; decodes the pixels with the file's model on first load."""

    format = "NFC"
    format_description = "nfcompress lossless flow-coded image"

    def _open(self) -> None:
        from nfcompress.container import unpack
        from nfcompress.errors import NfcError

        self._nfc = self.fp.read()
        try:
            header, _, _ = unpack(self._nfc)
        except NfcError as e:
            raise SyntaxError(str(e)) from None
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.tile = []

    def load(self):
        """Decode once; later calls reuse the pixels."""
        if self._nfc is not None:
            from nfcompress.api import decode

            pixels = decode(self._nfc)
            self._nfc = None
            decoded = Image.fromarray(pixels)
            decoded.load()
            self.im = decoded.im
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from nfcompress.api import encode
    from nfcompress.io import load_image
    from nfcompress.policy import DEFAULT_EFFORT

    info = im.encoderinfo
    pixels = np.asarray(load_image(im))
    fp.write(
        encode(pixels, model=info.get("model", ""), effort=info.get("effort", DEFAULT_EFFORT), coder=info.get("coder"))
    )


def register() -> None:
    """Tell Pillow about .nfc files (done on `import nfcompress`)."""
    Image.register_open(NfcImageFile.format, NfcImageFile, _accept)
    Image.register_save(NfcImageFile.format, _save)
    Image.register_extension(NfcImageFile.format, ".nfc")
    Image.register_mime(NfcImageFile.format, "image/x-nfc")
