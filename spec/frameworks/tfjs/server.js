#!/usr/bin/env node
// TensorFlow.js's own recurrent layers behind rnnspec's frames: the Node half of the built-in target `tfjs`.
//
//     node server.js HOME        HOME: the folder where `npm ci` installed package-lock.json's packages
//
// rnnspec.spec.frameworks.tfjs_layers (the Python half) starts this once per worker process and talks to
// it over stdin/stdout with the frames of docs/protocol.md (a little-endian uint32 N, N bytes of a JSON
// header, then the header's arrays, raw little-endian C-order, in the header's order). The Python half
// packs rnnspec's canonical parameters into TF.js's layout (spec/conventions/tfjs.py) before sending and
// unpacks the gradients after, so this program sees TF.js's arrays only, never the canonical ones:
//
//   hello   -> {"type": "hello", "protocol": 1, "name", "tfjs": version, "backend": "cpu"}
//   call    {"type": "call", "method": "forward" | "vjp" | "loss", "cell": "elman" | "lstm" |
//            "gru-reset-before", "activation": "tanh" | "sigmoid" | "relu" | "identity" (elman), "dtype":
//            "float32"} with the arrays
//              kernel (I, G*H), recurrent_kernel (H, G*H), bias (G*H,)   the layer's weights, as
//                                                                         layer.setWeights takes them
//              x (B, T, I)                                                batch-major, as the layer reads it
//              h0 (B, H), and c0 (B, H) for the lstm                      the initial states
//              vjp:  cot_h (B, T, H), and cot_c (B, T, H) for the lstm    dL/dh_t, dL/dc_t of every step
//              loss: V (K, H), c (K,), targets (B, T) int64               the head and the labels
//            and, for loss, optionally "head": "softmaxCrossEntropy" (tf.losses.softmaxCrossEntropy, the
//            default) or "logSoftmax" (-sum(labels * tf.logSoftmax(logits)), see the second defect below)
//   result  forward: h (B, T, H), and c (B, T, H) for the lstm (its cell state after every step)
//           vjp:     the gradient of every array sent but the cotangents, under its name
//           loss:    value (shape []), the summed softmax cross-entropy, and the gradient of every array
//                    sent but targets, under its name
//   error   {"type": "error", "message"} when a call cannot be computed (TF.js's own message included)
//   bye     the program exits.
//
// What runs is TF.js's own code: tf.layers.simpleRNN / lstm / gru (recurrentActivation 'sigmoid': TF.js's
// default is 'hardSigmoid', which is not the spec's σ), gradients by tf.variableGrads, the loss by
// tf.losses.softmaxCrossEntropy with Reduction.SUM. A vjp is the gradient of the scalar
// sum(h ⊙ cot_h) (+ sum(c ⊙ cot_c)): its gradient with respect to h is cot_h exactly, so the pullback
// TF.js runs is the one its layers define. TF.js's LSTM layer returns the last cell state only; the cell
// state of every step comes from the layer's own LSTMCell (layer.cell.call) stepped from the previous
// step's (h, c); h comes from one call of the layer over the whole sequence, as a user of the layer gets it.
//
// TF.js 4.22.0 defect: the gradient of tf.unstack into a single piece throws (its engine hands the gradient
// of a one-output kernel a tensor, not a list, and Unpack's gradient calls tf.stack on it: "Argument tensors
// passed to stack must be a `Tensor[]` or `TensorLike[]`"). Every recurrent layer unstacks its input over
// time, so the gradient with respect to the input of a layer over a sequence of ONE step throws (the
// gradients of its weights alone do not: the unstack is then off the path); tensorflow/tfjs#1529 and #3550
// (stacked LSTMs on one-step sequences, closed unfixed). A vjp or loss with T = 1 is answered with that
// error, as TF.js gives it.
//
// TF.js 4.22.0 defect: tf.losses.softmaxCrossEntropy computes its log-probabilities as
// logits - logSumExp(logits), and logSumExp adds the largest logit back (max + log(sum(exp(x - max)))),
// so they, the loss and its gradient softmax - labels lose |logits| * 2^-24 absolute: for the logits
// [720, 719] its gradient is 3e-5 off relative (2e-4 for [7200, 7199]), where tf.softmax(logits) - labels
// and the gradient of tf.logSoftmax are exact to float32. The target's loss is TF.js's loss function, so
// cases with large logits can fail the LOSS clauses; the "logSoftmax" head shows that the rest is exact.
//
// TF.js tensors are float32 (its dtypes are float32, int32, bool, complex64, string; tf.tensor refuses a
// Float64Array), so a call in any other dtype is answered with an error. The cell gru-reset-after is
// answered with TF.js's own refusal (tf.layers.gru({resetAfter: true}) throws), which the tests read
// to notice the day TF.js implements it.
'use strict';

const path = require('path');
const { createRequire } = require('module');

// stdout carries frames only: anything TF.js logs goes to stderr, which the Python half shows on failure
console.log = console.error;
console.info = console.error;
console.warn = console.error;

const HOME = process.argv[2];
if (!HOME) {
  process.stderr.write('usage: node server.js HOME (the folder where npm ci installed @tensorflow/tfjs)\n');
  process.exit(2);
}
// resolved from HOME only, never from a node_modules that happens to lie above this file
const tf = createRequire(path.join(path.resolve(HOME), 'package.json'))('@tensorflow/tfjs');

const BYTES = { float32: 4, float64: 8, int64: 8 };
const ACTIVATIONS = { tanh: 'tanh', sigmoid: 'sigmoid', relu: 'relu', identity: 'linear' };
const MAX_HEADER = 1 << 24;

// ---- frames -------------------------------------------------------------------------------------------

const pending = [];
let buffered = 0;
let waiting = null;
let ended = false;

process.stdin.on('data', (chunk) => {
  pending.push(chunk);
  buffered += chunk.length;
  if (waiting) waiting();
});
process.stdin.on('end', () => {
  ended = true;
  if (waiting) waiting();
});

/** The next n bytes of stdin (null at end of input). */
async function readBytes(n) {
  while (buffered < n) {
    if (ended) return null;
    await new Promise((resolve) => { waiting = resolve; });
    waiting = null;
  }
  const all = pending.length === 1 ? pending[0] : Buffer.concat(pending);
  pending.length = 0;
  const out = all.subarray(0, n);
  if (all.length > n) pending.push(all.subarray(n));
  buffered -= n;
  return out;
}

/** {header, arrays: {name: {dtype, shape, data}}} of the next frame, or null at end of input. */
async function readFrame() {
  const prefix = await readBytes(4);
  if (prefix === null) return null;
  const length = prefix.readUInt32LE(0);
  if (length > MAX_HEADER) throw new Error(`header of ${length} bytes, past the limit ${MAX_HEADER}`);
  const header = JSON.parse((await readBytes(length)).toString('utf8'));
  const arrays = {};
  for (const entry of header.arrays || []) {
    if (!(entry.dtype in BYTES)) throw new Error(`array ${entry.name}: unknown dtype ${entry.dtype}`);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const raw = await readBytes(count * BYTES[entry.dtype]);
    if (raw === null) throw new Error(`input ended inside array ${entry.name}`);
    const aligned = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length); // a copy, 8-byte aligned
    let data;
    if (entry.dtype === 'float32') data = new Float32Array(aligned);
    else if (entry.dtype === 'float64') data = new Float64Array(aligned);
    else data = Int32Array.from(new BigInt64Array(aligned), Number); // labels: TF.js's integers are int32
    arrays[entry.name] = { dtype: entry.dtype, shape: entry.shape, data };
  }
  return { header, arrays };
}

function writeFrame(header, arrays = []) {
  const entries = arrays.map(([name, shape, data]) => ({ name, dtype: 'float32', shape }));
  const json = Buffer.from(JSON.stringify(arrays.length ? { ...header, arrays: entries } : header), 'utf8');
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32LE(json.length, 0);
  const parts = [prefix, json];
  for (const [, , data] of arrays) parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  process.stdout.write(Buffer.concat(parts));
}

// ---- the layers ---------------------------------------------------------------------------------------

const layers = new Map(); // (cell, activation, I, H) -> a built layer; its weights are set on every call

function layerFor(cell, activation, I, H) {
  const key = `${cell}/${activation}/${I}/${H}`;
  if (layers.has(key)) return layers.get(key);
  if (layers.size >= 64) { // the suite's sizes vary from case to case: keep a bounded number of layers
    for (const layer of layers.values()) layer.dispose();
    layers.clear();
  }
  // zeros: the weights are overwritten on every call, and orthogonal initialisation costs a QR per build
  const options = { units: H, returnSequences: true, kernelInitializer: 'zeros',
                    recurrentInitializer: 'zeros', biasInitializer: 'zeros' };
  let layer;
  if (cell === 'elman') {
    if (!(activation in ACTIVATIONS)) throw new Error(`activation ${activation}: TF.js's simpleRNN has ${Object.keys(ACTIVATIONS)}`);
    layer = tf.layers.simpleRNN({ ...options, activation: ACTIVATIONS[activation] });
  } else if (cell === 'lstm') {
    layer = tf.layers.lstm({ ...options, recurrentActivation: 'sigmoid', returnState: true });
  } else if (cell === 'gru-reset-before') {
    layer = tf.layers.gru({ ...options, recurrentActivation: 'sigmoid', resetAfter: false });
  } else if (cell === 'gru-reset-after') {
    layer = tf.layers.gru({ ...options, recurrentActivation: 'sigmoid', resetAfter: true }); // TF.js refuses
  } else {
    throw new Error(`cell ${cell}: this program runs elman, lstm and gru-reset-before`);
  }
  // built as a user's layer is, by its first call (RNN.build alone leaves the layer unbuilt to apply)
  tf.tidy(() => { layer.apply(tf.zeros([1, 1, I])); });
  layers.set(key, layer);
  return layer;
}

function tensor(array) {
  if (array.dtype === 'float64') throw new Error('float64 given: TF.js tensors are float32');
  return tf.tensor(array.data, array.shape, array.dtype === 'int64' ? 'int32' : 'float32');
}

function need(arrays, names) {
  const missing = names.filter((n) => !(n in arrays));
  if (missing.length) throw new Error(`missing arrays ${missing.join(', ')}; given ${Object.keys(arrays).join(', ')}`);
}

const WEIGHTS = ['kernel', 'recurrent_kernel', 'bias']; // layer.setWeights's order

/** The answer to one call: a list of [name, shape, Float32Array]. */
function compute(header, arrays) {
  if (header.dtype !== 'float32') {
    throw new Error(`dtype ${header.dtype}: TF.js tensors are float32 (its dtypes: float32, int32, bool, ` +
                    'complex64, string)');
  }
  if (!['forward', 'vjp', 'loss'].includes(header.method)) {
    throw new Error(`method ${header.method}: this program answers forward, vjp and loss`);
  }
  const states = header.cell === 'lstm' ? ['h0', 'c0'] : ['h0'];
  need(arrays, [...WEIGHTS, 'x', ...states]);
  const layer = layerFor(header.cell, header.activation, arrays.x.shape[2], arrays.h0.shape[1]);
  const own = []; // the call's tf.variables: the engine keeps each registered until it is disposed
  const variable = (name) => { const v = tf.variable(tensor(arrays[name])); own.push(v); return v; };
  let answer;
  try {
    // tidy frees every intermediate tensor; the answer holds plain typed arrays, read before it ends
    tf.tidy(() => { answer = METHODS[header.method](layer, header.cell === 'lstm', arrays, states, variable, header); });
  } finally {
    for (const v of own) v.dispose();
  }
  return answer;
}

/** h of every step from one call of the layer over the whole sequence; for the LSTM with everyC, also c of
 * every step, from the layer's own LSTMCell stepped from the previous step's (h, c). */
function run(layer, lstm, x, states, everyC) {
  const out = layer.apply(x, { initialState: states });
  const h = lstm ? out[0] : out; // the LSTM layer (returnState) also returns its last h and c
  if (!everyC) return [h];
  const [B, T, I] = x.shape;
  // x_t by slice and reshape, not by one-step calls of the layer: those unstack a sequence of one step,
  // whose gradient throws in TF.js 4.22.0 (the defect above)
  let [hT, cT] = states;
  const cs = [];
  for (let t = 0; t < T; t++) {
    [hT, , cT] = layer.cell.call([tf.reshape(tf.slice(x, [0, t, 0], [B, 1, I]), [B, I]), hT, cT], {});
    cs.push(cT);
  }
  return [h, tf.stack(cs, 1)];
}

/** [name, shape, values] of each named tensor. */
const listed = (names, tensors) => names.map((n, k) => [n, tensors[k].shape, tensors[k].dataSync()]);

/** The layer's variables (its weights, set from the call's arrays), x and the initial states as variables. */
function inputs(layer, arrays, states, variable) {
  layer.setWeights(WEIGHTS.map((n) => tensor(arrays[n])));
  return [...layer.trainableWeights.map((w) => w.read()), variable('x'), ...states.map(variable)];
}

/** The summed softmax cross-entropy of the logits (B*T, K) against one-hot labels: TF.js's loss function, or
 * (for the tests that locate its defect) the same quantity through tf.logSoftmax. */
const HEADS = {
  softmaxCrossEntropy: (labels, logits) => tf.losses.softmaxCrossEntropy(labels, logits, undefined, 0, tf.Reduction.SUM),
  logSoftmax: (labels, logits) => tf.neg(tf.sum(tf.mul(labels, tf.logSoftmax(logits)))),
};

const METHODS = {
  forward(layer, lstm, arrays, states, variable) {
    const [, , , x, ...s] = inputs(layer, arrays, states, variable);
    return listed(lstm ? ['h', 'c'] : ['h'], run(layer, lstm, x, s, lstm));
  },
  vjp(layer, lstm, arrays, states, variable) {
    const cotangents = lstm ? ['cot_h', 'cot_c'] : ['cot_h'];
    need(arrays, cotangents);
    const given = cotangents.map((n) => tensor(arrays[n]));
    const wrt = inputs(layer, arrays, states, variable);
    const [, , , x, ...s] = wrt;
    // the gradient of sum(h ⊙ cot_h) (+ sum(c ⊙ cot_c)) with respect to h is cot_h itself
    const { grads } = tf.variableGrads(
      () => tf.addN(run(layer, lstm, x, s, lstm).map((o, k) => tf.sum(tf.mul(o, given[k])))), wrt);
    return listed([...WEIGHTS, 'x', ...states], wrt.map((v) => grads[v.name]));
  },
  loss(layer, lstm, arrays, states, variable, header) {
    need(arrays, ['V', 'c', 'targets']);
    const head = HEADS[header.head || 'softmaxCrossEntropy'];
    if (!head) throw new Error(`head ${header.head}: this program has ${Object.keys(HEADS).join(', ')}`);
    const wrt = [...inputs(layer, arrays, states, variable), variable('V'), variable('c')];
    const [, , , x, ...rest] = wrt;
    const s = rest.slice(0, states.length);
    const [V, c] = rest.slice(states.length);
    const [B, T] = x.shape;
    const [K, H] = V.shape;
    const labels = tf.oneHot(tf.reshape(tensor(arrays.targets), [B * T]), K);
    const { value, grads } = tf.variableGrads(() => {
      const [h] = run(layer, lstm, x, s, false);
      const logits = tf.add(tf.matMul(tf.reshape(h, [B * T, H]), V, false, true), c);
      return head(labels, logits);
    }, wrt);
    return [['value', [], value.dataSync()], ...listed([...WEIGHTS, 'x', ...states, 'V', 'c'],
                                                      wrt.map((v) => grads[v.name]))];
  },
};

async function main() {
  await tf.setBackend('cpu');
  for (;;) {
    let frame;
    try {
      frame = await readFrame();
    } catch (error) {
      process.stderr.write(`malformed frame: ${error.message}\n`);
      process.exit(3);
    }
    if (frame === null) break;
    const { header, arrays } = frame;
    if (header.type === 'hello') {
      writeFrame({ type: 'hello', protocol: 1, name: `TensorFlow.js ${tf.version.tfjs}`,
                   tfjs: tf.version.tfjs, backend: tf.getBackend() });
    } else if (header.type === 'bye') {
      break;
    } else if (header.type === 'call') {
      let answer;
      try {
        answer = compute(header, arrays);
      } catch (error) {
        writeFrame({ type: 'error', message: `${error.name}: ${error.message}` });
        continue;
      }
      writeFrame({ type: 'result' }, answer);
    } else {
      writeFrame({ type: 'error', message: `unknown frame type ${JSON.stringify(header.type)}` });
    }
  }
  process.stdout.end();
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
