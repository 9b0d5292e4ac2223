// jaxvae explore: the test set's posterior means as a scatter; the mean of p(x|z) at the latent point
// under the pointer. The decoder runs here when /model.json carries its weights, else on the server.
// A run conditioned on the labels decodes under the class chosen in the selector, p(x|z, y), and draws
// that class's prior p(z|y) over the scatter.
"use strict";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
  "#17becf"];
const PLOT = { size: 520, left: 46, right: 12, top: 12, bottom: 40 };
const PICK_RADIUS = 8; // CSS pixels within which a click selects a point

const sigmoid = (x) => 1 / (1 + Math.exp(-x));
// The same functions as jaxvae.builder.ACTIVATIONS (jax.nn.gelu is its tanh approximation by default).
const ACTIVATIONS = {
  tanh: Math.tanh,
  relu: (x) => (x > 0 ? x : 0),
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
  gelu: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
  softplus: (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
  sigmoid,
  silu: (x) => x * sigmoid(x),
};
// The mean of each likelihood from the decoder's output, as in jaxvae.distributions.
const MEANS = {
  bernoulli: sigmoid,
  "continuous-bernoulli": (l) => (Math.abs(l) < 1e-2 ? 0.5 + l / 12 : sigmoid(l) / Math.tanh(l / 2) - 1 / l),
  gaussian: (m) => m,
};

function base64Bytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

const float32s = (text) => new Float32Array(base64Bytes(text).buffer);

// (z (k numbers), class y or null) -> mean of p(x|z) or p(x|z, y) (d numbers), by the exported MLP: weight
// (out, in) row-major; a conditional decoder's first layer adds column y of its condition weights (out, m).
function browserDecoder(spec, likelihood) {
  const layers = spec.layers.map((l) => ({ n: l.in, m: l.out, w: float32s(l.weight), b: float32s(l.bias) }));
  const condition = spec.condition ? float32s(spec.condition) : null;
  const act = ACTIVATIONS[spec.activation];
  const mean = MEANS[likelihood];
  return (z, y = null) => {
    let h = Float64Array.from(z);
    layers.forEach((layer, index) => {
      const f = index < layers.length - 1 ? act : mean;
      const out = new Float64Array(layer.m);
      for (let o = 0; o < layer.m; o++) {
        let s = layer.b[o] + (index === 0 && condition ? condition[o * spec.condition_dim + y] : 0);
        const row = o * layer.n;
        for (let j = 0; j < layer.n; j++) s += layer.w[row + j] * h[j];
        out[o] = f(s);
      }
      h = out;
    });
    return h;
  };
}

async function serverDecode(z, y = null) {
  const response = await fetch("decode?z=" + Array.from(z).join(",") + (y === null ? "" : `&y=${y}`));
  if (!response.ok) throw new Error(`decode: ${response.status} ${await response.text()}`);
  return (await response.json()).mean;
}

const $ = (id) => document.getElementById(id);

// Draw one example's values (H * W * C, row-major, in [0, 1] after clipping) on an image canvas.
function drawImage(canvas, values, [h, w, c]) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    for (let ch = 0; ch < 3; ch++) {
      const v = values[p * c + (c === 3 ? ch : 0)];
      image.data[4 * p + ch] = Math.round(Math.min(Math.max(v, 0), 1) * 255);
    }
    image.data[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

function sizeImage(canvas, [h, w], cssWidth) {
  canvas.width = w;
  canvas.height = h;
  const scale = cssWidth / Math.max(h, w);
  canvas.style.width = `${w * scale}px`;
  canvas.style.height = `${Math.max(h * scale, 16)}px`;
}

async function main() {
  const response = await fetch("model.json");
  if (!response.ok) throw new Error(`model.json: ${response.status}`);
  const model = await response.json();
  const k = model.latent_dim;
  const shape = model.shape;
  const d = shape[0] * shape[1] * shape[2];
  const pts = model.points;
  const pixels = base64Bytes(pts.pixels);
  const decodeNow = model.decoder ? browserDecoder(model.decoder, model.likelihood) : null;
  const decode = decodeNow ? async (z, y) => decodeNow(z, y) : serverDecode;
  const condition = model.condition; // null for a model of p(x)

  // label: the class the pointer's z is decoded under (a conditional run), the first example's at the start
  const state = {
    z: Float64Array.from(pts.mean[0]),
    dims: [0, k > 1 ? 1 : null],
    selected: null,
    label: condition ? pts.label[0] : null,
  };
  const where = model.decoder ? "decoded in this browser" : "decoded by the server";
  $("info").textContent = `${model.run}: ${model.dataset}, latent dimension ${k}, ${model.likelihood} decoder, ` +
    `${pts.n} test examples; ${where}` + (condition ? "; conditioned on the label: choose the class" : "");

  // The latent coordinate of example i along the vertical axis: a fixed jitter when k = 1.
  const yValue = (i) => (state.dims[1] === null ? ((i * 0.618034) % 1) * 2 - 1 : pts.mean[i][state.dims[1]]);
  const span = (values) => {
    const lo = Math.min(-3, ...values);
    const hi = Math.max(3, ...values);
    const pad = 0.05 * (hi - lo);
    return [lo - pad, hi + pad];
  };
  const ranges = Array.from({ length: k }, (_, j) => span(pts.mean.map((m) => m[j])));
  const xRange = () => ranges[state.dims[0]];
  const yRange = () => (state.dims[1] === null ? [-1.5, 1.5] : ranges[state.dims[1]]);
  const inner = PLOT.size - PLOT.left - PLOT.right;
  const innerH = PLOT.size - PLOT.top - PLOT.bottom;
  const toPx = (zx, zy) => {
    const [x0, x1] = xRange();
    const [y0, y1] = yRange();
    return [PLOT.left + ((zx - x0) / (x1 - x0)) * inner, PLOT.top + ((y1 - zy) / (y1 - y0)) * innerH];
  };
  const fromPx = (px, py) => {
    const [x0, x1] = xRange();
    const [y0, y1] = yRange();
    return [x0 + ((px - PLOT.left) / inner) * (x1 - x0), y1 - ((py - PLOT.top) / innerH) * (y1 - y0)];
  };
  // an image folder's labels are named by its class subfolders; other labels are their numbers
  const labelName = (label) => (pts.classes ? pts.classes[label] : String(label));
  const colour = (i) => (pts.label ? TAB10[((pts.label[i] % 10) + 10) % 10] : TAB10[0]);

  const scatter = $("scatter");
  const dpr = window.devicePixelRatio || 1;
  scatter.width = scatter.height = PLOT.size * dpr;
  scatter.style.width = scatter.style.height = `${PLOT.size}px`;
  const background = document.createElement("canvas");
  background.width = background.height = PLOT.size * dpr;

  function drawBackground() {
    const ctx = background.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, PLOT.size, PLOT.size);
    ctx.strokeStyle = "#999";
    ctx.fillStyle = "#333";
    ctx.font = "12px system-ui, sans-serif";
    ctx.strokeRect(PLOT.left, PLOT.top, inner, innerH);
    ctx.textAlign = "center";
    for (let t = Math.ceil(xRange()[0]); t <= xRange()[1]; t++) {
      const [px] = toPx(t, 0);
      ctx.fillText(String(t), px, PLOT.top + innerH + 15);
      ctx.beginPath();
      ctx.moveTo(px, PLOT.top + innerH);
      ctx.lineTo(px, PLOT.top + innerH + 4);
      ctx.stroke();
    }
    ctx.fillText(`z${state.dims[0] + 1}`, PLOT.left + inner / 2, PLOT.size - 6);
    ctx.textAlign = "right";
    if (state.dims[1] !== null) {
      for (let t = Math.ceil(yRange()[0]); t <= yRange()[1]; t++) {
        const [, py] = toPx(0, t);
        ctx.fillText(String(t), PLOT.left - 7, py + 4);
        ctx.beginPath();
        ctx.moveTo(PLOT.left - 4, py);
        ctx.lineTo(PLOT.left, py);
        ctx.stroke();
      }
    }
    ctx.save();
    ctx.translate(13, PLOT.top + innerH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(state.dims[1] === null ? "jitter (no meaning)" : `z${state.dims[1] + 1}`, 0, 0);
    ctx.restore();
    ctx.globalAlpha = 0.75;
    for (let i = 0; i < pts.n; i++) {
      const [px, py] = toPx(pts.mean[i][state.dims[0]], yValue(i));
      ctx.fillStyle = colour(i);
      ctx.beginPath();
      ctx.arc(px, py, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
  }

  // The chosen class's prior p(z|y) (a conditional run's, where Gaussian): dashed ellipses at 1 and 2 sd.
  function drawPrior(ctx) {
    if (!condition || !condition.prior) return;
    const [dx, dy] = state.dims;
    const mean = condition.prior.mean[state.label];
    const std = condition.prior.std[state.label];
    const [cx, cy] = toPx(mean[dx], dy === null ? 0 : mean[dy]);
    ctx.strokeStyle = TAB10[state.label % 10];
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 4]);
    for (const sds of [1, 2]) {
      const rx = toPx(mean[dx] + sds * std[dx], 0)[0] - cx;
      const ry = dy === null ? 0 : toPx(0, mean[dy] - sds * std[dy])[1] - cy;
      ctx.beginPath();
      ctx.ellipse(cx, cy, Math.max(rx, 0.5), Math.max(ry, 0.5), 0, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  // The scatter, the chosen class's prior, the selected example's posterior ellipse (mean +- std) and a
  // crosshair at z.
  function drawOverlay() {
    const ctx = scatter.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(background, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawPrior(ctx);
    const i = state.selected;
    if (i !== null) {
      const [dx, dy] = state.dims;
      const [cx, cy] = toPx(pts.mean[i][dx], yValue(i));
      const [ex] = toPx(pts.mean[i][dx] + pts.std[i][dx], 0);
      const ry = dy === null ? 0 : toPx(0, yValue(i) - pts.std[i][dy])[1] - cy;
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.ellipse(cx, cy, Math.max(ex - cx, 0.5), Math.max(ry, 0.5), 0, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(cx, cy, 4, 0, 2 * Math.PI);
      ctx.stroke();
    }
    const [px, py] = toPx(state.z[state.dims[0]], state.dims[1] === null ? 0 : state.z[state.dims[1]]);
    ctx.strokeStyle = "#d00";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(px - 7, py);
    ctx.lineTo(px + 7, py);
    ctx.moveTo(px, py - 7);
    ctx.lineTo(px, py + 7);
    ctx.stroke();
  }

  sizeImage($("decoded"), shape, 224);
  sizeImage($("original"), shape, 104);
  sizeImage($("reconstruction"), shape, 104);

  // At most one decode in flight; pointer moves meanwhile only update z, and the latest z is drawn next.
  let drawing = null;
  let queued = false;
  function update() {
    drawOverlay();
    if (drawing) {
      queued = true;
      return drawing;
    }
    drawing = (async () => {
      try {
        do {
          queued = false;
          const z = Array.from(state.z);
          const y = state.label;
          drawImage($("decoded"), await decode(z, y), shape);
          const given = y === null ? "" : `, y = ${labelName(y)}`;
          $("decoded-caption").textContent =
            `mean of p(x|z${y === null ? "" : ", y"}) at z = (${z.map((v) => v.toFixed(2)).join(", ")})${given}`;
        } while (queued);
      } finally {
        drawing = null;
      }
    })();
    return drawing;
  }

  const sliders = [];
  if (k > 2) {
    for (let j = 0; j < k; j++) {
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"), { type: "range", step: "0.01" });
      [input.min, input.max] = ranges[j].map((v) => v.toFixed(2));
      const output = document.createElement("output");
      label.append(`z${j + 1}`, input, output);
      $("sliders").append(label);
      input.addEventListener("input", () => {
        state.z[j] = Number(input.value);
        output.textContent = state.z[j].toFixed(2);
        update();
      });
      sliders.push({ input, output });
    }
    const dimX = $("dim-x");
    const dimY = $("dim-y");
    for (let j = 0; j < k; j++) {
      dimX.add(new Option(`z${j + 1}`, j));
      dimY.add(new Option(`z${j + 1}`, j));
    }
    dimX.value = 0;
    dimY.value = 1;
    const changeDims = () => {
      state.dims = [Number(dimX.value), Number(dimY.value)];
      drawBackground();
      drawOverlay();
    };
    dimX.addEventListener("change", changeDims);
    dimY.addEventListener("change", changeDims);
    $("dims").hidden = false;
  }
  const showSliders = () =>
    sliders.forEach(({ input, output }, j) => {
      input.value = state.z[j];
      output.textContent = state.z[j].toFixed(2);
    });

  async function select(i) {
    state.selected = i;
    state.z = Float64Array.from(pts.mean[i]);
    showSliders();
    drawImage($("original"), Array.from(pixels.subarray(i * d, (i + 1) * d), (v) => v / 255), shape);
    const fmt = (values) => values.map((v) => v.toFixed(2)).join(", ");
    const label = pts.label ? `, label ${labelName(pts.label[i])}` : "";
    $("selection-info").textContent =
      `test example ${i}${label}: posterior mean (${fmt(pts.mean[i])}), std (${fmt(pts.std[i])})`;
    const [recon] = await Promise.all([decode(pts.mean[i], condition ? pts.label[i] : null), update()]);
    if (state.selected !== i) return; // a later click won
    drawImage($("reconstruction"), recon, shape);
    $("selected").dataset.example = i;
  }

  scatter.addEventListener("pointermove", (event) => {
    const [zx, zy] = fromPx(event.offsetX, event.offsetY);
    state.z[state.dims[0]] = zx;
    if (state.dims[1] !== null) state.z[state.dims[1]] = zy;
    showSliders();
    update();
  });
  scatter.addEventListener("click", (event) => {
    let best = null;
    let bestDistance = PICK_RADIUS;
    for (let i = 0; i < pts.n; i++) {
      const [px, py] = toPx(pts.mean[i][state.dims[0]], yValue(i));
      const distance = Math.hypot(px - event.offsetX, py - event.offsetY);
      if (distance <= bestDistance) [best, bestDistance] = [i, distance];
    }
    if (best !== null) select(best).catch(fail);
  });

  if (pts.label) {
    for (const label of [...new Set(pts.label)].sort((a, b) => a - b)) {
      const item = document.createElement("span");
      item.style.setProperty("--c", TAB10[((label % 10) + 10) % 10]);
      item.textContent = labelName(label);
      $("legend").append(item);
    }
  }

  if (condition) {
    const choice = $("class");
    for (let y = 0; y < condition.classes; y++) choice.add(new Option(labelName(y), y));
    choice.value = state.label;
    choice.addEventListener("change", () => {
      state.label = Number(choice.value);
      update();
    });
    $("class-select").hidden = false;
  }

  drawBackground();
  showSliders();
  await update();
  $("status").textContent = model.decoder
    ? "the decoder runs in this page: every pointer move is decoded locally"
    : "this decoder runs on the server: every pointer move asks /decode";
  document.body.dataset.ready = "1";

  // For tests and the curious: the model, the state, and the functions that drive the page.
  window.jaxvaeExplore = {
    model,
    state,
    decode,
    browserDecoder,
    idle: () => drawing || Promise.resolve(), // settles once the latest z is drawn
    show: (z) => {
      state.z = Float64Array.from(z);
      showSliders();
      return update();
    },
    pointOnScreen: (i) => {
      const [px, py] = toPx(pts.mean[i][state.dims[0]], yValue(i));
      const box = scatter.getBoundingClientRect();
      return { x: box.left + scatter.clientLeft + px, y: box.top + scatter.clientTop + py };
    },
  };
}

function fail(error) {
  $("status").textContent = `error: ${error.message}`;
  $("status").className = "error";
  throw error;
}

main().catch(fail);
