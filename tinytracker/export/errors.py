"""The one error type of ``python -m tinytracker.export``."""


class ExportError(RuntimeError):
    """An export that cannot be done as asked, or whose result does not match PyTorch."""
