"""Models by stage: forecasting, compliance, training, serving, reporting; the MLflow registry.

Versions registered before the stage folders existed pickled their pyfunc classes under the
old flat module names (`models.pyfunc.LstmForecastModel`, ...). Those names stay importable
as aliases of the modules that hold the classes now, so a champion logged then still loads.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

# Old module -> where its pickled classes live now.
MOVED_MODULES = {
    "models.pyfunc": "models.forecasting.pyfunc",
    "models.candidates": "models.forecasting.candidates",
    "models.lstm": "models.forecasting.lstm",
    "models.features": "models.forecasting.features",
    "models.compliance_pyfunc": "models.compliance.pyfunc",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the module that replaced it (the same module object)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module it stands for is already imported."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
