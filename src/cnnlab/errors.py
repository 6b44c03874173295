"""One error type per domain. Each message names the file or value and says how to fix it.

The CLI turns any `CnnlabError` into one line on stderr and exit code 2; the web app into a
4xx JSON body. Library code raises these and never prints.
"""


class CnnlabError(Exception):
    """Base class of every error cnnlab raises on purpose (bad input, missing files, ...)."""

    exit_code = 2


class DatasetFormatError(CnnlabError):
    """A dataset file is malformed: wrong magic, wrong size, bad labels, MD5 mismatch..."""


class DatasetNotFoundError(CnnlabError):
    """No source could provide a dataset (each source tried is named in the message)."""


class CheckpointError(CnnlabError):
    """A run folder or weights file is missing, truncated, tampered with or inconsistent."""


class ImageInputError(CnnlabError):
    """A user's image cannot be used: not an image, truncated, too large, unsupported.

    `reason` says which, so that the web app can answer with the right status: "empty",
    "unsupported" (not an image, or a format outside the allow-list), "too_large" (bytes or
    pixels over the cap, decompression bombs), "broken" (truncated or corrupt), "no_ink"
    (blank) or "unusable" (anything else).
    """

    def __init__(self, message: str, reason: str = "unusable"):
        super().__init__(message)
        self.reason = reason


class ShapeError(CnnlabError):
    """A layer's output size is impossible (kernel larger than the padded input, ...)."""


class ConfigError(CnnlabError):
    """A setting is invalid (unknown model, optimiser, negative epochs, ...)."""


class TrainingDivergedError(CnnlabError):
    """Training produced NaN or stayed at chance; the message gives the likely cause and a fix."""


class ExportError(CnnlabError):
    """Exporting a model failed, or the exported model disagrees with torch."""
