"""The project's own error type: every failure a user can cause ends in one of these."""

__all__ = ["NfcError", "FormatError", "ModelMismatch", "ChecksumError"]


class NfcError(Exception):
    """A failure with a message meant for a person: one line, no traceback needed."""


class FormatError(NfcError):
    """The bytes are not a valid .nfc file (truncated, corrupted, or not one at all)."""


class ModelMismatch(NfcError):
    """The file needs another model, or another kind of device, than the one at hand."""


class ChecksumError(NfcError):
    """The payload does not decode to the pixels the encoder checksummed (damage, or other arithmetic)."""
