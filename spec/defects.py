"""Known defects of frameworks, each with a minimal reproducer: read by ``rnnspec matrix`` (its notes) and by
``rnnspec check`` (a failure block that a known defect explains says so)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rnnspec import catalogue


@dataclass(frozen=True)
class Defect:
    #: the built-in targets it affects
    targets: tuple[str, ...]
    #: the dtypes it shows in
    dtypes: tuple[str, ...]
    #: one line for a failure block
    summary: str
    #: the whole account, with the reproducer in the framework's own code and the version it was seen in
    text: str
    #: the cells it shows on (() every cell)
    cells: tuple[str, ...] = ()
    #: the variant features a run needs for it to show (("lengths=zero",)); () any run
    variants: tuple[str, ...] = ()
    #: the tests that pin it in the framework's own code, "tests/FILE.py::NAME": each fails loudly once it is fixed
    pinned_by: tuple[str, ...] = ()

    def applies(self, target: str, dtype: str, cell: str | None = None, variant: str = "") -> bool:
        """Whether it can explain a failure of ``target`` (its built-in name) on ``cell`` and ``variant`` in ``dtype``
        (a cell of None: any)."""
        from rnnspec.derivations.variants import parse_variant

        on_cell = cell is None or not self.cells or cell in self.cells
        return (target in self.targets and dtype in self.dtypes and on_cell
                and set(self.variants) <= set(parse_variant(variant).features))


DEFECTS = (
    Defect(
        ("keras-torch", "keras-jax"), ("float64",),
        "Keras 3 computes float64 in float32 on its jax and torch backends (its type promotion maps float64 to "
        "float32 there): float64 results land 1e-8 to 1e-6 from the float64 values",
        "Keras 3 computes some float64 operations in float32 on its jax and torch backends: its type promotion "
        "maps float64 to float32 there (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE). Reproducer, "
        "with x = np.full(2, 0.5) and jax_enable_x64 on: `keras.ops.tanh(x).dtype` is float32 on jax (float64 on "
        "torch and tensorflow); `keras.ops.matmul(np.ones((2, 2)), np.ones((2, 2))).dtype` is float32 on torch "
        "(float64 on jax and tensorflow). Float64 layers built on them (SimpleRNNCell, LSTMCell, GRUCell, the "
        "keras.ops head) land 1e-8 to 1e-6 from float64 values. On jax a float64 SimpleRNN fails outright: its "
        "tanh comes back float32 and the scan's carry types differ (`TypeError: scan body function carry input "
        "and carry output must have equal types`). On the CPU the torch backend's LSTM and reset-after GRU layers "
        "run their own torch.matmul loop, so there only the loss (its head is keras.ops.matmul) fails; its "
        "SimpleRNN and reset-before GRU run the cell's loop and fail throughout. The tensorflow backend is exact.",
        pinned_by=("tests/test_framework_targets.py::test_keras_float64_is_reported_as_computed_in_float32",
                   "tests/test_framework_targets.py::test_keras_jax_float64_simple_rnn_raises_the_frameworks_own_error")),
    Defect(
        ("tfjs",), ("float32",),
        "TensorFlow.js 4.22.0 cannot differentiate a recurrent layer by its input over a sequence of ONE step (the "
        "gradient of a one-piece tf.unstack throws): every VJP and LOSS clause breaks on T = 1",
        "TensorFlow.js 4.22.0 (tfjs-core's engine) hands the gradient function of a kernel with one output a tensor "
        "instead of a list, and Unpack's gradient calls tf.stack on it. Every recurrent layer unstacks its input over "
        "time, so the gradient by the input of a layer over a one-step sequence throws. Reproducer: `const layer = "
        "tf.layers.simpleRNN({units: 2}); tf.grad((x) => tf.sum(layer.apply(x)))(tf.ones([1, 1, 1]))` throws "
        "'Argument tensors passed to stack must be a `Tensor[]` or `TensorLike[]`' (with tf.ones([1, 2, 1]) it "
        "returns the gradient); the cause alone: `tf.grad((x) => tf.sum(tf.unstack(x)[0]))(tf.ones([1, 3]))` throws "
        "the same. The weights' gradients alone are computed (the unstack is then off the path), so it bites "
        "stacked layers and input gradients: tensorflow/tfjs#1529 and #3550, closed without a fix.",
        pinned_by=("tests/test_tfjs.py::test_tf_js_still_cannot_differentiate_a_layer_by_its_input_over_one_step",)),
    Defect(
        ("tfjs",), ("float32",),
        "TensorFlow.js 4.22.0's tf.losses.softmaxCrossEntropy loses |logits| * 2^-24 (log-probabilities taken as "
        "logits - logSumExp(logits)): LOSS clauses can fail on cases with large logits",
        "tf.losses.softmaxCrossEntropy computes log-probabilities as logits - logSumExp(logits), and logSumExp adds "
        "the largest logit back, so the loss and its gradient softmax - labels lose |logits| * 2^-24 absolute. "
        "Reproducer: labels [[1, 0]], logits [[720, 719]]: `tf.grad((l) => tf.losses.softmaxCrossEntropy(labels, l, "
        "undefined, 0, tf.Reduction.SUM))(logits)` is 2.9e-5 off relative (2.1e-4 at [7200, 7199]) from the exact "
        "[-1, 1] / (1 + e), where tf.softmax(logits) - labels and the gradient of tf.logSoftmax are exact to float32 "
        "(4e-8). The target's loss is TF.js's loss function; TfjsLogSoftmaxHead (the same layers, the cross-entropy "
        "through tf.logSoftmax) passes the cases it fails.",
        pinned_by=("tests/test_tfjs.py::test_tf_js_softmax_cross_entropy_still_loses_accuracy_on_large_logits",)),
    Defect(("torch-onnx",), ("float32",),
        "torch.onnx.export(dynamo=True) of nn.LSTM with proj_size (lstm-proj) exports an LSTM that ONNX Runtime will "
        "not run ('Input initial_c must have shape {1,B,P}'): onnxscript's aten_lstm drops weight_hr",
        "torch.onnx.export(dynamo=True) (torch 2.13.0, onnxscript 0.7.2) exports nn.LSTM(proj_size=P) without a "
        "word, but onnxscript's aten_lstm takes the hidden size from h0, which is P wide, and has no place for "
        "weight_hr, so ONNX Runtime 1.32.0 refuses to run the graph. Reproducer: lstm = torch.nn.LSTM(3, 4, "
        "proj_size=2); x, h0, c0 = torch.randn(5, 2, 3), torch.randn(1, 2, 2), torch.randn(1, 2, 4); program = "
        "torch.onnx.export(lstm, (x, (h0, c0)), dynamo=True); s = onnxruntime.InferenceSession("
        "program.model_proto.SerializeToString()); s.run(None, dict(zip([i.name for i in s.get_inputs()], "
        "(x.numpy(), h0.numpy(), c0.numpy())))) raises 'Input initial_c must have shape {1,2,2}. Actual:{1,2,4}'. "
        "(The TorchScript exporter refuses the module: 'LSTMs with projections'.)",
        cells=("lstm-proj",),
        pinned_by=("tests/test_onnx_export.py::test_dynamo_export_of_an_lstm_with_a_projection_does_not_run",)),
    Defect(("torch-onnx",), ("float32",),
        "torch.onnx.export(dynamo=True) of nn.GRU and nn.LSTM with T dynamic writes the example's T into the Reshape "
        "of the output Y: at another length Y has shape (T0, T*B/T0, D*H) (the right numbers, misshapen) or, where T0 "
        "does not divide T*B, the run fails ('requested shape:{T0,-1,H}'); h_n and c_n stay right",
        "torch.onnx.export(dynamo=True) (torch 2.13.0, onnxscript 0.7.2; ONNX Runtime 1.32.0) of nn.GRU and nn.LSTM, "
        "every size, one or two layers, either direction, exported with dynamic_shapes T and B. The trigger, pinned "
        "by tests/test_onnx_export.py: torch.onnx captures with while_loop decompositions of aten.lstm/aten.gru (T "
        "stays "
        "symbolic), but its decomposition step recomputes the preserved aten.lstm.input/aten.gru.input node's output "
        "with the Python-loop decomposition, which gives Y the example's T as a constant, with no guard; onnxscript's "
        "aten_lstm/aten_gru reshape Y to Shape(Y)[0], right as translated (optimize=False runs right at every "
        "length), and the optimizer (optimize=True, the default) folds that into the constant. Reproducer: lstm = "
        "torch.nn.LSTM(3, 4); T, B = torch.export.Dim('T'), torch.export.Dim('B'); p = torch.onnx.export(lstm, "
        "(torch.randn(3, 2, 3), (torch.randn(1, 2, 4), torch.randn(1, 2, 4))), dynamo=True, dynamic_shapes=({0: T, "
        "1: B}, ({1: B}, {1: B}))); ONNX Runtime returns Y of shape (3, 5, 4) for x of (5, 3, 3) and fails for "
        "(4, 2, 3) ('requested shape:{3,-1,4}'); with optimize=False both are right. Upstream: pytorch/pytorch#191855 "
        "(the same freezing through an Expand) and PR #193192, which runs the decomposition step inside the same "
        "while_loop decompositions (patching torch.onnx's decompose_with_registry so makes this export right). Also "
        "seen: a second export of an nn.GRU/nn.LSTM of the same sizes in one process comes back with T static.",
        cells=("gru-reset-after", "lstm"),
        pinned_by=("tests/test_onnx_export.py::test_dynamo_export_of_nn_gru_fixes_the_example_length_in_a_reshape",
                   "tests/test_onnx_export.py::test_dynamo_export_of_nn_lstm_keeps_the_example_length_where_its_optimizer_folds_the_output_shape")),
    Defect(("openvino", "openvino-f32", "openvino-batch-major"), ("float64",),
        "OpenVINO's CPU plugin computes float64 models in float32 (f64 outputs, f32 values): results land 1e-8 to "
        "1e-6 from the float64 values at INFERENCE_PRECISION_HINT f32, about 1e-3 with the default hint where the "
        "CPU has native bfloat16 (openvino: in bfloat16 then, as its float32, note on OpenVINO's bfloat16)",
        "OpenVINO 2026.4.1's CPU plugin takes an f64 ONNX model and returns f64 outputs computed in f32, with "
        "INFERENCE_PRECISION_HINT f32 too. Reproducer: an ONNX graph z = Add(x, y) in DOUBLE, compiled by "
        "ov.Core().compile_model(ov.Core().read_model(model_bytes), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'}); "
        "with x = [1.0], y = [1e-12] it returns float64 z with z - 1 == 0.0 (1e-12 in float64).",
        pinned_by=("tests/test_onnx_export.py::test_openvino_computes_float64_in_float32",)),
    Defect(("openvino", "openvino-f32", "openvino-batch-major"), catalogue.DTYPES,
        "OpenVINO's ONNX frontend drops the LSTM's peepholes P: lstm-peephole computes the LSTM without them",
        "OpenVINO 2026.4.1: an ONNX LSTM with peepholes P (input 8) is read as the LSTM without them, silently: "
        "given as a graph input P is not among the model's inputs, given as a constant it is ignored; OpenVINO's "
        "outputs equal ONNX Runtime's for the same graph without P (to 9e-8) and differ from them with P by 0.03 "
        "(H = 2, P = 1). Reproducer in the onnx helper API: docs/exporters.md, defect 3.",
        cells=("lstm-peephole",),
        pinned_by=("tests/test_onnx_export.py::test_openvino_drops_the_lstm_peepholes",)),
    Defect(("openvino", "openvino-f32", "openvino-batch-major"), catalogue.DTYPES,
        "OpenVINO gives a sequence of length 0 (sequence_lens) a final state of 0, not its initial state",
        "OpenVINO 2026.4.1: with sequence_lens [0, 2], Y_h of the length-0 sequence is [0, 0] instead of its "
        "initial_h [0.5, 0.5] (as ONNX Runtime 1.32.0 does); Y and every other final state are right. Reproducer "
        "in the onnx helper API: docs/exporters.md, defect 4.",
        variants=("lengths=zero",),
        pinned_by=("tests/test_onnx_export.py::test_openvino_gives_a_sequence_of_length_zero_a_final_state_of_zero",)),
    Defect(("openvino",), ("float32",),
        "OpenVINO's CPU plugin computes float32 in bfloat16 by default on CPUs with native bfloat16 (AMX, "
        "AVX512_BF16; its documented INFERENCE_PRECISION_HINT default): openvino-f32 sets f32",
        "On a CPU with native bfloat16 OpenVINO's default INFERENCE_PRECISION_HINT is bf16 (documented), so a "
        "float32 model is computed in bfloat16: a 1x1 MatMul of 1.001 by 1.0 gives 1.0 with the defaults and 1.001 "
        "with {'INFERENCE_PRECISION_HINT': 'f32'} (openvino 2026.4.1, Intel Xeon with AMX). Elsewhere the default is "
        "f32 and openvino passes. Not a defect of OpenVINO; the target openvino-f32 sets f32.",
        pinned_by=("tests/test_onnx_export.py::test_openvino_default_precision_is_bfloat16_where_the_cpu_has_it",)),
    Defect(("openvino", "openvino-f32", "openvino-batch-major"), catalogue.DTYPES,
        "OpenVINO's ONNX frontend ignores the LSTM's input_forget=1: it reads f from the ignored forget-gate blocks "
        "instead of computing f = 1 - i",
        "OpenVINO 2026.4.1: an ONNX LSTM with input_forget=1, T = B = I = H = 1, W blocks (i, o, f, c) = (0, 0, 3, 1), "
        "R = 0, x = 1, c0 = 1 gives Y_c 1.3333712 (sigmoid(3) + tanh(1)/2, the uncoupled LSTM) where the spec and "
        "ONNX Runtime 1.32.0 give 0.8807971 (f = 1 - i = 1/2). Reproducer in the onnx helper API: "
        "docs/onnx-attributes.md, defect 1.",
        cells=("lstm-coupled",),
        pinned_by=("tests/test_onnx_attributes.py::test_openvino_ignores_input_forget_in_its_own_api",)),
    Defect(("openvino-batch-major",), catalogue.DTYPES,
        "OpenVINO ignores the recurrent operators' layout=1: batch-major X is read as time-major",
        "OpenVINO 2026.4.1: an ONNX RNN with layout=1, W = R = 1 and X of shape (B, T, I) = (1, 2, 1) = [0.5, 1.0] "
        "gives Y of shape (1, 1, 2, 1) = [tanh 0.5, tanh 1] (two sequences of one step) instead of (1, 2, 1, 1) = "
        "[tanh 0.5, tanh(1 + tanh 0.5)]; with initial states it fails on their shapes. Reproducer in the onnx helper "
        "API: docs/onnx-attributes.md, defect 2.",
        pinned_by=("tests/test_onnx_attributes.py::test_openvino_ignores_layout_1_in_its_own_api",)),
    Defect(("onnxruntime", "torch-onnx", "torch-onnx-torchscript"), ("float32",),
        "ONNX Runtime's float32 logistic (MlasComputeLogistic) is accurate in absolute, not relative, terms: "
        "2.2e-3 relative error at -10, 5x at -17",
        "ONNX Runtime 1.32.0's Sigmoid (and the gates of its LSTM and GRU kernels, which call the same MLAS routine) "
        "is within 2 ulps on [-1, 5), 182 ulps on [-5, -1) and 29,952 ulps (2.2e-3 relative) on [-10, -5): "
        "sigmoid(-7.0028) is 9.0858e-4 against 9.0852e-4, sigmoid(-17.4072) 1.49e-7 against 2.76e-8. A nearly shut "
        "gate carries that relative error into h (an LSTM case with its output gate shut failed by 7.0e-5 against "
        "a tolerance of 5.6e-5). Reproducer: docs/onnx-attributes.md.",
        cells=tuple(name for name, cell in catalogue.CELLS.items() if cell.gates),
        pinned_by=("tests/test_onnx_export.py::test_onnxruntime_s_float32_sigmoid_is_still_accurate_in_absolute_not_relative_terms",)),
    Defect(("onnxruntime", "onnxruntime-batch-major"), catalogue.DTYPES,
        "ONNX Runtime gives a sequence of length 0 (sequence_lens) final states Y_h = Y_c = 0, not its initial states",
        "ONNX Runtime 1.32.0's RNN, LSTM and GRU kernels with sequence_lens [7, 0, 3, 5] return Y_h (and Y_c) of the "
        "length-0 sequence as zeros, where the spec (and ONNX's own reference evaluator) keeps its initial_h "
        "(initial_c); Y and every other final state are right. Reproducer: an ONNX LSTM (onnx helper API) with "
        "hidden_size 2, initial_h of ones and sequence_lens [0, T]: Y_h[0, 0] is [0, 0]. Pinned by "
        "tests/test_variants_targets.py::test_onnxruntime_stacked_bidirectional_sequence_lens_agree_but_an_empty_"
        "sequence_ends_at_zero; docs/frameworks.md.",
        variants=("lengths=zero",),
        pinned_by=("tests/test_variants_targets.py::test_onnxruntime_stacked_bidirectional_sequence_lens_agree_but_an_empty_sequence_ends_at_zero",)),
    Defect(("keras-jax",), catalogue.DTYPES,
        "Keras 3 on JAX outputs the initial state, not zeros, at the steps a mask hides before a sequence's first "
        "valid one (a sequence of length 0; a go_backwards layer's leading padding)",
        "Keras 3.15.1 with the JAX backend (jax 0.10.2): keras.layers.SimpleRNN(1, return_sequences=True, "
        "return_state=True, kernel_initializer='ones', recurrent_initializer='ones', bias_initializer='zeros') on "
        "x = ones((1, 2, 1)), mask [[False, False]], initial_state [full((1, 1), 0.5)] returns y = [0.5, 0.5]; the "
        "torch and tensorflow backends return y = [0, 0] (h_n = 0.5 on all three). LSTM and GRU layers do the same. "
        "So keras-jax with lengths=carry fails FWD-H and VJP-H0 on any batch with a length 0 or padding. Pinned by "
        "tests/test_framework_targets.py::test_keras_on_jax_outputs_the_initial_state_where_a_mask_hides_the_first_"
        "steps; docs/frameworks.md.",
        variants=("lengths=carry",),
        pinned_by=("tests/test_framework_targets.py::test_keras_on_jax_outputs_the_initial_state_where_a_mask_hides_the_first_steps",)),
    Defect(("mlx",), ("float64",),
        "MLX 0.32.4's CPU exp (and so sigmoid and logsumexp) has float32 accuracy on float64 arrays "
        "(ml-explore/mlx#3047): float64 results land 1e-9 to 1e-7 from the float64 values",
        "MLX computes exp on its CPU backend with a float32 polynomial also for float64 arrays (ml-explore/mlx#3047, "
        "open; mlx/backend/cpu/simd/math.h); sigmoid and logsumexp go through it, tanh, log and matmul do not. "
        "Reproducer (mlx 0.32.4, mlx-cpu, Linux): x = mx.array([0.5, 1.0, 2.0], dtype=mx.float64); mx.exp(x) is 5e-8 "
        "relative from math.exp, mx.sigmoid(x) 1.5e-8, mx.logsumexp(x) 8e-9, and mx.exp(mx.array(100.0, "
        "dtype=mx.float64)) is inf (float32's overflow). So every float64 check of the mlx target fails: nn.LSTM and "
        "nn.GRU (sigmoid gates) and nn.RNN with sigmoid throughout, nn.RNN with tanh, relu or identity in the loss "
        "only (its logsumexp). float32 is conformant. MLX has no float64 on a GPU at all.",
        pinned_by=("tests/test_mlx.py::test_mlx_float64_exp_is_still_float32_accurate_on_the_cpu",)),
    Defect(("paddle",), catalogue.DTYPES,
        "PaddlePaddle 3.3.1's F.cross_entropy caps each sample's loss at 64 (PaddlePaddle/Paddle#20994): the loss "
        "value fails on large logits; its gradient is right",
        "paddle.nn.functional.cross_entropy computes -log(max(softmax, e^-64)) on the CPU, so a sample whose "
        "true-class log-probability is below -64 counts 64 (PaddlePaddle/Paddle#20994, closed in 2019, still in "
        "3.3.1). Reproducer: F.cross_entropy(paddle.to_tensor([[0.0, 100.0]]), paddle.to_tensor([0])) is 64.0, not "
        "100, in float32 and float64. Its gradient (softmax - onehot) is not clipped. The paddle target's loss is "
        "F.linear and F.cross_entropy: LOSS-VALUE fails in the large-logits regime, every gradient passes.",
        pinned_by=("tests/test_paddle.py::test_paddle_s_cross_entropy_still_caps_each_loss_at_64",)),
    Defect(("paddle",), catalogue.DTYPES,
        "PaddlePaddle 3.3.1's LSTM with proj_size and sequence_length outputs values at padded steps (the fused "
        "kernel of the same layer outputs zeros there): lstm-proj with lengths=zero fails",
        "With proj_size > 0, paddle.nn.LSTM runs Paddle's Python loop over LSTMCell instead of its fused kernel, and "
        "that loop masks the states at padded steps but not the outputs: the output at a step t >= length is the "
        "cell's step from the frozen state. Reproducer (paddlepaddle 3.3.1, CPU): x = paddle.ones([1, 3, 3]), "
        "sequence_length = paddle.to_tensor([1]); paddle.nn.LSTM(3, 4)(x, sequence_length=...)[0][0, 1:] is zero, "
        "paddle.nn.LSTM(3, 4, proj_size=2)(x, sequence_length=...)[0][0, 1:] is not. So the cotangents of padded "
        "outputs reach the weights: rnnspec check paddle --cell lstm-proj --variant lengths=zero fails FWD-H and the "
        "VJP clauses (the loss, which counts valid steps only, passes).",
        cells=("lstm-proj",), variants=("lengths=zero",),
        pinned_by=("tests/test_paddle.py::test_paddle_s_projected_lstm_still_outputs_nonzero_values_at_padded_steps",)),
    Defect(("onnx2pytorch",), catalogue.DTYPES,
        "onnx2pytorch 0.6.0 zeroes the final states of a sequence of length 0 (sequence_lens 0) for RNN, LSTM and "
        "GRU(linear_before_reset=1); no gradient reaches initial_h/initial_c",
        "onnx2pytorch 0.6.0 (torch 2.13.0, onnx 1.23.2) runs ONNX's RNN, LSTM and GRU(linear_before_reset=1) with a "
        "constant sequence_lens as PyTorch's layer on packed sequences (operations/rnnutils.py, run_padded): a "
        "sequence of length 0 is run for one step and its outputs and final states multiplied by 0, so Y_h (Y_c) is "
        "0 instead of initial_h (initial_c) and dL/dinitial_h is 0; its own GRU(linear_before_reset=0) loop keeps "
        "initial_h, as the spec does. Reproducer: a GRU node (hidden_size=2, linear_before_reset=1), constant W, R, "
        "B and sequence_lens=[0, 3], through onnx2pytorch.ConvertModel, called with initial_h = ones(1, 2, 2): "
        "Y_h[0, 0] is [0, 0], not [1, 1] (docs/compilers.md). The suite fails *-LEN-ZERO-FWD-H_N/C_N and "
        "*-LEN-ZERO-VJP-H0/C0 only; ONNX Runtime 1.32.0 does the same.",
        variants=("lengths=zero",),
        pinned_by=("tests/test_onnx2torch.py::test_defect_onnx2pytorch_zeroes_the_final_state_of_a_length_zero_sequence",)),
)


def resolve(target: str) -> str:
    """The built-in target that ``target`` runs as: the plain ``keras`` is ``keras-<KERAS_BACKEND>``."""
    if target == "keras":
        from rnnspec.spec.frameworks.keras_layers import DEFAULT_BACKEND

        return f"keras-{os.environ.get('KERAS_BACKEND', DEFAULT_BACKEND)}"
    return target


def known(target: str, dtype: str, cell: str | None = None, variant: str = "") -> list[Defect]:
    """The known defects of ``target`` (a built-in name) in ``dtype``, on ``cell`` (None: any) run as ``variant``."""
    name = resolve(target)
    return [d for d in DEFECTS if d.applies(name, dtype, cell, variant)]
