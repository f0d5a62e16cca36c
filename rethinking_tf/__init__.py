"""rethinking_tf: Zhang et al., "Understanding deep learning (still) requires
rethinking generalization" (ICLR 2017; CACM 2021), replicated in TensorFlow/Keras.
"""

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) hides the
# lines users read; set TF_CPP_MIN_LOG_LEVEL yourself to see it again.
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

__version__ = '0.1.0'
