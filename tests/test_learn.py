"""Tests of changedet.learn: features, examples, fit/score, safe model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from changedet.errors import BandMismatchError, InvalidParameterError
from changedet.learn import (
    PatchBank,
    make_patch_bank,
    Examples,
    LearnedModel,
    feature_sigmas_m,
    fit_examples,
    load_model,
    pixel_features,
    read_examples,
    train,
)
from changedet.raster import GeoRaster, Grid

RGB = ("red", "green", "blue")
SIZE = 64


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured RGB pair with two planted bright roofs (True in the truth)."""
    rng = np.random.default_rng(0)
    ground = ndimage.gaussian_filter(rng.normal(size=(3, SIZE, SIZE)), (0, 3, 3))
    before = (0.3 + 0.05 * ground / ground.std() + 0.01 * rng.normal(size=ground.shape)).astype(np.float32)
    after = (before + 0.01 * rng.normal(size=before.shape)).astype(np.float32)
    truth = np.zeros((SIZE, SIZE), bool)
    truth[10:22, 8:20] = True
    truth[40:50, 35:55] = True
    after[:, truth] = 0.6
    return before, after, truth


def few_labels(truth: np.ndarray, k: int = 8, seed: int = 0) -> Examples:
    rng = np.random.default_rng(seed)
    pos = rng.choice(np.flatnonzero(truth), k, replace=False)
    neg = rng.choice(np.flatnonzero(~truth), 3 * k, replace=False)
    idx = np.concatenate([pos, neg])
    rows, cols = np.unravel_index(idx, truth.shape)
    return Examples(rows, cols, truth.ravel()[idx])


@pytest.fixture(scope="module")
def model(pair) -> LearnedModel:
    before, after, truth = pair
    return fit_examples(before, after, few_labels(truth), band_names=RGB, pixel_size_m=1.0)


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(pred & truth)
    return float(2 * tp / (2 * tp + np.sum(pred & ~truth) + np.sum(~pred & truth)))


# --- features -----------------------------------------------------------------------

def test_sigmas_are_chosen_in_metres():
    assert feature_sigmas_m(10.0) == (8.0, 16.0, 32.0, 64.0, 128.0)
    assert feature_sigmas_m(0.5) == (0.5, 1.0, 2.0, 4.0, 8.0)
    # the same ground scales, whatever the pixel size, within 0.7-16 pixels
    for px in (0.3, 1.0, 2.0, 30.0):
        s = np.array(feature_sigmas_m(px)) / px
        assert s.min() >= 0.7 and s.max() <= 16 + 1e-9


def test_pixel_features_shape_names_and_nan_outside_valid(pair):
    before, after, _ = pair
    valid = np.ones((SIZE, SIZE), bool)
    valid[:5] = False
    f = pixel_features(before, after, band_names=RGB, pixel_size_m=1.0, valid=valid)
    assert f.values.shape == (SIZE, SIZE, len(f.names)) and f.values.dtype == np.float32
    assert len(set(f.names)) == len(f.names)
    assert np.isnan(f.values[:5]).all() and np.isfinite(f.values[5:]).all()
    assert "a_exg_s1" in f.names and "auto_score" not in f.names
    with_score = pixel_features(before, after, band_names=RGB, pixel_size_m=1.0, change_score=True)
    assert with_score.names[-3:] == ("auto_score", "auto_score_s1", "auto_score_s2")
    assert f.halo_px >= 4 * 16


def test_edges_and_texture_are_those_of_multiscale_basic_features(pair):
    from skimage.feature import multiscale_basic_features

    before, after, _ = pair
    f = pixel_features(before, after, band_names=RGB, pixel_size_m=1.0)
    names = [n for n in f.names if n.startswith("dmag_") and n.endswith("_s2")]
    assert names == ["dmag_int_s2", "dmag_edge_s2", "dmag_tex1_s2", "dmag_tex2_s2"]
    from changedet.learn import pair_stats

    st = pair_stats(before, after, band_names=RGB, pixel_size_m=1.0)
    zb = (before - st.before_median[:, None, None]) / st.before_spread[:, None, None]
    za = (after - st.after_median[:, None, None]) / st.after_spread[:, None, None]
    dmag = np.sqrt(np.mean((za - zb) ** 2, axis=0))
    ref = multiscale_basic_features(dmag, sigma_min=2, sigma_max=2, num_sigma=1)
    ours = f.values[..., [f.names.index(n) for n in names]]
    # skimage smooths with mode="nearest", changedet with "reflect": compare away from the border
    np.testing.assert_allclose(ours[12:-12, 12:-12], ref[12:-12, 12:-12], atol=1e-4)


def test_features_ignore_per_band_gain_and_offset(pair):
    before, after, _ = pair
    gain = np.array([1.7, 0.6, 1.2], np.float32)[:, None, None]
    offset = np.array([0.1, -0.05, 0.2], np.float32)[:, None, None]
    f1_ = pixel_features(before, after, band_names=RGB, pixel_size_m=1.0, change_score=False)
    f2 = pixel_features(before, gain * after + offset, band_names=RGB, pixel_size_m=1.0, change_score=False)
    standardized = [i for i, n in enumerate(f1_.names) if "exg" not in n]  # indices read raw reflectances
    np.testing.assert_allclose(f1_.values[..., standardized], f2.values[..., standardized], atol=2e-3)


def test_multispectral_features_include_indices():
    rng = np.random.default_rng(1)
    b = rng.uniform(500, 3000, (6, 30, 30)).astype(np.float32)
    f = pixel_features(b, b * 1.05, band_names=["B02", "B03", "B04", "B08", "B11", "B12"], pixel_size_m=10.0,
                       change_score=False)
    for name in ("b_ndvi_s0.8", "a_ndwi_s0.8", "d_ndbi_s0.8"):
        assert name in f.names


# --- fit and score --------------------------------------------------------------------

def test_planted_change_is_found_from_a_few_examples(pair, model):
    before, after, truth = pair
    prob = model.score(before, after)
    assert prob.shape == truth.shape and prob.dtype == np.float32
    # 0.83 with the patch features (0.92 at a threshold of 0.9): eight change examples separate
    # perfectly, the estimated threshold is the grid's highest and the roofs' rims fall under it
    assert f1(prob >= model.threshold, truth) > 0.8
    assert model.n_examples == 32 and 0.05 <= model.threshold <= 0.95
    assert 0.8 <= model.cv_accuracy <= 1.0


def test_score_is_robust_to_gain_and_offset_of_the_after_date(pair, model):
    before, after, truth = pair
    gain = np.array([1.5, 0.7, 1.2], np.float32)[:, None, None]
    offset = np.array([0.2, -0.1, 0.05], np.float32)[:, None, None]
    after2 = gain * after + offset
    prob = model.for_pair(before, after2).score(before, after2)  # the statistics of the new pair
    # about as good as on the pair itself (over six draws of the examples, F1 0.83-0.92 here,
    # within 0.031 of the pair's own)
    same = f1(model.score(before, after) >= model.threshold, truth)
    assert f1(prob >= model.threshold, truth) > 0.8 and abs(f1(prob >= model.threshold, truth) - same) < 0.05


def test_score_is_nan_outside_valid(pair, model):
    before, after, _ = pair
    valid = np.ones((SIZE, SIZE), bool)
    valid[:, :3] = False
    prob = model.score(before, after, valid)
    assert np.isnan(prob[:, :3]).all() and np.isfinite(prob[:, 3:]).all()
    assert np.nanmin(prob) >= 0 and np.nanmax(prob) <= 1


def test_a_window_with_its_halo_equals_the_whole_scene(pair, model):
    before, after, _ = pair
    whole = model.score(before, after)
    h = model.halo_px
    # rows 30..34 scored from a window with a full halo (clipped at the scene edge)
    r0, r1 = 30, 34
    e0, e1 = max(r0 - h, 0), min(r1 + h, SIZE)
    part = model.score(before[:, e0:e1], after[:, e0:e1])
    np.testing.assert_allclose(part[r0 - e0:r1 - e0], whole[r0:r1], atol=1e-6)
    # the block size of the in-memory loop does not change the result
    np.testing.assert_allclose(model.score(before, after, block_rows=16), whole, atol=1e-6)


def test_examples_grow_to_their_3x3_and_an_example_keeps_its_own_label():
    from changedet.learn import _expand

    ok = np.ones((8, 8), bool)
    ok[6, 5] = False  # nodata next to an example is not labelled
    ex = Examples(np.array([3, 3, 0, 6]), np.array([3, 4, 0, 6]), np.array([True, False, False, False]))
    grown, groups = _expand(ex, ok)
    labels = {(int(r), int(c)): (bool(y), int(g)) for r, c, y, g in zip(grown.row, grown.col, grown.change, groups)}
    assert len(labels) == grown.row.size  # one label per pixel
    # two neighbouring examples of both classes: each keeps its own pixel and label
    assert labels[(3, 3)] == (True, 0) and labels[(3, 4)] == (False, 1)
    assert {k for k, (y, _) in labels.items() if y} == {(r, c) for r in (2, 3, 4) for c in (2, 3)} | {(3, 3)}
    assert {k for k, (_, g) in labels.items() if g == 1} == {(r, c) for r in (2, 3, 4) for c in (4, 5)}
    # in a corner: the 2 x 2 inside the image; beside nodata: the 3 x 3 less the invalid pixel
    assert {k for k, (_, g) in labels.items() if g == 2} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert {k for k, (_, g) in labels.items() if g == 3} == {(r, c) for r in (5, 6, 7) for c in (5, 6, 7)} - {(6, 5)}
    # grown only on one side (the reach of each class is a parameter)
    grown, _ = _expand(ex, ok, change_reach=0)
    assert {(int(r), int(c)) for r, c in zip(grown.row[grown.change], grown.col[grown.change])} == {(3, 3)}


def test_label_raster_and_bad_labels(pair):
    before, after, truth = pair
    labels = few_labels(truth).to_labels(truth.shape)
    m = fit_examples(before, after, labels, band_names=RGB, pixel_size_m=1.0, change_score=False)
    assert m.n_examples == 32 and not m.change_score
    with pytest.raises(InvalidParameterError, match="labels has shape"):
        fit_examples(before, after, labels[:10], band_names=RGB, pixel_size_m=1.0)
    one_class = np.where(labels == 1, -1, labels)
    with pytest.raises(InvalidParameterError, match="all no change"):
        fit_examples(before, after, one_class, band_names=RGB, pixel_size_m=1.0)
    with pytest.raises(InvalidParameterError, match="pixel_size_m must be a positive"):
        fit_examples(before, after, labels, band_names=RGB, pixel_size_m=0)
    with pytest.raises(InvalidParameterError, match="classifier must be one of"):
        fit_examples(before, after, labels, band_names=RGB, pixel_size_m=1.0, classifier="svm")  # type: ignore[arg-type]


def test_train_on_several_pairs_applies_to_a_new_one(pair):
    before, after, truth = pair
    mk = lambda d: GeoRaster(d, Affine.identity(), None, RGB)  # noqa: E731
    flipped = (mk(before[:, ::-1].copy()), mk(after[:, ::-1].copy()), truth[::-1].copy())
    m = train([(mk(before), mk(after), truth), flipped], pixel_size_m=1.0, max_per_class=100, change_score=False)
    assert m.stats is None and m.n_examples == 400
    gain = np.array([1.3, 0.8, 1.1], np.float32)[:, None, None]
    prob = m.score(before[:, :, ::-1], gain * after[:, :, ::-1])
    assert f1(prob >= m.threshold, truth[:, ::-1]) > 0.85


def test_train_refuses_pairs_with_other_bands(pair):
    before, after, truth = pair
    a = GeoRaster(before, Affine.identity(), None, RGB)
    b = GeoRaster(before, Affine.identity(), None, ("B02", "B03", "B04"))
    with pytest.raises(BandMismatchError, match="pair 1 has bands"):
        train([(a, a, truth), (b, b, truth)], pixel_size_m=1.0)
    with pytest.raises(InvalidParameterError, match="at least one"):
        train([], pixel_size_m=1.0)


# --- saving and loading -----------------------------------------------------------------

def test_save_load_round_trip_gives_the_same_scores(pair, model, tmp_path):
    before, after, _ = pair
    path = model.save(tmp_path / "model.skops")
    loaded = load_model(path)
    assert loaded.band_names == model.band_names and loaded.feature_names == model.feature_names
    assert loaded.sigmas_m == model.sigmas_m and loaded.threshold == model.threshold
    assert loaded.cv_accuracy == pytest.approx(model.cv_accuracy)
    np.testing.assert_allclose(loaded.score(before, after), model.score(before, after), atol=1e-6)
    assert not list(tmp_path.glob("*.partial*"))


def test_the_patch_filters_travel_with_the_model(pair, model, tmp_path):
    """The filters are drawn from the training pair and saved with the model: applied to another
    pair, the model uses them, not filters of that pair; a file with filters of the wrong shape
    is refused."""
    import skops.io as sio

    before, after, _ = pair
    assert isinstance(model.bank, PatchBank) and model.bank.n == 16 and model.bank.channels == 6
    # each filter's positive and negative parts, pooled at 2 px and at 6 px
    assert model.bank.pool_px == (2.0, 6.0)
    assert sum(n.startswith("patch") for n in model.feature_names) == 64
    assert sum(n.endswith("_p6") for n in model.feature_names) == 32
    loaded = load_model(model.save(tmp_path / "m.skops"))
    np.testing.assert_array_equal(loaded.bank.weights, model.bank.weights)
    np.testing.assert_array_equal(loaded.bank.bias, model.bank.bias)
    other = np.flip(after, axis=2).copy()
    assert loaded.for_pair(before, other).bank is loaded.bank
    assert loaded.halo_px == model.halo_px >= model.bank.halo_px
    payload = sio.load(tmp_path / "m.skops", trusted=sio.get_untrusted_types(file=tmp_path / "m.skops"))
    payload["patch_weights"] = payload["patch_weights"][:, :-1]
    sio.dump(payload, tmp_path / "bad.skops")
    with pytest.raises(InvalidParameterError, match="patch filters of the wrong shape"):
        load_model(tmp_path / "bad.skops")


def test_a_model_file_with_one_pooling_still_loads_and_scores_as_it_did(pair, tmp_path, monkeypatch):
    """Model files written before the 6 px pooling recorded one pooling as a number and had 32
    patch features: such a file still loads, computes the features it was trained on and
    scores as it did when it was saved."""
    import skops.io as sio

    import changedet.learn as learn

    before, after, truth = pair
    with monkeypatch.context() as m:
        m.setattr(learn, "_PATCH_POOL_PX", (2.0,))  # the bank before the 6 px pooling
        old = fit_examples(before, after, few_labels(truth), band_names=RGB, pixel_size_m=1.0)
        want = old.score(before, after)
        path = old.save(tmp_path / "old.skops")
    assert sum(n.startswith("patch") for n in old.feature_names) == 32
    payload = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    payload["patch_pool_px"] = 2.0  # how such a file recorded it
    sio.dump(payload, path)
    loaded = load_model(path)
    assert loaded.bank.pool_px == (2.0,) and loaded.bank.halo_px == 2 + 8
    assert loaded.feature_names == old.feature_names
    np.testing.assert_allclose(loaded.score(before, after), want, atol=1e-6)


def test_patch_responses_are_the_filters_correlated_with_both_dates():
    """The im2col product equals each filter correlated channel by channel with the standardized
    dates (mirrored borders), minus its bias."""
    from changedet.learn import _patch_responses

    rng = np.random.default_rng(3)
    zb, za = rng.normal(size=(2, 3, 23, 17)).astype(np.float32)
    bank = make_patch_bank(rng.normal(size=(200, 6 * 25)), n=4)
    got = _patch_responses(zb, za, bank)
    both = np.concatenate([zb, za]).astype(np.float64)
    w = bank.weights.reshape(4, 6, 5, 5).astype(np.float64)
    for k in range(4):
        want = sum(ndimage.correlate(both[c], w[k, c], mode="mirror") for c in range(6)) - bank.bias[k]
        np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-4)


def test_patch_filters_are_the_centres_of_the_kinds_of_patch_and_the_same_bits_every_time():
    """Patches of four kinds (a prototype each, plus noise): the four filters are k-means centres,
    one per kind, so each kind answers most strongly to a filter of its own (four filters drawn
    at random from the patches would leave a kind without one most of the time); the bank is the
    same bits on a second call."""
    rng = np.random.default_rng(5)
    protos = rng.normal(size=(4, 6 * 25))
    kind = np.repeat(np.arange(4), 150)
    patches = protos[kind] + rng.normal(scale=0.3, size=(kind.size, 6 * 25))
    bank = make_patch_bank(patches, n=4)
    again = make_patch_bank(patches, n=4)
    assert np.array_equal(bank.weights, again.weights) and np.array_equal(bank.bias, again.bias)
    strongest = np.argmax(patches @ bank.weights.T.astype(np.float64) - bank.bias, axis=1)
    per_kind = [np.bincount(strongest[kind == k], minlength=4).argmax() for k in range(4)]
    assert sorted(per_kind) == [0, 1, 2, 3]
    assert all(np.mean(strongest[kind == k] == per_kind[k]) > 0.95 for k in range(4))


def test_an_image_too_small_for_patches_has_no_patch_features():
    rng = np.random.default_rng(4)
    b = rng.normal(0.3, 0.05, (3, 4, 40)).astype(np.float32)
    f = pixel_features(b, b + 0.1, band_names=RGB, pixel_size_m=1.0)
    assert not any(n.startswith("patch") for n in f.names)
    assert make_patch_bank(np.zeros((10, 150))) is None


class Payload:
    """A type a model file never holds; building it would run this code."""

    built = False

    def __setstate__(self, state):  # noqa: ANN001
        Payload.built = True
        self.__dict__.update(state)


def test_a_file_that_could_run_code_is_refused(tmp_path):
    import skops.io as sio

    path = tmp_path / "evil.skops"
    sio.dump({"format": "changedet.learn", "classifier": Payload()}, path)
    with pytest.raises(InvalidParameterError, match="refusing to load it"):
        load_model(path)
    assert not Payload.built


def test_other_feature_version_and_other_bands_are_refused(pair, model, tmp_path):
    import skops.io as sio

    before, after, _ = pair
    path = model.save(tmp_path / "m.skops")
    payload = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    payload["feature_version"] = 999
    sio.dump(payload, tmp_path / "old.skops")
    with pytest.raises(InvalidParameterError, match="feature-set version 999"):
        load_model(tmp_path / "old.skops")
    loaded = load_model(path)
    with pytest.raises(BandMismatchError, match=r"trained on bands \['red', 'green', 'blue'\]"):
        loaded.for_pair(before, after, band_names=["B02", "B03", "B04"])
    with pytest.raises(BandMismatchError, match="expects 3 bands"):
        loaded.score(before[:2], after[:2])


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "notes.skops"
    bad.write_text("hello")
    with pytest.raises(InvalidParameterError, match="not a changedet model file"):
        load_model(bad)
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_model(tmp_path / "missing.skops")


# --- examples -----------------------------------------------------------------------------

PIXEL_GRID = Grid((20, 30), Affine.identity())


def point(x: float, y: float, change) -> dict:  # noqa: ANN001
    return {"type": "Feature", "properties": {"change": change}, "geometry": {"type": "Point", "coordinates": [x, y]}}


def fc(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def test_examples_points_and_polygons_on_a_pixel_grid(tmp_path):
    square = {"type": "Feature", "properties": {"change": False},
              "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [13, 10], [13, 12], [10, 12], [10, 10]]]}}
    path = tmp_path / "ex.geojson"
    path.write_text(json.dumps(fc(point(2.5, 3.5, True), square)))
    ex = read_examples(path, PIXEL_GRID)
    assert ex.n_change == 1 and ex.n_no_change == 6
    labels = ex.to_labels(PIXEL_GRID.shape)
    assert labels[3, 2] == 1 and (labels[10:12, 10:13] == 0).all() and (labels >= 0).sum() == 7


def test_examples_in_lon_lat_on_a_georeferenced_grid():
    from pyproj import Transformer

    grid = Grid((100, 100), Affine(10, 0, 500000, 0, -10, 5000000), CRS.from_epsg(32631))
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    x, y = grid.xy(12, 34)  # centre of row 12, col 34
    lon, lat = to_ll.transform(x, y)
    lon2, lat2 = to_ll.transform(*grid.xy(80, 5))
    ex = read_examples(fc(point(lon, lat, True), point(lon2, lat2, False)), grid)
    assert (int(ex.row[ex.change][0]), int(ex.col[ex.change][0])) == (12, 34)
    assert (int(ex.row[~ex.change][0]), int(ex.col[~ex.change][0])) == (80, 5)
    with pytest.raises(InvalidParameterError, match="outside the image.*lon/lat"):
        read_examples(fc(point(lon, lat, True), point(lon + 1.0, lat, False)), grid)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", r"ex\.geojson: is not valid JSON .*fix the JSON"),
        (json.dumps({"type": "Feature"}), r"expected a GeoJSON FeatureCollection, got 'Feature'"),
        (json.dumps([1, 2]), r"expected a GeoJSON FeatureCollection, got 'list'"),
        (json.dumps(fc()), r"has no features"),
        (json.dumps(fc(point(1, 1, True), {"type": "Feature", "properties": {},
                                            "geometry": {"type": "Point", "coordinates": [2, 2]}})),
         r"feature 1 has no property 'change'"),
        (json.dumps(fc(point(1, 1, "yes"), point(2, 2, False))), r"feature 0 has change = 'yes' \(str\), not a boolean"),
        (json.dumps(fc(point(1, 1, 1), point(2, 2, False))), r"change = 1 \(int\), not a boolean.*true or false"),
        (json.dumps(fc(point(1, 1, True), point(45, 2, False))), r"feature 1 lies outside the image \(20x30 pixels"),
        (json.dumps(fc(point(1, 1, True), point(2, 2, True))), r"all 2 example pixels are change.*both classes"),
        (json.dumps(fc(point(1, 1, True), {"type": "Feature", "properties": {"change": False},
                                           "geometry": {"type": "LineString", "coordinates": [[0, 0], [3, 3]]}})),
         r"feature 1 has geometry 'LineString'"),
        (json.dumps(fc(point(1, 1, True), {"type": "Feature", "properties": {"change": False},
                                           "geometry": {"type": "Polygon", "coordinates": [[[50, 50], [60, 50],
                                                                                             [60, 60], [50, 50]]]}})),
         r"feature 1 lies outside the image"),
    ],
)
def test_examples_error_paths(tmp_path, content, match):
    path = tmp_path / "ex.geojson"
    path.write_text(content)
    with pytest.raises(InvalidParameterError, match=match):
        read_examples(path, PIXEL_GRID)


def test_examples_missing_file(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"missing\.geojson: the file does not exist"):
        read_examples(tmp_path / "missing.geojson", PIXEL_GRID)


def test_examples_marked_both_ways_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="marked both change and no change"):
        ex = read_examples(fc(point(1.5, 1.5, True), point(1.5, 1.5, False), point(5, 5, True), point(8, 8, False)),
                           PIXEL_GRID)
    assert ex.n_change == 1 and ex.n_no_change == 1


def test_expected_f1_threshold_follows_the_share_of_change_in_the_scene():
    """Calibrated on held-out examples, the scene's share of change found by EM: a rare change
    gets a higher threshold than a common one, each near the threshold of best F1 on the scene."""
    from changedet.learn import _THRESHOLDS, _expected_f1_threshold

    rng = np.random.default_rng(0)

    def probs(n_change, n_no):  # a classifier's probabilities: change high, no change low
        return (np.clip(rng.beta(5, 2, n_change), 0, 1), np.clip(rng.beta(2, 5, n_no), 0, 1))

    pc, pn = probs(20, 60)  # the examples' held-out probabilities
    po = np.concatenate([pc, pn])
    yo = np.concatenate([np.ones(20, bool), np.zeros(60, bool)])
    chosen = {}
    for share in (0.03, 0.5):
        n_change = int(20000 * share)
        sc, sn = probs(n_change, 20000 - n_change)
        scene = np.concatenate([sc, sn])
        truth = np.concatenate([np.ones(sc.size, bool), np.zeros(sn.size, bool)])
        f1 = {t: 2 * np.sum((scene >= t) & truth) / (np.sum(scene >= t) + truth.sum()) for t in _THRESHOLDS}
        best = max(f1, key=f1.get)
        chosen[share] = _expected_f1_threshold(po, yo, scene)
        assert f1[chosen[share]] >= f1[best] - 0.03, (share, chosen[share], best)
    assert chosen[0.03] > chosen[0.5] + 0.1


def test_scene_threshold_trusts_the_estimate_as_far_as_the_examples_support_it():
    """Many clear examples keep the threshold estimated for the scene (a rare change: well above
    0.5); a few overlapping ones draw it towards 0.5 by the estimate's spread over bootstrap draws."""
    from changedet.learn import _THRESHOLDS, _both_estimates, _nearest_threshold, _scene_threshold

    def case(n_change, a, seed):  # held-out probabilities beta(a, 2) for change, beta(2, a) for no change
        rng = np.random.default_rng(seed)
        po = np.concatenate([rng.beta(a, 2, n_change), rng.beta(2, a, 3 * n_change)])
        yo = np.concatenate([np.ones(n_change, bool), np.zeros(3 * n_change, bool)])
        scene = np.concatenate([rng.beta(a, 2, 400), rng.beta(2, a, 19600)])  # 2 % change
        above = np.array([(scene >= t).mean() for t in _THRESHOLDS])
        estimate = _nearest_threshold(_both_estimates(po, yo, scene, above))
        return estimate, _scene_threshold(po, yo, scene, seed)

    for seed in range(3):
        estimate, chosen = case(300, 8, seed)
        assert chosen == estimate >= 0.65, (seed, estimate, chosen)
        estimate, chosen = case(10, 2, seed)
        assert chosen in _THRESHOLDS and abs(chosen - 0.5) < abs(estimate - 0.5) - 0.1, (seed, estimate, chosen)
        assert (chosen - 0.5) * (estimate - 0.5) >= 0  # drawn towards 0.5, never past it


def test_scene_threshold_does_not_trust_examples_the_classifier_cannot_recognise():
    """Change examples whose held-out probabilities all stay low (the forest does not generalise
    across them) pile the estimate at the lowest threshold with no spread; the threshold then stays
    at 0.5, and is drawn in part of the way when a few of them are recognised."""
    from changedet.learn import _THRESHOLDS, _both_estimates, _nearest_threshold, _scene_threshold

    rng = np.random.default_rng(0)
    yo = np.concatenate([np.ones(10, bool), np.zeros(30, bool)])
    scene = rng.beta(1, 8, 20000)
    above = np.array([(scene >= t).mean() for t in _THRESHOLDS])
    low = np.concatenate([np.linspace(0.01, 0.27, 10), rng.beta(1, 30, 30)])
    assert _nearest_threshold(_both_estimates(low, yo, scene, above)) <= 0.1  # what the estimate says
    assert _scene_threshold(low, yo, scene, 0) == 0.5
    some = low.copy()
    some[:2] = 0.8  # 2 of 10 recognised
    chosen = _scene_threshold(some, yo, scene, 0)
    estimate = _nearest_threshold(_both_estimates(some, yo, scene, above))
    assert estimate < chosen < 0.5


# --- features computed once in a run in memory ----------------------------------------


def test_reusing_features_computes_each_block_once_with_the_same_scores(pair, monkeypatch):
    """Within reusing_features() the fit's feature blocks serve the score of the same pixels:
    half the feature computations, the same probabilities; a block that differs in one
    value (or a score outside the scope) is computed afresh."""
    from changedet import learn

    before, after, truth = pair
    calls = []
    real = learn._features
    monkeypatch.setattr(learn, "_features", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    labels = few_labels(truth)
    fresh = fit_examples(before, after, labels, band_names=RGB, pixel_size_m=1.0)
    p_fresh = fresh.score(before, after, block_rows=24)
    n_alone = len(calls)
    calls.clear()
    with learn.reusing_features():
        m = fit_examples(before, after, labels, band_names=RGB, pixel_size_m=1.0)
        n_fit = len(calls)
        p = m.score(before, after)  # the fit's blocks (block_rows by default, as the fit's)
        assert len(calls) == n_fit  # every block came from the fit
        changed = after.copy()
        changed[0, 5, 5] += 0.01
        m.score(before, changed)
        assert len(calls) == 2 * n_fit  # one value differs: computed again
    np.testing.assert_array_equal(p, m.score(before, after))  # outside the scope: computed, the same
    np.testing.assert_array_equal(p, p_fresh)
    assert n_alone == n_fit + -(-SIZE // 24)  # without the scope: the fit's blocks, then the score's 3 blocks


def test_threads_give_the_same_model_features_and_scores(pair, monkeypatch):
    """using_threads: the filters, the trees, the folds and the rows' scores on several threads,
    the same values bit for bit as on one."""
    import changedet.learn as L

    before, after, truth = pair
    monkeypatch.setattr(L, "_SPLIT_ROWS", 500)  # split the 64 x 64 pair's scores between threads
    one = fit_examples(before, after, few_labels(truth), band_names=RGB, pixel_size_m=1.0)
    f_one = pixel_features(before, after, band_names=RGB, pixel_size_m=1.0, bank=one.bank)
    p_one = one.score(before, after)
    with L.using_threads(3):
        many = fit_examples(before, after, few_labels(truth), band_names=RGB, pixel_size_m=1.0)
        f_many = pixel_features(before, after, band_names=RGB, pixel_size_m=1.0, bank=one.bank)
        p_many = many.score(before, after)
        assert L._thread_count() == 3 and L.threads_chosen()
    assert L._thread_count() == 1 and not L.threads_chosen()
    assert many.classifier.get_params()["n_jobs"] == 1  # a saved model scores on one thread
    assert (many.threshold, many.cv_accuracy) == (one.threshold, one.cv_accuracy)
    assert f_many.names == f_one.names
    np.testing.assert_array_equal(f_many.values, f_one.values)
    np.testing.assert_array_equal(p_many, p_one)
    with pytest.raises(InvalidParameterError, match="at least 1"):
        with L.using_threads(0):
            pass


def test_remembered_features_serve_a_re_run_with_other_examples(pair, monkeypatch):
    """remember_features: a second fit on the same pair (other examples, as a re-run after clicks)
    computes no feature block and gives what a fit without it gives; another pair is computed."""
    import changedet.learn as L

    before, after, truth = pair
    calls = []
    real = L._features

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(L, "_features", counting)
    fresh = fit_examples(before, after, few_labels(truth, seed=1), band_names=RGB, pixel_size_m=1.0)
    p_fresh = fresh.score(before, after)
    L.remember_features()
    try:
        with L.reusing_features():  # a run in memory (a scene's windows are not remembered)
            fit_examples(before, after, few_labels(truth, seed=0), band_names=RGB, pixel_size_m=1.0)
        first = len(calls)
        with L.reusing_features():
            again = fit_examples(before, after, few_labels(truth, seed=1), band_names=RGB, pixel_size_m=1.0)
            p_again = again.score(before, after)
        assert len(calls) == first  # no block computed again
        assert (again.threshold, again.cv_accuracy) == (fresh.threshold, fresh.cv_accuracy)
        np.testing.assert_array_equal(p_again, p_fresh)
        kept = next(iter(L._kept.values()))[0]
        assert not kept.flags.writeable
        other = after.copy()
        other[:, :5] += 0.01  # another pair: computed, not served
        with L.reusing_features():
            fit_examples(before, other, few_labels(truth, seed=1), band_names=RGB, pixel_size_m=1.0)
        assert len(calls) > first
        served = len(calls)
        fit_examples(before, after, few_labels(truth, seed=1), band_names=RGB, pixel_size_m=1.0)
        assert len(calls) > served  # outside a run in memory (a scene's windows): computed
    finally:
        L.remember_features(False)
    assert L._kept is None


# --- background no-change examples (pixels of 5 m or coarser) -------------------------
def _city_pair(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 4-band 10 m pair: fields of several kinds, a few new bright blocks (the truth)."""
    rng = np.random.default_rng(seed)
    size = 96
    kinds = rng.uniform(0.05, 0.4, (4, 6, 6))
    before = np.kron(kinds, np.ones((16, 16)))[:, :size, :size]
    before = (before + 0.01 * rng.normal(size=before.shape)).astype(np.float32)
    after = (before + 0.01 * rng.normal(size=before.shape)).astype(np.float32)
    truth = np.zeros((size, size), bool)
    for r, c in ((10, 12), (50, 70), (75, 20)):
        truth[r:r + 6, c:c + 8] = True
    after[:, truth] = np.array([0.35, 0.35, 0.38, 0.3], np.float32)[:, None]
    return before, after, truth


def test_background_rows_come_from_the_lower_half_of_the_score():
    import changedet.learn as learn

    rng = np.random.default_rng(0)
    score = rng.random(5000)
    score[:100] = np.nan
    rows = learn._background_rows(score, 3)
    assert rows.size == learn._BACKGROUND_N and np.unique(rows).size == rows.size
    assert np.all(score[rows] <= np.nanmedian(score))
    np.testing.assert_array_equal(rows, learn._background_rows(score, 3))  # the seed decides
    assert not np.array_equal(rows, learn._background_rows(score, 4))
    assert learn._background_rows(np.full(10, np.nan), 0).size == 0


def test_coarse_pixels_learn_background_examples_and_fine_ones_do_not():
    """At 10 m the classifier also learns 500 background pixels as no change (in its model file
    and summary), never held out: its cross-validated accuracy is that of the analyst's examples;
    at 1 m it learns none."""
    import changedet.learn as learn

    before, after, truth = _city_pair()
    names = ("blue", "green", "red", "nir")
    labels = few_labels(truth, k=6, seed=1)
    coarse = fit_examples(before, after, labels, band_names=names, pixel_size_m=10.0)
    fine = fit_examples(before, after, labels, band_names=names, pixel_size_m=1.0)
    assert coarse.n_background == learn._BACKGROUND_N and coarse.summary()["background_examples"] == 500
    assert fine.n_background == 0 and fine.summary()["background_examples"] == 0
    assert coarse.n_examples == fine.n_examples == 24
    pred = coarse.score(before, after) >= coarse.threshold
    assert f1(pred, truth) > 0.6  # the blocks are found (0.76 here; 0.89 without background)


def test_background_examples_change_the_classifier(monkeypatch):
    """The background pixels are learnt: without them (their number set to 0) the same examples
    give another forest."""
    import changedet.learn as learn

    before, after, truth = _city_pair()
    names = ("blue", "green", "red", "nir")
    labels = few_labels(truth, k=6, seed=1)
    with_bg = fit_examples(before, after, labels, band_names=names, pixel_size_m=10.0)
    monkeypatch.setattr(learn, "_BACKGROUND_N", 0)
    without = fit_examples(before, after, labels, band_names=names, pixel_size_m=10.0)
    assert without.n_background == 0
    assert not np.array_equal(with_bg.score(before, after), without.score(before, after))


def test_the_background_count_travels_with_the_model_file(tmp_path):
    import skops.io as sio

    before, after, truth = _city_pair()
    m = fit_examples(before, after, few_labels(truth, k=6, seed=1), band_names=("blue", "green", "red", "nir"),
                     pixel_size_m=10.0)
    path = m.save(tmp_path / "m.skops")
    assert load_model(path).n_background == 500
    payload = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    del payload["n_background"]  # a file written before background examples
    sio.dump(payload, path)
    assert load_model(path).n_background == 0
