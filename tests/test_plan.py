"""The predict plan (kcompat/plan.py): ``predict`` runs padding, BatchNormalization and activation layers
folded into the convolution / Dense next to them; ``run_all`` runs every layer as written.

Each test checks three things on seeded random weights and non-trivial BatchNormalization statistics
(fresh ones are 0/1, which would hide a wrong fold): which layers the plan folded away (and which it
must keep), that the folded ``predict`` equals ``run_all``'s output within 1e-5 of the output's scale
(float32 rounding of the folded weights), and that it equals real Keras.
"""
from __future__ import annotations

import numpy as np

from conftest import rand, to_kcompat

FOLD_RTOL = 1e-5  # folded vs as written, relative to the output's largest magnitude
ATOL = RTOL = 1e-4  # vs Keras: different summation orders (see test_layers_conv.py)


def _random_bn(keras, model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    return model


def _check(keras_model, km, xs):
    """predict (folded) == run_all (as written) within FOLD_RTOL, and == Keras; returns the layers folded away."""
    want = keras_model(xs, training=False)
    want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
    values = km.run_all(xs)
    written = [values[(r.layer, r.node)] for r in km.spec.outputs]
    got = km.predict(xs)
    assert len(got) == len(written) == len(want)
    for name, g, r, w in zip(km.output_names, got, written, want):
        assert g.dtype == np.float32 and g.shape == r.shape == w.shape, name
        np.testing.assert_allclose(g, r, rtol=FOLD_RTOL, atol=FOLD_RTOL * float(np.abs(r).max()), err_msg=name)
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=name)
    unfused = km.predict(xs, fused=False)
    for u, r in zip(unfused, written):
        np.testing.assert_array_equal(u, r)  # fused=False is run_all, bit for bit
    return set(km.layers) - set(km.fused_model().layers)


def test_conv_bn_relu_chains_fold_and_match(keras, tmp_path):
    L = keras.layers
    img, seq, chw = keras.Input((16, 16, 3), name="img"), keras.Input((10, 3), name="seq"), keras.Input((3, 10, 12), name="chw")
    outs = [
        L.ReLU(name="a_relu")(L.BatchNormalization(name="a_bn")(L.Conv2D(8, 3, padding="same", use_bias=False, name="a")(img))),
        L.ReLU(6.0, name="b_relu6")(L.BatchNormalization(name="b_bn")(
            L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="b")(img))),
        # MobileNet's correct_pad: ZeroPadding((0, 1)) + 'valid' stride 2 == 'same' on an even input
        L.Activation("relu", name="c_act")(L.BatchNormalization(name="c_bn")(
            L.DepthwiseConv2D(3, strides=2, name="c")(L.ZeroPadding2D(((0, 1), (0, 1)), name="c_pad")(img)))),
        L.Conv2D(4, 3, strides=2, name="d")(L.ZeroPadding2D(1, name="d_pad")(img)),  # (1, 1) is not 'same': kept
        L.BatchNormalization(name="e_bn")(L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, name="e")(img)),
        L.BatchNormalization(axis=1, name="f_bn")(L.Conv2D(4, 3, name="f")(img)),  # BN over H, not channels: kept
        L.BatchNormalization(name="g_bn")(L.Conv2D(4, 3, activation="relu", name="g")(img)),  # relu first: kept
        L.Activation("tanh", name="i_act")(L.BatchNormalization(name="i_bn")(
            L.Dense(6, name="i")(L.GlobalAveragePooling2D(name="i_gap")(img)))),
        L.ReLU(name="j_relu")(L.BatchNormalization(name="j_bn")(L.Conv1D(4, 3, padding="causal", name="j")(seq))),
        L.BatchNormalization(name="k_bn")(L.Conv2DTranspose(3, 3, strides=2, padding="same", name="k")(img)),
        L.ReLU(name="l_relu")(L.BatchNormalization(axis=1, name="l_bn")(
            L.Conv2D(4, 3, data_format="channels_first", name="l")(chw))),
    ]
    h = L.Conv2D(4, 3, name="h")(img)  # read by its BN and by the Add: kept
    outs.append(L.Add(name="h_add")([h, L.BatchNormalization(name="h_bn")(h)]))
    o = L.Add(name="o_add")([L.Conv2D(3, 1, name="o1")(img), L.Conv2D(3, 1, name="o2")(img)])
    outs.append(L.ReLU(name="o_relu")(o))  # a residual sum then ReLU: in place on the sum
    m = L.Conv2D(3, 1, name="m")(img)  # a model output itself: its BN is kept
    outs += [m, L.BatchNormalization(name="m_bn")(m)]
    model = keras.Model([img, seq, chw], outs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    _random_bn(keras, model)
    km = to_kcompat(model, tmp_path)
    xs = [rand((2, 16, 16, 3), seed=1), rand((2, 10, 3), seed=2), rand((2, 3, 10, 12), seed=3)]
    gone = _check(model, km, xs)
    assert gone == {"a_bn", "a_relu", "b_bn", "b_relu6", "c_pad", "c_bn", "c_act", "e_bn", "i_bn", "i_act",
                    "j_bn", "j_relu", "k_bn", "l_bn", "l_relu", "o_relu"}
    fused = km.fused_model()
    assert fused.layers["c"].padding == "same" and fused.layers["a"].activation_name == "relu"
    assert fused.layers["b"].activation_name == "relu6" and fused.layers["a"].use_bias
    assert fused.layers["o_add"].activation_name == "relu"


def test_mobilenetv2_folds_every_bn_relu_and_pad(keras, tmp_path):
    """keras.applications.MobileNetV2 (alpha 0.35, 32x32, weights=None): all 52 BN, 35 ReLU6, 4 pads fold away."""
    keras.utils.set_random_seed(0)
    model = _random_bn(keras, keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                                             classifier_activation=None))
    km = to_kcompat(model, tmp_path)
    gone = _check(model, km, rand((2, 32, 32, 3), seed=4, scale=0.5))
    kinds = [km.layers[n].class_name for n in gone]
    assert sorted(set(kinds)) == ["BatchNormalization", "ReLU", "ZeroPadding2D"]
    assert (kinds.count("BatchNormalization"), kinds.count("ReLU"), kinds.count("ZeroPadding2D")) == (52, 35, 4)
    assert len(km.fused_model().layers) == len(km.layers) - 91


def test_new_weights_refold(keras, tmp_path):
    """init_weights after a predict: the next predict folds the new weights, not the cached ones."""
    L = keras.layers
    x = keras.Input((6, 6, 2))
    model = keras.Model(x, L.ReLU()(L.BatchNormalization()(L.Conv2D(3, 3)(x))))
    km = to_kcompat(model, tmp_path)
    data = rand((2, 6, 6, 2), seed=5)
    before = km.predict(data)[0]
    km.init_weights(seed=7)
    after = km.predict(data)[0]
    written = km.run_all(data)[(km.spec.outputs[0].layer, 0)]
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, written, rtol=FOLD_RTOL, atol=FOLD_RTOL * float(np.abs(written).max()))


def test_reused_buffers_never_touch_live_arrays(keras, tmp_path, monkeypatch):
    """predict reuses large layer buffers (kcompat/buffers.py) only once nothing references them:
    an earlier predict's outputs, and arrays viewing a buffer, keep their values."""
    from kcompat import buffers
    monkeypatch.setattr(buffers, "MIN_BYTES", 1)  # pool every array, so the small model exercises it
    L = keras.layers
    x = keras.Input((8, 8, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x)))
    y = L.ReLU()(L.Add()([h, L.Conv2D(4, 1)(x)]))
    model = keras.Model(x, [L.MaxPooling2D()(L.ZeroPadding2D(1)(y)), L.DepthwiseConv2D(3)(y)])
    km = to_kcompat(model, tmp_path)
    a, b = rand((2, 8, 8, 3), seed=8), rand((2, 8, 8, 3), seed=9)
    first = km.predict(a)
    kept = [o.copy() for o in first]
    second = km.predict(b)
    for f, k in zip(first, kept):
        np.testing.assert_array_equal(f, k)  # not overwritten by the second call
    for s, w in zip(second, km.predict(b, fused=False)):
        np.testing.assert_allclose(s, w, rtol=FOLD_RTOL, atol=FOLD_RTOL * float(np.abs(w).max()))
    with buffers.reuse():
        u = buffers.empty((4, 5), np.float32)
        view = u.reshape(-1)[3:]
        del u
        assert not np.shares_memory(buffers.empty((4, 5), np.float32), view)  # a view keeps its buffer taken
        del view
        v = buffers.empty((20,), np.float32)
        assert np.shares_memory(v, buffers._LOCAL.pool[0])  # free again: reused
    assert buffers._LOCAL.pool is None


def test_batch_parts_are_equal_when_a_few_more_parts_make_them_so():
    """predict's parts (kcompat/parts.py): never over PART_BYTES, and equal with every worker the same
    number of them where n allows (16 as 8 x 2, not 3 + 2 + 3 + 3 + 2 + 3, which leaves a worker idle)."""
    from kcompat.parts import PART_BYTES, part_slices

    def sizes(n, workers):
        cut = part_slices(n, PART_BYTES // 3, workers)  # three samples fit in a part
        assert [s.start for s in cut[1:]] == [s.stop for s in cut[:-1]] and cut[0].start == 0 and cut[-1].stop == n
        return [s.stop - s.start for s in cut]
    assert sizes(16, 2) == [2] * 8
    assert sizes(12, 2) == [3] * 4
    assert sizes(16, 1) == [2] * 8
    odd = sizes(15, 2)  # no equal cut with an even count: as before, parts of at most 3
    assert len(odd) == 6 and max(odd) == 3
    assert sizes(3, 4) == [1, 1, 1]


def test_small_tail_runs_once_on_the_whole_batch(keras, tmp_path, monkeypatch):
    """predict's parts hand over the tensors the tail reads (Conv -> pooling -> Dense, and an input read only
    by the tail); the tail (every output under TAIL_BYTES per sample) runs once on the joined batch; outputs
    from before the tail and from it equal run_all and Keras."""
    from kcompat import parts
    L = keras.layers
    img, vec = keras.Input((64, 64, 3), name="img"), keras.Input((4,), name="vec")
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(img)  # 128 KB per sample: before the tail
    big = L.Conv2D(8, 3, padding="same", name="big")(h)  # a model output before the tail
    y = L.Dense(5, name="dense")(L.Concatenate(name="cat")([L.GlobalAveragePooling2D(name="gap")(big), vec]))
    model = keras.Model([img, vec], [y, big])
    rng = np.random.default_rng(2)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    km = to_kcompat(model, tmp_path)
    fused = km.fused_model()
    tail = [key[0] for key in fused.order[parts.tail_start(fused):]]
    assert "dense" in tail and "gap" in tail and "big" not in tail and "conv" not in tail
    calls = []
    real = fused.call

    def spy(key, values, masks=None):
        out = real(key, values, masks)
        calls.append((key[0], len(out)))  # the batch this node ran on
        return out
    fused.call = spy
    monkeypatch.setattr(parts, "PART_BYTES", 3 * 64 * 64 * 8 * 4)  # parts of three samples
    xs = [rand((6, 64, 64, 3), seed=3), rand((6, 4), seed=4)]
    _check(model, km, xs)
    assert ("conv", 3) in calls and ("big", 3) in calls  # in parts
    assert ("dense", 6) in calls  # the Dense once on all six samples, not once per part
    assert not any(name == "dense" and n < 6 for name, n in calls)
