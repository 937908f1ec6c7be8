// The page behind GET /: it talks to the service only through the public HTTP API.
// URLs are relative so the page also works when the service sits behind a path prefix.

const KEY_STORAGE = "vaegan.apiKey";
const STRENGTH_LIMIT = 3;

const $ = (id) => document.getElementById(id);

const state = {
  preprocessing: null, // from /model: how the service crops uploads
  imageSize: 64,
  channels: 3,
  face: null, // { latent, decoded }: the face being edited
  edited: null, // { latent, image }: what the "Edited" figure shows
  ends: { a: null, b: null }, // latents of the interpolation's two ends
};

// ---- talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, retryAfter = 0) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// Leads for the statuses a person can do something about; the service's detail follows.
const LEADS = {
  400: "That image could not be read.",
  413: "That file is too big.",
  415: "That file is not an image the model can read.",
  503: "The service is busy or still loading; try again in a moment.",
  504: "The service took too long to answer.",
};

function sentence(text) {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI's validation errors: [{loc: ["query", "n"], msg: "..."}, ...]
    return detail
      .map((problem) => {
        const where = (problem.loc || []).filter((part) => part !== "body" && part !== "query");
        return where.length ? `${where.join(".")}: ${problem.msg}` : problem.msg;
      })
      .join("; ");
  }
  return "";
}

function explain(status, detail) {
  const said = detailText(detail);
  const lead = LEADS[status];
  if (!said) return lead || `The service answered with HTTP status ${status}.`;
  return lead ? `${lead} ${sentence(said)}` : sentence(said);
}

async function readJson(response) {
  if (!(response.headers.get("content-type") || "").includes("application/json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// Sends the stored API key, and on 401 asks for one (once for all waiting requests) and retries.
async function api(path, { method = "GET", json, form } = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body });
    } catch {
      throw new ApiError(
        0,
        form
          ? "The upload did not reach the service: it may be offline, or the file may be " +
              "larger than it accepts."
          : "Could not reach the service; is it still running?",
      );
    }
    if (response.status === 401) {
      // Another request may have replaced the key meanwhile; only a refused key is dropped.
      if (key && sessionStorage.getItem(KEY_STORAGE) === key) {
        sessionStorage.removeItem(KEY_STORAGE);
      }
      await askForKey(Boolean(key));
      continue;
    }
    const data = await readJson(response);
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("retry-after")) || 0;
      const detail = data && data.detail;
      throw new ApiError(response.status, explain(response.status, detail), retryAfter);
    }
    if (data === null) {
      throw new ApiError(response.status, "The service answered with something other than JSON.");
    }
    return data;
  }
}

const png = (base64) => `data:image/png;base64,${base64}`;

// ---- the API key ----------------------------------------------------------------------------

let keyPrompt = null;

function askForKey(rejected) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("key-dialog");
  const input = $("key-input");
  $("key-reason").textContent = rejected
    ? "The service did not accept that API key. Check it and try again."
    : "This service asks for an API key before it answers.";
  input.value = "";
  keyPrompt = new Promise((resolve, reject) => {
    dialog.addEventListener(
      "close",
      () => {
        keyPrompt = null;
        const key = input.value.trim();
        input.value = "";
        if (dialog.returnValue === "ok" && key) {
          sessionStorage.setItem(KEY_STORAGE, key);
          showKeyButton();
          resolve();
          ensureModel(); // the model's facts and sliders, if a cancelled prompt stopped them
        } else {
          needsKey = true;
          showKeyButton();
          const hint = "Use \u201cEnter the API key\u201d at the top to give it.";
          reject(new ApiError(401, `This service needs an API key. ${hint}`));
        }
      },
      { once: true },
    );
  });
  dialog.returnValue = "";
  dialog.showModal();
  return keyPrompt;
}

let needsKey = false;

function showKeyButton() {
  const button = $("key-forget");
  const stored = sessionStorage.getItem(KEY_STORAGE) !== null;
  button.hidden = !stored && !needsKey;
  button.textContent = stored ? "Forget the API key" : "Enter the API key";
}

async function onKeyButton() {
  if (sessionStorage.getItem(KEY_STORAGE) !== null) {
    sessionStorage.removeItem(KEY_STORAGE);
    needsKey = true;
    showKeyButton();
    notice.say("The API key is forgotten; the page will ask again when the service needs it.");
    return;
  }
  try {
    await askForKey(false);
    notice.clear();
  } catch (error) {
    notice.error(error);
  }
}

// ---- messages and busy states ---------------------------------------------------------------

function messenger(id) {
  const element = $(id);
  return {
    say(text) {
      element.classList.remove("error");
      element.textContent = text;
    },
    error(error) {
      element.classList.add("error");
      if (error instanceof ApiError) {
        element.textContent = error.message;
      } else {
        element.textContent = `Something went wrong in the page: ${error.message}`;
        console.error(error);
      }
    },
    clear() {
      element.classList.remove("error");
      element.textContent = "";
    },
    // After a success: an old error no longer applies, but other news stays.
    clearError() {
      if (element.classList.contains("error")) this.clear();
    },
  };
}

const notice = messenger("notice");
const faceMessage = messenger("face-message");
const editMessage = messenger("edit-message");
const sampleMessage = messenger("sample-message");
const interpolateMessage = messenger("interpolate-message");

function busy(elements, on) {
  for (const element of elements) element.setAttribute("aria-busy", on ? "true" : "false");
}

// Runs `task` again after the current run when asked while it runs, so a dragged slider sends
// one request at a time and the last position always gets drawn.
function latestOnly(task) {
  let running = false;
  let again = false;
  return async function run() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await task();
      } while (again);
    } finally {
      running = false;
    }
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the model ------------------------------------------------------------------------------

let modelLoaded = false;
let modelLoading = null;

function ensureModel() {
  if (!modelLoaded && !modelLoading) {
    modelLoading = loadModel().finally(() => {
      modelLoading = null;
    });
  }
  return modelLoading;
}

async function loadModel() {
  for (;;) {
    try {
      const [info, attributes] = await Promise.all([api("model"), api("attributes")]);
      showModel(info);
      buildSliders(attributes.attributes || []);
      modelLoaded = true;
      notice.clear();
      return;
    } catch (error) {
      if (error.status === 503 && !/failed to load/.test(error.message)) {
        notice.say("The model is still loading; the page will be ready in a moment.");
        await sleep(Math.min(error.retryAfter || 2, 10) * 1000);
        continue;
      }
      notice.error(error);
      return;
    }
  }
}

const number = (value) => Number(value).toLocaleString("en");

function presetOf(info) {
  if (info.preset) return info.preset;
  const config = info.config || {};
  const size = `${config.image_size}\u00d7${config.image_size}`;
  return `custom: ${size} pixels, ${config.latent_dim}-dimensional latent`;
}

function datasetOf(dataset) {
  if (!dataset || !dataset.kind) return "not recorded";
  const images = dataset.images === undefined ? "" : `${number(dataset.images)} `;
  if (dataset.synthetic) {
    return `${images}synthetic faces (generator seed ${dataset.synthetic.seed})`;
  }
  if (dataset.kind === "celeba") return `${images}images in the CelebA layout`;
  if (dataset.kind === "image-folder") return `${images}images from a folder`;
  return `${images}${dataset.kind} images`;
}

function showModel(info) {
  const config = info.config || {};
  state.preprocessing = info.preprocessing || null;
  state.imageSize = config.image_size || 64;
  state.channels = config.channels || 3;
  const objective = info.objective || (info.recipe && info.recipe.objective);
  const file = String(info.path || "").split(/[\\/]/).pop();
  const facts = {
    preset: presetOf(info),
    dataset: datasetOf(info.dataset),
    step: `${number(info.step)} steps${objective ? ` (${objective})` : ""}`,
    device: info.dtype && info.dtype !== "float32" ? `${info.device} (${info.dtype})` : info.device,
    checkpoint: `${file} \u00b7 sha256 ${String(info.sha256 || "").slice(0, 12)}`,
  };
  for (const [name, text] of Object.entries(facts)) {
    document.querySelector(`[data-fact="${name}"]`).textContent = text;
  }
  document.querySelector('[data-fact="checkpoint"]').title = info.sha256 || "";
}

// ---- the face: upload, preview, reconstruction -----------------------------------------------

// The service's crop: CelebA's box on CelebA-aligned images, else the centre square.
function cropBox(width, height) {
  const crop = state.preprocessing && state.preprocessing.celeba_crop;
  if (crop && width === 178 && height === 218) {
    const [top, bottom, left, right] = crop;
    return { x: left, y: top, width: right - left, height: bottom - top };
  }
  const side = Math.min(width, height);
  const x = Math.floor((width - side) / 2);
  const y = Math.floor((height - side) / 2);
  return { x, y, width: side, height: side };
}

// The upload cropped and scaled as the service does (its slight anti-moire blur aside), so
// people see what the model was given. Null when this browser cannot decode the format.
async function previewOf(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return null;
  }
  const box = cropBox(bitmap.width, bitmap.height);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = state.imageSize;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  if (state.channels === 1) context.filter = "grayscale(1)";
  const size = canvas.width;
  context.drawImage(bitmap, box.x, box.y, box.width, box.height, 0, 0, size, size);
  bitmap.close();
  return canvas.toDataURL("image/png");
}

function setImage(img, src, alt) {
  if (src) img.src = src;
  else img.removeAttribute("src");
  img.alt = alt;
}

const faceFigures = () =>
  ["face-input", "face-decoded", "face-edited"].map((id) => $(id).parentElement);

let faceToken = 0;

async function useFaceFile(file) {
  if (!file) return;
  const token = ++faceToken;
  const name = file.name || "the pasted image";
  faceMessage.say(`Reconstructing ${name}\u2026`);
  busy(faceFigures(), true);
  try {
    const form = new FormData();
    form.append("image", file, file.name || "image");
    const [result, preview] = await Promise.all([
      api("reconstruct", { method: "POST", form }),
      previewOf(file),
    ]);
    if (token !== faceToken) return;
    const size = `${state.imageSize}\u00d7${state.imageSize}`;
    setFace({
      latent: result.latents[0],
      input: preview,
      inputAlt: preview
        ? `${name}, cropped and scaled to ${size} pixels as the model sees it`
        : `${name} (this browser cannot preview its format)`,
      inputCaption: `Input, as the model sees it (${size})`,
      decoded: png(result.images[0]),
      decodedAlt: `The model's reconstruction of ${name}`,
      decodedCaption: "Reconstruction",
    });
    faceMessage.say(`Reconstructed ${name}.`);
  } catch (error) {
    if (token === faceToken) faceMessage.error(error);
  } finally {
    if (token === faceToken) busy(faceFigures(), false);
  }
}

function setFace(face) {
  state.face = { latent: face.latent, decoded: face.decoded };
  setImage($("face-input"), face.input, face.inputAlt);
  $("face-input-caption").textContent = face.inputCaption;
  setImage($("face-decoded"), face.decoded, face.decodedAlt);
  $("face-decoded-caption").textContent = face.decodedCaption;
  $("sliders").disabled = false;
  $("edit-reset").disabled = false;
  $("edit-idle").hidden = true;
  for (const end of ["a", "b"]) $(`end-${end}-current`).disabled = false;
  renderEdit();
}

// ---- attribute sliders ----------------------------------------------------------------------

const strengthText = (value) => (value > 0 ? "+" : "") + value.toFixed(1);

function sliders() {
  return [...document.querySelectorAll("#sliders input[type=range]")];
}

function buildSliders(attributes) {
  const fieldset = $("sliders");
  for (const row of fieldset.querySelectorAll(".slider")) row.remove();
  if (!attributes.length) {
    editMessage.say("This model has no attribute vectors, so there is nothing to edit.");
    return;
  }
  attributes.forEach((attribute, index) => {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = `attribute-${index}`;
    label.textContent = attribute.name.replaceAll("_", " ");
    const input = document.createElement("input");
    // Marks at the attribute's default strength (the s that adds or removes it, chosen per
    // attribute), with room past it to overdo the edit.
    const usual = attribute.default_strength || 1;
    const limit = Math.max(STRENGTH_LIMIT, Math.ceil(2 * usual));
    Object.assign(input, {
      type: "range",
      id: `attribute-${index}`,
      min: -limit,
      max: limit,
      step: 0.1,
      value: 0,
    });
    input.dataset.attribute = attribute.name;
    const marks = document.createElement("datalist");
    marks.id = `attribute-${index}-marks`;
    for (const value of [-usual, 0, usual]) {
      marks.append(Object.assign(document.createElement("option"), { value }));
    }
    input.setAttribute("list", marks.id);
    const output = document.createElement("output");
    output.htmlFor = input.id;
    output.textContent = strengthText(0);
    input.addEventListener("input", () => {
      const value = Number(input.value);
      output.textContent = strengthText(value);
      input.setAttribute("aria-valuetext", strengthText(value));
      row.classList.toggle("moved", value !== 0);
      renderEdit();
    });
    row.append(label, input, marks, output);
    fieldset.append(row);
  });
}

function resetSliders() {
  for (const input of sliders()) {
    input.value = 0;
    input.dispatchEvent(new Event("input"));
  }
  editMessage.say("Every attribute is back to 0.");
}

const renderEdit = latestOnly(async () => {
  const face = state.face;
  if (!face) return;
  const active = sliders().filter((input) => Number(input.value) !== 0);
  const edited = $("face-edited");
  if (!active.length) {
    showEdited(face.decoded, face.latent, "The face with no edits (the same as the decoded face)");
    editMessage.clearError();
    return;
  }
  const names = active.map((input) => input.dataset.attribute);
  const strengths = active.map((input) => Number(input.value));
  busy([edited.parentElement], true);
  try {
    const result = await api("attribute-edit", {
      method: "POST",
      json: { latent: face.latent, attribute: names, strength: strengths },
    });
    if (face !== state.face) return; // a newer face arrived meanwhile; its own edit follows
    const summary = names
      .map((name, i) => `${name.replaceAll("_", " ")} ${strengthText(strengths[i])}`)
      .join(", ");
    showEdited(png(result.images[0]), result.latents[0], `The face edited: ${summary}`);
    editMessage.clearError();
  } catch (error) {
    editMessage.error(error);
  } finally {
    busy([edited.parentElement], false);
  }
});

function showEdited(image, latent, alt) {
  state.edited = { image, latent };
  setImage($("face-edited"), image, alt);
  $("edit-preview-image").src = image;
  document.querySelector(".edit-preview").hidden = false;
  const download = $("face-download");
  download.href = image;
  download.hidden = false;
}

// ---- samples --------------------------------------------------------------------------------

async function generateSamples(event) {
  event.preventDefault();
  const n = $("sample-n").value;
  const seed = $("sample-seed").value.trim();
  const query = new URLSearchParams({ n });
  if (seed) query.set("seed", seed);
  const list = $("samples");
  const button = $("sample-go");
  button.disabled = true;
  busy([list], true);
  sampleMessage.say("Sampling\u2026");
  try {
    const result = await api(`sample?${query}`, { method: "POST" });
    list.replaceChildren(
      ...result.images.map((image, i) => sampleTile(image, result.latents[i], i, result.seed)),
    );
    const count = result.images.length;
    const faces = count === 1 ? "face" : "faces";
    sampleMessage.say(`${count} ${faces} from seed ${result.seed}. Select one to edit it.`);
  } catch (error) {
    sampleMessage.error(error);
  } finally {
    button.disabled = false;
    busy([list], false);
  }
}

function sampleTile(image, latent, index, seed) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-pressed", "false");
  const img = document.createElement("img");
  img.src = png(image);
  img.alt = `Edit sample ${index + 1}`;
  button.append(img);
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#samples button")) {
      other.setAttribute("aria-pressed", "false");
    }
    button.setAttribute("aria-pressed", "true");
    faceToken++; // an upload still on its way must not replace the chosen sample
    busy(faceFigures(), false);
    const name = `sample ${index + 1} of seed ${seed}`;
    setFace({
      latent,
      input: png(image),
      inputAlt: `Sample ${index + 1} of seed ${seed}`,
      inputCaption: `Sample ${index + 1}, seed ${seed}`,
      decoded: png(image),
      decodedAlt: `Sample ${index + 1} decoded from its latent code`,
      decodedCaption: "Decoded from its latent code",
    });
    faceMessage.say(`The face is now ${name}; edit it with the attribute sliders.`);
    const panel = $("face");
    const top = panel.getBoundingClientRect().top;
    if (top < 0 || top > window.innerHeight * 0.8) panel.scrollIntoView({ block: "start" });
  });
  item.append(button);
  return item;
}

// ---- interpolation --------------------------------------------------------------------------

const endTokens = { a: 0, b: 0 };

async function useEndFile(end, file) {
  if (!file) return;
  const token = ++endTokens[end];
  const name = file.name || "the image";
  const frame = $(`end-${end}-image`).parentElement;
  busy([frame], true);
  interpolateMessage.say(`Encoding ${name}\u2026`);
  try {
    const form = new FormData();
    form.append("image", file, file.name || "image");
    const [result, preview] = await Promise.all([
      api("encode", { method: "POST", form }),
      previewOf(file),
    ]);
    if (token !== endTokens[end]) return;
    interpolateMessage.clear();
    const unseen = preview ? "" : " (this browser cannot preview its format)";
    setEnd(end, result.mu[0], preview, `${end.toUpperCase()}: ${name}${unseen}`);
  } catch (error) {
    if (token === endTokens[end]) interpolateMessage.error(error);
  } finally {
    if (token === endTokens[end]) busy([frame], false);
  }
}

function useCurrentFace(end) {
  if (!state.edited) return;
  endTokens[end]++;
  setEnd(end, state.edited.latent, state.edited.image, `${end.toUpperCase()}: the current face`);
}

function setEnd(end, latent, image, alt) {
  state.ends[end] = latent;
  setImage($(`end-${end}-image`), image, alt);
  renderStrip();
}

const renderStrip = latestOnly(async () => {
  const { a, b } = state.ends;
  if (!a || !b) {
    interpolateMessage.say(`Now choose ${a ? "B" : "A"}.`);
    return;
  }
  const stepsInput = $("steps");
  if (!stepsInput.checkValidity()) {
    const range = `from ${stepsInput.min} to ${stepsInput.max}`;
    interpolateMessage.say(`Steps must be a whole number ${range}.`);
    return;
  }
  const steps = Number(stepsInput.value);
  const strip = $("strip");
  busy([strip], true);
  try {
    const result = await api("interpolate", {
      method: "POST",
      json: { latent_a: a, latent_b: b, steps },
    });
    strip.replaceChildren(
      ...result.images.map((image, index) => {
        const item = document.createElement("li");
        const img = document.createElement("img");
        img.src = png(image);
        img.alt = `Step ${index + 1} of ${result.images.length}`;
        item.append(img);
        return item;
      }),
    );
    interpolateMessage.clear();
  } catch (error) {
    interpolateMessage.error(error);
  } finally {
    busy([strip], false);
  }
});

// ---- files: picking, dropping, pasting ------------------------------------------------------

const FILE_TARGETS = {
  face: useFaceFile,
  a: (file) => useEndFile("a", file),
  b: (file) => useEndFile("b", file),
};

function wireDropZone(zone) {
  const use = FILE_TARGETS[zone.dataset.drop];
  const input = zone.querySelector("input[type=file]");
  input.addEventListener("change", () => {
    use(input.files[0]);
    input.value = ""; // choosing the same file again should upload it again
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    use(event.dataTransfer.files[0]);
  });
}

function start() {
  for (const zone of document.querySelectorAll("[data-drop]")) wireDropZone(zone);
  // A file dropped beside a drop zone would otherwise replace the page with the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) useFaceFile(file);
  });
  $("edit-reset").addEventListener("click", resetSliders);
  $("sample-form").addEventListener("submit", generateSamples);
  $("end-a-current").addEventListener("click", () => useCurrentFace("a"));
  $("end-b-current").addEventListener("click", () => useCurrentFace("b"));
  $("steps").addEventListener("change", renderStrip);
  $("key-forget").addEventListener("click", onKeyButton);
  // A button, not a second submit button: Enter in the key field must submit, not cancel.
  $("key-cancel").addEventListener("click", () => $("key-dialog").close("cancel"));
  showKeyButton();
  ensureModel();
}

start();
