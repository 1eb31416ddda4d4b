// Sotong dispatch console: keeps the server-rendered incident list live from the SSE feed,
// draws the selected incident on a Leaflet map, sounds and shows an alert for each new
// incident, and runs the chat and the actions through the dispatcher JSON routes. The
// server decides the order of the list and renders its rows; this script only asks for
// them again and swaps them in.
'use strict';
(function () {
  var root = document.getElementById('dispatch');
  if (!root) return;
  var cfg = JSON.parse(root.getAttribute('data-config'));
  var labels = cfg.labels;
  function t(name, a0, a1) {
    var s = labels[name] || name;
    if (a0 !== undefined) s = s.replace('{0}', a0);
    if (a1 !== undefined) s = s.replace('{1}', a1);
    return s;
  }
  var $ = function (id) { return document.getElementById(id); };
  var rowsBody = $('incident-rows');
  var status = $('live-status');
  var selected = null; // id of the open incident
  var view = null; // its JSON view: {incident, trail, messages}
  var known = new Set();
  var skewMs = cfg.now * 1000 - Date.now(); // server clock minus ours, for the ages

  function rowIds() {
    return Array.prototype.map.call(rowsBody.querySelectorAll('tr[data-incident]'),
      function (tr) { return tr.getAttribute('data-incident'); });
  }
  rowIds().forEach(function (id) { known.add(id); });
  function inRegion(region) {
    return cfg.region === 'all' || region === cfg.region;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clock(ms) {
    return new Date(ms).toISOString().slice(11, 19);
  }

  // ---- Errors, GOV.UK error-summary pattern ----
  var errorsBox = $('dispatch-errors');
  function showErrors(list) {
    errorsBox.textContent = '';
    document.querySelectorAll('#incident-detail .form-group--error').forEach(function (g) {
      g.classList.remove('form-group--error');
      var m = g.querySelector('.error-message');
      if (m) m.remove();
      var f = g.querySelector('[aria-invalid]');
      if (f) f.removeAttribute('aria-invalid');
    });
    list.forEach(function (e) {
      var f = e.field && $(e.field);
      var group = f && f.closest('.form-group');
      if (!group) return;
      group.classList.add('form-group--error');
      f.setAttribute('aria-invalid', 'true');
      group.insertBefore(el('span', 'error-message', e.message), f);
    });
    if (!list.length) return;
    var box = el('div', 'error-summary');
    box.setAttribute('role', 'alert');
    box.setAttribute('aria-labelledby', 'error-summary-title');
    box.tabIndex = -1;
    var h = el('h2', null, t('ErrorSummaryTitle'));
    h.id = 'error-summary-title';
    box.appendChild(h);
    var ul = el('ul');
    list.forEach(function (e) {
      var li = el('li');
      if (e.field) {
        var a = el('a', null, e.message);
        a.href = '#' + e.field;
        a.addEventListener('click', function (ev) {
          ev.preventDefault();
          var f = $(e.field);
          if (f) f.focus();
        });
        li.appendChild(a);
      } else {
        li.appendChild(el('span', null, e.message));
      }
      ul.appendChild(li);
    });
    box.appendChild(ul);
    errorsBox.appendChild(box);
    box.focus();
  }

  // ---- Sound: a WebAudio tone, no file; browsers allow it only after a click ----
  var audio = null;
  var soundOn = false;
  var toggle = $('sound-toggle');
  var soundBanner = $('sound-banner');
  toggle.hidden = false;
  soundBanner.hidden = false;
  toggle.addEventListener('click', function () {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    try {
      if (!audio && Ctx) audio = new Ctx();
      if (audio && audio.state === 'suspended') audio.resume();
    } catch (_) {
      audio = null; // no audio device: the visual alert remains
    }
    soundOn = !soundOn;
    toggle.setAttribute('aria-pressed', soundOn ? 'true' : 'false');
    toggle.textContent = soundOn ? t('SoundOn') : t('SoundOff');
    soundBanner.hidden = soundOn;
    if (soundOn) beep(1);
  });
  function beep(pulses) {
    if (!soundOn || !audio) return;
    var now = audio.currentTime;
    for (var i = 0; i < pulses; i++) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = 'square';
      osc.frequency.value = i % 2 ? 660 : 880;
      var start = now + i * 0.3;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.25);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.26);
    }
  }
  var alertBanner = $('alert-banner');
  function alertNew(ids) {
    alertBanner.textContent = t('NewIncidentAlert');
    alertBanner.hidden = false;
    alertBanner.classList.remove('alert-banner--flash');
    void alertBanner.offsetWidth; // restarts the animation
    alertBanner.classList.add('alert-banner--flash');
    ids.forEach(function (id) {
      var tr = $('incident-' + id);
      if (tr) tr.classList.add('incident--new');
    });
    beep(6);
  }

  // ---- The list: rows rendered by the server, asked for again on changes ----
  var refreshTimer = null;
  var refreshing = false;
  var again = false;
  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 50);
  }
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(cfg.rowsUrl, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) {
        if (!r.ok) throw new Error(String(r.status));
        return r.text();
      })
      .then(function (html) {
        rowsBody.innerHTML = html;
        var fresh = rowIds().filter(function (id) { return !known.has(id); });
        fresh.forEach(function (id) { known.add(id); });
        markSelected();
        tickAges();
        if (fresh.length) alertNew(fresh);
      })
      .catch(function (e) { showErrors([{ message: t('ActionFailed', e.message) }]); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; scheduleRefresh(); }
      });
  }
  function markSelected() {
    rowsBody.querySelectorAll('tr[data-incident]').forEach(function (tr) {
      tr.classList.toggle('incident--selected', tr.getAttribute('data-incident') === selected);
    });
  }
  function ageText(secs) {
    var m = Math.max(0, Math.floor(secs / 60));
    return m < 60 ? t('AgeMinutes', m) : t('AgeHours', Math.floor(m / 60), m % 60);
  }
  function tickAges() {
    var now = (Date.now() + skewMs) / 1000;
    rowsBody.querySelectorAll('tr[data-created-at]').forEach(function (tr) {
      var cell = tr.querySelector('.age');
      if (cell) cell.textContent = ageText(now - Number(tr.getAttribute('data-created-at')));
    });
  }
  setInterval(tickAges, 15000);
  function updateRowFix(id, fix) {
    var tr = $('incident-' + id);
    if (!tr || !fix) return;
    var f = tr.querySelector('.last-fix');
    if (f) f.textContent = clock(fix.time_ms) + ' \u00b1' + Math.round(fix.accuracy_m) + ' m';
    var b = tr.querySelector('.battery');
    if (b && fix.battery_pct !== undefined && fix.battery_pct !== null) b.textContent = fix.battery_pct + '%';
  }
  function bumpUnread(id) {
    var cell = $('incident-' + id) && $('incident-' + id).querySelector('.unread');
    if (!cell) return;
    var n = Number(cell.textContent) + 1;
    cell.textContent = '';
    cell.appendChild(el('strong', 'tag tag--unread', n));
  }
  rowsBody.addEventListener('click', function (ev) {
    var button = ev.target.closest('button.open-incident');
    if (button) open(button.getAttribute('data-incident'));
  });

  // ---- The map: Leaflet, tiles if configured, else a coordinate grid ----
  var map = null;
  var marks = null;
  var grid = null;
  function ensureMap() {
    if (map || !window.L) return;
    map = L.map('map', { attributionControl: Boolean(cfg.tiles), zoomControl: false, worldCopyJump: true });
    L.control.zoom({ position: 'topright' }).addTo(map);
    if (cfg.tiles) L.tileLayer(cfg.tiles, { maxZoom: 19 }).addTo(map);
    grid = L.layerGroup().addTo(map);
    marks = L.layerGroup().addTo(map);
    map.setView([36.5, 127.8], 6);
    if (!cfg.tiles) {
      map.on('moveend', drawGrid);
      drawGrid();
    }
  }
  var STEPS = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001];
  function drawGrid() {
    grid.clearLayers();
    var b = map.getBounds();
    var size = map.getSize();
    // The finest step that keeps lines at least minPx apart on screen.
    function stepFor(span, px, minPx) {
      for (var i = STEPS.length - 1; i >= 0; i--) {
        if (STEPS[i] / span * px >= minPx) return STEPS[i];
      }
      return STEPS[0];
    }
    var latStep = stepFor(b.getNorth() - b.getSouth(), size.y, 45);
    var lonStep = stepFor(b.getEast() - b.getWest(), size.x, 95);
    var digitsOf = function (step) { return Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)); };
    var style = { color: '#6f777b', weight: 1, interactive: false };
    function label(latlng, text, anchor) {
      L.marker(latlng, {
        icon: L.divIcon({ className: 'graticule-label', html: text, iconSize: null, iconAnchor: anchor }),
        interactive: false, keyboard: false,
      }).addTo(grid);
    }
    for (var i = Math.ceil(b.getSouth() / latStep); i * latStep <= b.getNorth(); i++) {
      var lat = i * latStep;
      L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style).addTo(grid);
      label([lat, b.getWest()], lat.toFixed(digitsOf(latStep)) + '\u00b0N', [-4, 8]);
    }
    for (var j = Math.ceil(b.getWest() / lonStep); j * lonStep <= b.getEast(); j++) {
      var lon = j * lonStep;
      L.polyline([[b.getSouth(), lon], [b.getNorth(), lon]], style).addTo(grid);
      label([b.getSouth(), lon], lon.toFixed(digitsOf(lonStep)) + '\u00b0E', [-3, 22]);
    }
  }
  function fixesOf(v) {
    return v.trail.map(function (b) { return b.beacon.fix; }).filter(Boolean);
  }
  function drawIncident(fit) {
    ensureMap();
    if (!map) return;
    marks.clearLayers();
    var fixes = fixesOf(view);
    if (!fixes.length) return;
    var pts = fixes.map(function (f) { return [f.lat, f.lon]; });
    var last = fixes[fixes.length - 1];
    L.polyline(pts, { color: '#1d70b8', weight: 3 }).addTo(marks);
    var circle = L.circle([last.lat, last.lon], {
      radius: last.accuracy_m, color: '#d4351c', weight: 2, fillOpacity: 0.12,
    }).addTo(marks);
    L.circleMarker([last.lat, last.lon], {
      radius: 7, color: '#0b0c0c', weight: 2, fillColor: '#d4351c', fillOpacity: 1,
    }).addTo(marks);
    if (fit) map.fitBounds(circle.getBounds().extend(L.latLngBounds(pts)), { maxZoom: 17, padding: [20, 20] });
  }

  // ---- The selected incident: summary, thread, actions ----
  function api(path, body) {
    var init = { credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-CSRF-Token'] = cfg.csrf;
      init.body = JSON.stringify(body);
    }
    return fetch('/v1/dispatch/incidents/' + encodeURIComponent(selected) + path, init)
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (!r.ok) throw new Error((j && (j.message || j.error)) || String(r.status));
          return j;
        });
      });
  }
  function open(id) {
    selected = id;
    alertBanner.hidden = true;
    markSelected();
    return api('').then(function (v) {
      if (selected !== id) return;
      view = v;
      $('detail-hint').hidden = true;
      $('incident-detail').hidden = false;
      renderDetail();
      drawIncident(true);
    }).catch(function (e) { showErrors([{ message: t('ActionFailed', e.message) }]); });
  }
  function stateLabel(inc) {
    if (inc.duress) return t('SosStateDuress');
    if (inc.phase === 'received') {
      return t(inc.reported_state === 'cancelled' ? 'SosStateCancelled' : 'SosStateNew');
    }
    return t({ acknowledged: 'SosStateAcknowledged', unit_assigned: 'SosStateUnitAssigned',
      resolved: 'SosStateResolved' }[inc.phase] || 'UnknownValue');
  }
  function renderDetail() {
    var inc = view.incident;
    $('incident-title').textContent = t('IncidentHeading', String(inc.incident).slice(0, 8));
    var dl = $('incident-summary');
    dl.textContent = '';
    var fixes = fixesOf(view);
    var last = fixes[fixes.length - 1];
    [
      [t('ColState'), stateLabel(inc), inc.duress],
      [t('ColRegion'), inc.region || t('NoFixYet')],
      [t('TriggerLabel'), inc.trigger],
      [t('UnitAssignedLabel'), inc.unit || '\u2014'],
      [t('ColLastFix'), last ? clock(last.time_ms) + ' \u00b1' + Math.round(last.accuracy_m) + ' m (' +
        last.lat.toFixed(5) + ', ' + last.lon.toFixed(5) + ')' : t('NoFixYet')],
      [t('ColBattery'), last && last.battery_pct != null ? last.battery_pct + '%' : t('UnknownValue')],
    ].forEach(function (p) {
      var d = el('div');
      d.appendChild(el('dt', null, p[0]));
      var dd = el('dd');
      dd.appendChild(p[2] ? el('strong', 'tag tag--duress', p[1]) : document.createTextNode(p[1]));
      d.appendChild(dd);
      dl.appendChild(d);
    });
    renderThread();
  }
  function replyText(reply) {
    if (reply.text !== undefined) return reply.text;
    return { yes: t('QuickYes'), no: t('QuickNo'), cant_talk: t('QuickCantTalk') }[reply.quick] || reply.quick;
  }
  function threadItems() {
    var items = view.messages.map(function (m) {
      return { at: m.at, kind: m.kind === 'note' ? 'note' : 'dispatch', text: m.text, order: 0 };
    });
    view.trail.forEach(function (b) {
      if (b.beacon.reply) items.push({ at: b.received_at, kind: 'caller', text: replyText(b.beacon.reply), order: 1 });
    });
    return items.sort(function (a, b) { return a.at - b.at || a.order - b.order; });
  }
  function renderThread() {
    var ol = $('thread');
    ol.textContent = '';
    var items = threadItems();
    if (!items.length) ol.appendChild(el('li', 'thread__empty', t('NoMessages')));
    items.forEach(function (m) {
      var who = { dispatch: t('FromDispatch'), caller: t('FromCaller'), note: t('NoteFromDispatch') }[m.kind];
      var li = el('li', 'from-' + m.kind);
      li.appendChild(el('span', 'who', who));
      li.appendChild(el('span', 'text', m.text));
      li.appendChild(el('span', 'when', new Date(m.at * 1000).toISOString().slice(11, 19)));
      ol.appendChild(li);
    });
    ol.scrollTop = ol.scrollHeight;
  }
  function act(path, body, doneFn) {
    showErrors([]);
    return api(path, body).then(function (res) {
      if (view && res.incident) view.incident = res.incident;
      if (doneFn) doneFn();
      return open(selected);
    }).catch(function (e) { showErrors([{ message: t('ActionFailed', e.message) }]); });
  }
  function required(field, label) {
    var v = $(field).value.trim();
    if (!v) { showErrors([{ field: field, message: t(label) }]); return null; }
    return v;
  }
  $('ack-button').addEventListener('click', function () { act('/acknowledge', {}); });
  $('message-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = required('message-text', 'MessageMissing');
    if (text !== null) act('/message', { text: text }, function () { $('message-text').value = ''; });
  });
  $('assign-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var unit = required('unit-text', 'UnitMissing');
    if (unit !== null) act('/assign', { unit: unit }, function () { $('unit-text').value = ''; });
  });
  $('note-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = required('note-text', 'NoteMissing');
    if (text !== null) act('/note', { text: text }, function () { $('note-text').value = ''; });
  });
  $('close-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var outcome = required('outcome', 'OutcomeMissing');
    if (outcome !== null) act('/close', { outcome: outcome });
  });

  // ---- The live feed ----
  function setStatus(name, cls) {
    status.textContent = t(name);
    status.className = 'live-status' + (cls ? ' live-status--' + cls : '');
  }
  var feed = new EventSource(cfg.feedUrl);
  feed.onopen = function () { setStatus('LiveOn', 'on'); };
  feed.onerror = function () { setStatus('LiveLost', 'lost'); };
  function onEvent(kind, e) {
    var ev;
    try { ev = JSON.parse(e.data); } catch (_) { return; }
    if (!inRegion(ev.region)) {
      // An incident that left this page's view (it has no region yet, or another).
      if (kind === 'incident' && known.has(ev.incident)) scheduleRefresh();
      return;
    }
    var d = ev.data || {};
    if (kind === 'incident' || kind === 'state') scheduleRefresh();
    if (kind === 'fix') {
      updateRowFix(ev.incident, d.fix);
      if (!known.has(ev.incident)) scheduleRefresh();
    }
    if (kind === 'message' && d.from === 'citizen' && ev.incident !== selected) bumpUnread(ev.incident);
    if (ev.incident === selected && view) {
      if (kind === 'fix' && d.fix) {
        view.trail.push({ beacon: { seq: d.seq, fix: d.fix }, received_at: ev.at });
        drawIncident(false);
        renderDetail();
      } else if (kind === 'message' && d.from === 'citizen') {
        view.trail.push({ beacon: { seq: d.seq, reply: d.reply }, received_at: ev.at });
        renderThread();
      } else if (kind === 'message' || kind === 'note') {
        if (!view.messages.some(function (m) { return m.id === d.id; })) {
          view.messages.push({ id: d.id, kind: kind, text: d.text, at: ev.at });
          renderThread();
        }
      } else if (kind === 'state' || kind === 'incident') {
        view.incident = d;
        setTimeout(renderDetail, 120);
      }
    }
  }
  ['incident', 'state', 'fix', 'message', 'note'].forEach(function (kind) {
    feed.addEventListener(kind, function (e) { onEvent(kind, e); });
  });
  window.addEventListener('pagehide', function () { feed.close(); });
  ensureMap();
})();
