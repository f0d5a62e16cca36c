"""Running a grid of flagfiles as training runs (paper section 3's grid).

* `flagfiles`: the training binary's flag contract, read from its own flag
  definitions, and flagfile parsing (no TensorFlow);
* `lock`: the lock a sweep holds on a run directory while it runs;
* `runner`: jobs, the sweep itself and its report.

The tool is `tools/run_sweep.py`.
"""
