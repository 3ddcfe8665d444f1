/* The run report's viewer; sfm_reweight/report.py writes the data it reads from #report-data.
   WebGL 1: all points in one gl.POINTS draw from typed arrays decoded from base64, the cameras as
   gl.LINES frusta; the eye orbits a target around the scene's up direction (turn, pan, zoom);
   clicks are picked on the CPU by projecting the camera centres and the points. It draws on demand
   (after input), or every frame while turning; while the view moves it draws the first
   MOTION_POINTS points only (stored in a random order: a uniform sample), all once it settles. window.reportScene says what is drawn and
   window.reportViewer turns, selects and measures (the tests and the benchmark use them). */
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const started = performance.now();
  const COLORS = { map: [0.93, 0.27, 0.2], query: [0.2, 0.85, 0.35], truth: [0.3, 0.55, 1.0], selected: [1, 0.85, 0.1] };
  const LABEL_LIMIT = 60; // names are drawn for at most this many cameras (the selected one always)
  const PICK_CAMERA_PX = 12;
  const PICK_POINT_PX = 6;
  const FOV = (50 * Math.PI) / 180;
  const TURN_RAD_PER_S = 0.4;
  const MOTION_POINTS = 100000; // about 16 frames a second where WebGL runs on 2 CPU cores (docs/report.md)
  const SETTLE_MS = 200; // after the last input: everything drawn again

  // ---- the data: base64 of little-endian arrays (report.scene_json)
  function decode(text, Type) {
    let bytes;
    if (typeof Uint8Array.fromBase64 === "function") {
      bytes = Uint8Array.fromBase64(text);
    } else {
      const chars = atob(text);
      bytes = new Uint8Array(chars.length);
      for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
    }
    return new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);
  }
  const numPoints = data.points.count;
  const xyz = decode(data.points.xyz, Float32Array);
  const rgb = decode(data.points.rgb, Uint8Array);
  const offsets = decode(data.observations.offsets, Uint32Array);
  const obsPoint = decode(data.observations.point, Uint32Array);
  const obsUv = decode(data.observations.uv, Uint16Array);
  const views = data.views;
  const frame = data.frame;
  const decodeMs = performance.now() - started;

  // ---- small vector and column-major 4x4 matrix helpers
  const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const normalize = (a) => scale(a, 1 / (Math.hypot(a[0], a[1], a[2]) || 1));
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  function perspective(fovy, aspect, near, far) {
    const f = 1 / Math.tan(fovy / 2);
    const nf = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
  }
  function lookAt(eye, target, up) {
    const z = normalize(sub(eye, target));
    const x = normalize(cross(up, z));
    const y = cross(z, x);
    return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0, -dot(x, eye), -dot(y, eye), -dot(z, eye), 1];
  }
  function multiply(a, b) {
    const out = new Array(16).fill(0);
    for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) for (let k = 0; k < 4; k++) out[c * 4 + r] += a[k * 4 + r] * b[c * 4 + k];
    return out;
  }

  // ---- page text: title, headline, notes, figures, pictures
  const $ = (id) => document.getElementById(id);
  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }
  $("title").textContent = data.title;
  data.headline.forEach((line) => $("headline").appendChild(element("p", line)));
  data.notes.forEach((note) => $("notes").appendChild(element("li", note)));

  const humanize = (key) => (/^[a-z][a-z0-9_]*$/.test(key) ? key.replace(/_/g, " ") : String(key)); // not image names
  function formatNumber(value) {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  }
  function cell(value, depth) {
    if (value === null || value === undefined) return element("span", "-", "muted");
    if (typeof value === "number") return element("span", formatNumber(value));
    if (typeof value !== "object") return element("span", String(value));
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    if (!entries.length) return element("span", "none", "muted");
    if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) {
      const shown = value.slice(0, 30).map((v) => (typeof v === "number" ? formatNumber(v) : String(v)));
      return element("span", shown.join(", ") + (value.length > 30 ? `, ... (${value.length} in all)` : ""));
    }
    const table = element("table");
    for (const [key, item] of entries) {
      const row = table.insertRow();
      row.appendChild(element("th", Array.isArray(value) ? String(key + 1) : humanize(key)));
      row.insertCell().appendChild(depth < 4 ? cell(item, depth + 1) : element("span", JSON.stringify(item)));
    }
    if (depth === 0 || entries.length <= 12) return table;
    const details = element("details");
    details.appendChild(element("summary", `${entries.length} ${Array.isArray(value) ? "rows" : "entries"}`));
    details.appendChild(table);
    return details;
  }
  $("figures").appendChild(cell(data.figures, 0));
  if (!data.pictures.length) $("pictures-section").hidden = true;
  for (const picture of data.pictures) {
    const figure = element("figure");
    const image = element("img");
    image.src = "data:image/jpeg;base64," + picture.jpeg;
    image.alt = picture.name;
    figure.appendChild(image);
    figure.appendChild(element("figcaption", `${picture.name}: ${picture.caption}`));
    $("pictures").appendChild(figure);
  }
  const legend = [
    ["map", `cameras (${data.scene.cameras})`],
    ["query", data.scene.queries ? `localized queries (${data.scene.queries})` : null],
    ["truth", data.scene.truth ? `ground truth (${data.scene.truth})` : null],
  ];
  for (const [kind, label] of legend.filter(([, label]) => label)) {
    const swatch = element("span");
    swatch.style.background = `rgb(${COLORS[kind].map((c) => Math.round(255 * c)).join(",")})`;
    $("legend").appendChild(swatch);
    $("legend").appendChild(document.createTextNode(label));
  }
  const shownText = numPoints < data.scene.modelPoints ? `${numPoints} of ${data.scene.modelPoints}` : `${numPoints}`;
  $("legend").appendChild(document.createTextNode(` · ${shownText} points`));

  // ---- the scene
  const scene = { ...data.scene, points: numPoints, webgl: false };
  window.reportScene = scene;
  const canvas = $("gl");
  const labels = $("labels");
  const gl = canvas.getContext("webgl", { antialias: false }); // multisampling would halve the frames on a CPU
  if (!gl) {
    $("message").hidden = false;
    $("message").textContent = "This browser gives no WebGL: the 3D view is off (figures and pictures below).";
    window.reportTimings = { decodeMs, readyMs: performance.now() };
    document.body.dataset.ready = "true";
    return;
  }
  scene.webgl = true;

  function shader(type, source) {
    const s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  const program = gl.createProgram();
  gl.attachShader(
    program,
    shader(
      gl.VERTEX_SHADER,
      `attribute vec3 position; attribute vec3 color; uniform mat4 mvp; uniform float size; varying vec3 vColor;
       void main() { gl_Position = mvp * vec4(position, 1.0); gl_PointSize = size; vColor = color; }`
    )
  );
  gl.attachShader(
    program,
    shader(gl.FRAGMENT_SHADER, "precision mediump float; varying vec3 vColor; void main() { gl_FragColor = vec4(vColor, 1.0); }")
  );
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  const loc = {
    position: gl.getAttribLocation(program, "position"),
    color: gl.getAttribLocation(program, "color"),
    mvp: gl.getUniformLocation(program, "mvp"),
    size: gl.getUniformLocation(program, "size"),
  };
  function buffer(array) {
    const b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, array, gl.STATIC_DRAW);
    return b;
  }
  const pointPositions = buffer(xyz);
  const pointColors = buffer(rgb);

  // frusta: a fraction of the cameras' typical spacing (median nearest neighbour, up to 500 of them)
  const centres = views.map((v) => v.c);
  function frustumDepth() {
    const sample = centres.filter((_, i) => i % Math.ceil(centres.length / 500) === 0);
    const nearest = sample
      .map((a) => Math.min(...centres.filter((b) => b !== a).map((b) => Math.hypot(...sub(a, b)))))
      .filter((d) => d > 0 && Number.isFinite(d))
      .sort((a, b) => a - b);
    const typical = nearest.length ? 0.6 * nearest[nearest.length >> 1] : Infinity;
    return Math.min(typical, 0.08 * frame.radius);
  }
  const depth = frustumDepth();
  function frustumLines(camera, size) {
    const R = camera.R;
    const corners = [0, 1, 2, 3].map((k) => {
      const v = [camera.rays[2 * k], camera.rays[2 * k + 1], 1];
      const world = [R[0] * v[0] + R[1] * v[1] + R[2], R[3] * v[0] + R[4] * v[1] + R[5], R[6] * v[0] + R[7] * v[1] + R[8]];
      return add(camera.c, scale(world, size));
    });
    return corners.flatMap((corner, k) => [camera.c, corner, corner, corners[(k + 1) % 4]]);
  }
  const cameraCorners = views.map((view) => frustumLines(view, depth));
  const truthCorners = data.truth.map((camera) => frustumLines(camera, 1.25 * depth)); // larger: both show where they agree
  const numViewVertices = 16 * views.length;
  const linePositions = buffer(new Float32Array([...cameraCorners, ...truthCorners].flat(2)));
  const lineColors = gl.createBuffer();
  const highlight = gl.createBuffer();
  let numHighlight = 0;
  let highlightGrowth = 0; // px added to the point size: none for a camera's points (recoloured), some for a chosen point

  const state = { orbit: null, selected: null, spinning: false, moving: false, everyPoint: false, frames: 0, pointSize: 0 };
  state.pointSize = numPoints > 200000 ? 1.5 : numPoints > 20000 ? 2 : 3;
  $("size").value = state.pointSize;
  const up = normalize(frame.up);
  const e1 = normalize(cross(up, Math.abs(up[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0]));
  const e2 = cross(up, e1);
  function home() {
    const back = frame.back;
    const azimuth = Math.atan2(dot(back, e2), dot(back, e1)) || 0;
    const elevation = clamp(Math.asin(clamp(dot(back, up), -1, 1)) + 0.45, -1.5, 1.5);
    return { target: [0, 0, 0], distance: (0.9 * frame.radius) / Math.sin(FOV / 2), azimuth, elevation };
  }
  state.orbit = home();
  function eye() {
    const { azimuth, elevation, distance, target } = state.orbit;
    const horizontal = add(scale(e1, Math.cos(azimuth)), scale(e2, Math.sin(azimuth)));
    return add(target, scale(add(scale(horizontal, Math.cos(elevation)), scale(up, Math.sin(elevation))), distance));
  }

  function updateLineColors() {
    const colors = [];
    views.forEach((view, i) => {
      const color = state.selected && state.selected.view === i ? COLORS.selected : COLORS[view.kind];
      for (let k = 0; k < 16; k++) colors.push(...color);
    });
    data.truth.forEach(() => {
      for (let k = 0; k < 16; k++) colors.push(...COLORS.truth);
    });
    gl.bindBuffer(gl.ARRAY_BUFFER, lineColors);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(colors), gl.STATIC_DRAW);
  }
  function setHighlight(indices, growth) {
    highlightGrowth = growth;
    const positions = new Float32Array(3 * indices.length);
    indices.forEach((p, k) => positions.set(xyz.subarray(3 * p, 3 * p + 3), 3 * k));
    gl.bindBuffer(gl.ARRAY_BUFFER, highlight);
    gl.bufferData(gl.ARRAY_BUFFER, positions, gl.STATIC_DRAW);
    numHighlight = indices.length;
  }
  updateLineColors();

  let mvp = null;
  function resize() {
    const dpr = window.devicePixelRatio || 1;
    for (const c of [canvas, labels]) {
      const w = Math.max(1, Math.round(c.clientWidth * dpr));
      const h = Math.max(1, Math.round(c.clientHeight * dpr));
      if (c.width !== w || c.height !== h) [c.width, c.height] = [w, h];
    }
  }
  function attribute(location, buf, size, type, normalized) {
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.enableVertexAttribArray(location);
    gl.vertexAttribPointer(location, size, type, normalized, 0, 0);
  }
  function draw() {
    resize();
    const dpr = window.devicePixelRatio || 1;
    const distance = state.orbit.distance;
    const projection = perspective(FOV, canvas.width / canvas.height, 0.01 * distance, 4 * (distance + frame.radius));
    mvp = multiply(projection, lookAt(eye(), state.orbit.target, up));
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.08, 0.09, 0.1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.depthFunc(gl.LEQUAL); // a highlighted point lies at its own depth: it must still win
    gl.useProgram(program);
    gl.uniformMatrix4fv(loc.mvp, false, new Float32Array(mvp));
    gl.uniform1f(loc.size, state.pointSize * dpr);
    attribute(loc.position, pointPositions, 3, gl.FLOAT, false);
    attribute(loc.color, pointColors, 3, gl.UNSIGNED_BYTE, true);
    const sampled = (state.spinning || state.moving) && !state.everyPoint;
    gl.drawArrays(gl.POINTS, 0, sampled ? Math.min(numPoints, MOTION_POINTS) : numPoints);
    attribute(loc.position, linePositions, 3, gl.FLOAT, false);
    attribute(loc.color, lineColors, 3, gl.FLOAT, false);
    gl.drawArrays(gl.LINES, 0, $("truth").checked ? numViewVertices + 16 * data.truth.length : numViewVertices);
    if (numHighlight) {
      attribute(loc.position, highlight, 3, gl.FLOAT, false);
      gl.disableVertexAttribArray(loc.color);
      gl.vertexAttrib3f(loc.color, ...COLORS.selected);
      gl.uniform1f(loc.size, (state.pointSize + highlightGrowth) * dpr);
      gl.drawArrays(gl.POINTS, 0, numHighlight);
    }
    drawLabels();
    state.frames++;
  }
  function project(p) {
    const m = mvp;
    const w = m[3] * p[0] + m[7] * p[1] + m[11] * p[2] + m[15];
    if (w <= 0) return null;
    const x = (m[0] * p[0] + m[4] * p[1] + m[8] * p[2] + m[12]) / w;
    const y = (m[1] * p[0] + m[5] * p[1] + m[9] * p[2] + m[13]) / w;
    return [((x + 1) / 2) * canvas.clientWidth, ((1 - y) / 2) * canvas.clientHeight, w];
  }
  function drawLabels() {
    const dpr = window.devicePixelRatio || 1;
    const ctx = labels.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, labels.clientWidth, labels.clientHeight);
    ctx.font = "12px system-ui, sans-serif";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.8)";
    ctx.fillStyle = "#f1f4f6";
    views.forEach((view, i) => {
      const chosen = state.selected && state.selected.view === i;
      if (!chosen && (!$("names").checked || views.length > LABEL_LIMIT)) return;
      const at = project(view.c);
      if (!at) return;
      ctx.strokeText(view.name, at[0] + 5, at[1] - 5);
      ctx.fillText(view.name, at[0] + 5, at[1] - 5);
    });
  }

  let pending = false;
  let lastTime = null;
  function requestDraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame((time) => {
      pending = false;
      if (state.spinning) {
        if (lastTime !== null) state.orbit.azimuth += (TURN_RAD_PER_S * (time - lastTime)) / 1000;
        lastTime = time;
        requestDraw();
      }
      draw();
    });
  }
  let settle = null;
  function moved() {
    state.moving = true;
    clearTimeout(settle);
    settle = setTimeout(() => {
      state.moving = false;
      requestDraw();
    }, SETTLE_MS);
    requestDraw();
  }
  function setSpin(on) {
    state.spinning = on;
    lastTime = null;
    $("spin").setAttribute("aria-pressed", String(on));
    requestDraw();
  }

  // ---- the side panel
  const panel = $("panel");
  function viewOfObservation(k) {
    let lo = 0;
    let hi = views.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offsets[mid] <= k) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
  function showView(i) {
    const view = views[i];
    panel.replaceChildren(element("h3", view.name));
    panel.appendChild(element("p", view.kind === "query" ? "a localized query" : "a camera of the model", "muted"));
    const [w, h] = view.size;
    const width = Math.min(480, w);
    const photo = element("div");
    photo.id = "photo";
    const board = element("canvas");
    [board.width, board.height] = [width, Math.round((width * h) / w)];
    photo.appendChild(board);
    panel.appendChild(photo);
    const from = offsets[i];
    const to = offsets[i + 1];
    const drawKeypoints = (image) => {
      const ctx = board.getContext("2d");
      ctx.fillStyle = "#30343a";
      ctx.fillRect(0, 0, board.width, board.height);
      if (image) ctx.drawImage(image, 0, 0, board.width, board.height);
      ctx.fillStyle = view.kind === "query" ? "#44ff77" : "#39f";
      for (let k = from; k < to; k++) {
        ctx.fillRect((obsUv[2 * k] / 65535) * board.width - 1, (obsUv[2 * k + 1] / 65535) * board.height - 1, 2.5, 2.5);
      }
    };
    if (view.photo) {
      const image = new Image();
      image.onload = () => drawKeypoints(image);
      image.src = "data:image/jpeg;base64," + view.photo;
    } else {
      drawKeypoints(null);
    }
    const table = element("table");
    const rows = [...view.figures, ["keypoints drawn", `${to - from} (${view.kind === "query" ? "inliers" : "observations"} of the points shown)`]];
    if (!view.photo) rows.push(["photo", "not in the report"]);
    for (const [label, text] of rows) {
      const row = table.insertRow();
      row.appendChild(element("th", label));
      row.insertCell().textContent = text;
    }
    panel.appendChild(table);
  }
  function showPoint(p) {
    const seenBy = [];
    for (let k = 0; k < obsPoint.length; k++) if (obsPoint[k] === p) seenBy.push(viewOfObservation(k));
    panel.replaceChildren(element("h3", "a 3D point"));
    const table = element("table");
    const position = [0, 1, 2].map((a) => formatNumber(frame.origin[a] + xyz[3 * p + a])).join(", ");
    const color = `rgb(${rgb[3 * p]}, ${rgb[3 * p + 1]}, ${rgb[3 * p + 2]})`;
    for (const [label, text] of [["position", position], ["colour", color], ["seen in", `${seenBy.length} photos`]]) {
      const row = table.insertRow();
      row.appendChild(element("th", label));
      row.insertCell().textContent = text;
    }
    panel.appendChild(table);
    const list = element("ul");
    for (const i of [...new Set(seenBy)]) {
      const link = element("button", views[i].name, "link");
      link.addEventListener("click", () => select({ view: i }));
      list.appendChild(element("li")).appendChild(link);
    }
    panel.appendChild(list);
  }
  function select(what) {
    state.selected = what;
    if (what && what.view !== undefined) {
      setHighlight(Array.from(obsPoint.subarray(offsets[what.view], offsets[what.view + 1])), 0);
      showView(what.view);
    } else if (what) {
      setHighlight([what.point], 6);
      showPoint(what.point);
    } else {
      setHighlight([], 0);
    }
    updateLineColors();
    requestDraw();
  }
  function pick(x, y) {
    let best = null;
    let bestDistance = PICK_CAMERA_PX;
    views.forEach((view, i) => {
      const at = project(view.c);
      const d = at && Math.hypot(at[0] - x, at[1] - y);
      if (at && d < bestDistance) [best, bestDistance] = [{ view: i }, d];
    });
    if (best) return best;
    const m = mvp;
    const [w, h] = [canvas.clientWidth, canvas.clientHeight];
    let bestDepth = Infinity;
    for (let p = 0; p < numPoints; p++) {
      const px = xyz[3 * p];
      const py = xyz[3 * p + 1];
      const pz = xyz[3 * p + 2];
      const cw = m[3] * px + m[7] * py + m[11] * pz + m[15];
      if (cw <= 0 || cw >= bestDepth) continue;
      const sx = (((m[0] * px + m[4] * py + m[8] * pz + m[12]) / cw + 1) / 2) * w;
      const sy = ((1 - (m[1] * px + m[5] * py + m[9] * pz + m[13]) / cw) / 2) * h;
      if (Math.abs(sx - x) < PICK_POINT_PX && Math.abs(sy - y) < PICK_POINT_PX) [best, bestDepth] = [{ point: p }, cw];
    }
    return best;
  }

  // ---- input: drag turns (right or shift: pans), the wheel zooms, a click selects
  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    drag = { x: event.clientX, y: event.clientY, moved: 0, pan: event.button === 2 || event.shiftKey };
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    [drag.x, drag.y] = [event.clientX, event.clientY];
    drag.moved += Math.abs(dx) + Math.abs(dy);
    const orbit = state.orbit;
    if (drag.pan) {
      const forward = normalize(sub(orbit.target, eye()));
      const right = normalize(cross(forward, up));
      const cameraUp = cross(right, forward);
      const perPixel = (2 * orbit.distance * Math.tan(FOV / 2)) / canvas.clientHeight;
      orbit.target = add(orbit.target, add(scale(right, -dx * perPixel), scale(cameraUp, dy * perPixel)));
    } else {
      orbit.azimuth -= dx * 0.008;
      orbit.elevation = clamp(orbit.elevation + dy * 0.008, -1.55, 1.55);
    }
    moved();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (drag && drag.moved < 4) {
      const rect = canvas.getBoundingClientRect();
      select(pick(event.clientX - rect.left, event.clientY - rect.top));
    }
    drag = null;
  });
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      state.orbit.distance *= Math.exp(event.deltaY * 0.0012);
      moved();
    },
    { passive: false }
  );
  $("spin").addEventListener("click", () => setSpin(!state.spinning));
  $("reset").addEventListener("click", () => {
    state.orbit = home();
    requestDraw();
  });
  $("names").addEventListener("change", requestDraw);
  $("truth").addEventListener("change", requestDraw);
  $("size").addEventListener("input", () => {
    state.pointSize = Number($("size").value);
    requestDraw();
  });
  new ResizeObserver(requestDraw).observe(canvas);

  window.reportViewer = {
    spin: setSpin,
    select: (name) => {
      const view = views.findIndex((v) => v.name === name);
      if (view >= 0) select({ view });
      return view >= 0;
    },
    frames: () => state.frames,
    // frames drawn per second while turning, over `ms` milliseconds; `everyPoint`: no sample while it turns
    measure: (ms, everyPoint = false) =>
      new Promise((resolve) => {
        const [start, frames] = [performance.now(), state.frames];
        state.everyPoint = everyPoint;
        setSpin(true);
        setTimeout(() => {
          const seconds = (performance.now() - start) / 1000;
          state.everyPoint = false;
          setSpin(false);
          resolve({ frames: state.frames - frames, seconds, fps: (state.frames - frames) / seconds });
        }, ms);
      }),
  };
  draw();
  gl.finish();
  requestAnimationFrame(() => {
    window.reportTimings = { decodeMs, readyMs: performance.now() };
    document.body.dataset.ready = "true";
  });
})();
