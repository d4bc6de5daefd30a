"""The model zoo: real models, their data and their fidelity metrics in one place, all offline.

Every entry is a :class:`ZooModel` in :data:`MODELS`; :func:`load` gives a :class:`Task`: the float
model's weights and a metric that scores any set of weights for it on the validation or the test
part.  The benchmarks, the CLI (``squeeze``, ``explain``, ``fl-sim``), the federated simulator and
the demos take their models and data from here.

>>> from nnsqueeze import zoo
>>> sorted(zoo.MODELS)
['crepe_tiny', 'digits_cnn', 'lenet5', 'minilm', 'mlp', 'mnist1d_cnn']
>>> zoo.get("crepe_tiny").metric
'raw pitch accuracy'
>>> task = zoo.load("digits_cnn")  # doctest: +SKIP
>>> task.evaluate(task.state_dict(), "test") > 0.95  # doctest: +SKIP
True
"""

from __future__ import annotations

from nnsqueeze.zoo.registry import DATASETS, MODELS, ZooModel, build, get, load, load_dataset
from nnsqueeze.zoo.splits import Split
from nnsqueeze.zoo.tasks import ClassifierTask, EmbeddingTask, Part, PitchTask, Task
from nnsqueeze.zoo.training import Batches, ShuffledBatches, accuracy, fit, torch_threads

__all__ = [
    "DATASETS",
    "MODELS",
    "Batches",
    "ClassifierTask",
    "EmbeddingTask",
    "Part",
    "PitchTask",
    "ShuffledBatches",
    "Split",
    "Task",
    "ZooModel",
    "accuracy",
    "build",
    "fit",
    "get",
    "load",
    "load_dataset",
    "torch_threads",
]
