"""The paper's non-training results as flag-free libraries.

* `expressivity`: Theorem 1's two-layer ReLU network on n points (section 4);
* `kernels`: minimum-norm kernel interpolation (section 5).

Their binaries are `python -m rethinking_tf.expressivity` and
`python -m rethinking_tf.kernels`.
"""
