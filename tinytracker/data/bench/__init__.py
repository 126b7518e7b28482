"""``python -m tinytracker.data.bench``: the command (``__main__``) that reports the JPEG and
packed loader rates. The measurement is :func:`tinytracker.data.throughput.loader_rate`."""
