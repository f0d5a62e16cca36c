"""rethinking_tf: Zhang et al., "Understanding deep learning (still) requires
rethinking generalization" (ICLR 2017; CACM 2021), replicated in TensorFlow/Keras.
"""

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) hides the
# lines users read; set TF_CPP_MIN_LOG_LEVEL yourself to see it again.
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# oneDNN's kernels on every x86-64 CPU, AVX2-only ones included (see cpu.py).
from rethinking_tf import cpu as _cpu  # noqa: E402

_cpu.turn_on_onednn()

__version__ = '0.1.0'
