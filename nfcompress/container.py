"""The .nfc byte format: a small checked header, a chunk table, the chunks, nothing else.

See docs/format.md. Parsing is strict: every field is range-checked and the header carries its
own checksum, so damage is reported before any large allocation or any decoding work. Version 5
files leave out the name of a shipped model, which their model hash identifies; from version 6
a file may instead be coded by the per-image linear model (nfcompress.coders.linear), with no model
and one chunk. Versions 7 to 11 have the layout of version 6; their linear payloads are of the
linear model's second and third schemes, version 9 adds the JPEG-history model's payloads,
version 10 the causal model's, version 11 the screen model's, version 12 its second scheme,
version 13 the adaptive model's, version 14 its second network, version 15 the causal
model's second network, version 16 the third network of each, version 17 the adaptive
model's fourth, its side information without the spike shares, version 18 its fifth, which
reads the fitted residuals of decoded sub-pixels, version 19 its sixth, which reads a far ring
of them and their means over windows, and version 20 its seventh, which decodes in steeper
wavefronts and reads the residuals they decode right of north-east. Version 21 tunes the causal
and adaptive networks' output layers as they code; from version 22 (`LEAN`) a model-free file
gives no payload size and leaves out the zero bytes that end its payload. From version 23 a
causal file may hold a grey image. A file is written with
the oldest version that holds its kind (`WRITTEN`). Every earlier version still reads.
"""

__all__ = [
    "MAGIC",
    "VERSION",
    "VERSIONS",
    "SHIPPED_MODELS",
    "UNNAMED_BEFORE_5",
    "MODES",
    "MAX_SIDE",
    "MAX_PIXELS",
    "KINDS",
    "WRITTEN",
    "LEAN",
    "Header",
    "pack",
    "unpack",
]

import struct
import zlib
from dataclasses import dataclass, field

from nfcompress.errors import FormatError

MAGIC = b"NFC"
VERSION = 23  # the newest; see WRITTEN for the version each payload kind is written with
VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)
# Models shipped with nfcompress, oldest first. Version 5 files do not spell out their names: the
# model hash says which one a file needs (an unnamed file's model_name is "").
SHIPPED_MODELS = ("nfc-small",)
# The model of an unnamed file of versions 2 to 4, when nfcompress shipped one model.
UNNAMED_BEFORE_5 = "nfc-small"
MODES = ("L", "LA", "RGB", "RGBA")
# The kind of device a file decodes on; "any" for portable files (exact integer network).
DEVICES = ("cpu", "cuda", "any")
# Device bits of a file coded by a model-free payload, not a flow (from version 6): it needs no
# model and decodes anywhere.
_MODEL_FREE = 3
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
MAX_CHUNKS = 1 << 20
MAX_NAME = 64
# The largest image written as one tile; a damaged size then costs at most one such decode.
ONE_TILE_SIDE = 256
# Flags from version 3; bits 0-1 are the device kind and bits 4-5 the mode.
_ALPHA, _ONE_TILE, _NAMED, _ORIENTED = 0x04, 0x08, 0x40, 0x80
_JPEG = _ONE_TILE  # in a model-free file (from version 9): the JPEG-history model coded the pixels
_CAUSAL = _ORIENTED  # in a model-free file (from version 10): the causal model coded them
_ADAPTIVE = _NAMED  # in a model-free file (from version 13), alone: the adaptive model coded them
# The payload kinds, each named by one model (nfcompress.coders): the flow's files have device
# bits 0-2; the others device bits 3 and the flag here.
KIND_FLAGS = {"linear": 0, "jpeg": _JPEG, "causal": _CAUSAL, "screen": _JPEG | _CAUSAL, "adaptive": _ADAPTIVE}
KINDS = ("flow", *KIND_FLAGS)
# The version a file of each kind is written with: the oldest that holds it, so that nfcompress
# 0.9 and 0.10 still read every file of the kinds they know.
WRITTEN = {"flow": 10, "linear": 10, "jpeg": 10, "causal": 23, "screen": 12, "adaptive": 22}
# From this version a model-free file gives no payload size (the payload runs to the alpha stream,
# or to the end) and leaves out the zero bytes that end its payload's last 32-bit word (at most 3;
# the decoder puts them back): 3 to 4 of a 32x32 thumbnail's 19 bytes beside its pixels' bits.
LEAN = 22
GREY_CAUSAL = 23  # from this version a causal file may hold a grey image (modes L and LA)


@dataclass
class Header:
    """Everything a decoder needs besides the model's weights."""

    model_name: str  # "" in an unnamed (version 5) file: the shipped model its hash identifies
    model_hash: bytes  # first bytes of the weights' sha256 (4; 2 from version 4)
    width: int
    height: int
    mode: str
    tile: int
    batch: int
    pixel_crc: int
    device: str = "cpu"
    bit_depth: int = 8
    chunk_sizes: list[int] = field(default_factory=list)
    alpha_size: int = 0
    # Every tile's orientation is coded at the head of its chunk (see nfcompress.coders.flow.orientation).
    oriented: bool = False
    # Set by unpack: the file's version, and whether it was coded as a single tile (tile and
    # batch then mean nothing).
    version: int = VERSION
    one_tile: bool = False
    kind: str = "flow"  # the payload's kind (KINDS): which model coded the pixels

    @property
    def channels(self) -> int:
        """Channels of the decoded image."""
        return len(self.mode)

    @property
    def colour_channels(self) -> int:
        """Channels of the colour planes (alpha aside): 1 for grey, 3 for RGB."""
        return 1 if self.mode in ("L", "LA") else 3

    @property
    def model_free(self) -> bool:
        """Whether the payload needs no model's weights (every kind but the flow's)."""
        return self.kind != "flow"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"truncated .nfc file (ends inside the {what})")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def varint(self, what: str, limit: int) -> int:
        n = shift = 0
        for _ in range(10):
            b = self.take(1, what)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if n > limit:
                    raise FormatError(f"corrupted .nfc file: {what} {n} exceeds {limit}")
                return n
        raise FormatError(f"corrupted .nfc file: {what} is not a valid number")


def pack(h: Header, chunks: list[bytes], alpha: bytes = b"") -> bytes:
    """Header, chunk table and payload as one .nfc file of the current version."""
    if h.kind not in KINDS:
        raise ValueError(f"unknown payload kind {h.kind!r}")
    if h.model_free:
        return _pack_model_free(h, chunks, alpha)
    # "" (as unpack gives an unnamed file) or a shipped name: unnamed, known by the hash.
    name = b"" if h.model_name in ("", *SHIPPED_MODELS) else h.model_name.encode()
    if len(name) > MAX_NAME or len(h.model_hash) < 2 or not chunks or h.version < WRITTEN[h.kind]:
        raise ValueError(f"model name too long, hash under 2 bytes, no chunks, or a version before {WRITTEN[h.kind]}")
    # An image within one tile is one chunk: no tile, batch or chunk count.
    one_tile = len(chunks) == 1 and max(h.width, h.height) <= min(h.tile, ONE_TILE_SIDE)
    flags = DEVICES.index(h.device) | (_ALPHA if alpha else 0) | (_ONE_TILE if one_tile else 0)
    flags |= MODES.index(h.mode) << 4 | (_NAMED if name else 0) | (_ORIENTED if h.oriented else 0)
    head = bytearray(MAGIC) + bytes([WRITTEN[h.kind], flags])
    if name:
        head += bytes([len(name)]) + name
    head += h.model_hash[:2] + _varint(h.width) + _varint(h.height)
    if not one_tile:
        head += bytes([h.tile.bit_length() - 1]) + _varint(h.batch) + _varint(len(chunks))
    for c in chunks:
        head += _varint(len(c))
    if alpha:
        head += _varint(len(alpha))
    head += struct.pack("<I", h.pixel_crc)
    head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    return bytes(head) + b"".join(chunks) + alpha


def _pack_model_free(h: Header, chunks: list[bytes], alpha: bytes) -> bytes:
    """A file of a model-free payload: no model fields, no tiling, one chunk (from LEAN: of no
    size given, without the zero bytes that end it)."""
    if len(chunks) != 1 or h.version < WRITTEN[h.kind]:
        raise ValueError(f"a model-free file has one chunk and a version from {WRITTEN[h.kind]}")
    flags = _MODEL_FREE | (_ALPHA if alpha else 0) | KIND_FLAGS[h.kind]
    flags |= MODES.index(h.mode) << 4
    lean = WRITTEN[h.kind] >= LEAN
    head = bytearray(MAGIC) + bytes([WRITTEN[h.kind], flags]) + _varint(h.width) + _varint(h.height)
    head += (b"" if lean else _varint(len(chunks[0]))) + (_varint(len(alpha)) if alpha else b"")
    head += struct.pack("<I", h.pixel_crc)
    head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    return bytes(head) + (_trimmed(chunks[0]) if lean else chunks[0]) + alpha


def _trimmed(payload: bytes) -> bytes:
    """A payload of whole 32-bit words without the zero bytes that end its last one (at most 3)."""
    if len(payload) % 4:
        raise ValueError("a payload is a whole number of 32-bit words")
    end = len(payload)
    while end > max(len(payload) - 3, 0) and payload[end - 1] == 0:
        end -= 1
    return payload[:end]


def _flags(r: _Reader, version: int) -> dict:
    """The fields before the model hash, as each version lays them out."""
    if version >= 3:
        (flags,) = r.take(1, "header")
        if flags & 0x03 >= (len(DEVICES) + 1 if version >= 6 else len(DEVICES) if version >= 4 else 2):
            raise FormatError("corrupted .nfc header (unknown flags)")
        model_free = flags & 0x03 == _MODEL_FREE
        if model_free and (
            flags
            & ((_NAMED if version < 13 else 0) | (_ORIENTED if version < 10 else 0) | (_ONE_TILE if version < 9 else 0))
            or (flags & _ADAPTIVE and flags & (_JPEG | _CAUSAL))  # the adaptive flag stands alone
            or (flags & (_JPEG | _CAUSAL) == _JPEG | _CAUSAL and version < 11)  # a screen payload
            # The causal model codes colour only before GREY_CAUSAL.
            or (flags & (_JPEG | _CAUSAL) == _CAUSAL and (flags >> 4) & 0x03 < 2 and version < GREY_CAUSAL)
        ):
            raise FormatError("corrupted .nfc header (flags a model-free file cannot have)")
        name_len = r.take(1, "header")[0] if flags & _NAMED and not model_free else 0
        if flags & _NAMED and not model_free and not 0 < name_len <= MAX_NAME:
            raise FormatError("corrupted .nfc header (bad model name length)")
        return {
            "device": flags & 0x03,
            "alpha": bool(flags & _ALPHA),
            "one_tile": bool(flags & _ONE_TILE),
            "mode": (flags >> 4) & 0x03,
            "oriented": bool(flags & _ORIENTED),
            "adaptive": model_free and bool(flags & _ADAPTIVE),
            "name_len": name_len,
        }
    flags, name_len = r.take(2, "header")
    if flags & 0x0F >= 2 or flags & (0xC0 if version >= 2 else 0xE0):
        raise FormatError("corrupted .nfc header (unknown flags)")
    if name_len > MAX_NAME or (name_len == 0 and version < 2):
        raise FormatError("corrupted .nfc header (bad model name length)")
    return {
        "device": flags & 0x0F,
        "alpha": bool(flags & 0x10),
        "one_tile": version >= 2 and bool(flags & 0x20),
        "oriented": False,
        "adaptive": False,
        "name_len": name_len,
    }


def _kind(f: dict) -> str:
    """The payload kind a model-free file's flags name (`_flags` refused any other combination)."""
    bits = (_JPEG if f["one_tile"] else 0) | (_CAUSAL if f["oriented"] else 0) | (_ADAPTIVE if f["adaptive"] else 0)
    return next(kind for kind, flag in KIND_FLAGS.items() if flag == bits)


def unpack(data: bytes) -> tuple[Header, list[bytes], bytes]:
    """Parse and check a .nfc file (of any version in VERSIONS): its header, chunks and alpha payload."""
    r = _Reader(data)
    if r.take(len(MAGIC), "magic bytes") != MAGIC:
        raise FormatError("not an .nfc file (wrong magic bytes)")
    (version,) = r.take(1, "header")
    if version not in VERSIONS:
        raise FormatError(
            f"unsupported .nfc format version {version} (this build reads {', '.join(map(str, VERSIONS))})"
        )
    f = _flags(r, version)
    try:
        name = r.take(f["name_len"], "model name").decode() if f["name_len"] else ""
    except UnicodeDecodeError:
        raise FormatError("corrupted .nfc header (model name is not text)") from None
    model_free = f["device"] == _MODEL_FREE
    model_hash = b"" if model_free else r.take(2 if version >= 4 else 4, "model hash")
    width = r.varint("width", MAX_SIDE)
    height = r.varint("height", MAX_SIDE)
    if version < 3:
        mode_depth = r.take(1, "header")[0]
        if mode_depth & 0x0F >= len(MODES) or mode_depth >> 4 != 8:
            raise FormatError("corrupted .nfc header (unknown mode or bit depth)")
        f["mode"] = mode_depth & 0x0F
    if model_free:
        tile, batch, n_chunks = 0, 0, 1
    elif f["one_tile"]:
        if max(width, height) > ONE_TILE_SIDE:
            raise FormatError("corrupted .nfc header (image too large for one tile)")
        tile, batch, n_chunks = ONE_TILE_SIDE, 1, 1
    else:
        tile_log = r.take(1, "header")[0]
        if not 3 <= tile_log <= 14:
            raise FormatError("corrupted .nfc header (bad tile size)")
        tile = 1 << tile_log
        batch = r.varint("batch size", 4096)
        n_chunks = r.varint("chunk count", MAX_CHUNKS)
        if 4 * n_chunks > len(data):
            raise FormatError(f"truncated .nfc file: {n_chunks} chunks cannot fit in {len(data)} bytes")
    lean = model_free and version >= LEAN
    sizes = [] if lean else [r.varint("chunk size", 1 << 40) for _ in range(n_chunks)]
    if any(s % 4 or s < (0 if model_free else 4) for s in sizes):
        raise FormatError("corrupted .nfc file: a chunk size is not a whole number of 32-bit words")
    alpha_size = r.varint("alpha size", 1 << 40) if f["alpha"] else 0
    pixel_crc = struct.unpack("<I", r.take(4, "checksum"))[0]
    end = r.pos
    if version >= 4:
        (head_crc,) = struct.unpack("<H", r.take(2, "header checksum"))
        crc_ok = zlib.crc32(data[:end]) & 0xFFFF == head_crc
    else:
        (head_crc,) = struct.unpack("<I", r.take(4, "header checksum"))
        crc_ok = zlib.crc32(data[:end]) == head_crc
    if not crc_ok:
        raise FormatError("corrupted .nfc header (header checksum mismatch)")
    if width == 0 or height == 0 or width * height > MAX_PIXELS:
        raise FormatError(f"corrupted .nfc header (image size {width}x{height} out of range)")
    body = len(data) - r.pos
    if lean:
        sizes = [max(body - alpha_size, 0)]
    if sum(sizes) + alpha_size != body:
        kind = "truncated" if sum(sizes) + alpha_size > body else "corrupted"
        raise FormatError(f"{kind} .nfc file: payload is {body} bytes, the header says {sum(sizes) + alpha_size}")
    chunks = [r.take(s, "payload") for s in sizes]
    if lean:  # the zero bytes that ended its last word
        chunks = [chunks[0] + bytes(-sizes[0] % 4)]
        sizes = [len(chunks[0])]
    alpha = r.take(alpha_size, "alpha payload")
    h = Header(
        model_name=name or ("" if version >= 5 else UNNAMED_BEFORE_5),
        model_hash=model_hash,
        width=width,
        height=height,
        mode=MODES[f["mode"]],
        tile=tile,
        batch=batch,
        pixel_crc=pixel_crc,
        device="any" if model_free else DEVICES[f["device"]],
        chunk_sizes=sizes,
        alpha_size=alpha_size,
        oriented=f["oriented"] and not model_free,
        version=version,
        one_tile=f["one_tile"] and not model_free,
        kind=_kind(f) if model_free else "flow",
    )
    return h, chunks, alpha
