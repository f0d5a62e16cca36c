"""The paper's tables and figures (section 3) from any directory tree of runs.

* `runs`: reading run directories (through `training.rundir`) and matching
  them to table rows and figure conditions (flags/<name>.cfg);
* `tables`: Tables 1 and 2, ours beside the paper's, as markdown, LaTeX or CSV;
* `figures`: Figures 1 and 2 (matplotlib, imported only to draw), laid out by
  `layout` (scale captions, step axes, legends under the panels).

No TensorFlow. The tools are `tools/make_tables.py` and `tools/make_figures.py`.
"""
