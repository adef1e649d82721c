"""The compliance classifier as an MLflow pyfunc, and a fast loader for scoring.

Contract: input a DataFrame with a string column `text` (other columns are ignored);
output a 1-D float64 array, the probability that each note describes a non-compliant
component. Whichever kind the training chose -- the network (weights and tokenizer) or the
n-gram baseline (its fitted pipeline) -- travels inside the model's artifact folder, so a
registered version is self-contained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, DataType, Schema, TensorSpec

from core.errors import PitstopError

log = logging.getLogger(__name__)

CLASSIFIER_ARTIFACT = "classifier"
TEXT_COLUMN = "text"


class ComplianceInputError(PitstopError, ValueError):
    """Classifier input that breaks the pyfunc contract."""


class ComplianceModelUnavailableError(PitstopError):
    """The compliance model cannot be found or loaded."""


def compliance_signature() -> ModelSignature:
    """`text` (string) in, a float64 probability per row out."""
    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string, TEXT_COLUMN)]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
    )


def compliance_input_example() -> pd.DataFrame:
    """Two notes: one compliant, one not (manufactured before 1995)."""
    return pd.DataFrame(
        {
            TEXT_COLUMN: [
                "Steel brake caliper manufactured in 2003, good condition.",
                "mfd 1993 cast iron water pump, cond. fair",
            ]
        }
    )


def note_texts(model_input: pd.DataFrame | dict[str, Any] | list[str]) -> list[str]:
    """The `text` column as a list of non-empty strings, or ComplianceInputError."""
    if isinstance(model_input, list):
        model_input = pd.DataFrame({TEXT_COLUMN: model_input})
    frame = pd.DataFrame(model_input) if isinstance(model_input, dict) else model_input
    if not isinstance(frame, pd.DataFrame) or TEXT_COLUMN not in frame.columns:
        raise ComplianceInputError(
            f"Compliance input must be a DataFrame with a string column '{TEXT_COLUMN}'."
        )
    texts = frame[TEXT_COLUMN].tolist()
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ComplianceInputError(f"Row {row}: '{TEXT_COLUMN}' must be a non-empty string.")
    return texts


class CompliancePythonModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: rebuilds the classifier (network or n-gram baseline) from the
    `classifier` artifact folder."""

    def __init__(self) -> None:
        self._classifier: Any = None

    def load_context(self, context: Any) -> None:
        """Load whichever kind of classifier the artifact folder holds."""
        from models.compliance.kinds import load_text_classifier

        self._classifier = load_text_classifier(context.artifacts[CLASSIFIER_ARTIFACT])

    @property
    def kind(self) -> str:
        """'network' or 'ngram'."""
        return self._classifier.kind if self._classifier is not None else ""

    def predict_texts(self, texts: list[str]) -> np.ndarray:
        """Probabilities for plain strings (no DataFrame, no checks): the scoring fast path."""
        if self._classifier is None:
            raise RuntimeError("The classifier is not loaded; load the model through MLflow.")
        return self._classifier.predict_proba(texts)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """The pyfunc entry point: `text` column -> probability of non-compliance."""
        return self.predict_texts(note_texts(model_input))


def compliance_requirements(kind: str = "network") -> list[str]:
    """pip requirements of the pyfunc for a model `kind`, stated so logging does not infer
    them (slow)."""
    pins = {"mlflow": mlflow.__version__, "numpy": np.__version__, "pandas": pd.__version__}
    if kind == "network":
        import torch

        pins["torch"] = torch.__version__.split("+")[0]
    else:
        import scipy
        import sklearn
        import skops

        pins["scikit-learn"] = sklearn.__version__
        pins["scipy"] = scipy.__version__
        pins["skops"] = skops.__version__
    return [f"{package}=={version}" for package, version in pins.items()]


def log_compliance_model(
    classifier: Any, workdir: str | Path, name: str = "model"
) -> mlflow.models.model.ModelInfo:
    """Log a fitted classifier (`kinds.TextClassifier`) in the active run as the contract
    pyfunc."""
    folder = classifier.save(Path(workdir) / CLASSIFIER_ARTIFACT)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=CompliancePythonModel(),
        artifacts={CLASSIFIER_ARTIFACT: str(folder)},
        signature=compliance_signature(),
        input_example=compliance_input_example(),
        pip_requirements=compliance_requirements(classifier.kind),
    )


@dataclass
class ComplianceClassifier:
    """A loaded classifier for scoring: note texts in, probabilities out.

    Calls the python model directly, skipping MLflow's per-row schema check; callers
    validate texts first (the stream with `note_text_problem`).
    """

    name: str
    version: str
    model_uri: str
    python_model: CompliancePythonModel

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probability of non-compliance per text; an empty list gives an empty array."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        return self.python_model.predict_texts(list(texts))


def resolve_model_uri(model_uri: str) -> tuple[str, str, str]:
    """(name, version, concrete URI): an alias is resolved so name, version and weights agree."""
    if not model_uri.startswith("models:/"):
        return model_uri, "", model_uri
    body = model_uri[len("models:/") :]
    if "@" in body:
        from models.registry import RegistryError, resolve_alias

        name, alias = body.split("@", 1)
        try:
            version, uri = resolve_alias(name, alias)
        except RegistryError as exc:
            raise ComplianceModelUnavailableError(str(exc)) from None
        return name, version, uri
    name, _, version = body.partition("/")
    return name, version, model_uri


def load_compliance_classifier(
    model_uri: str, torch_threads: int | None = 1
) -> ComplianceClassifier:
    """Load the classifier at `model_uri` (`models:/name@alias`, `models:/name/3`, `runs:/...`).

    `torch_threads` caps torch's threads in this process (one per Spark task is fastest on
    a shared machine, DESIGN.md) when the model is the network; None leaves torch as it is.
    """
    from mlflow.exceptions import MlflowException

    from models.compliance.text import ComplianceModelError

    name, version, uri = resolve_model_uri(model_uri)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError, ComplianceModelError) as exc:
        raise ComplianceModelUnavailableError(
            f"Could not load the compliance model {model_uri} ({type(exc).__name__}); "
            "check the URI or run `pitstop train compliance`."
        ) from None
    python_model = loaded.unwrap_python_model()
    if not isinstance(python_model, CompliancePythonModel):
        raise ComplianceModelUnavailableError(
            f"{model_uri} is not a Pitstop compliance classifier ({type(python_model).__name__})."
        )
    if torch_threads is not None and python_model.kind == "network":
        import torch

        torch.set_num_threads(torch_threads)
    log.info(
        "Loaded compliance classifier %s version %s (%s) from %s",
        name,
        version,
        python_model.kind,
        uri,
    )
    return ComplianceClassifier(
        name=name, version=version, model_uri=uri, python_model=python_model
    )
