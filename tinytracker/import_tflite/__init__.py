"""Import the authors' released TFLite models: ``python -m tinytracker.import_tflite``.

``reader`` parses the flatbuffer, ``convert`` maps its weights onto our TinyTracker /
TinyTrackerS, ``emulation`` optionally reproduces its int8 activations, ``checkpoint`` writes
a tinytracker checkpoint, ``parity`` runs the file with LiteRT next to the import;
``layer_tables`` documents the files' operators and the module each maps to.
"""
