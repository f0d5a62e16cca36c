"""Data sets and the randomization tests (paper section 2.1, appendix A).

One idea per module:

* `sources`: whether a data set can be loaded, checked without TensorFlow;
* `loaders`: the in-memory loaders (digits, CIFAR-10, an image folder) and
  the types they return (`Arrays`, `Pipelines`);
* `image_cache`: an image folder's decoded arrays kept on disk;
* `randomize`: the section 2.1 randomizations of labels and inputs;
* `crop`: the lookup tables that make the random crop one gather;
* `pipeline`: the train, train-eval and test tf.data pipelines of a run;
* `sharding`: which examples of a global batch each replica and worker gets;
* `imagenet`: ImageNet streamed from tensorflow-datasets (Table 2).
"""
