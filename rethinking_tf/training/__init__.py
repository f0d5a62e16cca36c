"""Training one run (paper section 2, appendix A), free of flags.

* `config`: `TrainConfig`, everything one run needs, and the library versions;
* `optimizer`: `MomentumSGD`, SGD with momentum on one fused kernel;
* `rundir`: the run directory (claim, resume, metrics.csv, results.json,
  config.json, failed.txt), read by the trainer and the tools alike;
* `loop`: the distributed train and eval steps;
* `trainer`: `run(config)`, epochs, evaluation, checkpoints, early stopping;
* `distribute`: the tf.distribute strategies and each worker's directory.
"""
