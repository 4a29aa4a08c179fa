// twin web view: turns the pydeck presets (deck.gl JSON) into a Deck, and adds what JSON
// cannot say: accessors by utility and live status, layer toggles, the legend, tooltips,
// the details panel and the live status stream. Works served by `twin serve` (data from
// tiles and feature URLs relative to the page) and exported by `twin view` (data inlined,
// no server: config.live is false and details come from the picked feature alone).
(function () {
  'use strict';

  const config = JSON.parse(document.getElementById('twin-config').textContent);
  // deck.gl's JSON bundle takes over the `deck` global; the page saved the core one first
  const core = window.deckCore || window.deck;
  const {JSONConverter} = window.deck;
  const GREY = [140, 150, 160];
  const early = window.twinEarly || {};

  // -- live status, keyed by feature id (`<layer>.<uid>`) -------------------------------------
  const live = {status: new Map(), version: 0};

  function featureId(feature, layer) {
    const id = feature.id !== undefined && feature.id !== null && typeof feature.id === 'string' ? feature.id
      : (feature.properties && feature.properties.uid);
    if (id === undefined || id === null) return null;
    const text = String(id);
    return layer && !text.startsWith(layer + '.') ? layer + '.' + text : text;
  }

  function statusOf(feature, layer) {
    return live.status.get(featureId(feature, layer)) || (feature.properties && feature.properties.status) || 'no_data';
  }

  // -- functions the presets name with @@function: each returns an accessor ---------------------
  const functions = {
    features: () => data => (data && data.features) || data || [],
    pipeSegments: () => pipeSegments,
    inline: ({key}) => config.data[key],
    onGround: ({lift}) => f => [f.geometry.coordinates[0], f.geometry.coordinates[1],
      (f.properties.ground_z || 0) + (lift || 0)],
    pipeColour: ({by, palette}) => f => {
      const key = by === 'status' ? statusOf(f, 'pipe') : f.properties.utility;
      return palette[key] || GREY;
    },
    pipeWidth: ({scale}) => f => scale * (1.5 + (f.properties.diameter_mm || 200) / 250),
    sensorColour: ({utility, palette}) => f => utility ? (palette[statusOf(f, 'sensor')] || GREY) : [245, 245, 245],
  };
  // Pipes are drawn segment by segment with deck.gl's LineLayer (a software GPU takes seconds to
  // compile the PathLayer and a fifth of a second to draw it every frame). Each segment carries its
  // pipe's id and properties, and its pipe's picking colour: hovering highlights the whole pipe,
  // and a pick returns the pipe.
  function pipeSegments(collection) {
    const pipes = (collection && collection.features) || collection || [];
    const segments = [];
    pipes.forEach((pipe, index) => {
      const geometry = pipe.geometry;
      const lines = !geometry ? [] : geometry.type === 'LineString' ? [geometry.coordinates]
        : geometry.type === 'MultiLineString' ? geometry.coordinates : [];
      for (const line of lines) {
        for (let i = 1; i < line.length; i++) {
          segments.push({id: pipe.id, properties: pipe.properties, pipe: index, from: line[i - 1], to: line[i]});
        }
      }
    });
    segments.pipes = pipes;
    return segments;
  }

  class PipeLayer extends core.LineLayer {
    calculateInstancePickingColors(attribute, {numInstances}) {
      const segments = this.props.data;
      const colours = new Uint8ClampedArray(numInstances * 4);
      const colour = [0, 0, 0];
      for (let i = 0; i < numInstances; i++) {
        this.encodePickingColor(segments[i].pipe, colour);
        colours.set(colour, i * 4);
      }
      attribute.value = colours;
    }

    getPickingInfo({info}) {
      const pipes = this.props.data.pipes || [];
      info.object = info.index >= 0 && info.index < pipes.length ? pipes[info.index] : null;
      return info;
    }
  }
  PipeLayer.layerName = 'PipeLayer';

  // A layer that loses the TerrainExtension keeps the terrain mode it had (state.terrainDrawMode),
  // and deck.gl's terrain effect lifts every layer with a mode by the ground's height: the
  // buildings, prisms from sea level again back from the utility preset or see-through ground,
  // would float a ground's height above it. Off the terrain, they forget the mode.
  class OffTerrain extends core.LayerExtension {
    updateState() {
      if (this.state.terrainDrawMode) this.state.terrainDrawMode = null;
    }
  }
  OffTerrain.extensionName = 'OffTerrain';

  const classes = Object.assign({}, core, {TerrainExtension: core._TerrainExtension, PipeLayer});
  const converter = new JSONConverter({configuration: {classes, functions,
    enumerations: {COORDINATE_SYSTEM: core.COORDINATE_SYSTEM}}});

  // A machine without a GPU (a virtual desktop, a locked-down intranet PC) renders WebGL in
  // software: there the BIM models skip physically based shading, whose shaders alone take
  // seconds to compile, and are drawn with their plain material colours.
  const softwareGL = (() => {
    try {
      const gl = document.createElement('canvas').getContext('webgl2');
      const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
      const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : '';
      return /swiftshader|llvmpipe|softpipe|software/i.test(renderer);
    } catch (error) {
      return false;
    }
  })();

  // -- state --------------------------------------------------------------------------------
  // ?hide=terrain,pipes hides layers from the start: a link can carry what to look at
  const hidden = new Set();
  const params = new URLSearchParams(window.location.search);
  for (const id of (params.get('hide') || '').split(',').filter(Boolean)) {
    const toggle = config.toggles.find(([, ids]) => ids.some(p => p === id || p === id + '-'));
    if (toggle) hidden.add(toggle[1].join(','));
  }
  let groundOpacity = null;  // null: the preset's own
  let preset = config.presets[params.get('preset')] ? params.get('preset') : config.preset;
  let layers = [];
  // The page is ready at its first frame that drew the buildings and the pipes: each of them
  // (a city without buildings, a pipe network alone, is ready without them) has all its data, or
  // all the tiles of the view, when the frame is drawn. Hidden ones are not waited for.
  const neededAtFirst = ['buildings', 'pipes'].filter(id => config.presets[preset].layers.some(l => l.id === id));
  let readyAt = null;
  window.twin = {config, live, ready: null, softwareGL, presetLayers: () => layers.map(l => l.id)};

  function isHidden(id) {
    for (const [, ids] of config.toggles) {
      if (ids.some(prefix => id === prefix || (prefix.endsWith('-') && id.startsWith(prefix)))) {
        if (hidden.has(ids.join(','))) return true;
      }
    }
    return false;
  }

  function groundIsOpaque() {
    const terrain = config.presets[preset].layers.find(l => l.id === 'terrain');
    if (!terrain) return true;  // no terrain: heights are absolute either way
    const opacity = groundOpacity !== null ? groundOpacity : (terrain.opacity !== undefined ? terrain.opacity : 1);
    return opacity >= 1 && !isHidden('terrain');
  }

  function firstFrameDrawn() {
    const drawn = deckgl.props.layers;
    return neededAtFirst.every(id => {
      const layer = drawn.find(l => l.id === id);
      return layer && (!layer.props.visible || layer.isLoaded);
    });
  }

  // Until the first frame with buildings and pipes, the terrain, the BIM models and the points
  // wait: what they load (terrain tiles meshed in a worker, glTF models) and what they draw take
  // the CPU that a machine without a GPU draws with, and the district comes first. The terrain
  // then rises under the buildings (over opaque ground they stand from sea level to their roofs).
  const waitsForFirstFrame = id => id === 'terrain' || id === 'bim' || id === 'sensors' || id.startsWith('facility-');

  function buildLayers() {
    const props = converter.convert(config.presets[preset]);
    return props.layers.filter(layer => readyAt !== null || !waitsForFirstFrame(layer.id)).map(layer => {
      const extra = {};
      const id = layer.id;
      if (id === 'terrain') {
        // hidden ground still gives the buildings their height: draw nothing, keep the surface
        extra.operation = isHidden(id) ? 'terrain' : 'terrain+draw';
        if (groundOpacity !== null) extra.opacity = groundOpacity;
        extra.onTileError = error => console.warn('terrain tile', error && error.message);
      } else {
        extra.visible = !isHidden(id);
      }
      // data the page's head already asked for (window.twinEarly): the same promise every time
      if (early[id]) extra.data = early[id];
      // deck.gl recomputes what an accessor gave only when its trigger changes: the accessors of
      // another preset (colour by status, not utility) and live changes are such changes
      const triggers = {};
      for (const key of Object.keys(config.presets[preset].layers.find(l => l.id === id) || {})) {
        if (key.startsWith('get')) triggers[key] = preset;
      }
      if (id === 'pipes') triggers.getColor = [preset, live.version];
      if (id === 'sensors') triggers.getFillColor = [preset, live.version];
      extra.updateTriggers = triggers;
      if (id === 'bim' && softwareGL) extra._subLayerProps = {scenegraph: {_lighting: 'flat'}};
      if (id === 'buildings' && !layer.props.extensions.some(e => e instanceof core._TerrainExtension)) {
        if (!groundIsOpaque()) {
          // seen through the ground, a prism from sea level would show: stand on the terrain
          extra.extensions = [...layer.props.extensions, new core._TerrainExtension()];
          extra.getElevation = f => f.properties.height_m || (f.properties.floors || 1) * 3;
          extra.updateTriggers = {...triggers, getElevation: [preset, 'on-terrain']};
        } else {
          extra.extensions = [...layer.props.extensions, new OffTerrain()];
        }
      }
      return layer.clone(extra);
    });
  }

  // deck.gl adds its terrain effect, which lifts what has the TerrainExtension onto the drawn
  // terrain, when a layer is created with the extension, not when a layer already drawn gains it.
  // The buildings gain it on a switch from planning to utility and when the ground turns
  // see-through; with no effect they are drawn nowhere. The page then adds the effect as the
  // extension would have: once (its shader module goes into every layer), and only then, so a
  // first frame without the extension does not pay for it.
  let terrainEffect = false;
  function addTerrainEffect(next) {
    if (terrainEffect || !deckgl.effectManager) return;  // before the deck has its device, every layer is new
    const extension = next.flatMap(layer => layer.props.extensions).find(e => e instanceof core._TerrainExtension);
    if (!extension) return;
    extension.initializeState.call({context: {deck: deckgl}}, deckgl.layerManager.context, extension);
    terrainEffect = true;
  }

  function render() {
    layers = buildLayers();
    addTerrainEffect(layers);
    deckgl.setProps({layers});
  }

  // -- tooltips and details -------------------------------------------------------------------
  const fmt = v => (v === null || v === undefined || v === '') ? '–'
    : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v);
  const esc = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));

  function tooltip(info) {
    const {object, layer} = info;
    if (!object || !layer) return null;
    const p = object.properties || {};
    const id = layer.id;
    let html;
    if (id === 'buildings') {
      html = `<b>${esc(p.name || 'Building')}</b> ${esc(p.uid || '')}<br>height ${fmt(p.height_m)} m` +
        (p.floors ? ` · ${fmt(p.floors)} floors` : '') + `<br>ground ${fmt(p.ground_z)} m`;
    } else if (id === 'pipes') {
      html = `<b>${esc(p.uid)}</b><br>${esc(p.utility || '')} · ⌀ ${fmt(p.diameter_mm)} mm · depth ${fmt(p.depth_m)} m` +
        `<br>status ${esc(statusOf(object, 'pipe').replace('_', ' '))}`;
    } else if (id === 'sensors') {
      html = `<b>${esc(p.sensor_id || p.uid)}</b><br>${esc(p.property || '')} ${p.value !== undefined ? fmt(p.value) + ' ' + esc(p.unit || '') : ''}` +
        `<br>status ${esc(statusOf(object, 'sensor').replace('_', ' '))}`;
    } else if (id.startsWith('facility-')) {
      html = `<b>${esc(p.name || p.uid)}</b><br>${esc(id.slice(9).replace('_', ' '))}`;
    } else if (id === 'bim') {
      html = '<b>BIM model</b><br>click an element for its GlobalId and property sets';
    } else {
      return null;
    }
    return {html, className: 'deck-tooltip'};
  }

  const details = document.getElementById('details');
  const detailsBody = document.getElementById('details-body');
  document.getElementById('details-close').onclick = () => { details.hidden = true; };

  function table(rows) {
    return '<table>' + rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(fmt(v))}</td></tr>`).join('') + '</table>';
  }

  function showFeature(title, feature) {
    const p = feature.properties || {};
    const plain = Object.entries(p).filter(([k, v]) => k !== 'properties' && (v === null || typeof v !== 'object'));
    let body = `<div class="title">${esc(title)}</div>`;
    if (p.global_id) {
      body += `<p>GlobalId <span class="global-id" data-global-id="${esc(p.global_id)}">${esc(p.global_id)}</span></p>`;
    }
    body += table(plain);
    const sets = p.properties && typeof p.properties === 'object' ? p.properties : null;
    if (sets) {
      for (const [name, values] of Object.entries(sets)) {
        if (values && typeof values === 'object') body += `<h2>${esc(name)}</h2>` + table(Object.entries(values));
      }
    }
    detailsBody.innerHTML = body;
    details.hidden = false;
  }

  async function fetchFeature(id) {
    const collection = id.slice(0, id.indexOf('.'));
    const response = await fetch(`collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(id)}`);
    if (!response.ok) throw new Error(`${id}: ${response.status}`);
    return response.json();
  }

  async function onClick(info, event) {
    if (!info || !info.layer) return;
    const layerId = info.layer.id;
    try {
      if (layerId === 'bim') {
        if (!config.live) return;
        const picked = deckgl.pickObject({x: info.x, y: info.y, radius: 2, unproject3D: true});
        const at = (picked && picked.coordinate) || info.coordinate;
        if (!at || at.length < 3) return;
        const response = await fetch(`bim/pick?lon=${at[0]}&lat=${at[1]}&z=${at[2]}`);
        if (!response.ok) {
          detailsBody.innerHTML = '<div class="title">BIM model</div><p>No element here.</p>';
          details.hidden = false;
          return;
        }
        const element = await response.json();
        const p = element.properties;
        showFeature(`${p.ifc_class} ${p.name || ''}`.trim(), element);
        return;
      }
      const object = info.object;
      if (!object) return;
      const layerName = layerId === 'pipes' ? 'pipe' : layerId === 'sensors' ? 'sensor' : null;
      const id = featureId(object, layerName);
      const feature = config.live && id && id.includes('.') ? await fetchFeature(id) : object;
      showFeature(id || 'Feature', feature);
    } catch (error) {
      console.warn('details', error);
    }
  }

  // -- the deck -----------------------------------------------------------------------------
  // The pixels of the frame just drawn, one (which waits for the GPU to finish it) or all of them
  // (the browser test's look at the first frame: rows from the bottom, RGBA, base64).
  function readBack(gl, all) {
    if (!gl) return null;
    const width = all ? gl.drawingBufferWidth : 1;
    const height = all ? gl.drawingBufferHeight : 1;
    const pixels = new Uint8Array(width * height * 4);
    const bound = gl.getParameter(gl.READ_FRAMEBUFFER_BINDING);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, null);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, pixels);
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, bound);
    if (!all) return null;
    let text = '';
    for (let i = 0; i < pixels.length; i += 0x8000) text += String.fromCharCode.apply(null, pixels.subarray(i, i + 0x8000));
    return {width, height, rgba: btoa(text)};
  }

  const start = converter.convert(config.presets[preset]);
  const deckgl = new core.Deck({
    parent: document.getElementById('map'),
    initialViewState: start.initialViewState,
    views: start.views,
    controller: true,
    layers: [],
    getTooltip: tooltip,
    pickingRadius: 4,
    onError: error => console.error('deck.gl', error),
    onAfterRender: ({gl}) => {
      if (readyAt === null && firstFrameDrawn()) {
        const issued = performance.now();
        // the frame is seen when the GPU has drawn it: reading a pixel back waits for that
        // (a software GPU draws for a good while after deck.gl has issued the frame)
        readBack(gl, false);
        readyAt = performance.now();
        window.twin.ready = {ms: readyAt, issuedMs: issued, at: new Date().toISOString()};
        if (window.twinKeepFirstFrame) window.twin.firstFrame = readBack(gl, true);
        document.body.dataset.ready = 'true';
        console.info(`twin: first frame with buildings and pipes at ${readyAt.toFixed(0)} ms`);
        setTimeout(render, 0);  // now the layers that waited
      }
    },
  });
  window.twin.deck = deckgl;

  // A click is a press and release in place, however long between them: deck.gl's gesture
  // recogniser wants the release within 250 ms of handling the press, and on a software GPU the
  // picking done on press alone can take longer than that.
  const map = document.getElementById('map');
  let press = null;
  map.addEventListener('pointerdown', event => { press = {x: event.clientX, y: event.clientY}; });
  map.addEventListener('pointerup', event => {
    if (!press || event.button !== 0) return;
    const moved = Math.hypot(event.clientX - press.x, event.clientY - press.y);
    press = null;
    if (moved > 5) return;
    const rect = map.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const info = deckgl.pickObject({x, y, radius: 4});
    onClick(info ? {...info, x, y} : {x, y, layer: null}, event);
  });
  document.getElementById('city-name').textContent = config.city;

  // -- presets, toggles, legend ---------------------------------------------------------------
  const presetBar = document.getElementById('presets');
  function setPreset(name) {
    preset = name;
    groundOpacity = null;
    const slider = document.getElementById('ground-opacity');
    const terrain = config.presets[name].layers.find(l => l.id === 'terrain');
    slider.value = Math.round(100 * (terrain && terrain.opacity !== undefined ? terrain.opacity : 1));
    for (const button of presetBar.children) button.setAttribute('aria-pressed', String(button.dataset.preset === name));
    const view = config.presets[name].initialViewState;
    const current = deckgl.viewState || deckgl.props.initialViewState;
    const here = current && current['default-view'] ? current['default-view'] : current;
    if (here && here.longitude !== undefined) {
      deckgl.setProps({initialViewState: {...view, longitude: here.longitude, latitude: here.latitude, zoom: here.zoom,
        transitionDuration: 0}});
    }
    document.body.dataset.preset = name;
    render();
  }
  for (const name of Object.keys(config.presets)) {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.preset = name;
    button.textContent = name[0].toUpperCase() + name.slice(1);
    button.onclick = () => setPreset(name);
    presetBar.appendChild(button);
  }

  const toggles = document.getElementById('toggles');
  const present = new Set(config.presets[preset].layers.map(l => l.id));
  for (const [label, ids] of config.toggles) {
    if (![...present].some(id => ids.some(p => id === p || (p.endsWith('-') && id.startsWith(p))))) continue;
    const key = ids.join(',');
    const row = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = !hidden.has(key);
    box.dataset.layer = key;
    box.onchange = () => { box.checked ? hidden.delete(key) : hidden.add(key); render(); };
    row.append(box, ' ' + label);
    toggles.appendChild(row);
  }
  document.getElementById('ground-opacity').oninput = event => {
    groundOpacity = Number(event.target.value) / 100;
    render();
  };

  const legend = document.getElementById('legend');
  const titles = {building: 'Buildings', utility: 'Pipes by utility', status: 'Monitoring status', facility: 'Facilities'};
  for (const [group, entries] of Object.entries(config.legend)) {
    if (!Object.keys(entries).length) continue;
    const block = document.createElement('div');
    block.className = 'legend-group';
    block.innerHTML = `<h2>${esc(titles[group] || group)}</h2>` + Object.entries(entries).map(([name, [r, g, b]]) =>
      `<div><span class="swatch" style="background: rgb(${r},${g},${b})"></span>${esc(name)}</div>`).join('');
    legend.appendChild(block);
  }

  // -- live status stream ---------------------------------------------------------------------
  const liveBadge = document.getElementById('live');
  let pending = false;
  function scheduleRender() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  }
  if (config.live && window.EventSource) {
    const source = new EventSource('events');
    let changes = 0;
    liveBadge.textContent = 'live';
    source.onopen = () => { liveBadge.className = 'on'; };
    source.onerror = () => { liveBadge.className = 'off'; };
    source.addEventListener('status', message => {
      const event = JSON.parse(message.data);
      const id = String(event.uid).startsWith(event.layer + '.') ? event.uid : `${event.layer}.${event.uid}`;
      live.status.set(id, event.status);
      live.version += 1;
      changes += 1;
      liveBadge.textContent = `live · ${changes} change${changes === 1 ? '' : 's'}`;
      scheduleRender();
    });
    window.twin.events = source;
  } else {
    liveBadge.textContent = 'offline copy';
  }

  setPreset(preset);
})();
