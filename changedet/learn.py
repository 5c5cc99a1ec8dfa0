"""Change as the analyst defines it: a classifier trained on a few labelled examples.

The analyst marks a few places as *change* or *no change* (GeoJSON points or
polygons, or a truth mask of another site); a scikit-learn classifier learns from
per-pixel features of both dates what counts, and scores every pixel with a
probability of change.

Like the other methods this is a *fit* and a *score*:

- :func:`fit_examples` (or :func:`train` over several labelled pairs) returns a
  frozen :class:`LearnedModel`: the classifier, the feature set it was trained on,
  and the per-date radiometric statistics of the pair (:class:`PairStats`);
- :meth:`LearnedModel.score` turns a window of both dates (with a halo of
  :attr:`LearnedModel.halo_px` pixels) into a (rows, cols) probability of change;
  :meth:`LearnedModel.for_pair` fixes the statistics of a new pair first, so every
  window of that pair uses the same ones.

Features (:func:`pixel_features`): each date is standardized band by band by its
own robust statistics (median, IQR/1.349), so a per-band gain and offset between
the dates leaves them unchanged; then, at Gaussian scales chosen in metres
(0.5 m x 2^k, 0.7 to 16 pixels), the smoothed bands of both dates, their
difference and its magnitude, edges and Hessian texture of each date's brightness
and of the difference magnitude (the intensity, edge and texture features of
:func:`skimage.feature.multiscale_basic_features`, computed from Gaussians shared with
the band features: calling it per channel costs about 2.5 s per megapixel and
channel), spectral indices of both dates and their change (NDVI, NDWI, NDBI, excess
green for RGB), the responses of 16 filters learnt from the pair itself (:class:`PatchBank`:
the k-means centres of whitened 5 x 5 px patches of both dates' standardized bands, their
rectified responses pooled by Gaussians of 2 px and of 6 px; the filters belong to the model, so a model
applied to another pair uses the ones it was trained with), and on pixels of 5 m and coarser the unsupervised
change score of :func:`changedet.change.change_score` (``method="auto"``) with two smoothings of it (at 10 m it
lifted OSCD at K = 20 from 0.452 to 0.470 pooled, the lowest seed from 0.328 to 0.438; on finer pixels it moved
nothing beyond the draw and costs time and halo, so they go without unless ``change_score=True``).

The patch filters (feature-set version 2), measured with ``benchmarks/fewshot.py`` (seeds 0-4,
pooled F1 at K = 10 / 20 / 50, without -> with): LEVIR 0.613 / 0.718 / 0.809 -> 0.638 / 0.768 /
0.846 (lowest seed at K = 20 0.700 -> 0.737), DSIFN 0.716 / 0.782 / 0.870 -> 0.735 / 0.797 / 0.875,
OSCD (13 bands) 0.270 / 0.419 / 0.548 -> 0.284 / 0.419 / 0.546, the synthetic pairs 0.811 / 0.878 /
0.909 -> 0.793 / 0.870 / 0.903; another draw of the filters (seed 1) gave LEVIR 0.788 at K = 20 in
an experiment where seed 0 gave 0.789, 32 filters 0.794, 7 x 7 patches 0.762, 3 x 3 0.788, pooling
at 1 px LEVIR 0.630 / 0.758 and DSIFN 0.731 / 0.787 at K = 10 / 20.  The structures counted on the
classifier's mask (``benchmarks/structures.py --examples 20``): LEVIR-CD 81 -> 77 counted for 123
houses, 51 -> 59 matching one; the synthetic generators' mean count error within 2 points except
``two_metre`` (2 m pixels), 20 -> 45 %: on one seed of three the mask fills the 8-10 m strips of
graded ground between the blocks and 20 blocks are counted as 2.  They cost about 1.2 s per
megapixel of RGB (the responses 0.4 s, the pooling 0.7 s).  Measured and not kept: a prior
classifier trained on the other tiles' truth (leave one tile out; gradient boosting), its
probability given as one more feature: LEVIR 0.715 -> 0.734, DSIFN 0.782 -> 0.785, OSCD 0.411 ->
0.391 (seeds 0-2, K = 20), and alone (no examples) LEVIR 0.364, OSCD 0.239; the smallest distance
between the after date and the before date shifted by up to 1 or 2 px (misregistration-tolerant
difference, at 1 and 2 px scales): LEVIR 0.721, DSIFN 0.770, synthetic 0.862 at K = 20.

The filters are k-means centres (spherical k-means on the whitened patches, which Coates & Ng
2011 found better than patches drawn at random) since 2026-11-30; before, they were 16 of the
whitened patches drawn at random.  Random -> k-means, pooled F1 at K = 10 / 20 / 50, seeds 0-4:
LEVIR 0.638 / 0.768 / 0.846 -> 0.675 / 0.809 / 0.861, DSIFN 0.735 / 0.797 / 0.875 -> 0.724 /
0.793 / 0.879, OSCD 0.284 / 0.419 / 0.546 -> 0.284 / 0.403 / 0.557, the synthetic pairs 0.793 /
0.870 / 0.903 -> 0.821 / 0.882 / 0.910; seeds 5-9 at K = 10 / 20: LEVIR 0.677 / 0.781 -> 0.694 /
0.808, DSIFN 0.746 / 0.791 -> 0.732 / 0.791, OSCD 0.313 / 0.376 -> 0.295 / 0.375, synthetic
0.814 / 0.888 -> 0.829 / 0.885.  Over the ten seeds at K = 20: LEVIR +0.03, the others within
0.01 (what the choice of examples moves).  Structures counted on the classifier's mask
(``benchmarks/structures.py --examples 20``): LEVIR-CD 77 -> 84 counted for 123 houses, 59 -> 68
matching one; mean count error ``two_metre`` 45 -> 13.3 %, ``heldout_like`` 4.2 -> 0.7 %, but
``tight_rows`` (roofs 3-4 m apart) 18.9 -> 34.4 %: the mask joins more of the narrow gaps.
Measured with the k-means filters and not kept: on OSCD (seeds 0-9, K = 10 / 20, against 0.290 /
0.389) 3 x 3 patches 0.280 / 0.379 and 32 filters 0.286 / 0.381; half of the patches drawn where
the dates differ most (weights the squared standardized difference), seeds 0-4 at K = 10 / 20:
OSCD 0.256 / 0.387, LEVIR 0.644 / 0.804, DSIFN 0.724 / 0.797, synthetic 0.803 / 0.883 (against
0.284 / 0.403, 0.675 / 0.809, 0.724 / 0.793, 0.821 / 0.882).

Since the evening of 2026-11-30 each response is also pooled at 6 px (32 more features: the shape's
surroundings, e.g. a roof among roofs), measured as an experiment first and then as built
(``benchmarks/fewshot.py``, 2 px -> 2 and 6 px).  Seeds 0-4 at K = 10 / 20 / 50: LEVIR 0.675 /
0.809 / 0.861 -> 0.693 / 0.811 / 0.863 (lowest seed at K = 20 0.777 -> 0.793), DSIFN 0.724 / 0.793
/ 0.879 -> 0.748 / 0.828 / 0.895, OSCD 0.284 / 0.403 / 0.557 -> 0.285 / 0.389 / 0.549, synthetic
0.821 / 0.882 / 0.910 -> 0.808 / 0.870 / 0.908; seeds 5-9 at K = 10 / 20: LEVIR 0.694 / 0.808 ->
0.713 / 0.824, DSIFN 0.732 / 0.791 -> 0.762 / 0.828, OSCD 0.295 / 0.375 -> 0.307 / 0.372, synthetic
0.829 / 0.885 -> 0.831 / 0.885.  Over the ten seeds at K = 20: DSIFN +0.036, LEVIR +0.01, OSCD
-0.009, synthetic -0.006.  The structures on the classifier's mask move both ways
(``benchmarks/structures.py --examples 20``): LEVIR-CD 84 -> 79 counted for 123 houses, 68 -> 66
matching one; mean count error ``tight_rows`` 34.4 -> 23.3 %, ``two_metre`` 13.3 -> 35.0 % (one
seed of three: 6 of 20 blocks, where the wider context joins blocks 8-10 m apart), ``heldout_like``
0.7 -> 4.2 %, ``mixed`` 6.7 -> 9.2 %, ``sites_half`` 7.5 -> 2.8 %.  A model file records its
poolings (one number in files written before; those load and score as they did).

Classifier (measured in ``benchmarks/fewshot.py``): class-balanced extremely
randomized trees (Geurts et al. 2006), 100 trees, 30 % of the features per split;
each example pixel also labels its 3 x 3 neighbourhood (an example pixel keeps its own
label). The threshold is not 0.5: the analyst's examples say what change looks like but
not how much of the scene changed (a simulated analyst gives one change pixel for three
unchanged ones, the scenes hold 0.3 % to 65 % change), so the fit estimates the F1-best
threshold twice from the held-out probabilities of the examples (5-fold, by example) and
a sample of the scene's pixels, and takes the mean of the two: from the held-out recall
and the share of the scene above each threshold (:func:`_estimated_threshold`), and
from the scene's probabilities calibrated on the held-out ones, with the share of change
found by EM (:func:`_expected_f1_threshold`). The two err differently; their mean, against
the first alone (seeds 0-4, pooled F1 at K = 10 / 20 / 50): OSCD 0.246 / 0.394 / 0.554 ->
0.270 / 0.419 / 0.548, LEVIR 0.625 / 0.704 / 0.795 -> 0.613 / 0.718 / 0.809, DSIFN
0.682 / 0.756 / 0.864 -> 0.716 / 0.782 / 0.870, synthetic 0.829 / 0.883 / 0.907 ->
0.811 / 0.878 / 0.909; the lowest seed on OSCD at K = 20 0.297 -> 0.387.  The expected-F1
estimate alone: OSCD 0.351, LEVIR 0.724, DSIFN 0.786, synthetic 0.855 at K = 20.

Since 2026-12-02 that mean is drawn towards 0.5 as far as the examples leave it uncertain
(:func:`_scene_threshold`): it keeps ``1 / (1 + (sd / 0.15) ** 2)`` of its distance from 0.5, ``sd``
its spread over 30 bootstrap draws of the examples.  Twenty examples of a rare change in a 10 m city
placed it at 0.10 or 0.80 where 0.35 was best; tiles of 10-40 % change, whose examples place it firmly
at 0.05-0.15, keep it.  K = 20, pooled F1: OSCD (seeds 0-9) 0.421 -> 0.452, lowest seed 0.243 ->
0.328; through ``detect_changes`` 0.396 -> 0.454 (seeds 0-4) and 0.430 -> 0.461 (seeds 5-9); LEVIR
0.811 -> 0.814, DSIFN 0.828 -> 0.818 (seeds 0-4); K = 10 / 50 on OSCD 0.326 / 0.584 -> 0.372 / 0.587
(``docs/measurements.md``, "Trusting the threshold as far as the examples support it").

On pixels of 5 m and coarser the classifier (and every cross-validation fold's) also learns 500
background pixels as no change: pixels of the scene sample that the unsupervised default scores at
or below its median (:func:`_background_rows`); they are never held out, so the threshold and the
accuracy are the examples' own.  OSCD pooled F1, seeds 0-9 at K = 10 / 20 / 50: 0.326 / 0.421 /
0.584, against about 0.30 / 0.38 / 0.55 before (``docs/measurements.md``, "Background examples at
10 m"); at 0.5-1 m they cost (LEVIR-CD -0.04, DSIFN -0.1) and none are drawn.

Measured and not kept (``benchmarks/fewshot.py``, K = 20, seeds 0-2, pooled F1 of OSCD /
LEVIR / DSIFN / synthetic pairs, against 0.388 / 0.695 / 0.752 / 0.863; a difference of
0.02 is within what the choice of examples moves):

- a second stage on the out-of-fold first-stage probability smoothed at 1-8 px
  (auto-context): 0.357 / 0.683 / 0.733 / 0.877;
- the probability averaged over Felzenszwalb segments of the pair: 0.389 / 0.674 / 0.754 /
  0.824 (half-blended with the pixel's own: 0.392 / 0.696 / 0.757 / 0.822);
- change examples not grown: 0.408 / 0.699 / 0.755 / 0.932 at K = 20, but OSCD 0.310 -> 0.292
  at K = 10 and 0.556 -> 0.514 at K = 50; with no-change examples grown to 5 x 5 besides:
  LEVIR +0.02, synthetic -0.03;
- no-change examples also learnt with the dates swapped: OSCD +0.03 at K = 20, -0.02 at
  K = 10; LEVIR -0.04 at K = 10; DSIFN -0.01 at K = 50;
- more features: spectral angle of the dates (within 0.01 everywhere), local correlation
  of the dates (LEVIR -0.014, synthetic -0.026), locally normalised differences (DSIFN
  -0.037); fewer: only the difference features (OSCD +0.04, LEVIR -0.06), no before-date
  features (OSCD +0.04, LEVIR -0.015; at K = 10 OSCD -0.045, LEVIR -0.066), the three
  finest scales (all lower);
- random forest (0.377 / 0.687 / 0.752 / 0.871), 10 % of the features per split (DSIFN
  -0.026), sqrt of them (within 0.015, lower), two pixels per leaf (LEVIR -0.036);
  histogram gradient boosting fits with its cross-validation over ten times slower (not
  measured to the end);
- other thresholds: 0.5, the share of change from the mean or histogram of the held-out
  probabilities, a floor of 0.5 on held-out recall (better on LEVIR or DSIFN, 0.04-0.2 worse
  on OSCD); Laplace-smoothed recall or the median over 31 bootstrap draws of the held-out
  change examples (within 0.013).

Thresholds measured 2026-12-01 on the probabilities of the k-means filters pooled at 2 and 6 px
(each fit's held-out and scene probabilities recorded, seeds 0-5, pooled F1 of OSCD / LEVIR /
DSIFN / synthetic at K = 20, against 0.386 / 0.809 / 0.827 / 0.876; the best threshold per tile
(an oracle) 0.477 / 0.841 / 0.849 / 0.905, the best one per set 0.432 / 0.841 / 0.804 / 0.900),
not kept:

- the held-out probabilities averaged over 3 or 5 repeats of the 5 folds (other splits):
  OSCD 0.325 -> 0.318 / 0.302, DSIFN 0.779 -> 0.776 / 0.773 on the tiles done (the noise is in
  which examples were drawn, not in the folds);
- the threshold clipped to 0.25-0.85 (OSCD 0.396, synthetic 0.891, the others within 0.003)
  or pulled a quarter of the way to 0.5 or 0.6 (OSCD 0.394, LEVIR 0.826-0.828, DSIFN
  0.819-0.823); fixed thresholds (0.8: OSCD 0.430, LEVIR 0.666, DSIFN 0.497); Otsu on the
  scene's probabilities, alone (OSCD 0.143) or as a third estimate (OSCD 0.338);
- the scene's share above each threshold taken from the *smoothed* probability (which the
  threshold is applied to) instead of the pixels' own: OSCD 0.403 (lowest seed 0.24 -> 0.35),
  LEVIR 0.805, DSIFN 0.827, synthetic 0.888, but at K = 10 synthetic 0.811 -> 0.791, and on
  seeds 6-9 within 0.006 except synthetic +0.03 at K = 20; with the held-out probabilities
  smoothed as well (each example's Gaussian mean over its 3 x 3 labelled pixels), so that both
  sides are what the map is thresholded on: OSCD 0.388, the others within 0.004, and the
  held-out ones smoothed alone: within 0.005 everywhere.  The spread is in which examples
  were drawn; a fit would also have to score patches of the scene sample to smooth them.

Also measured and not kept (K = 20, seeds 0-4, pooled F1 of LEVIR / DSIFN / synthetic /
OSCD four bands, against 0.704 / 0.756 / 0.883 / 0.353):

- an RBF support vector machine on standardized features (class-balanced, Platt
  probabilities): 0.744 / 0.750 / 0.856 / 0.291, and soft voting of it with the trees:
  LEVIR 0.741, OSCD 0.326; logistic regression: LEVIR 0.649.  Better only on the one set
  of real 0.5 m tiles, worse on the others (and the synthetic pairs are 0.5 m too);
- one round of self-training (the scene sample's most confident 200 or 500 pixels of each
  class added as labels, weight 0.5 or 1): LEVIR 0.701 and 0.693;
- morphological profiles of each date's brightness (opening and closing by reconstruction,
  disks of 2-16 m) and their change: LEVIR 0.693; Gaussian scale 32 px added: LEVIR 0.686;
  the probability smoothed at 2 px instead of 1: LEVIR 0.703;
- with the threshold of two estimates (LEVIR / DSIFN 0.718 / 0.782): 300 trees 0.714 / 0.779,
  change examples grown to 5 x 5 0.714 / 0.785.

The probability averaged half and half with its mean over Felzenszwalb segments of both
dates (min size 50 px, scale 100), the segments cut at a fixed grid of 128 or 256 px tiles so
that a window of a scene could give the same answer as the whole pair (seeds 0-4, LEVIR / DSIFN /
synthetic at K = 10, 20, 50): none 0.613 / 0.716 / 0.811, 0.718 / 0.782 / 0.878, 0.809 / 0.870 /
0.909; with it 0.613 / 0.725 / 0.818, 0.737 / 0.791 / 0.885, 0.830 / 0.879 / 0.907 (the lowest
LEVIR seed at K = 10 0.577 -> 0.540; tiles of 64 px: 0.732 / 0.791 / 0.873 at K = 20).  Not
kept: a tile's mean needs its whole tile scored with the features' context, so a window's halo
would grow from about 70 px to about 200 (half as many pixels again per window of a scene) for
+0.01 to +0.02.

Each example also labelling part of its segment of the pair (Felzenszwalb on both dates'
colour bands stretched by their 2-98 percentiles, scale 100, sigma 0.8, at least 50 px; up to
60 pixels of a segment of at most 400 m^2 inside an 89 px window around the example, its edge
pixels left out; below 2 m only): seeds 0-4, pooled F1 at K = 10 / 20 / 50, LEVIR 0.613 / 0.718 /
0.809 -> 0.625 / 0.724 / 0.822 (edges kept: 0.637 / 0.724 / 0.820), DSIFN 0.716 / 0.782 / 0.870
-> 0.732 / 0.798 / 0.881 (edges kept), the synthetic pairs 0.811 / 0.878 / 0.909 -> 0.776 / - /
0.865 (edges kept: 0.768 / 0.868 / 0.864); at K = 20 on
seeds 0-2 alone LEVIR read 0.716 -> 0.748, seeds 3-4 lost 0.03.  Not kept: within what the
choice of examples moves on the real tiles, and the synthetic pairs' ranking got worse (best
threshold per seed at K = 50 0.923 -> 0.889; with 15 pixels per segment 0.913): a roof's
interior outweighs the edges the 3 x 3 examples teach.  The segments' labels were 5-17 % wrong
for change examples (a roof's segment running into its yard), 0-2 % for no change.  At 10 m
(OSCD) it cost 0.02-0.05 (a segment spans fields and blocks).

The local standard deviation of each date's brightness at every scale and its change (15 more
features for RGB, about 3 % more time with examples on a 1-megapixel pair), measured and not
kept: seeds 0-9, pooled F1 at K = 10 / 20, LEVIR 0.621 / 0.723 -> 0.653 / 0.739, DSIFN 0.721 /
0.776 -> 0.742 / 0.795, the synthetic pairs 0.824 / 0.880 -> 0.801 / 0.891, OSCD 0.272 / 0.395 ->
0.267 / 0.391; but the structures counted on the classifier's mask got worse
(``benchmarks/structures.py --examples 20``, mean count error): ``tight_rows`` 18.9 -> 32.2 %,
``two_metre`` 20.0 -> 41.7 % (its footprints' area error 15 -> 98 %), ``mixed`` 6.7 -> 12.5 %: the
masks grow over the ground between roofs.  At the three finest scales only: 25.6 %, 43.3 %, 10.8 %.

With the best threshold per tile (an oracle) the same probabilities give 0.46-0.49 /
0.71-0.75 / 0.80-0.82: the ranking, not the threshold, keeps K = 20 below 0.50 on OSCD and
0.80 on LEVIR.

Model files (:meth:`LearnedModel.save`, :func:`load_model`) are skops archives
loaded with an explicit list of trusted types: a file naming any other type (one
that could run code) is refused before anything in it is built.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np

from . import _kernels
from . import indices as _idx
from .errors import BandMismatchError, EmptyDataError, InvalidParameterError
from .raster import GeoRaster, Grid

__all__ = [
    "FEATURE_VERSION",
    "Examples",
    "PairStats",
    "PixelFeatures",
    "PatchBank",
    "LearnedModel",
    "feature_sigmas_m",
    "pair_stats",
    "pixel_features",
    "make_patch_bank",
    "read_examples",
    "fit_examples",
    "train",
    "load_model",
    "reusing_features",
    "using_threads",
    "threads_chosen",
    "threads_for_a_run",
    "remember_features",
    "MEMO_BYTES",
]

#: Version of the feature set; a model file made with another version is refused.
FEATURE_VERSION = 2

#: Gaussian truncation of :func:`skimage.filters.gaussian` (its default).
_TRUNCATE = 4.0
#: Smallest and largest Gaussian scale, in pixels.
_SIGMA_PX_RANGE = (0.7, 16.0)
#: Smoothing of the probability (Gaussian sigma in pixels), weighing each pixel with its neighbours.
_SMOOTH_PX = 1.0
#: Trees per forest; few examples need no more.
_N_TREES = 100
#: Each example pixel also labels its neighbours within this many pixels (3 x 3): an
#: analyst's point sits inside what it marks, and the forest needs more than one pixel
#: of each to see the local variation.  Labelling only a change example's own pixel
#: (changes can be a pixel or two wide) was measured in ``benchmarks/fewshot.py`` and not
#: kept: seeds 0-2, OSCD K = 10 / 20 / 50 0.310 / 0.388 / 0.556 -> 0.292 / 0.408 / 0.514,
#: DSIFN 0.679 / 0.752 / 0.860 -> 0.670 / 0.755 / 0.847 (synthetic pairs gained 0.05-0.08)
_NO_CHANGE_REACH_PX = 1
_CHANGE_REACH_PX = 1
#: Candidate thresholds on the probability, and the scene pixels sampled to choose one
_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
_SCENE_SAMPLE = 20_000
#: Recall (on held-out examples) below which a threshold is not used to bound the prevalence
_MIN_RECALL = 0.25
#: The threshold estimated from the examples and the scene is drawn towards 0.5 (where the
#: class-balanced forest finds the examples' two classes equally likely, the threshold without
#: evidence of the scene's share of change) by its own uncertainty: the spread ``sd`` of the
#: estimate over this many bootstrap draws of the examples (change and no change drawn apart, with
#: replacement) keeps ``1 / (1 + (sd / _SHRINK_SD) ** 2)`` of its distance from 0.5.  Twenty
#: examples of a rare change in a 10 m city place it no better than a guess (the spread there is
#: about 0.12, and single draws chose 0.10 or 0.80 where the best was 0.35); many examples or a
#: clear one keep it.  Measured with ``benchmarks/fewshot.py``'s simulated analyst, K = 20 (pooled
#: F1, mean over seeds): see ``docs/measurements.md`` ("Trusting the threshold as far as the
#: examples support it").
_SHRINK_SD = 0.15
_SHRINK_DRAWS = 30
#: ... and by how well the classifier recognises its own held-out change examples: when fewer than this
#: share of them reach 0.5 out of fold, the threshold keeps that much less of its distance from 0.5
#: (none when no change example reaches it).  Ten change examples of a city's scattered construction
#: that the forest cannot generalise across pile every estimate at the lowest candidate threshold, with
#: no spread to draw it in (OSCD bordeaux, K = 10: 0.05, 24 % of the city marked where the truth has
#: 1 %).  OSCD K = 10, seeds 0-9: 0.364 (0.196-0.444) -> 0.399 (0.360-0.444); K = 20 unchanged
#: (``docs/measurements.md``, "Trusting the threshold as far as the classifier recognises its examples").
_RECOGNISED_SHARE = 0.3
#: Scenes of pixels this coarse or coarser (m) also train on background no-change examples: this
#: many pixels of the scene sample drawn among those the unsupervised default (``method="auto"``)
#: scores at or below its median there (:func:`_background_rows`).  60 no-change clicks in a city
#: of fields, woods, water and streets miss most of what does not change; the lower half of the
#: default's score is such ground (at 10 m change is a few per cent of a scene).  Measured with
#: ``benchmarks/fewshot.py`` (K = 20, pooled F1 over the seven OSCD cities, seeds 0-9): see
#: ``docs/measurements.md`` ("Background examples at 10 m"): 0.38 -> 0.42 at K = 20, 0.30 -> 0.33 at
#: K = 10, 0.55 -> 0.58 at K = 50.  Below 5 m they cost: the lower half of the 0.5-1 m default's
#: score holds the roofs it misses (LEVIR-CD 0.811 -> 0.775, DSIFN 0.828 -> 0.72), so finer pixels
#: get none.
_BACKGROUND_MIN_PX_M = 5.0
_BACKGROUND_N = 500
#: Scenes of pixels this coarse or coarser (m) also learn from the unsupervised default's change
#: score (``method="auto"``, the urban-spectral score at 10 m) as a feature, with its smoothings, when
#: ``change_score`` is left to the fit.  At 10 m it carries what the default knows of construction
#: (IR-MAD-normalised change vectors, water and vegetation left out) to a forest that sees 20 change
#: clicks: OSCD K = 20, seeds 0-9, pooled F1 0.452 (0.328-0.493) -> 0.470 (0.438-0.505) on the
#: classifier's own masks.  Below 5 m it moved nothing beyond what the draw moves (LEVIR-CD 0.814 ->
#: 0.811, DSIFN 0.818 -> 0.824, the synthetic 0.5 m pairs 0.874) and costs time and halo, so finer
#: pixels go without (``docs/measurements.md``, "The default's score as a feature at 10 m").
_CHANGE_SCORE_MIN_PX_M = 5.0

#: Patch filters (:class:`PatchBank`): this many, of this many pixels a side, their rectified
#: responses pooled by a Gaussian of this sigma in pixels; the k-means centres (this seed, at most
#: this many iterations) of this many patches of the pair, whitened with this regularisation (in
#: units of the bands' robust spread squared).
_N_PATCHES = 16
_PATCH_PX = 5
_PATCH_POOL_PX = (2.0, 6.0)
_PATCH_SAMPLE = 4000
_PATCH_EPS = 0.1
_PATCH_SEED = 0
_PATCH_KMEANS_ITER = 50

_FORMAT = "changedet.learn"


# --- small frozen types ----------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Examples:
    """Labelled pixels: ``row``, ``col`` and ``change`` (True = change), one entry per pixel.

    Examples
    --------
    >>> import numpy as np
    >>> ex = Examples(np.array([1, 2]), np.array([3, 4]), np.array([True, False]))
    >>> ex.n_change, ex.n_no_change
    (1, 1)
    >>> ex.to_labels((4, 5))[1:3, 3:5]
    array([[ 1, -1],
           [-1,  0]], dtype=int8)
    """

    row: np.ndarray
    col: np.ndarray
    change: np.ndarray
    source: str = "examples"

    def __post_init__(self) -> None:
        row = np.asarray(self.row, dtype=np.int64).ravel()
        col = np.asarray(self.col, dtype=np.int64).ravel()
        change = np.asarray(self.change, dtype=bool).ravel()
        if not (row.size == col.size == change.size):
            raise InvalidParameterError(
                f"Examples needs row, col and change of one length, got {row.size}, {col.size} and {change.size}"
            )
        object.__setattr__(self, "row", row)
        object.__setattr__(self, "col", col)
        object.__setattr__(self, "change", change)

    @property
    def n_change(self) -> int:
        return int(self.change.sum())

    @property
    def n_no_change(self) -> int:
        return int((~self.change).sum())

    def to_labels(self, shape: tuple[int, int]) -> np.ndarray:
        """A (rows, cols) int8 label raster: 1 change, 0 no change, -1 unlabelled.

        Parameters
        ----------
        shape : (int, int)
            Rows and columns of the raster; every example must lie inside it.

        Returns
        -------
        (rows, cols) ndarray of int8
            1 at change examples, 0 at no-change examples, -1 elsewhere.
        """
        out = np.full(shape, -1, dtype=np.int8)
        out[self.row, self.col] = self.change.astype(np.int8)
        return out

    @classmethod
    def from_labels(cls, labels: np.ndarray, *, source: str = "labels") -> "Examples":
        """From a (rows, cols) label raster: 1 (or True) change, 0 no change, anything else unlabelled.

        Parameters
        ----------
        labels : (rows, cols) ndarray
            Integer or float labels; a bool array labels every pixel (True change,
            False no change).
        source : str
            Where the labels came from, for messages.

        Returns
        -------
        Examples
            One entry per labelled pixel, in row-major order.
        """
        labels = np.asarray(labels)
        if labels.dtype == bool:
            row, col = np.nonzero(np.ones(labels.shape, bool))
            return cls(row, col, labels.ravel(), source)
        row, col = np.nonzero((labels == 0) | (labels == 1))
        return cls(row, col, labels[row, col] == 1, source)


@dataclass(frozen=True, eq=False)
class PairStats:
    """Per-date radiometric statistics of one pair: the part of the fit a window reuses.

    Attributes
    ----------
    before_median, before_spread, after_median, after_spread : (bands,) ndarray of float64
        Each band's median and robust spread (IQR / 1.349) over the valid pixels.
    change_fit : changedet.change.FittedScore or None
        The unsupervised ``auto`` change score with its scene-wide statistics fixed.
    """

    before_median: np.ndarray
    before_spread: np.ndarray
    after_median: np.ndarray
    after_spread: np.ndarray
    change_fit: Any = None


@dataclass(frozen=True, eq=False)
class PixelFeatures:
    """Per-pixel features of a pair and their names.

    Attributes
    ----------
    values : (rows, cols, n_features) ndarray of float32
    names : tuple of str
        One name per feature, e.g. ``"d_red_s1.6"`` (band difference at sigma 1.6 px).
    halo_px : int
        How far a pixel's features reach: a window needs this many extra pixels on each side.
    """

    values: np.ndarray
    names: tuple[str, ...]
    halo_px: int


@dataclass(frozen=True, eq=False)
class PatchBank:
    """Filters learnt from the pair itself: k-means centres of whitened patches of both dates
    (Coates & Ng 2011; as in MOSAIKS, Rolf et al. 2021), whose rectified responses are features
    of every pixel.

    A filter is a centre of :data:`_PATCH_PX` x :data:`_PATCH_PX` patches of the standardized
    bands of both dates (before's bands, then after's): 4,000 patches drawn at random from the
    valid pixels are whitened with their covariance, scaled to unit length and clustered by
    k-means (Coates & Ng's spherical k-means; scikit-learn's ``KMeans``, one thread, fixed seed);
    a filter's response at a pixel is the inner product of the whitened patch there and of the
    centre, its positive and negative parts pooled by a Gaussian.  The Gaussian derivatives of
    the other features describe intensity, edges and curvature; these describe the shapes and
    textures the pair is made of (a roof's corner, a row of cars), so a few examples of a roof
    also teach the roofs that look like it.  The bank belongs to the model: a model applied to
    another pair uses the filters it was trained with.

    Attributes
    ----------
    weights : (n, channels * size_px * size_px) ndarray of float32
        One filter per row, over (channel, row, column) of a patch; the channels are the
        before date's bands, then the after date's.
    bias : (n,) ndarray of float32
        Subtracted from each response (the filters' inner product with the mean patch).
    size_px : int
        Patch side in pixels (odd).
    pool_px : tuple of float
        Gaussian sigmas, in pixels, pooling each rectified response: one feature per sigma,
        the shape itself (2 px) and its surroundings (6 px).
    """

    weights: np.ndarray
    bias: np.ndarray
    size_px: int
    pool_px: tuple[float, ...]

    @property
    def n(self) -> int:
        return int(self.weights.shape[0])

    @property
    def channels(self) -> int:
        return int(self.weights.shape[1]) // (self.size_px * self.size_px)

    @property
    def halo_px(self) -> int:
        """How far a pixel's patch features reach."""
        return self.size_px // 2 + int(math.ceil(_TRUNCATE * max(self.pool_px)))


# --- features --------------------------------------------------------------------

def feature_sigmas_m(pixel_size_m: float) -> tuple[float, ...]:
    """The Gaussian scales of the features, in metres: 0.5 m x 2^k between 0.7 and 16 pixels.

    Parameters
    ----------
    pixel_size_m : float
        Ground sampling distance in metres (positive).

    Returns
    -------
    tuple of float
        The scales in metres, smallest first.

    Raises
    ------
    InvalidParameterError
        ``pixel_size_m`` is not a positive number.

    Examples
    --------
    >>> feature_sigmas_m(10.0)
    (8.0, 16.0, 32.0, 64.0, 128.0)
    >>> feature_sigmas_m(0.5)
    (0.5, 1.0, 2.0, 4.0, 8.0)
    """
    px = _check_pixel_size(pixel_size_m)
    lo, hi = _SIGMA_PX_RANGE
    out = []
    k = 0
    while 0.5 * 2.0**k / px < lo:
        k += 1
    while 0.5 * 2.0**k / px <= hi + 1e-9:
        out.append(0.5 * 2.0**k)
        k += 1
    return tuple(out)


def _check_pixel_size(pixel_size_m: Any) -> float:
    try:
        px = float(pixel_size_m)
    except (TypeError, ValueError):
        px = float("nan")
    if not (math.isfinite(px) and px > 0):
        raise InvalidParameterError(
            f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}; "
            f"pass the ground sampling distance (10 for Sentinel-2, 0.5 for 50 cm aerial tiles)"
        )
    return px


def _halo(sigmas_px: Sequence[float], change_halo: int, bank: PatchBank | None = None) -> int:
    # Gaussian truncated at 4 sigma, then Sobel / double gradient (2 px), then the
    # probability smoothing; the unsupervised change score has its own reach, and
    # is smoothed at the two finest scales; the patch filters reach half a patch and their pooling
    feat = int(math.ceil(_TRUNCATE * max(sigmas_px))) + 2
    if change_halo:
        change_halo += int(math.ceil(_TRUNCATE * sorted(sigmas_px)[:2][-1]))
    patch = bank.halo_px if bank is not None else 0
    smooth = int(math.ceil(_TRUNCATE * _SMOOTH_PX))
    return max(feat, change_halo, patch) + smooth


def _prepare(before: Any, after: Any, band_names: Sequence[str] | None, valid: Any) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray]:
    before = np.asarray(before)
    after = np.asarray(after)
    if before.ndim == 2:
        before = before[np.newaxis]
    if after.ndim == 2:
        after = after[np.newaxis]
    if before.ndim != 3 or before.shape != after.shape:
        raise InvalidParameterError(
            f"before and after must be (bands, rows, cols) arrays of one shape, got {before.shape} and "
            f"{after.shape}; put both on one grid first (changedet.align.align_to(after, like=before))"
        )
    names = tuple(str(n) for n in band_names) if band_names is not None else tuple(
        f"band{i + 1}" for i in range(before.shape[0]))
    if len(names) != before.shape[0]:
        raise InvalidParameterError(
            f"band_names has {len(names)} names {list(names)} but the images have {before.shape[0]} bands"
        )
    before = before.astype(np.float32, copy=False)
    after = after.astype(np.float32, copy=False)
    ok = np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != ok.shape:
            raise InvalidParameterError(f"valid has shape {valid.shape}, expected {ok.shape} (rows, cols) of the images")
        ok &= valid
    return before, after, names, ok


def _robust(x: np.ndarray) -> tuple[float, float]:
    if x.size > 400_000:
        x = x[:: x.size // 400_000 + 1]
    med = float(np.median(x))
    q1, q3 = np.percentile(x, [25, 75])
    spread = float(q3 - q1) / 1.349
    if not spread > 1e-12:
        spread = float(np.std(x))
    return med, spread if spread > 1e-12 else 1.0


def pair_stats(
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    pixel_size_m: float,
    valid: np.ndarray | None = None,
    change_score: bool = False,
) -> PairStats:
    """The per-date statistics the features of a pair need (fixed once, reused by every window).

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid; NaN = nodata. A sample of the scene is enough.
    band_names : sequence of str
        One name per band.
    pixel_size_m : float
        Ground sampling distance in metres.
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use.
    change_score : bool
        Also fix the unsupervised ``auto`` change score's statistics (default False).

    Returns
    -------
    PairStats

    Examples
    --------
    >>> import numpy as np
    >>> b = np.random.default_rng(0).normal(100, 10, (3, 20, 20)); a = 2 * b + 5
    >>> s = pair_stats(b, a, band_names=["red", "green", "blue"], pixel_size_m=1, change_score=False)
    >>> bool(np.allclose(s.after_spread, 2 * s.before_spread))
    True
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    px = _check_pixel_size(pixel_size_m)
    if not ok.any():
        raise EmptyDataError(f"no pixel is valid in both images ({ok.shape[0]}x{ok.shape[1]} pixels)")
    stats = [[_robust(img[b][ok]) for b in range(img.shape[0])] for img in (before, after)]
    fit = None
    if change_score and min(ok.shape) >= 7:
        from .change import fit_method

        fit = fit_method("auto", before, after, band_names=names, pixel_size_m=px, valid=ok)
    arr = np.asarray(stats, dtype=np.float64)  # (date, band, [median, spread])
    return PairStats(arr[0, :, 0], arr[0, :, 1], arr[1, :, 0], arr[1, :, 1], fit)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=_TRUNCATE)


def _colour_indices(img: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Spectral indices of one date on its own reflectances (NaN where undefined -> 0)."""
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in ("ndvi", "ndwi", "ndbi"):
            if _idx.has_bands(names, _idx.INDEX_BANDS[name]):
                out[name] = _idx.compute_index(img, names, name)
        found = _idx.resolve_bands(names)
        if "nir" not in found and all(c in found for c in ("red", "green", "blue")):
            # excess green on chromatic coordinates: gain-free
            out["exg"] = _idx.excess_green(*(img[found[c]].astype(np.float64) for c in ("red", "green", "blue")))
    return {k: np.nan_to_num(np.clip(v, -1.0, 1.0), nan=0.0).astype(np.float32) for k, v in out.items()}


def _basic(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sobel edges and the two Hessian eigenvalues of a smoothed image: the edge and texture
    features of :func:`skimage.feature.multiscale_basic_features` for an image it already smoothed."""
    from skimage.filters import sobel

    g = np.ascontiguousarray(g, dtype=np.float32)
    edges = sobel(g).astype(np.float32)
    gr, gc = np.gradient(g)
    hrr, hrc = np.gradient(gr)
    hcc = np.gradient(gc, axis=1)
    half = 0.5 * (hrr + hcc)
    root = np.sqrt(0.25 * (hrr - hcc) ** 2 + hrc * hrc)
    return edges, (half + root).astype(np.float32), (half - root).astype(np.float32)


def _standardized(before: np.ndarray, after: np.ndarray, ok: np.ndarray,
                  stats: PairStats) -> tuple[np.ndarray, np.ndarray]:
    """Both dates standardized by their own statistics; invalid pixels at the median (0), so
    that filters do not spread NaN."""
    zb = np.empty_like(before)
    za = np.empty_like(after)
    for i in range(before.shape[0]):
        zb[i] = (before[i] - stats.before_median[i]) / stats.before_spread[i]
        za[i] = (after[i] - stats.after_median[i]) / stats.after_spread[i]
    zb[:, ~ok] = 0.0
    za[:, ~ok] = 0.0
    return zb, za


def _sample_patches(zb: np.ndarray, za: np.ndarray, ok: np.ndarray, count: int, rng: np.random.Generator,
                    size: int = _PATCH_PX) -> np.ndarray:
    """Up to ``count`` patches of both standardized dates, (n, 2 * bands * size * size) float64,
    at random places where the whole patch is valid."""
    from scipy import ndimage

    channels = 2 * zb.shape[0]
    r = size // 2
    if min(ok.shape) < size:
        return np.empty((0, channels * size * size))
    inner = ndimage.binary_erosion(ok, np.ones((size, size), bool), border_value=0)
    cand = np.flatnonzero(inner)
    if cand.size == 0:
        return np.empty((0, channels * size * size))
    pick = np.sort(rng.choice(cand, min(int(count), cand.size), replace=False))
    pr, pc = np.unravel_index(pick, ok.shape)
    offs = np.arange(-r, r + 1)
    rows = pr[:, None, None] + offs[None, :, None]
    cols = pc[:, None, None] + offs[None, None, :]
    both = np.concatenate([zb, za], axis=0)
    patches = both[:, rows, cols]  # (channels, n, size, size)
    return np.moveaxis(patches, 1, 0).reshape(pick.size, -1).astype(np.float64)


def make_patch_bank(patches: np.ndarray, *, n: int = _N_PATCHES, size_px: int = _PATCH_PX,
                    pool_px: Sequence[float] = _PATCH_POOL_PX, seed: int = _PATCH_SEED) -> PatchBank | None:
    """Filters from patches of a pair: the k-means centres of the whitened patches (see :class:`PatchBank`).

    Parameters
    ----------
    patches : (m, channels * size_px * size_px) ndarray of float
        Patches of both standardized dates (before's bands, then after's), one per row.
    n : int
        Filters (k-means clusters).
    size_px : int
        Patch side in pixels.
    pool_px : sequence of float
        Gaussian sigmas pooling the responses, in pixels (one feature per filter, sign and sigma).
    seed : int
        Seed of k-means.

    Returns
    -------
    PatchBank or None
        None when there are fewer than ``n`` patches (an image too small for them).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.random.default_rng(0).normal(size=(500, 2 * 3 * 25))
    >>> bank = make_patch_bank(p)
    >>> bank.weights.shape, bank.channels, bank.halo_px
    ((16, 150), 6, 26)
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(patches, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < n:
        return None
    # one thread (BLAS and OpenMP): the bank, hence every feature, is the same bits on any machine load
    with threadpool_limits(1):
        mu = x.mean(axis=0)
        c = x - mu
        cov = (c.T @ c) / c.shape[0]
        e, v = np.linalg.eigh(cov)
        whiten = (v / np.sqrt(np.maximum(e, 0.0) + _PATCH_EPS)) @ v.T
        w = c @ whiten
        w /= np.linalg.norm(w, axis=1, keepdims=True) + 1e-9  # directions: k-means on the sphere, as Coates & Ng
        centres = KMeans(n_clusters=n, n_init=1, max_iter=_PATCH_KMEANS_ITER, random_state=seed).fit(w).cluster_centers_
        filters = centres @ whiten.T  # inner products with the whitened patches
        bias = filters @ mu
    return PatchBank(np.ascontiguousarray(filters, dtype=np.float32), bias.astype(np.float32), int(size_px),
                     tuple(float(p) for p in pool_px))


def _pair_bank(before: np.ndarray, after: np.ndarray, ok: np.ndarray, stats: PairStats) -> PatchBank | None:
    """The bank of one pair (its own patches, the fixed seed)."""
    zb, za = _standardized(before, after, ok, stats)
    return make_patch_bank(_sample_patches(zb, za, ok, _PATCH_SAMPLE, np.random.default_rng(_PATCH_SEED)),
                           pool_px=_PATCH_POOL_PX)


def _patch_responses(zb: np.ndarray, za: np.ndarray, bank: PatchBank) -> np.ndarray:
    """(n, rows, cols) float32: each filter's response at every pixel (reflected borders)."""
    from numpy.lib.stride_tricks import sliding_window_view
    from threadpoolctl import threadpool_limits

    both = np.concatenate([zb, za], axis=0)
    if both.shape[0] != bank.channels:
        raise BandMismatchError(
            f"the patch filters are for {bank.channels // 2} bands but the images have {zb.shape[0]}; "
            "use the model with the bands it was trained on"
        )
    r = bank.size_px // 2
    padded = np.pad(both, ((0, 0), (r, r), (r, r)), mode="reflect")
    windows = sliding_window_view(padded, (bank.size_px, bank.size_px), axis=(1, 2))  # (ch, rows, cols, s, s)
    rows, cols = zb.shape[1], zb.shape[2]
    out = np.empty((bank.n, rows, cols), np.float32)
    step = max(1, (1 << 16) // max(cols, 1))  # about 64k patches (40 MB of RGB patches) at once
    wt = bank.weights.T

    def rows_from(r0: int) -> None:
        r1 = min(r0 + step, rows)
        block = np.ascontiguousarray(np.moveaxis(windows[:, r0:r1], 0, 2)).reshape((r1 - r0) * cols, -1)
        resp = block @ wt - bank.bias
        out[:, r0:r1] = resp.T.reshape(bank.n, r1 - r0, cols)

    with threadpool_limits(1, "blas"):  # blocks of rows on the threads of using_threads instead
        _map(rows_from, range(0, rows, step))
    return out


def _features(
    before: np.ndarray,
    after: np.ndarray,
    ok: np.ndarray,
    names: tuple[str, ...],
    stats: PairStats,
    sigmas_px: Sequence[float],
    bank: PatchBank | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The feature stack of one window (reflect borders), (rows, cols, n) float32."""
    nb = before.shape[0]
    zb, za = _standardized(before, after, ok, stats)
    d = za - zb
    dmag = np.sqrt(np.mean(d * d, axis=0))
    sig_name = [f"{s:.3g}" for s in sigmas_px]
    band_label = [_idx.canonical_name(n) or n for n in names]
    Layers = list[tuple[np.ndarray, str]]

    def scale(k: int) -> Layers:
        s, sn = sigmas_px[k], sig_name[k]
        out: Layers = []
        # Gaussians are linear: the difference's and the brightness' follow from the bands'
        gb = np.stack([_gauss(zb[i], s) for i in range(nb)])
        ga = np.stack([_gauss(za[i], s) for i in range(nb)])
        for i in range(nb):
            out += [(gb[i], f"b_{band_label[i]}_s{sn}"), (ga[i], f"a_{band_label[i]}_s{sn}"),
                    (ga[i] - gb[i], f"d_{band_label[i]}_s{sn}")]
        # intensity, edges and texture (multiscale_basic_features) of each date's
        # brightness and of the difference magnitude
        for tag, g in (("b_bright", gb.mean(axis=0)), ("a_bright", ga.mean(axis=0)), ("dmag", _gauss(dmag, s))):
            out.append((g, f"{tag}_int_s{sn}"))
            out += [(x, f"{tag}_{kind}_s{sn}") for kind, x in zip(("edge", "tex1", "tex2"), _basic(g))]
        return out

    ib = _colour_indices(before, names)
    ia = _colour_indices(after, names)

    def index(key: str) -> Layers:
        out: Layers = []
        xb = np.where(ok, ib[key], 0.0).astype(np.float32)
        xa = np.where(ok, ia[key], 0.0).astype(np.float32)
        for s, sn in list(zip(sigmas_px, sig_name))[:3]:
            gb1, ga1 = _gauss(xb, s), _gauss(xa, s)
            out += [(gb1, f"b_{key}_s{sn}"), (ga1, f"a_{key}_s{sn}"), (ga1 - gb1, f"d_{key}_s{sn}")]
        return out

    resp = _patch_responses(zb, za, bank) if bank is not None else None

    def patch(k: int) -> Layers:
        assert bank is not None and resp is not None
        out: Layers = []
        pos, neg = np.maximum(resp[k], 0.0), np.maximum(-resp[k], 0.0)
        for j, pool in enumerate(bank.pool_px):
            tag = "" if j == 0 else f"_p{pool:g}"  # the first pooling keeps the names of version 2's one
            out += [(_gauss(pos, pool), f"patch{k}_pos{tag}"), (_gauss(neg, pool), f"patch{k}_neg{tag}")]
        return out

    # each part on the threads of using_threads (the filters release the GIL), in this order
    tasks = ([lambda k=k: scale(k) for k in range(len(sigmas_px))] + [lambda key=key: index(key) for key in ib]
             + [lambda k=k: patch(k) for k in range(bank.n if bank is not None else 0)])
    parts: Layers = [layer for part in _map(lambda task: task(), tasks) for layer in part]
    resp = None  # the filters' raw responses, no longer needed
    if stats.change_fit is not None:
        cs = stats.change_fit.apply(before, after, ok).score
        cs = np.where(np.isfinite(cs), np.clip(cs, -50, 200), 0.0).astype(np.float32)
        parts.append((cs, "auto_score"))
        for s, sn in list(zip(sigmas_px, sig_name))[:2]:
            parts.append((_gauss(cs, s), f"auto_score_s{sn}"))
    fnames = [name for _, name in parts]
    layers = [x for x, _ in parts]
    del parts
    # one contiguous copy, then one transposing copy in cache-sized tiles: cheaper than
    # stacking on the last axis (strided writes) or numpy's transposing copy
    planar = np.stack(layers, axis=0).astype(np.float32, copy=False)
    del layers
    return _kernels.pixels_last(planar), fnames


def pixel_features(
    before: np.ndarray,
    after: np.ndarray,
    *,
    band_names: Sequence[str],
    pixel_size_m: float,
    valid: np.ndarray | None = None,
    stats: PairStats | None = None,
    change_score: bool = False,
    bank: PatchBank | None = None,
) -> PixelFeatures:
    """Per-pixel features of both dates and of their difference.

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid; NaN = nodata.
    band_names : sequence of str
        One name per band (``B02``, ``red``, ...): indices are computed where the bands allow.
    pixel_size_m : float
        Ground sampling distance; the Gaussian scales are chosen in metres (:func:`feature_sigmas_m`).
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use; features of other pixels are NaN.
    stats : PairStats, optional
        Per-date statistics fixed on the whole pair (:func:`pair_stats`); computed here when
        not given, which is right for a whole scene but not for a window of one.
    change_score : bool
        Add the unsupervised ``auto`` change score (default False; ignored when ``stats`` is given).
    bank : PatchBank, optional
        Patch filters (:class:`PatchBank`); drawn from this pair when not given.

    Returns
    -------
    PixelFeatures
        ``values`` (rows, cols, n_features) float32, ``names``, ``halo_px``.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.random.default_rng(0).uniform(0, 1, (3, 32, 32)); a = b.copy(); a[:, 8:12, 8:12] += 1
    >>> f = pixel_features(b, a, band_names=["red", "green", "blue"], pixel_size_m=1.0, change_score=False)
    >>> f.values.shape[:2], f.values.dtype, f.names[0], f.halo_px
    ((32, 32), dtype('float32'), 'b_red_s1', 70)
    >>> i = f.names.index("dmag_int_s1")
    >>> bool(f.values[10, 10, i] > f.values[25, 25, i])
    True
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    px = _check_pixel_size(pixel_size_m)
    if stats is None:
        stats = pair_stats(before, after, band_names=names, pixel_size_m=px, valid=ok, change_score=change_score)
    _check_stats(stats, len(names))
    if bank is None:
        bank = _pair_bank(before, after, ok, stats)
    sigmas_px = tuple(s / px for s in feature_sigmas_m(px))
    values, fnames = _features(before, after, ok, names, stats, sigmas_px, bank)
    values[~ok] = np.nan
    change_halo = stats.change_fit.halo_px if stats.change_fit is not None else 0
    return PixelFeatures(values, tuple(fnames), _halo(sigmas_px, change_halo, bank))


def _check_stats(stats: PairStats, n_bands: int) -> None:
    if stats.before_median.shape != (n_bands,):
        raise BandMismatchError(
            f"the pair statistics are for {stats.before_median.shape[0]} bands but the images have {n_bands}; "
            f"fix them on this pair with pair_stats(...) or model.for_pair(...)"
        )


# --- examples -------------------------------------------------------------------

def _bad(source: str, what: str, fix: str) -> InvalidParameterError:
    return InvalidParameterError(f"{source}: {what}; {fix}")


def read_examples(path_or_geojson: str | os.PathLike[str] | Mapping[str, Any], grid: Grid) -> Examples:
    """Labelled pixels from a GeoJSON FeatureCollection of points or polygons.

    Each feature carries a boolean property ``change`` (true = change, false = no
    change). Coordinates are lon/lat (WGS84, RFC 7946) for a georeferenced grid,
    and pixel coordinates (x = column + 0.5, y = row + 0.5 at a pixel's centre)
    for a grid without CRS. A point labels the pixel it falls in; a polygon labels
    every pixel whose centre it contains. Pixels marked both ways are dropped.

    Parameters
    ----------
    path_or_geojson : path or dict
        A GeoJSON file, a GeoJSON string, or the parsed FeatureCollection.
    grid : changedet.raster.Grid
        The grid of the before image (the analysis grid).

    Returns
    -------
    Examples

    Raises
    ------
    InvalidParameterError
        Unparseable JSON, not a FeatureCollection, a feature without a boolean
        ``change``, an unsupported geometry, an example outside the image, or
        examples of only one class. The message names the file and the fix.

    Examples
    --------
    >>> from affine import Affine
    >>> g = Grid((10, 10), Affine.identity())
    >>> fc = {"type": "FeatureCollection", "features": [
    ...     {"type": "Feature", "properties": {"change": True}, "geometry": {"type": "Point", "coordinates": [2.5, 3.5]}},
    ...     {"type": "Feature", "properties": {"change": False},
    ...      "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [7, 5], [7, 7], [5, 7], [5, 5]]]}}]}
    >>> ex = read_examples(fc, g)
    >>> ex.n_change, ex.n_no_change, int(ex.row[ex.change][0]), int(ex.col[ex.change][0])
    (1, 4, 3, 2)
    """
    source, fc = _load_geojson(path_or_geojson)
    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection" or not isinstance(fc.get("features"), list):
        got = fc.get("type") if isinstance(fc, dict) else type(fc).__name__
        raise _bad(source, f"expected a GeoJSON FeatureCollection, got {got!r}",
                   'write {"type": "FeatureCollection", "features": [...]} with one Point or Polygon feature per example')
    if not fc["features"]:
        raise _bad(source, "the FeatureCollection has no features",
                   "add Point or Polygon features with a boolean property 'change'")
    to_pixel = _to_pixel(grid, source)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    for i, feat in enumerate(fc["features"]):
        where = f"feature {i}"
        props = feat.get("properties") if isinstance(feat, dict) else None
        if not isinstance(props, dict) or "change" not in props:
            raise _bad(source, f"{where} has no property 'change'",
                       'give every feature "properties": {"change": true} or {"change": false}')
        flag = props["change"]
        if not isinstance(flag, bool):
            raise _bad(source, f"{where} has change = {flag!r} ({type(flag).__name__}), not a boolean",
                       "use JSON true or false (not a string or a number)")
        geom = feat.get("geometry")
        r, c = _rasterize(geom, to_pixel, grid, source, where)
        rows.append(r)
        cols.append(c)
        flags.append(np.full(r.size, flag))
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    change = np.concatenate(flags)
    # one label per pixel; a pixel marked both ways is dropped
    key = row * grid.width + col
    uniq, inv = np.unique(key, return_inverse=True)
    n_true = np.bincount(inv, weights=change, minlength=uniq.size)
    n_all = np.bincount(inv, minlength=uniq.size)
    keep = (n_true == 0) | (n_true == n_all)
    if not keep.all():
        warnings.warn(f"{source}: {int((~keep).sum())} pixels are marked both change and no change; they are ignored",
                      stacklevel=2)
    uniq, lab = uniq[keep], n_true[keep] > 0
    ex = Examples(uniq // grid.width, uniq % grid.width, lab, source)
    if ex.n_change == 0 or ex.n_no_change == 0:
        one = "change" if ex.n_no_change == 0 else "no change"
        raise _bad(source, f"all {ex.change.size} example pixels are {one}",
                   "mark examples of both classes (some with change true and some with change false)")
    return ex


def _load_geojson(obj: Any) -> tuple[str, Any]:
    if isinstance(obj, Mapping):
        return "examples", dict(obj)
    text = None
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        source, text = "examples", obj
    else:
        path = Path(obj)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _bad(source, "the file does not exist", "check the path of the examples file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _bad(source, f"cannot be read as text ({exc.__class__.__name__})",
                       "pass a GeoJSON file (UTF-8 text)") from None
    try:
        return source, json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(source, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                   "fix the JSON or export the examples again from QGIS as GeoJSON") from None


def _to_pixel(grid: Grid, source: str):  # noqa: ANN202 - a coordinate function
    """Function (x, y arrays) -> (col, row) float arrays in the grid."""
    inv = ~grid.transform
    if grid.crs is None:
        return lambda x, y: (np.asarray(x, float), np.asarray(y, float))
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)

    def f(x, y):  # noqa: ANN001, ANN202
        mx, my = tr.transform(np.asarray(x, float), np.asarray(y, float))
        mx, my = np.asarray(mx, float), np.asarray(my, float)
        return inv.a * mx + inv.b * my + inv.c, inv.d * mx + inv.e * my + inv.f

    return f


def _rasterize(geom: Any, to_pixel, grid: Grid, source: str, where: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    import shapely
    from shapely.geometry import shape

    gtype = geom.get("type") if isinstance(geom, dict) else None
    if gtype not in ("Point", "MultiPoint", "Polygon", "MultiPolygon"):
        raise _bad(source, f"{where} has geometry {gtype!r}", "use Point, MultiPoint, Polygon or MultiPolygon")
    try:
        g = shape(geom)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise _bad(source, f"{where} has malformed coordinates ({exc})", "check the geometry's coordinates") from None
    coord_kind = "pixel coordinates (x = column + 0.5, y = row + 0.5)" if grid.crs is None else "lon/lat (EPSG:4326)"

    def px(xy: np.ndarray) -> np.ndarray:
        c, r = to_pixel(xy[:, 0], xy[:, 1])
        return np.column_stack([c, r])

    pg = shapely.transform(g, px)
    rows, cols = grid.shape
    if gtype in ("Point", "MultiPoint"):
        xy = shapely.get_coordinates(pg)
        c = np.floor(xy[:, 0]).astype(np.int64)
        r = np.floor(xy[:, 1]).astype(np.int64)
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols) & np.isfinite(xy).all(axis=1)
        if not inside.all():
            raise _bad(source, f"{where} lies outside the image ({rows}x{cols} pixels; coordinates read as {coord_kind})",
                       "remove it or check its coordinates are in " + coord_kind)
        return r, c
    from rasterio.features import rasterize
    from affine import Affine

    minx, miny, maxx, maxy = pg.bounds
    c0, r0 = max(int(math.floor(minx)), 0), max(int(math.floor(miny)), 0)
    c1, r1 = min(int(math.ceil(maxx)), cols), min(int(math.ceil(maxy)), rows)
    if c1 <= c0 or r1 <= r0:
        raise _bad(source, f"{where} lies outside the image ({rows}x{cols} pixels; coordinates read as {coord_kind})",
                   "remove it or check its coordinates are in " + coord_kind)
    burn = rasterize([(pg, 1)], out_shape=(r1 - r0, c1 - c0), transform=Affine.translation(c0, r0), fill=0,
                     dtype="uint8", all_touched=False)
    r, c = np.nonzero(burn)
    if r.size == 0:  # a polygon smaller than a pixel labels the pixel of its centre
        cen = pg.centroid
        r, c = np.array([int(math.floor(cen.y))]), np.array([int(math.floor(cen.x))])
        if not (0 <= r[0] < rows and 0 <= c[0] < cols):
            raise _bad(source, f"{where} lies outside the image ({rows}x{cols} pixels)",
                       "remove it or check its coordinates are in " + coord_kind)
        return r, c
    return r + r0, c + c0


# --- the model --------------------------------------------------------------------

Classifier = Literal["extra-trees", "random-forest", "gradient-boosting"]
_CLASSIFIERS = ("extra-trees", "random-forest", "gradient-boosting")


def _make_classifier(kind: str, seed: int):  # noqa: ANN202 - a scikit-learn estimator
    if kind == "random-forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=_N_TREES, max_features="sqrt", min_samples_leaf=1,
                                      class_weight="balanced_subsample", random_state=seed, n_jobs=1)
    if kind == "extra-trees":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(n_estimators=_N_TREES, max_features=0.3, min_samples_leaf=1,
                                    class_weight="balanced", random_state=seed, n_jobs=1)
    if kind == "gradient-boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, min_samples_leaf=5,
                                              class_weight="balanced", random_state=seed)
    raise InvalidParameterError(f"classifier must be one of {list(_CLASSIFIERS)}, got {kind!r}")


@dataclass(frozen=True, eq=False)
class LearnedModel:
    """A classifier of change trained on labelled pixels, with the feature set it needs.

    Attributes
    ----------
    classifier : sklearn estimator
        Fitted binary classifier (class 1 = change).
    band_names : tuple of str
        The bands it expects, in order.
    pixel_size_m : float
        Pixel size the feature scales were set for.
    sigmas_m : tuple of float
        Gaussian scales of the features, in metres.
    feature_names : tuple of str
    threshold : float
        Probability at and above which a pixel is change: estimated by the fit (the F1-best
        threshold given the held-out examples' recall and the scene's share above it).
    cv_accuracy : float
        Cross-validated accuracy on the examples (NaN when too few to split).
    n_examples : int
        Labelled pixels it was trained on.
    n_background : int
        Background no-change examples it also learnt: pixels of the scene sample that the
        unsupervised default scores in its lower half (pixels of 5 m or coarser; 0 otherwise).
    change_score : bool
        Whether the unsupervised ``auto`` score is one of the features.
    stats : PairStats or None
        Statistics of the pair being scored (:meth:`for_pair`); None after :func:`load_model`
        or :func:`train`, then :meth:`score` computes them from the arrays it is given.
    version : int
        Feature-set version (:data:`FEATURE_VERSION`).
    bank : PatchBank or None
        The patch filters drawn from the training pairs (None for images too small for them).
    """

    classifier: Any
    band_names: tuple[str, ...]
    pixel_size_m: float
    sigmas_m: tuple[float, ...]
    feature_names: tuple[str, ...]
    threshold: float = 0.5
    cv_accuracy: float = float("nan")
    n_examples: int = 0
    change_score: bool = False
    stats: PairStats | None = field(default=None, repr=False)
    n_background: int = 0
    version: int = FEATURE_VERSION
    bank: PatchBank | None = field(default=None, repr=False)

    @property
    def sigmas_px(self) -> tuple[float, ...]:
        return tuple(s / self.pixel_size_m for s in self.sigmas_m)

    @property
    def halo_px(self) -> int:
        """How many pixels a window needs on each side for :meth:`score` to equal the whole-scene score."""
        change_halo = 0
        if self.change_score:
            change_halo = self.stats.change_fit.halo_px if self.stats is not None and self.stats.change_fit else \
                max(8, int(math.ceil(30.0 / self.pixel_size_m)) + 6)
        return _halo(self.sigmas_px, change_halo, self.bank)

    @property
    def method(self) -> str:
        return "learned"

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable facts for ``summary.json``.

        Returns
        -------
        dict
            ``method``, ``classifier`` (its class name), ``threshold``, ``cv_accuracy``,
            ``n_examples``, ``background_examples``, ``band_names``, ``pixel_size_m``, ``sigmas_m``, ``n_features``,
            ``feature_version``, ``halo_px``, ``change_score_feature``, ``patch_filters`` (how many) and ``patch_pool_px``.
        """
        return {
            "method": "learned", "classifier": type(self.classifier).__name__, "threshold": self.threshold,
            "cv_accuracy": self.cv_accuracy, "n_examples": self.n_examples, "background_examples": self.n_background,
            "band_names": list(self.band_names),
            "pixel_size_m": self.pixel_size_m, "sigmas_m": list(self.sigmas_m),
            "n_features": len(self.feature_names), "feature_version": self.version, "halo_px": self.halo_px,
            "change_score_feature": self.change_score,
            "patch_filters": self.bank.n if self.bank is not None else 0,
            "patch_pool_px": list(self.bank.pool_px) if self.bank is not None else [],
        }

    def check_bands(self, band_names: Sequence[str]) -> None:
        """Raise :class:`~changedet.errors.BandMismatchError` unless ``band_names`` are the model's bands.

        Parameters
        ----------
        band_names : sequence of str
            The images' bands, in order; compared by canonical name, so ``B04`` matches
            ``red``.
        """
        got = tuple(str(n) for n in band_names)
        if tuple(_idx.canonical_name(n) or n for n in got) != tuple(_idx.canonical_name(n) or n for n in self.band_names):
            raise BandMismatchError(
                f"the model was trained on bands {list(self.band_names)} but the images have {list(got)}; "
                f"select those bands in that order (GeoRaster.select) or train a model on these bands"
            )

    def for_pair(self, before: np.ndarray, after: np.ndarray, *, band_names: Sequence[str] | None = None,
                 valid: np.ndarray | None = None) -> "LearnedModel":
        """This model with the statistics of a new pair fixed (the fit step of a windowed run).

        ``before``/``after`` may be the whole pair or a sample of it; every window then
        uses these statistics, so a windowed run equals the whole-scene score.

        Parameters
        ----------
        before, after : (bands, rows, cols) ndarray of float
            The pair, or a sample of it, bands as :attr:`band_names`; NaN = nodata.
        band_names : sequence of str, optional
            The arrays' bands, checked with :meth:`check_bands`; default the model's.
        valid : (rows, cols) ndarray of bool, optional
            Pixels to use.

        Returns
        -------
        LearnedModel
            A copy with :attr:`stats` set (see :func:`pair_stats`).
        """
        names = self.band_names if band_names is None else tuple(band_names)
        self.check_bands(names)
        stats = pair_stats(before, after, band_names=self.band_names, pixel_size_m=self.pixel_size_m, valid=valid,
                           change_score=self.change_score)
        return replace(self, stats=stats)

    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray | None = None, *,
              block_rows: int | None = None) -> np.ndarray:
        """Probability of change per pixel.

        Parameters
        ----------
        before, after : (bands, rows, cols) ndarray of float
            A window of both dates (with :attr:`halo_px` pixels of context on each side
            when it is part of a larger scene), bands as :attr:`band_names`.
        valid : (rows, cols) ndarray of bool, optional
            Pixels to score.
        block_rows : int, optional
            Rows computed at once (bounds memory, default about half a megapixel a block;
            the result does not depend on it).

        Returns
        -------
        (rows, cols) ndarray of float32
            Probability of change in [0, 1]; NaN outside ``valid``.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> b = rng.normal(0.3, 0.05, (3, 40, 40)); a = b + rng.normal(0, 0.01, b.shape); a[:, 10:20, 10:20] += 0.3
        >>> labels = np.full((40, 40), -1); labels[12:18, 12:18] = 1; labels[25:35, 25:35] = 0
        >>> m = fit_examples(b, a, labels, band_names=["red", "green", "blue"], pixel_size_m=1.0)
        >>> p = m.score(b, a)
        >>> bool(p[15, 15] > 0.5 > p[30, 5])
        True
        """
        n_bands = np.shape(before)[0] if np.ndim(before) == 3 else 1
        if n_bands != len(self.band_names):
            raise BandMismatchError(
                f"the model expects {len(self.band_names)} bands {list(self.band_names)}, the images have "
                f"{n_bands}; select those bands in that order"
            )
        before, after, _, ok = _prepare(before, after, self.band_names, valid)
        out = np.full(ok.shape, np.nan, dtype=np.float32)
        if not ok.any():
            return out
        model = self if self.stats is not None else self.for_pair(before, after, valid=ok)
        halo = model.halo_px
        rows = ok.shape[0]
        step = _block_rows(ok.shape[1]) if block_rows is None else max(int(block_rows), 1)
        for r0 in range(0, rows, step):
            r1 = min(r0 + step, rows)
            e0, e1 = max(r0 - halo, 0), min(r1 + halo, rows)
            p = model._score_window(before[:, e0:e1], after[:, e0:e1], ok[e0:e1])
            out[r0:r1] = p[r0 - e0:r1 - e0]
        return out

    def _score_window(self, before: np.ndarray, after: np.ndarray, ok: np.ndarray) -> np.ndarray:
        assert self.stats is not None
        prob = np.zeros(ok.shape, dtype=np.float32)
        if ok.any():
            feats, _ = _block_features(before, after, ok, self.band_names, self.stats, self.sigmas_px, self.bank,
                                       keep=False)
            flat = feats.reshape(-1, feats.shape[-1])
            if ok.all():  # no copy of the feature rows
                prob.ravel()[:] = _predict_change(self.classifier, flat)
            else:
                prob[ok] = _predict_change(self.classifier, flat[ok.ravel()])
        return _smooth_probability(prob, ok)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as a skops file (no code runs when it is loaded; see :func:`load_model`).

        The pair statistics are not saved: a loaded model computes them on the pair it scores.

        Parameters
        ----------
        path : str or path-like
            Destination, written atomically.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        import skops.io as sio

        from .io import atomic_path

        payload = {
            "format": _FORMAT,
            "feature_version": int(self.version),
            "band_names": list(self.band_names),
            "pixel_size_m": float(self.pixel_size_m),
            "sigmas_m": [float(s) for s in self.sigmas_m],
            "feature_names": list(self.feature_names),
            "threshold": float(self.threshold),
            "cv_accuracy": float(self.cv_accuracy),
            "n_examples": int(self.n_examples),
            "n_background": int(self.n_background),
            "change_score": bool(self.change_score),
            "classifier": self.classifier,
            "patch_weights": None if self.bank is None else self.bank.weights,
            "patch_bias": None if self.bank is None else self.bank.bias,
            "patch_size_px": None if self.bank is None else int(self.bank.size_px),
            "patch_pool_px": None if self.bank is None else [float(p) for p in self.bank.pool_px],
        }
        path = Path(path)
        with atomic_path(path) as tmp:
            sio.dump(payload, tmp)
        return path


#: The threads of :func:`using_threads`; None: not chosen (one thread, and a run in memory takes every core)
_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("changedet_learn_threads", default=None)
#: Rows of a feature matrix per thread below which its scores are not split.
_SPLIT_ROWS = 50_000


@contextlib.contextmanager
def using_threads(n: int | None = None) -> Iterator[None]:
    """Within the block, the features' Gaussian filters, the trees' training and their scores
    run on ``n`` threads (default: every core); outside it, on the calling thread.

    scipy's filters and scikit-learn's trees release the GIL, so a pair in memory is
    featured and scored on every core: on a 1-megapixel pair with 20 + 60 examples on 2
    cores 13.4 s -> 10.1 s (``benchmarks/learned_speed.py``).  The results are the same
    bit for bit: each filter is the same call, the trees are drawn from the same seed, and
    each pixel's probability is the same trees' mean whichever thread computes it.  A scene's
    windows already run on every core (:mod:`changedet.tiling`), so the windowed path does not
    use it; :func:`changedet.pipeline.detect_changes` does in memory, on every core unless a
    caller chose otherwise (``changedet batch`` runs each pair on one thread: one process per
    core).

    Parameters
    ----------
    n : int, optional
        Threads (at least 1); default ``os.cpu_count()``.

    Yields
    ------
    None
        The scope (a context variable: per thread or task).

    Examples
    --------
    >>> with using_threads(2):
    ...     _thread_count()
    2
    >>> _thread_count()
    1
    """
    count = int(os.cpu_count() or 1) if n is None else int(n)
    if count < 1:
        raise InvalidParameterError(f"threads must be at least 1, got {n!r}")
    token = _threads.set(count)
    try:
        yield
    finally:
        _threads.reset(token)


def _thread_count() -> int:
    """The threads of :func:`using_threads` (1 outside it)."""
    return _threads.get() or 1


def threads_chosen() -> bool:
    """Whether a caller chose the threads (an enclosing :func:`using_threads`).

    Returns
    -------
    bool
    """
    return _threads.get() is not None


@contextlib.contextmanager
def threads_for_a_run() -> Iterator[None]:
    """:func:`using_threads` on every core for a run, unless a caller chose already
    (:func:`threads_chosen`; ``changedet batch``'s workers choose one thread each).

    Yields
    ------
    None
    """
    if threads_chosen():
        yield
    else:
        with using_threads(None):
            yield


def _map(fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(x) for x in items]``, on the threads of :func:`using_threads` when there are several."""
    n = min(_thread_count(), len(items))
    if n <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="changedet-learn") as pool:
        return list(pool.map(fn, items))


def _predict_change(classifier: Any, X: np.ndarray) -> np.ndarray:
    """The classifier's probability of change (class 1) for the rows of ``X``, the rows split
    between the threads of :func:`using_threads` (each row's value does not depend on it)."""
    n = min(_thread_count(), max(X.shape[0] // _SPLIT_ROWS, 1))
    if n <= 1:
        return classifier.predict_proba(X)[:, 1]
    bounds = np.linspace(0, X.shape[0], n + 1).astype(int)
    parts = _map(lambda k: classifier.predict_proba(X[bounds[k]:bounds[k + 1]])[:, 1], range(n))
    return np.concatenate(parts)


#: The most bytes of feature blocks a run in memory keeps from the fit for its score
#: (:func:`reusing_features`); a block beyond it is computed again.
MEMO_BYTES = 1 << 30

_memo: contextvars.ContextVar[dict[bytes, tuple[np.ndarray, list[str]]] | None] = contextvars.ContextVar(
    "changedet_feature_memo", default=None)


@contextlib.contextmanager
def reusing_features() -> Iterator[None]:
    """Within the block, the feature blocks computed to fit on examples are kept (up to
    :data:`MEMO_BYTES`) and given back, once each, to the score of the same pixels.

    A run in memory fits on the whole pair and then scores the whole pair: without this
    each block's features (about 1.5 s per half megapixel of RGB at 0.5 m) are computed
    twice.  A block is found by its content (BLAKE2 of both dates, the valid mask, the
    pair's statistics and the scales), never by the arrays' identity, so a window that
    differs in any value is computed afresh.  Whatever is left is dropped on leaving.

    Yields
    ------
    None
        The scope of the memo (per thread or task: a context variable).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(0.3, 0.05, (3, 32, 32)); a = b.copy(); a[:, 8:16, 8:16] += 0.4
    >>> labels = np.full((32, 32), -1); labels[9:15, 9:15] = 1; labels[20:30, 20:30] = 0
    >>> with reusing_features():
    ...     m = fit_examples(b, a, labels, band_names=["red", "green", "blue"], pixel_size_m=1.0)
    ...     p = m.score(b, a)  # the fit's features, not computed again
    >>> bool(np.array_equal(p, m.score(b, a)))
    True
    """
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _memo_key(before: np.ndarray, after: np.ndarray, ok: np.ndarray, stats: PairStats,
              sigmas_px: Sequence[float], bank: PatchBank | None) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    if stats.change_fit is not None:  # the fitted change score's statistics, by their JSON
        h.update(json.dumps(stats.change_fit.to_dict(), sort_keys=True, default=str).encode())
    banked = () if bank is None else (bank.weights, bank.bias, np.array([bank.size_px, *bank.pool_px]))
    for arr in (before, after, ok, stats.before_median, stats.before_spread, stats.after_median,
                stats.after_spread, np.asarray(sigmas_px, np.float64), *banked):
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.digest()


#: Feature blocks kept between runs by :func:`remember_features` (None: not kept), and its lock.
_kept: dict[bytes, tuple[np.ndarray, list[str]]] | None = None
_kept_lock = threading.Lock()


def remember_features(enabled: bool = True) -> None:
    """Keep the last pair's feature blocks in this process between runs (up to :data:`MEMO_BYTES`).

    Clicking examples and re-running (``changedet.plot.ExamplePicker``) fits a new classifier
    on the same pair: its features (about 1.5 s of a 0.3-megapixel pair's 4.5 s re-run, 4-5 s
    of a megapixel's 10 s) do not change, and are taken from here instead of computed again.
    A block is found by its content (BLAKE2 of both dates, the valid mask, the pair's
    statistics, the scales and the patch filters, as :func:`reusing_features`), so another pair
    or other bands are computed afresh, and the blocks of the previous pair are dropped when they
    would not fit beside the new ones.  The blocks are kept read-only; the results are those of
    a run without it, bit for bit.  It serves runs in memory (:func:`changedet.pipeline.detect_changes`
    on a pair, or any fit and score inside :func:`reusing_features`), not a scene's windows, which
    are each seen once.

    Parameters
    ----------
    enabled : bool
        True: keep blocks from now on; False: drop them and keep none (the default state).

    Examples
    --------
    >>> remember_features()
    >>> remember_features(False)
    """
    global _kept
    with _kept_lock:
        _kept = {} if enabled else None


def _block_features(before: np.ndarray, after: np.ndarray, ok: np.ndarray, names: tuple[str, ...],
                    stats: PairStats, sigmas_px: Sequence[float], bank: PatchBank | None, *,
                    keep: bool) -> tuple[np.ndarray, list[str]]:
    """:func:`_features` of one block, through the memo of :func:`reusing_features` when one is
    open: ``keep`` (the fit) stores the block, otherwise (the score) a stored block is taken."""
    kept, memo = _kept, _memo.get()
    if kept is not None and memo is not None:  # a pair in memory (not a scene's windows)
        return _remembered(kept, before, after, ok, names, stats, sigmas_px, bank)
    key = _memo_key(before, after, ok, stats, sigmas_px, bank) if memo is not None else None
    if key is not None and not keep and key in memo:
        return memo.pop(key)
    feats, fnames = _features(before, after, ok, names, stats, sigmas_px, bank)
    if key is not None and keep and sum(f.nbytes for f, _ in memo.values()) + feats.nbytes <= MEMO_BYTES:
        memo[key] = (feats, fnames)
    return feats, fnames


def _remembered(kept: dict[bytes, tuple[np.ndarray, list[str]]], before: np.ndarray, after: np.ndarray,
                ok: np.ndarray, names: tuple[str, ...], stats: PairStats, sigmas_px: Sequence[float],
                bank: PatchBank | None) -> tuple[np.ndarray, list[str]]:
    """:func:`_features` of one block through the blocks :func:`remember_features` keeps."""
    key = _memo_key(before, after, ok, stats, sigmas_px, bank)
    with _kept_lock:
        hit = kept.get(key)
    if hit is not None:
        return hit
    feats, fnames = _features(before, after, ok, names, stats, sigmas_px, bank)
    feats.setflags(write=False)  # handed out again: nobody may change it
    with _kept_lock:
        if sum(f.nbytes for f, _ in kept.values()) + feats.nbytes > MEMO_BYTES:
            kept.clear()  # another pair's blocks go first
        if feats.nbytes <= MEMO_BYTES:
            kept[key] = (feats, fnames)
    return feats, fnames


def _block_rows(cols: int) -> int:
    """Rows of a block of about half a megapixel (its features take about 250 MB)."""
    return max(64, (1 << 19) // max(cols, 1))


def _smooth_probability(prob: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Gaussian mean of the probability over valid pixels only; NaN outside ``ok``."""
    if _SMOOTH_PX > 0:
        w = _gauss(ok.astype(np.float32), _SMOOTH_PX)
        num = _gauss(np.where(ok, prob, 0).astype(np.float32), _SMOOTH_PX)
        with np.errstate(divide="ignore", invalid="ignore"):
            prob = num / w
    return np.where(ok, np.clip(prob, 0, 1), np.nan).astype(np.float32)


#: Types a model file may contain (everything else is refused before loading).
_TRUSTED_PREFIXES = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn.utils._bunch.Bunch",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "builtins.slice",
)


def load_model(path: str | os.PathLike[str]) -> LearnedModel:
    """Read a model written by :meth:`LearnedModel.save`.

    Only the types a changedet model holds (scikit-learn trees and forests, numpy
    arrays) are allowed; a file naming any other type is refused before anything in
    it is built, so loading a file cannot run code.

    Parameters
    ----------
    path : str or path-like
        A model file.

    Returns
    -------
    LearnedModel
        The model without pair statistics (:meth:`LearnedModel.score` computes them).

    Raises
    ------
    InvalidParameterError
        Not a changedet model file, a type outside the trusted list, or another
        feature-set version.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(0.3, 0.05, (3, 24, 24)); a = b.copy(); a[:, 5:10, 5:10] += 0.3
    >>> labels = np.full((24, 24), -1); labels[6:9, 6:9] = 1; labels[15:20, 15:20] = 0
    >>> m = fit_examples(b, a, labels, band_names=["red", "green", "blue"], pixel_size_m=1.0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skops")
    >>> _ = m.save(path)
    >>> bool(np.allclose(load_model(path).score(b, a), m.score(b, a), equal_nan=True))
    True
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"model file {path} does not exist; pass the path written by LearnedModel.save")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a zip that is not a skops archive, or not a zip at all
        raise InvalidParameterError(
            f"{path} is not a changedet model file ({exc.__class__.__name__}: {exc}); "
            f"pass a file written by LearnedModel.save"
        ) from None
    refused = [t for t in untrusted if t not in _TRUSTED_PREFIXES]
    if refused:
        raise InvalidParameterError(
            f"{path} holds types a changedet model never does ({', '.join(refused[:5])}); refusing to load it, "
            f"as they could run code. Use a model file written by LearnedModel.save from a source you trust"
        )
    payload = sio.load(path, trusted=[t for t in untrusted])
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise InvalidParameterError(f"{path} is a skops file but not a changedet model; pass a file written by "
                                    f"LearnedModel.save")
    version = payload.get("feature_version")
    if version != FEATURE_VERSION:
        raise InvalidParameterError(
            f"{path} was made with feature-set version {version}, this changedet computes version "
            f"{FEATURE_VERSION}; train the model again with this version"
        )
    model = LearnedModel(
        classifier=payload["classifier"],
        band_names=tuple(payload["band_names"]),
        pixel_size_m=float(payload["pixel_size_m"]),
        sigmas_m=tuple(float(s) for s in payload["sigmas_m"]),
        feature_names=tuple(payload["feature_names"]),
        threshold=float(payload["threshold"]),
        cv_accuracy=float(payload["cv_accuracy"]),
        n_examples=int(payload["n_examples"]),
        n_background=int(payload.get("n_background", 0)),  # files written before it learnt none
        change_score=bool(payload["change_score"]),
        bank=_loaded_bank(payload, path),
    )
    expected = tuple(model.sigmas_m) == feature_sigmas_m(model.pixel_size_m)
    if not expected:
        raise InvalidParameterError(
            f"{path} records feature scales {list(model.sigmas_m)} m, which this changedet does not compute for "
            f"{model.pixel_size_m} m pixels ({list(feature_sigmas_m(model.pixel_size_m))}); train the model again"
        )
    return model


def _loaded_bank(payload: Mapping[str, Any], path: Path) -> PatchBank | None:
    weights = payload.get("patch_weights")
    if weights is None:
        return None
    try:
        # files written before the 6 px pooling recorded their one pooling as a number
        bank = PatchBank(np.asarray(weights, dtype=np.float32), np.asarray(payload["patch_bias"], dtype=np.float32),
                         int(payload["patch_size_px"]), tuple(float(p) for p in np.atleast_1d(payload["patch_pool_px"])))
        ok = (bank.weights.ndim == 2 and bank.bias.shape == (bank.n,) and bank.size_px % 2 == 1
              and bank.weights.shape[1] == bank.channels * bank.size_px ** 2 and len(bank.pool_px) > 0
              and min(bank.pool_px) > 0)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(f"{path} holds patch filters of the wrong shape; train the model again")
    return bank


# --- fitting ----------------------------------------------------------------------

def _as_examples(labels: Any, shape: tuple[int, int]) -> Examples:
    if isinstance(labels, Examples):
        ex = labels
    else:
        arr = np.asarray(labels)
        if arr.shape != shape:
            raise InvalidParameterError(
                f"labels has shape {arr.shape}, expected {shape} (rows, cols) of the images; pass an Examples "
                f"(read_examples) or a label raster with 1 = change, 0 = no change, -1 = unlabelled"
            )
        ex = Examples.from_labels(arr)
    if ex.row.size and (ex.row.min() < 0 or ex.col.min() < 0 or ex.row.max() >= shape[0] or ex.col.max() >= shape[1]):
        raise InvalidParameterError(f"{ex.source}: examples lie outside the {shape[0]}x{shape[1]} images")
    return ex


def _gather(before: np.ndarray, after: np.ndarray, ok: np.ndarray, names: tuple[str, ...], stats: PairStats,
            sigmas_px: Sequence[float], bank: PatchBank | None, ex: Examples,
            halo: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features at the example pixels (computed block by block, only where examples are)."""
    keep = ok[ex.row, ex.col]
    row, col, y = ex.row[keep], ex.col[keep], ex.change[keep]
    X = None
    fnames: list[str] = []
    rows = ok.shape[0]
    block_rows = _block_rows(ok.shape[1])
    for r0 in range(0, rows, block_rows):
        r1 = min(r0 + block_rows, rows)
        sel = (row >= r0) & (row < r1)
        if not sel.any():
            continue
        e0, e1 = max(r0 - halo, 0), min(r1 + halo, rows)
        f, fnames = _block_features(before[:, e0:e1], after[:, e0:e1], ok[e0:e1], names, stats, sigmas_px, bank,
                                    keep=True)
        part = f[row[sel] - e0, col[sel]]
        if X is None:
            X = np.empty((row.size, part.shape[1]), np.float32)
        X[sel] = part
    if X is None:
        X = np.empty((0, 0), np.float32)
    return X, y, fnames


def _expand(ex: Examples, ok: np.ndarray, *, change_reach: int = _CHANGE_REACH_PX,
            no_change_reach: int = _NO_CHANGE_REACH_PX) -> tuple[Examples, np.ndarray]:
    """Each example with its valid neighbours within ``change_reach`` (change examples) or
    ``no_change_reach`` pixels (no-change examples); also the index of the example each
    pixel came from (so cross-validation keeps neighbours in one fold)."""
    keep = ok[ex.row, ex.col]
    base = Examples(ex.row[keep], ex.col[keep], ex.change[keep], ex.source)
    rows, cols = ok.shape
    parts_r, parts_c, parts_y, parts_g = [], [], [], []
    group = np.arange(base.row.size)
    reach = np.where(base.change, int(change_reach), int(no_change_reach))
    r_max = int(reach.max(initial=0))
    # nearest offsets first, so a pixel claimed by several examples keeps the nearest's label
    # (an example pixel its own, whatever its neighbours are)
    offsets = sorted(((dr, dc) for dr in range(-r_max, r_max + 1) for dc in range(-r_max, r_max + 1)),
                     key=lambda o: (max(abs(o[0]), abs(o[1])), abs(o[0]) + abs(o[1])))
    for dr, dc in offsets:
        r, c = base.row + dr, base.col + dc
        inside = (reach >= max(abs(dr), abs(dc))) & (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        inside[inside] &= ok[r[inside], c[inside]]
        parts_r.append(r[inside]), parts_c.append(c[inside])
        parts_y.append(base.change[inside]), parts_g.append(group[inside])
    row, col, y, g = (np.concatenate(v) for v in (parts_r, parts_c, parts_y, parts_g))
    key = row * cols + col
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    return Examples(row[first], col[first], y[first], ex.source), g[first]


def _out_of_fold(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int,
                 extra: np.ndarray | None = None) -> np.ndarray | None:
    """Probability of each example pixel from a model that did not see its example (5-fold, by
    example; ``extra`` rows of no change are learnt by every fold)."""
    from sklearn.model_selection import StratifiedKFold

    centre = np.zeros(groups.size, bool)
    centre[np.unique(groups, return_index=True)[1]] = True
    gy = np.zeros(groups.max() + 1, bool)
    gy[groups[centre]] = y[centre]
    n_min = int(min(gy.sum(), (~gy).sum()))
    if n_min < 2:
        return None
    oof = np.full(y.size, np.nan)
    folds = StratifiedKFold(n_splits=min(5, n_min), shuffle=True, random_state=seed)

    def fold(split: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        tr, te = np.isin(groups, split[0]), np.isin(groups, split[1])
        clf = _make_classifier(kind, seed).fit(*_with_no_change(X[tr], y[tr], extra))
        return te, clf.predict_proba(X[te])[:, 1]

    # the folds are independent fits: on the threads of using_threads
    for te, prob in _map(fold, list(folds.split(np.zeros(gy.size), gy))):
        oof[te] = prob
    return oof


def _estimated_threshold(recall: np.ndarray, above: np.ndarray) -> float:
    """The threshold of best F1 estimated from held-out recall and the scene's share above it.

    With ``recall[t]`` the share of held-out change examples at or above threshold ``t``
    and ``above[t]`` the share of scene pixels at or above it, a scene with a share ``p``
    of change has ``F1(t) = 2 p recall / (above + p)``; ``p`` itself is bounded by
    ``above / recall`` at every threshold (false positives are never negative), and the
    tightest bound is taken.  The analyst's examples say what change looks like, the
    scene says how much of it there is, so a rare change (a few new buildings in a large
    scene) gets a higher threshold than a widespread one.
    """
    usable = recall >= _MIN_RECALL
    if not usable.any():
        return 0.5
    share = float(np.min(above[usable] / recall[usable]))
    if not share > 0:
        return 0.5
    f1 = np.where(usable, 2 * share * recall / (above + share), -1.0)
    return float(_THRESHOLDS[int(np.argmax(f1))])


def _expected_f1_threshold(po: np.ndarray, yo: np.ndarray, scene_prob: np.ndarray) -> float:
    """The threshold of best F1 expected from calibrated probabilities of the scene's pixels.

    The held-out probabilities of the examples calibrate the classifier's (Platt scaling
    with the classes weighed equally, as the classifier was trained); the scene's share of
    change is then found by EM on the scene sample (Saerens, Latinne & Decaestecker 2002,
    "Adjusting the outputs of a classifier to new a priori probabilities"), each pixel's
    probability of change follows, and with it the expected true and false positives and
    false negatives of every threshold.
    """
    from sklearn.linear_model import LogisticRegression

    def logit(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 1e-3, 1 - 1e-3)
        return np.log(x / (1 - x))

    platt = LogisticRegression(class_weight="balanced", solver="newton-cholesky")
    platt.fit(logit(po)[:, None], yo.astype(np.int8))
    f = platt.predict_proba(logit(scene_prob)[:, None])[:, 1]

    def adjusted(p: float) -> np.ndarray:  # each pixel's probability of change at a share p
        return p * f / (p * f + (1 - p) * (1 - f))

    p = 0.5  # the prior the classes were balanced to
    for _ in range(200):
        p_new = float(adjusted(p).mean())
        if abs(p_new - p) < 1e-7:
            break
        p = p_new
    q = adjusted(p)
    total = float(q.sum())
    best, best_t = -1.0, 0.5
    for t in _THRESHOLDS:
        sel = scene_prob >= t
        tp = float(q[sel].sum())
        fp = float(sel.sum()) - tp
        f1 = 2 * tp / (2 * tp + fp + (total - tp)) if tp > 0 else 0.0
        if f1 > best:
            best, best_t = f1, t
    return float(best_t)


def _both_estimates(po: np.ndarray, yo: np.ndarray, scene_prob: np.ndarray, above: np.ndarray) -> float:
    """The average of :func:`_estimated_threshold` and :func:`_expected_f1_threshold`: two estimates
    that err differently (benchmarks/fewshot.py, K = 20: pooled F1 OSCD 0.394 / 0.351 -> 0.419,
    LEVIR 0.704 / 0.724 -> 0.718, DSIFN 0.756 / 0.786 -> 0.782)."""
    recall = np.array([(po[yo] >= t).mean() for t in _THRESHOLDS])
    return 0.5 * (_estimated_threshold(recall, above) + _expected_f1_threshold(po, yo, scene_prob))


def _scene_threshold(po: np.ndarray, yo: np.ndarray, scene_prob: np.ndarray, seed: int) -> float:
    """The threshold of the examples' held-out probabilities ``po`` (labels ``yo``) on a scene whose
    sampled pixels have probabilities ``scene_prob``: :func:`_both_estimates`, drawn towards 0.5 by
    its spread over bootstrap draws of the examples (:data:`_SHRINK_SD`) and by the share of change
    examples the classifier recognises out of fold (:data:`_RECOGNISED_SHARE`).

    Parameters
    ----------
    po : (n,) ndarray of float
        Out-of-fold probability of change of each example.
    yo : (n,) ndarray of bool
        The examples' labels (True: change).
    scene_prob : (m,) ndarray of float
        Probability of change of the scene sample's pixels.
    seed : int
        Seed of the bootstrap draws.

    Returns
    -------
    float
        One of ``_THRESHOLDS``.
    """
    yo = np.asarray(yo, dtype=bool)
    above = np.array([(scene_prob >= t).mean() for t in _THRESHOLDS])
    estimate = _both_estimates(po, yo, scene_prob, above)
    pos, neg = np.flatnonzero(yo), np.flatnonzero(~yo)
    rng = np.random.default_rng([seed, 13])
    draws = []
    for _ in range(_SHRINK_DRAWS):
        i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        draws.append(_both_estimates(po[i], yo[i], scene_prob, above))
    keep = 1.0 / (1.0 + (float(np.std(draws)) / _SHRINK_SD) ** 2)
    recognised = float((po[yo] >= 0.5).mean()) if pos.size else 0.0
    keep *= min(1.0, recognised / _RECOGNISED_SHARE)
    return _nearest_threshold(0.5 + keep * (_nearest_threshold(estimate) - 0.5))


def _nearest_threshold(value: float) -> float:
    """The candidate threshold (``_THRESHOLDS``) nearest ``value``.

    >>> _nearest_threshold(0.52), _nearest_threshold(0.0)
    (0.5, 0.05)
    """
    ts = np.array(_THRESHOLDS)
    return float(ts[int(np.argmin(np.abs(ts - value)))])


def _scene_sample(ok: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the valid scene pixels sampled to see how much of the scene looks like change."""
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(ok.ravel())
    scene = np.sort(rng.choice(flat, min(_SCENE_SAMPLE, flat.size), replace=False))
    return np.unravel_index(scene, ok.shape)


def _background_score(before: np.ndarray, after: np.ndarray, names: tuple[str, ...], px: float,
                      ok: np.ndarray, fitted: Any = None) -> np.ndarray | None:
    """The unsupervised default's score of the pair (NaN where not valid), from which
    :func:`_background_rows` draws background no-change examples; None for pixels finer than
    :data:`_BACKGROUND_MIN_PX_M` or images too small for the default.  ``fitted``: the default
    already fitted on this pair (:attr:`PairStats.change_fit`, with the change-score feature)."""
    if px < _BACKGROUND_MIN_PX_M or min(ok.shape) < 7:
        return None
    from .change import fit_method

    fit = fitted if fitted is not None else fit_method("auto", before, after, band_names=names, pixel_size_m=px,
                                                        valid=ok)
    cs = fit.sample_result if fit.sample_result is not None else fit.score(before, after, ok, layers=False)
    return np.where(ok, np.asarray(cs.score, dtype=np.float32), np.float32(np.nan))


def _background_rows(score: np.ndarray, seed: int) -> np.ndarray:
    """Which of the scene sample's pixels are background no-change examples (indices into it).

    ``score`` is the unsupervised default's score at the sample's pixels; up to
    :data:`_BACKGROUND_N` of those at or below its median (of the finite ones) are drawn at
    random with ``seed``.

    Parameters
    ----------
    score : (n,) ndarray of float
        The unsupervised change score at each pixel of the scene sample (NaN: not scored).
    seed : int
        Seed of the draw.

    Returns
    -------
    (m,) ndarray of int
        Sorted indices into ``score``; empty when no score is finite.

    Examples
    --------
    >>> s = np.arange(10.0); s[0] = np.nan
    >>> _background_rows(s, 0).tolist()
    [1, 2, 3, 4, 5]
    """
    score = np.asarray(score, dtype=np.float64)
    finite = np.isfinite(score)
    if not finite.any():
        return np.zeros(0, np.intp)
    low = np.flatnonzero(finite & (score <= np.median(score[finite])))
    rng = np.random.default_rng([seed, 7])
    return np.sort(rng.choice(low, min(_BACKGROUND_N, low.size), replace=False))


def _fit_core(X: np.ndarray, y: np.ndarray, groups: np.ndarray, Xscene: np.ndarray, kind: str, seed: int,
              source: str, background: np.ndarray | None = None) -> tuple[Any, float, float]:
    """(classifier, threshold, cross-validated accuracy) from the examples' and the scene sample's features.

    ``background`` (indices into the scene sample, :func:`_background_rows`) are learnt as no
    change as well: by the classifier and by every cross-validation fold's, never held out (the
    threshold and the accuracy are the analyst's examples' own)."""
    extra = Xscene[background] if background is not None and len(background) else None
    clf = _fit_classifier(X, y, kind, seed, source, extra)
    scene_prob = _predict_change(clf, Xscene)
    threshold, cv = _threshold_and_accuracy(kind, X, y, groups, seed, scene_prob, None, extra)
    return clf, threshold, cv


def _with_no_change(X: np.ndarray, y: np.ndarray, extra: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The training rows with ``extra`` rows of no change after them (as int8 labels)."""
    if extra is None or not len(extra):
        return X, y.astype(np.int8)
    return np.concatenate([X, extra]), np.concatenate([y.astype(np.int8), np.zeros(len(extra), np.int8)])


def _fit_classifier(X: np.ndarray, y: np.ndarray, kind: str, seed: int, source: str,  # noqa: ANN202
                    extra: np.ndarray | None = None):
    if y.all() or not y.any():
        raise InvalidParameterError(
            f"{source}: the valid example pixels are all {'change' if y.all() else 'no change'} "
            f"({y.size} pixels); give examples of both classes inside the valid area"
        )
    X, y = _with_no_change(X, y, extra)
    clf = _make_classifier(kind, seed)
    threads = _thread_count()
    if threads > 1 and "n_jobs" in clf.get_params():
        # the trees are drawn from the seed before they are built: the same forest on any
        # number of threads; kept at 1 after, so its scores are split by rows (_predict_change)
        clf.set_params(n_jobs=threads).fit(X, y)
        return clf.set_params(n_jobs=1)
    return clf.fit(X, y)


def _threshold_and_accuracy(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int,
                            scene_prob: np.ndarray | None, prevalence: float | None,
                            extra: np.ndarray | None = None) -> tuple[float, float]:
    """(threshold, cross-validated accuracy at it) from out-of-fold probabilities of the examples
    (``extra`` rows of no change are in every fold's training, never held out)."""
    oof = _out_of_fold(kind, X, y, groups, seed, extra)
    if oof is None:
        return 0.5, float("nan")
    centre = np.zeros(groups.size, bool)
    centre[np.unique(groups, return_index=True)[1]] = True
    po, yo = oof[centre], y[centre]
    if scene_prob is not None:
        threshold = _scene_threshold(po, yo, scene_prob, seed)
    else:  # known share of change (truth masks): F1 from held-out recall and false-alarm rate
        ts = np.array(_THRESHOLDS)
        recall = np.array([(po[yo] >= t).mean() for t in ts])
        fpr = np.array([(po[~yo] >= t).mean() for t in ts])
        p = float(prevalence) if prevalence is not None else float(yo.mean())
        above = p * recall + (1 - p) * fpr
        f1 = np.where(above + p > 0, 2 * p * recall / np.maximum(above + p, 1e-12), 0.0)
        threshold = float(ts[int(np.argmax(f1))])
    return threshold, float(np.mean((po >= threshold) == yo))


def fit_examples(
    before: np.ndarray,
    after: np.ndarray,
    labels: Examples | np.ndarray,
    *,
    band_names: Sequence[str],
    pixel_size_m: float,
    valid: np.ndarray | None = None,
    seed: int = 0,
    classifier: Classifier = "extra-trees",
    change_score: bool | None = None,
) -> LearnedModel:
    """Train a change classifier on a few labelled pixels of one pair.

    Parameters
    ----------
    before, after : (bands, rows, cols) ndarray of float
        The two dates on one grid; NaN = nodata.
    labels : Examples or (rows, cols) ndarray of int
        The analyst's examples (:func:`read_examples`), or a label raster:
        1 (True) = change, 0 = no change, -1 = unlabelled.
    band_names : sequence of str
        One name per band.
    pixel_size_m : float
        Ground sampling distance in metres (sets the feature scales).
    valid : (rows, cols) ndarray of bool, optional
        Pixels to use (clouds and nodata False).
    seed : int
        Random seed of the classifier and of the cross-validation.
    classifier : {"extra-trees", "random-forest", "gradient-boosting"}
        Default class-balanced extremely randomized trees (the best measured with 10-50
        examples per class over OSCD, LEVIR and DSIFN; see ``benchmarks/fewshot.py``).
    change_score : bool, optional
        Use the unsupervised ``auto`` change score as a feature.  Default: on pixels of 5 m and
        coarser (``_CHANGE_SCORE_MIN_PX_M``), where it was measured to help.

    Returns
    -------
    LearnedModel
        Bound to this pair's statistics: ``model.score(before, after, valid)`` scores this
        pair or windows of it; ``model.for_pair(other_before, other_after).score(...)``
        applies it to another pair.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> b = rng.normal(0.3, 0.05, (3, 32, 32)); a = 1.5 * b + 0.1; a[:, 4:12, 4:12] += 0.5
    >>> labels = np.full((32, 32), -1); labels[5:10, 5:10] = 1; labels[20:30, 20:30] = 0
    >>> m = fit_examples(b, a, labels, band_names=["red", "green", "blue"], pixel_size_m=1.0)
    >>> m.n_examples, 0 < m.threshold < 1, m.halo_px
    (125, True, 70)
    >>> p = m.score(b, a)
    >>> bool((p[6:10, 6:10] >= m.threshold).all() and (p[20:30, 20:30] < m.threshold).all())
    True
    """
    before, after, names, ok = _prepare(before, after, band_names, valid)
    px = _check_pixel_size(pixel_size_m)
    if classifier not in _CLASSIFIERS:
        raise InvalidParameterError(f"classifier must be one of {list(_CLASSIFIERS)}, got {classifier!r}")
    ex = _as_examples(labels, ok.shape)
    if not ok.any():
        raise EmptyDataError(f"no pixel is valid in both images ({ok.shape[0]}x{ok.shape[1]} pixels)")
    stats = pair_stats(before, after, band_names=names, pixel_size_m=px, valid=ok,
                       change_score=_uses_change_score(change_score, px))
    bank = _pair_bank(before, after, ok, stats)
    sigmas_m = feature_sigmas_m(px)
    sigmas_px = tuple(s / px for s in sigmas_m)
    change_halo = stats.change_fit.halo_px if stats.change_fit is not None else 0
    grown, groups = _expand(ex, ok)
    srow, scol = _scene_sample(ok, seed)
    background_score = _background_score(before, after, names, px, ok, stats.change_fit)
    background = None if background_score is None else _background_rows(background_score[srow, scol], seed)
    both = Examples(np.concatenate([grown.row, srow]), np.concatenate([grown.col, scol]),
                    np.concatenate([grown.change, np.zeros(srow.size, bool)]), ex.source)
    Xall, _, fnames = _gather(before, after, ok, names, stats, sigmas_px, bank, both,
                              _halo(sigmas_px, change_halo, bank))
    clf, threshold, cv = _fit_core(Xall[:grown.row.size], grown.change, groups, Xall[grown.row.size:],
                                   classifier, seed, ex.source, background)
    n_examples = int(np.unique(groups).size)
    return LearnedModel(clf, names, px, sigmas_m, tuple(fnames), threshold, cv, n_examples,
                        stats.change_fit is not None, stats, bank=bank,
                        n_background=0 if background is None else int(background.size))


def train(
    pairs: Sequence[tuple[GeoRaster, GeoRaster, Any]],
    *,
    pixel_size_m: float | None = None,
    max_per_class: int = 2000,
    seed: int = 0,
    classifier: Classifier = "extra-trees",
    change_score: bool | None = None,
) -> LearnedModel:
    """Train one model on several labelled pairs ("label one site, run a hundred overnight").

    Parameters
    ----------
    pairs : sequence of (before, after, labels)
        ``before`` and ``after`` are :class:`~changedet.raster.GeoRaster` on one grid with the
        same bands; ``labels`` is a truth mask ((rows, cols) bool, True = change, or int with
        1 = change, 0 = no change, other values unlabelled), an :class:`Examples`, or a
        GeoJSON examples file (:func:`read_examples` on the before grid).
    pixel_size_m : float, optional
        Default the before grid's pixel size (:attr:`Grid.pixel_size_m`) of the first pair.
    max_per_class : int
        At most this many pixels of each class drawn at random from each pair.
    seed, classifier, change_score
        As :func:`fit_examples`.

    Returns
    -------
    LearnedModel
        Not bound to any pair: :meth:`LearnedModel.score` fixes the statistics of the
        pair it is given (or call :meth:`LearnedModel.for_pair` first for a windowed run).

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> rng = np.random.default_rng(2)
    >>> def pair(offset):
    ...     b = rng.normal(0.3, 0.05, (3, 32, 32)); a = b + offset; a[:, 8:16, 8:16] += 0.4
    ...     truth = np.zeros((32, 32), bool); truth[8:16, 8:16] = True
    ...     mk = lambda d: GeoRaster(d.astype("float32"), Affine.identity(), None, ("red", "green", "blue"))
    ...     return mk(b), mk(a), truth
    >>> m = train([pair(0.0), pair(0.05)], pixel_size_m=1.0)
    >>> b, a, truth = pair(0.1)
    >>> p = m.score(b.data, a.data)
    >>> bool(np.nanmean(p[truth]) > 0.5 > np.nanmean(p[~truth]))
    True
    """
    if not pairs:
        raise InvalidParameterError("train needs at least one (before, after, labels) pair")
    rng = np.random.default_rng(seed)
    names0: tuple[str, ...] | None = None
    px = None
    Xs, ys = [], []
    fnames: list[str] = []
    have_change = True
    n_all = n_change_all = 0
    patches: list[np.ndarray] = []
    patch_rng = np.random.default_rng(_PATCH_SEED)
    prepared: list[tuple[Any, ...]] = []
    for k, item in enumerate(pairs):
        try:
            before, after, labels = item
        except (TypeError, ValueError):
            raise InvalidParameterError(f"pair {k} must be (before, after, labels), got {type(item).__name__}") from None
        if not isinstance(before, GeoRaster) or not isinstance(after, GeoRaster):
            raise InvalidParameterError(f"pair {k}: before and after must be GeoRaster (changedet.io.read_raster)")
        if names0 is None:
            names0 = before.band_names
            px = _check_pixel_size(pixel_size_m if pixel_size_m is not None else before.grid.pixel_size_m)
            change_score = _uses_change_score(change_score, px)
        elif tuple(_idx.canonical_name(n) or n for n in before.band_names) != \
                tuple(_idx.canonical_name(n) or n for n in names0):
            raise BandMismatchError(f"pair {k} has bands {list(before.band_names)}, pair 0 has {list(names0)}; "
                                    f"select the same bands in every pair")
        if after.band_names != before.band_names:
            raise BandMismatchError(f"pair {k}: after has bands {list(after.band_names)}, before has "
                                    f"{list(before.band_names)}; select the same bands in both")
        if isinstance(labels, (str, os.PathLike, Mapping)):
            labels = read_examples(labels, before.grid)
        b, a, names, ok = _prepare(before.data, after.data, before.band_names, None)
        ex = _as_examples(labels, ok.shape)
        keep = ok[ex.row, ex.col]
        idx = np.flatnonzero(keep)
        n_all += idx.size
        n_change_all += int(ex.change[idx].sum())
        chosen = []
        for cls in (True, False):
            members = idx[ex.change[idx] == cls]
            if members.size > max_per_class:
                members = rng.choice(members, max_per_class, replace=False)
            chosen.append(members)
        sel = np.sort(np.concatenate(chosen))
        ex = Examples(ex.row[sel], ex.col[sel], ex.change[sel], ex.source)
        stats = pair_stats(b, a, band_names=names, pixel_size_m=px, valid=ok, change_score=change_score)
        have_change &= stats.change_fit is not None
        zb, za = _standardized(b, a, ok, stats)
        patches.append(_sample_patches(zb, za, ok, -(-_PATCH_SAMPLE // len(pairs)), patch_rng))
        del zb, za
        prepared.append((k, b, a, names, ok, stats, ex))
    # one bank of filters for every pair, drawn from the patches of all of them
    bank = make_patch_bank(np.concatenate(patches))
    del patches
    for k, b, a, names, ok, stats, ex in prepared:
        sigmas_px = tuple(s / px for s in feature_sigmas_m(px))
        change_halo = stats.change_fit.halo_px if stats.change_fit is not None else 0
        X, y, fn = _gather(b, a, ok, names, stats, sigmas_px, bank, ex, _halo(sigmas_px, change_halo, bank))
        if fnames and fn != fnames:
            raise InvalidParameterError(f"pair {k} gives other features than pair 0; use pairs of one kind")
        fnames = fn
        Xs.append(X)
        ys.append(y)
    X = np.concatenate(Xs)
    y = np.concatenate(ys)
    clf = _fit_classifier(X, y, classifier, seed, "train")
    prevalence = n_change_all / max(n_all, 1)
    threshold, cv = _threshold_and_accuracy(classifier, X, y, np.arange(y.size), seed, None, prevalence)
    assert names0 is not None and px is not None
    return LearnedModel(clf, names0, px, feature_sigmas_m(px), tuple(fnames), threshold, cv, int(y.size),
                        bool(change_score) and have_change, None, bank=bank)


def _uses_change_score(change_score: bool | None, pixel_size_m: float) -> bool:
    """Whether a fit learns from the unsupervised score: as asked, else on pixels of 5 m and coarser."""
    return bool(change_score) if change_score is not None else pixel_size_m >= _CHANGE_SCORE_MIN_PX_M
