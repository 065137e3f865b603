"""benchmarks/profile_ops.py: the op classification, the split and the bound of a benchmark row (values by hand)."""

import pytest

from benchmarks import profile_ops


@pytest.mark.parametrize("op, framework, expected", [
    ("_MklNativeConv2DBackpropInput", "tf", True), ("_MklNativeFusedConv2D", "tf", True),
    ("Conv2DBackpropFilter", "tf", True), ("_MklMatMul", "tf", True), ("BatchMatMulV2", "tf", True),
    ("_MklEinsum", "tf", True), ("MirrorPad", "tf", False), ("ResourceApplyAdam", "tf", False),
    ("_MklTranspose", "tf", False), ("ExtractImagePatches", "tf", False),
    ("aten::mkldnn_convolution", "torch", True), ("aten::convolution_backward", "torch", True),
    ("aten::addmm", "torch", True), ("aten::mm", "torch", True), ("aten::bmm", "torch", True),
    ("aten::addcmul_", "torch", False), ("aten::add_", "torch", False), ("aten::mul", "torch", False),
    ("aten::reflection_pad2d", "torch", False), ("aten::native_batch_norm", "torch", False),
])
def test_is_kernel(op, framework, expected):
  assert profile_ops.is_kernel(op, framework) is expected


def test_split_by_hand():
  ops = {"_MklNativeConv2D": 60.0, "MatMul": 20.0, "MirrorPad": 12.0, "Mul": 5.0, "Relu": 3.0}
  s = profile_ops.split(ops, "tf", top=2)
  assert s["total_ms"] == 100.0
  assert s["kernel_share"] == pytest.approx(0.8)
  assert s["other_top"] == [["MirrorPad", 12.0], ["Mul", 5.0]]
  assert profile_ops.split({}, "tf")["kernel_share"] == 0.0


def test_bound_by_hand():
  # ours 1.0 s, 80% kernels; torch 1.2 s, 90% kernels; 100 GFLOP; ceiling 200 GFLOP/s.
  b = profile_ops.bound(1.0, 1.2, {"kernel_share": 0.8}, {"kernel_share": 0.9}, 100e9, 200.0)
  assert b["ours_kernel_s"] == pytest.approx(0.8) and b["torch_kernel_s"] == pytest.approx(1.08)
  assert b["ours_other_s"] == pytest.approx(0.2) and b["torch_other_s"] == pytest.approx(0.12)
  assert b["bound"] == pytest.approx(1.5)            # 1.2 / 0.8
  assert b["kernel_ratio"] == pytest.approx(1.35)    # 1.08 / 0.8
  assert b["ours_kernel_of_ceiling"] == pytest.approx(0.625)   # 100 / 0.8 / 200
  assert b["torch_kernel_of_ceiling"] == pytest.approx(100 / 1.08 / 200)
  # 1.2 / 1.5 = 0.8 = our kernel time: every other op would have to go (the edge case, up to rounding)
  assert b["other_cut_needed"] is None or b["other_cut_needed"] == pytest.approx(1.0)


@pytest.mark.parametrize("ours, torch, kernel, expected", [
    (1.0, 1.8, 0.8, 0.0),    # 1.8x already
    (1.0, 1.35, 0.8, 0.5),   # allowed other 0.9 - 0.8 = 0.1 of 0.2
    (1.0, 1.05, 0.8, None),  # 1.05 / 1.5 = 0.7 < 0.8: the kernels alone are too slow
])
def test_other_cut_needed(ours, torch, kernel, expected):
  got = profile_ops.other_cut_needed(ours, torch, kernel)
  assert got == (None if expected is None else pytest.approx(expected))


def test_tf_profile_sees_the_ops_of_a_real_step(tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  x = tf.random.stateless_normal([1, 32, 32, 8], seed=[1, 2])
  w = tf.random.stateless_normal([3, 3, 8, 8], seed=[3, 4])

  @tf.function
  def step():
    y = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    return tf.nn.relu(tf.nn.conv2d(y, w, 1, "VALID"))

  step()
  ops = profile_ops.tf_profile(lambda n: [step().numpy() for _ in range(n)], 3, str(tmp_path))
  assert any("Conv2D" in op for op in ops), sorted(ops)
  assert "MirrorPad" in ops, sorted(ops)
  s = profile_ops.split(ops, "tf")
  assert 0.0 < s["kernel_share"] < 1.0
  assert any(op == "MirrorPad" for op, _ in s["other_top"])


def test_format_bound_table_row():
  row = {"bound_ours_s": 1.0, "bound_torch_s": 1.05,
         "ours_split": {"kernel_share": 0.8, "other_top": [["MirrorPad", 12.0]]}, "torch_split": {"kernel_share": 0.9}}
  row["bound_detail"] = profile_ops.bound(1.0, 1.05, row["ours_split"], row["torch_split"], None, None)
  table = profile_ops.format_bound_table([row, {"no": "profile"}], lambda r: "munit 64/1").splitlines()
  assert len(table) == 3
  assert table[2] == ("| munit 64/1 | 1050 / 1000 | 1.05 | 945 / 800 (90% / 80%) | 105 / 200 | - / - | **1.31** | "
                      "impossible (our kernels alone are too slow) | MirrorPad 12 |")
