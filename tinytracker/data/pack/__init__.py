"""``python -m tinytracker.data.pack``: the command (``__main__``) that packs a configured
dataset ahead of training. The packed format itself is :mod:`tinytracker.data.packed`."""
