"""Accuracy of a change mask against a ground-truth mask.

A predicted mask holds 1 for change, 0 for no change and 255 (or NaN) for
nodata.  Ground-truth encodings vary between data sets, so the values that
mean change / no change / ignore in the truth are options: the OSCD masks, for
example, use 2 for change and 1 for no change.

Conventions for the degenerate cases (documented once, here):

* precision is 0.0 when nothing is predicted as change but the truth has
  change, recall is 0.0 when the truth has no change but some is predicted
  (scikit-learn's ``zero_division=0``);
* when neither the truth nor the prediction holds any change (or both are all
  change), the two masks agree perfectly and precision, recall, F1, IoU and
  Cohen's kappa are all 1.0 (scikit-learn would return 0.0 or NaN here and
  warn; a perfect prediction scoring 0 would mislead a batch summary).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .errors import EmptyDataError, GridMismatchError, InvalidParameterError
from .raster import GeoRaster, check_same_grid, describe_grid

__all__ = ["Accuracy", "evaluate", "truth_coding", "nodata_values"]


@dataclass(frozen=True)
class Accuracy:
    """Pixel counts of a binary change/no-change comparison and the scores derived from them.

    Build one with :meth:`Accuracy.from_counts` (or :func:`evaluate`); the
    scores are computed from the counts so they can never disagree with them.

    Attributes
    ----------
    tp, fp, fn, tn : int
        True positives (change found), false positives (change reported where
        the truth has none), false negatives (change missed), true negatives.
    n_ignored : int
        Pixels left out because either mask is nodata there.
    precision, recall, f1, iou, kappa, overall_accuracy : float
        Scores of the change class; ``kappa`` is Cohen's kappa over both
        classes.  See the module docstring for the degenerate cases.

    Examples
    --------
    >>> acc = Accuracy.from_counts(tp=8, fp=2, fn=2, tn=88)
    >>> acc.precision, acc.recall, round(acc.f1, 3)
    (0.8, 0.8, 0.8)
    >>> acc.confusion_matrix
    array([[88,  2],
           [ 2,  8]])
    >>> round(acc.kappa, 4)
    0.7778
    """

    tp: int
    fp: int
    fn: int
    tn: int
    n_ignored: int
    precision: float
    recall: float
    f1: float
    iou: float
    kappa: float
    overall_accuracy: float

    @classmethod
    def from_counts(cls, *, tp: int, fp: int, fn: int, tn: int, n_ignored: int = 0) -> "Accuracy":
        """Scores from the four counts of a confusion matrix.

        Counts from several windows of a large scene can be summed first and
        passed here once.

        Parameters
        ----------
        tp, fp, fn, tn : int
            Non-negative pixel counts.
        n_ignored : int, optional
            Pixels left out (nodata), reported as is.

        Returns
        -------
        Accuracy

        Examples
        --------
        >>> Accuracy.from_counts(tp=0, fp=0, fn=0, tn=5).f1
        1.0
        >>> Accuracy.from_counts(tp=0, fp=3, fn=0, tn=5).f1
        0.0
        """
        counts = {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "n_ignored": n_ignored}
        for name, value in counts.items():
            if int(value) != value or value < 0:
                raise InvalidParameterError(f"{name} must be a non-negative integer count, got {value!r}")
        tp, fp, fn, tn, n_ignored = (int(v) for v in counts.values())
        n = tp + fp + fn + tn
        if n == 0:
            raise EmptyDataError(
                "no pixel is valid in both masks (all are nodata), so accuracy is undefined; "
                "check the ignore_values and that the masks cover the same area"
            )
        # 0/0 when neither mask has change: perfect agreement (1.0), not sklearn's 0.0.
        precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
        recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        overall = (tp + tn) / n
        # Cohen's kappa with exact integer arithmetic: kappa = (po - pe) / (1 - pe).
        expected = (tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)  # pe * n**2
        denom = n * n - expected
        kappa = (n * (tp + tn) - expected) / denom if denom else 1.0
        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
            n_ignored=n_ignored,
            precision=float(precision),
            recall=float(recall),
            f1=float(f1),
            iou=float(iou),
            kappa=float(kappa),
            overall_accuracy=float(overall),
        )

    @property
    def n_valid(self) -> int:
        """Pixels compared (valid in both masks)."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def confusion_matrix(self) -> np.ndarray:
        """(2, 2) int array ``[[tn, fp], [fn, tp]]``: rows truth (no change, change), columns predicted."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)

    def as_dict(self) -> dict[str, Any]:
        """Plain ``int``/``float``/``list`` values, ready for :func:`json.dumps`.

        Returns
        -------
        dict
            Every field, plus ``n_valid`` and ``confusion_matrix`` (as nested lists).

        Examples
        --------
        >>> import json
        >>> d = Accuracy.from_counts(tp=1, fp=0, fn=1, tn=2).as_dict()
        >>> d["recall"], d["confusion_matrix"]
        (0.5, [[2, 0], [1, 1]])
        >>> _ = json.dumps(d)
        """
        out = asdict(self)
        out["n_valid"] = self.n_valid
        out["confusion_matrix"] = self.confusion_matrix.tolist()
        return out

    def __str__(self) -> str:
        w = max(len(f"{v:,}") for v in (self.tp, self.fp, self.fn, self.tn))
        return "\n".join(
            [
                f"pixels compared {self.n_valid:,} (ignored {self.n_ignored:,})",
                f"                 {'pred no change':>{max(w, 14)}}  {'pred change':>{max(w, 11)}}",
                f"truth no change  {self.tn:>{max(w, 14)},}  {self.fp:>{max(w, 11)},}",
                f"truth change     {self.fn:>{max(w, 14)},}  {self.tp:>{max(w, 11)},}",
                f"precision {self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}",
                f"IoU {self.iou:.4f}  kappa {self.kappa:.4f}  overall accuracy {self.overall_accuracy:.4f}",
            ]
        )


def _as_mask(value: Any, name: str) -> tuple[np.ndarray, GeoRaster | None]:
    """A (rows, cols) array and the GeoRaster it came from (if any)."""
    raster = value if isinstance(value, GeoRaster) else None
    arr = value.data if raster is not None else np.asarray(value)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        what = f"a GeoRaster with {arr.shape[0]} bands" if raster is not None else f"an array of shape {arr.shape}"
        raise InvalidParameterError(
            f"{name} must be a single-band mask, a (rows, cols) array or a 1-band GeoRaster; got {what}"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidParameterError(f"{name} must hold numbers, got an array of dtype {arr.dtype}")
    return arr, raster


def _check_grids(pred: np.ndarray, truth: np.ndarray, pred_r: GeoRaster | None, truth_r: GeoRaster | None) -> None:
    if pred_r is not None and truth_r is not None and pred_r.crs is not None and truth_r.crs is not None:
        try:
            check_same_grid(pred_r, truth_r, what="truth")
        except GridMismatchError as err:
            raise GridMismatchError(
                f"truth grid ({describe_grid(truth_r.grid)}) differs from the predicted mask's grid "
                f"({describe_grid(pred_r.grid)}) and the prediction is not a whole-pixel part of it; resample the "
                "truth onto the prediction grid with nearest neighbour before evaluating: "
                "changedet.align.align_to(truth, predicted.grid, resampling='nearest')"
            ) from err
    elif pred.shape != truth.shape:
        raise GridMismatchError(
            f"predicted mask has shape {pred.shape} (rows, cols) but truth has shape {truth.shape}; "
            "a truth mask without georeferencing must have exactly the prediction's shape"
        )


def _crop_truth(pred_r: GeoRaster | None, true: np.ndarray, truth_r: GeoRaster | None) -> tuple[np.ndarray, GeoRaster | None]:
    """The truth cut to the prediction's grid when that grid is a whole-pixel part of the truth's
    (a result made with an area of interest, scored against the scene's truth)."""
    if pred_r is None or truth_r is None or pred_r.crs is None or truth_r.crs is None:
        return true, truth_r
    if pred_r.grid.same_as(truth_r.grid):
        return true, truth_r
    offset = pred_r.grid.offset_in(truth_r.grid)
    if offset is None:
        return true, truth_r
    r0, c0 = offset
    crop = true[r0 : r0 + pred_r.height, c0 : c0 + pred_r.width]
    return crop, GeoRaster(crop[np.newaxis], pred_r.transform, pred_r.crs, truth_r.band_names[:1])


def _values(name: str, values: Any) -> tuple[float, ...]:
    """An option listing mask values: a sequence of numbers (one number is taken as a list of one)."""
    if isinstance(values, (int, float, np.number)) and not isinstance(values, bool):
        return (values,)
    try:
        out = tuple(values)
    except TypeError:
        raise InvalidParameterError(f"{name} must be a list of numbers, got {type(values).__name__} {values!r:.60}") from None
    if isinstance(values, (str, bytes)) or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                                                   for v in out):
        raise InvalidParameterError(f"{name} must be a list of numbers, got {values!r:.60}")
    return out


def _isin(arr: np.ndarray, values: Sequence[float]) -> np.ndarray:
    if not len(values):
        return np.zeros(arr.shape, dtype=bool)
    return np.isin(arr, np.asarray(values, dtype=np.float64))


def _unexpected(arr: np.ndarray, known: np.ndarray, limit: int = 8) -> list[Any]:
    vals = np.unique(arr[~known])
    return [v.item() for v in vals[:limit]]


def evaluate(
    predicted: np.ndarray | GeoRaster,
    truth: np.ndarray | GeoRaster,
    *,
    truth_change_values: Sequence[float] = (1,),
    truth_nochange_values: Sequence[float] = (0,),
    ignore_values: Sequence[float] = (255,),
) -> Accuracy:
    """Compare a predicted change mask with a ground-truth mask, pixel by pixel.

    Parameters
    ----------
    predicted : (rows, cols) ndarray or 1-band GeoRaster
        1 change, 0 no change; 255, NaN and ``ignore_values`` are nodata.  A
        bool array works too (True = change).
    truth : (rows, cols) ndarray or 1-band GeoRaster
        Ground truth, encoded as the three options below say.  A truth
        without georeferencing (a plain array, or a GeoRaster whose ``crs`` is
        None, like the OSCD masks) is accepted when its shape matches.  A
        georeferenced truth covering more than the prediction (a result made
        with an area of interest) is cropped to the prediction's grid when that
        grid is a whole-pixel part of the truth's.
    truth_change_values, truth_nochange_values : sequence of numbers
        Truth values meaning change / no change.  OSCD masks:
        ``truth_change_values=(2,), truth_nochange_values=(1,)``.
    ignore_values : sequence of numbers
        Nodata values in either mask; those pixels are counted in
        ``n_ignored`` and left out.  The predicted classes 0 and 1 are never
        ignored, so ``ignore_values=(0,)`` only drops unlabelled truth pixels.
        NaN is always ignored.

    Returns
    -------
    Accuracy
        Counts and scores; ``print(acc)`` shows a small table.

    Raises
    ------
    GridMismatchError
        Both masks are georeferenced on different grids, or their shapes differ.
    InvalidParameterError
        A mask holds a value none of the options account for, or a value is
        listed as two things at once.
    EmptyDataError
        No pixel is valid in both masks.

    Examples
    --------
    >>> import numpy as np
    >>> predicted = np.array([[1, 1, 0], [0, 0, 255]])
    >>> truth = np.array([[2, 1, 2], [1, 1, 2]])  # OSCD encoding: 2 change, 1 no change
    >>> acc = evaluate(predicted, truth, truth_change_values=(2,), truth_nochange_values=(1,))
    >>> acc.tp, acc.fp, acc.fn, acc.tn, acc.n_ignored
    (1, 1, 1, 2, 1)
    >>> acc.precision, acc.recall, round(acc.kappa, 3)
    (0.5, 0.5, 0.167)
    """
    pred, pred_r = _as_mask(predicted, "predicted")
    true, truth_r = _as_mask(truth, "truth")
    change_v = _values("truth_change_values", truth_change_values)
    nochange_v = _values("truth_nochange_values", truth_nochange_values)
    ignore_v = _values("ignore_values", ignore_values)
    if not change_v or not nochange_v:
        raise InvalidParameterError(
            f"truth_change_values and truth_nochange_values each need at least one value, "
            f"got {change_v} and {nochange_v}"
        )
    for a_name, a, b_name, b in (
        ("truth_change_values", change_v, "truth_nochange_values", nochange_v),
        ("truth_change_values", change_v, "ignore_values", ignore_v),
        ("truth_nochange_values", nochange_v, "ignore_values", ignore_v),
    ):
        both = sorted(set(a) & set(b))
        if both:
            raise InvalidParameterError(f"values {both} are in both {a_name}={a} and {b_name}={b}; list each once")
    true, truth_r = _crop_truth(pred_r, true, truth_r)
    _check_grids(pred, true, pred_r, truth_r)

    pred_f = pred.astype(np.float64, copy=False)
    p_change = pred_f == 1
    p_nochange = pred_f == 0
    p_ignore = ~(p_change | p_nochange) & (np.isnan(pred_f) | _isin(pred_f, (255, *ignore_v)))
    p_known = p_change | p_nochange | p_ignore
    if not p_known.all():
        raise InvalidParameterError(
            f"predicted mask holds values {_unexpected(pred, p_known)}; expected 1 (change), 0 (no change) "
            f"or nodata (255, NaN or one of ignore_values={ignore_v})"
        )

    true_f = true.astype(np.float64, copy=False)
    t_change = _isin(true_f, change_v)
    t_nochange = _isin(true_f, nochange_v)
    t_ignore = np.isnan(true_f) | _isin(true_f, ignore_v)
    t_known = t_change | t_nochange | t_ignore
    if not t_known.all():
        raise InvalidParameterError(
            f"truth mask holds values {_unexpected(true, t_known)} that are in none of "
            f"truth_change_values={change_v}, truth_nochange_values={nochange_v}, ignore_values={ignore_v}; "
            "add them to the option that describes them (OSCD masks: truth_change_values=(2,), "
            "truth_nochange_values=(1,))"
        )

    valid = ~(p_ignore | t_ignore)
    tp = int(np.count_nonzero(p_change & t_change & valid))
    fp = int(np.count_nonzero(p_change & t_nochange & valid))
    fn = int(np.count_nonzero(p_nochange & t_change & valid))
    tn = int(np.count_nonzero(p_nochange & t_nochange & valid))
    n_ignored = int(valid.size - np.count_nonzero(valid))
    if tp + fp + fn + tn == 0:
        raise EmptyDataError(
            f"no pixel is valid in both masks ({n_ignored:,} of {valid.size:,} are nodata in one or the other); "
            f"check ignore_values={ignore_v} and that both masks cover the same area"
        )
    return Accuracy.from_counts(tp=tp, fp=fp, fn=fn, tn=tn, n_ignored=n_ignored)



def truth_coding(truth: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The values meaning change and no change in a truth mask: OSCD's 2 and 1 when the
    mask holds only 1 and 2 (and some 2); 255 and 0 when it holds only 0 and 255 (and
    some 255: the 8-bit PNG labels of LEVIR-CD, DSIFN, WHU and most building-change
    sets); else 1 and 0.  A truth read with its nodata (our own ``change_mask.tif``
    stores 255 as nodata) has no 255 left to confuse.

    Parameters
    ----------
    truth : ndarray
        The truth mask's values (NaN is nodata).

    Returns
    -------
    tuple of (tuple of float, tuple of float)
        ``(truth_change_values, truth_nochange_values)`` for :func:`evaluate`.

    Examples
    --------
    >>> truth_coding(np.array([1.0, 2.0, 1.0])), truth_coding(np.array([0.0, 1.0]))
    (((2.0,), (1.0,)), ((1.0,), (0.0,)))
    >>> truth_coding(np.array([0.0, 255.0]))
    ((255.0,), (0.0,))
    """
    t = np.asarray(truth, dtype=np.float64)
    vals = set(np.unique(t[np.isfinite(t)]).tolist())
    if vals <= {1.0, 2.0} and 2.0 in vals:
        return (2.0,), (1.0,)  # OSCD convention
    if vals <= {0.0, 255.0} and 255.0 in vals:
        return (255.0,), (0.0,)  # 8-bit label images
    return (1.0,), (0.0,)


def nodata_values(truth_change_values: Sequence[float]) -> tuple[float, ...]:
    """The ``ignore_values`` to use with these truth change values: 255 (our masks' nodata),
    unless 255 is itself change, as in 8-bit label images.

    Parameters
    ----------
    truth_change_values : sequence of numbers
        What :func:`truth_coding` (or the user) says means change.

    Returns
    -------
    tuple of float
        For :func:`evaluate`'s ``ignore_values``.

    Examples
    --------
    >>> nodata_values((1.0,)), nodata_values((255.0,))
    ((255.0,), ())
    """
    return () if 255.0 in [float(v) for v in truth_change_values] else (255.0,)
