"""Errors that carry a one-line message meant for the operator, not a traceback."""


class DigestError(Exception):
    """Base for errors the CLI reports as one line and a non-zero exit."""


class ConfigError(DigestError):
    """A DIGEST_* variable has a value the service cannot run with."""


class SchemaError(DigestError):
    """The database schema is missing or older than the code."""


class SourceError(DigestError):
    """A paper source could not be read (down, refusing, or answering nonsense)."""
