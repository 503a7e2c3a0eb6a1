"""What the ``imgclf`` commands show: predictions made in chunks behind a
progress bar, the predicted labels, and pictures saved to a folder (with a
note instead when matplotlib is missing)."""

from __future__ import annotations

import os
import sys

# Images per predict_proba call in predict/evaluate: bounds memory on large
# folders and paces the progress bar.
CHUNK = 256


def predict_proba(clf, X, what: str, progress: bool | None = None):
    """``clf.predict_proba(X)`` in chunks, with a progress bar (rich's, on
    standard error: stdout may carry a CSV) for large inputs."""
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from sklearn.utils import _safe_indexing

    n = len(X)
    shown = n > CHUNK if progress is None else progress
    parts = []
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not shown or n == 0) as bar:
        task = bar.add_task(what, total=n)
        for start in range(0, n, CHUNK):
            index = np.arange(start, min(start + CHUNK, n))
            parts.append(clf.predict_proba(_safe_indexing(X, index)))
            bar.update(task, completed=index[-1] + 1)
    return np.concatenate(parts) if parts else np.empty((0, len(clf.classes_)))


def predicted_labels(clf, proba):
    """The predicted label of each row of ``proba``."""
    import numpy as np

    return clf.classes_[np.argmax(proba, axis=1)]


def pictures(folder, draw) -> list[str]:
    """Run ``draw(folder)`` (which returns written paths); without matplotlib
    say how to get pictures instead of failing the command."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "imgclf: note: pictures skipped, matplotlib is not installed "
            "(pip install 'imgclf[plot]').",
            file=sys.stderr,
        )
        return []
    os.makedirs(folder, exist_ok=True)
    written = draw(folder)
    if written:
        print(f"Saved pictures to {folder}{os.sep}:")
        for path in written:
            print(f"  {path}")
    return written


def learning_curves_picture(clf, folder) -> list[str]:
    """The fit's learning curves, ``learning_curves.png`` in ``folder``."""
    from . import plot

    path = os.path.join(folder, "learning_curves.png")
    plot.plot_learning_curves(clf, path=path)
    return [path]


def evaluation_pictures(clf, X, y, proba, folder, top: int) -> list[str]:
    """``imgclf evaluate``'s pictures for a model with one label per image:
    the confusion matrix, then :func:`loss_pictures`."""
    import numpy as np

    from . import plot

    pred = predicted_labels(clf, proba)
    path = os.path.join(folder, "confusion_matrix.png")
    labels = np.unique(np.concatenate([clf.classes_, np.unique(y)]))
    plot.plot_confusion_matrix(y, pred, labels=labels, path=path)
    return [path, *loss_pictures(clf, X, y, proba, folder, top=top)]


def tag_pictures(clf, X, truth, proba, folder, top: int) -> list[str]:
    """``imgclf evaluate``'s pictures for a multi-label model (``truth``: the
    indicator matrix): :func:`loss_pictures` only, no confusion matrix (a
    multi-label model has one 2x2 matrix per label); its top losses are the
    mean binary cross-entropy over the labels."""
    return loss_pictures(clf, X, truth, proba, folder, top=top)


def loss_pictures(clf, X, y, proba, folder, top: int) -> list[str]:
    """The ``top`` images with the largest loss, and Grad-CAM of the worst
    few (skipped with a note for a network Grad-CAM cannot read)."""
    import numpy as np

    from . import plot

    path = os.path.join(folder, "top_losses.png")
    plot.plot_top_losses(clf, X, y, n=top, proba=proba, path=path)
    paths = [path]
    worst, _, _ = plot.top_losses(clf, X, y, n=min(top, 8), proba=proba)
    path = os.path.join(folder, "grad_cam.png")
    try:
        plot.plot_grad_cam(clf, np.asarray(X)[worst], path=path)
        paths.append(path)
    except Exception as exc:  # a network Grad-CAM cannot read should not fail the report
        print(f"imgclf: note: no Grad-CAM picture ({exc})", file=sys.stderr)
    return paths


__all__ = [
    "CHUNK",
    "evaluation_pictures",
    "learning_curves_picture",
    "loss_pictures",
    "pictures",
    "predict_proba",
    "predicted_labels",
    "tag_pictures",
]
