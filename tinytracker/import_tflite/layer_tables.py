"""Operator <-> module tables of the authors' released TFLite files.

They describe ``TinyTracker.tflite`` and ``TinyTrackerS.tflite`` (public repository
``pbonazzi/tinytracker``), and what :mod:`tinytracker.import_tflite.convert` relies on when it
pairs the files' weight operators, in graph order, with our modules in execution order
(:class:`~tinytracker.models.TinyTracker`, :class:`~tinytracker.models.TinyTrackerS`). Three
things an importer has to handle, because PyTorch and TFLite differ there, not the
architectures:

* **Batch norm** is folded into the preceding convolution in the TFLite files.
* **Padding of stride-2 3x3 convolutions** is TF "SAME": build the net with
  ``padding="tf_same"`` (:mod:`tinytracker.models.tf_padding`).
* **Flatten order** (TinyTracker only): TFLite reshapes an NHWC ``(1, 4, 4, 2)`` tensor, the
  module flattens NCHW ``(1, 2, 4, 4)``. Column ``(h * W + w) * C + c`` of the TFLite ``dense``
  kernel is column ``c * H * W + h * W + w`` of ``fc[0].weight``.

The constants below hold the tables as text (``help()`` and the docs show them).
"""

TINYTRACKER = """
Layers of the released ``TinyTracker.tflite`` (input 1x128x128x5 = RGB + grid embedding,
Keras model ``i_tracker_model_tomtom``) and the module each maps to:

====  ======================================  ========================================
op    TFLite (Keras name)                     module
====  ======================================  ========================================
0     CONV_2D 1x1 5->3, bias (conv2d)         ``input_adapter``
1     CONV_2D 3x3/2 3->16 +ReLU (Conv)        ``backbone.features[0]``
2-4   PAD, DW 3x3/2 16 +ReLU, 1x1 16->16      ``backbone.features[1]`` (no expand)
      (expanded_conv)
5-43  expanded_conv_1 ... _10: 1x1 expand     ``backbone.features[2..11]``, ``.block``
      +ReLU, [PAD], DW 3x3 +ReLU, 1x1         ``[0]`` expand, ``[1]`` depthwise,
      project, ADD where stride 1 and         ``[2]`` project
      in == out; expansions 72, 88, 96,
      240, 240, 120, 144, 288, 576, 576;
      outputs 24, 24, 40, 40, 40, 48, 48,
      96, 96, 96; stride 2 at _1, _3, _8
44    CONV_2D 1x1 96->576 +ReLU (Conv_1)      ``backbone.features[12]``
45    CONV_2D 1x1 576->2, bias (conv2d_1)     ``channel_reduce``
46    RESHAPE (1,4,4,2) -> (1,32)             flatten (NCHW order, see above)
47    FULLY_CONNECTED 32->128 +ReLU (dense)   ``fc[0]``
48    FULLY_CONNECTED 128->2 (dense_1)        ``head``
49    TANH (output x 30 = cm)                 ``output_activation="tanh"``
====  ======================================  ========================================
"""

TINYTRACKER_S = """
Released ``TinyTrackerS.tflite`` (input 1x96x96x1 grey; a constant grid is concatenated):

====  ========================================  ==================================
op    TFLite (Keras name)                       module
====  ========================================  ==================================
0     CONCATENATION grey + constant (1,96,96,2)  ``forward``'s channel stacking
1     CONV_2D 3x3/2 3->8 +ReLU6 (conv2d)        ``backbone.features[0]``
2-4   1x1 8->8 +ReLU6, DW 3x3/2 +ReLU6,          ``backbone.features[1].block[0..2]``
      1x1 8->8
5-7   1x1 8->96, DW 3x3/2, 1x1 96->16           ``backbone.features[2]``
8-10  1x1 16->144, DW 3x3/1, 1x1 144->24        ``backbone.features[3]``
11-13 1x1 24->192, DW 3x3/2, 1x1 192->32        ``backbone.features[4]``
14-16 1x1 32->384, DW 3x3/1, 1x1 384->64        ``backbone.features[5]``
17    CONV_2D 1x1 64->128 +ReLU6                ``backbone.features[6]``
18    MEAN over H, W (global average pool)      ``pool``
19    FULLY_CONNECTED 128->64 +ReLU (dense)     ``fc[0]``
20    FULLY_CONNECTED 64->2 (dense_1)           ``head``
21    TANH                                      ``output_activation="tanh"``
====  ========================================  ==================================
"""
