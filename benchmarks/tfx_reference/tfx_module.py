"""TFX module file for the reference pipeline: thin adapters onto OUR user module.

TFX's Transform, Tuner and Trainer call ``preprocessing_fn``, ``tuner_fn`` and ``run_fn`` from
this file; each one delegates to ``components.modules.insurance`` (the KubeTFX built-in user
module) so the TFX run and the KubeTFX run preprocess, search and train the identical model:
same feature preprocessing, same search space, same network, same log(charges) label. Only
what TFX itself dictates lives here — its function signatures, its dataset factory and the
serving export — so a timing difference between the two runs comes from the orchestration and
the stage implementations, not from a different model.

TFX packages this file as a wheel and imports it from a temporary directory in each executor,
so ``__file__`` does not point into the repository there: the repository root is found through
``KUBETFX_REPO_ROOT`` (``tfx_pipeline.py`` sets it) and, failing that, relative to this file.
Runs under Python 3.10 with TFX 1.16 / TensorFlow 2.16 / Keras 3 (see ``tfx_pipeline.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT_ENV = "KUBETFX_REPO_ROOT"


def _repo_root() -> str:
    """The KubeTFX checkout whose ``components`` package this module delegates to."""
    here = Path(__file__).resolve()
    candidates = [os.environ.get(REPO_ROOT_ENV, "")] + [str(p) for p in here.parents[1:3]]
    for candidate in candidates:
        if candidate and (Path(candidate) / "components" / "names.py").is_file():
            return candidate
    raise ImportError(f"cannot find the KubeTFX repository (set {REPO_ROOT_ENV}); looked in {candidates}")


_ROOT = _repo_root()
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from components import defaults, names  # noqa: E402  (needs the repository on sys.path)
from components.modules import insurance as user  # noqa: E402

TUNER_PROJECT = "kubetfx_tfx_reference"
SEED = 42  # the seed our tune/train stages use: less run-to-run noise, not identical results


def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
    """TFX Transform's entry point: our module's preprocessing, unchanged."""
    return user.preprocessing_fn(inputs)


def _set_seed() -> None:
    import keras

    keras.utils.set_random_seed(SEED)


def _dataset(file_pattern: Any, data_accessor: Any, tf_transform_output: Any, batch_size: int) -> Any:
    """Batches of (transformed features, learned label) from transformed examples, repeating.

    The label is mapped through the user module's ``label_transform`` (log(charges)), as our
    train and tune stages do, so the loss is computed on the same scale on both sides.
    """
    from tfx_bsl.public import tfxio

    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=names.LABEL, shuffle_seed=SEED),
        tf_transform_output.transformed_metadata.schema,
    )
    label_transform = getattr(user, "label_transform", None)
    if label_transform is not None:
        dataset = dataset.map(lambda features, label: (features, label_transform(label)))
    return dataset


def tuner_fn(fn_args: Any) -> Any:
    """TFX Tuner's entry point: keras-tuner RandomSearch over our module's search space.

    ``fn_args.train_steps`` / ``eval_steps`` come from the component's TrainArgs / EvalArgs
    (300 / 100, the workload); one epoch of ``train_steps`` per trial, objective val_loss.
    """
    import keras_tuner
    import tensorflow_transform as tft
    from tfx.components.tuner.component import TunerFnResult

    _set_seed()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)

    def build(hp: Any) -> Any:
        return user.build_model(user.hyperparameter_space(hp), tf_transform_output)

    tuner = keras_tuner.RandomSearch(
        build,
        max_trials=defaults.TUNER_TRIALS,
        objective="val_loss",
        directory=fn_args.working_dir,
        project_name=TUNER_PROJECT,
        overwrite=True,
        seed=SEED,
    )
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, defaults.BATCH_SIZE)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, defaults.BATCH_SIZE)
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": train,
            "validation_data": evaluation,
            "steps_per_epoch": fn_args.train_steps,
            "validation_steps": fn_args.eval_steps,
            "epochs": 1,
            "verbose": 0,
        },
    )


def hyperparameters_of(config: Any) -> dict[str, Any]:
    """Plain values from TFX's best-hyperparameters config (keras-tuner's ``get_config()``).

    No tuner upstream (``None``): the user module's defaults, as our train stage does.
    """
    if not config:
        return dict(user.default_hyperparameters())
    if isinstance(config, dict) and "values" in config:
        return dict(config["values"])
    import keras_tuner

    return dict(keras_tuner.HyperParameters.from_config(config).values)


def run_fn(fn_args: Any) -> None:
    """TFX Trainer's entry point: train our network, export a raw-``tf.Example`` SavedModel.

    The exported ``serving_default`` takes serialized raw examples (``examples``, no label),
    parses them with the raw feature spec, applies the TFT graph, the Keras model and the
    inverse label transform, and returns ``{"predictions": charges}`` — the same contract as
    our train stage, which is what TFX's Evaluator and Pusher consume.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    _set_seed()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    hparams = hyperparameters_of(fn_args.hyperparameters)
    model = user.build_model(hparams, tf_transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, defaults.BATCH_SIZE)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, defaults.BATCH_SIZE)
    model.fit(
        train,
        steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        epochs=1,
        verbose=0,
    )

    inverse = getattr(user, "label_inverse_transform", None)
    raw_spec = tf_transform_output.raw_feature_spec()
    raw_spec.pop(names.LABEL, None)

    class Serving(tf.Module):
        """Holds the model and the TFT layer so SavedModel tracks their variables and assets."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.tft_layer = tf_transform_output.transform_features_layer()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.EXAMPLES_INPUT_KEY)])
        def serve(self, examples: Any) -> dict[str, Any]:
            parsed = tf.io.parse_example(examples, raw_spec)
            transformed = self.tft_layer(parsed)
            features = {key: value for key, value in transformed.items() if key != names.LABEL}
            prediction = self.model(features, training=False)
            if inverse is not None:
                prediction = inverse(prediction)
            return {names.PREDICTIONS_KEY: tf.reshape(prediction, [-1, 1])}

    serving = Serving()
    tf.saved_model.save(
        serving, fn_args.serving_model_dir, signatures={names.SERVING_SIGNATURE: serving.serve}
    )
