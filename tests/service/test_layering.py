"""The product card's layering: `service` imports `model`, never `training`; `model` neither."""

import subprocess
import sys


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_service_never_imports_training():
    modules = _imported_after("import service.app, service.cli, service.client")
    assert "service.app" in modules
    assert not any(name == "training" or name.startswith("training.") for name in modules)


def test_model_imports_neither_training_nor_service():
    modules = _imported_after("import model, model.checkpoint, model.codec, model.device")
    assert not any(name.split(".")[0] in ("training", "service") for name in modules)
