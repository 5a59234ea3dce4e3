// The taskgrid dashboard: one EventSource for task and agent events, one per
// followed task for its output. No polling; the browser's own reconnect
// (with Last-Event-ID) resumes both streams without gaps or repeats.
const FINAL = new Set(['succeeded', 'failed', 'timed_out', 'cancelled', 'lost']);
const tasks = new Map();          // id -> Task (proto JSON)
const finishedAt = [];            // ms timestamps of tasks reaching a final state
let counts = { total: 0, running: 0, succeeded: 0, failed: 0 };
let selected = null;              // { id, source, next: [0, 0], decoders }

const $ = (sel) => document.querySelector(sel);
const statusOf = (t) => (t.status || 'TASK_STATUS_PENDING').replace('TASK_STATUS_', '').toLowerCase();
const commandOf = (t) => {
  const spec = t.spec || {};
  if (spec.docker) {
    const d = spec.docker;
    const op = (d.operation || 'DOCKER_OPERATION_RUN').replace('DOCKER_OPERATION_', '').toLowerCase();
    return ['docker', op, d.image, d.container, ...(d.command || [])].filter(Boolean).join(' ');
  }
  const sh = spec.shell || {};
  return sh.argv && sh.argv.length ? sh.argv.join(' ') : (sh.command || '');
};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

function setConnection(state) {
  const el = $('#connection');
  el.className = `conn ${state}`;
  el.dataset.state = state;
  el.textContent = state === 'live' ? 'live' : state === 'reconnecting' ? 'reconnecting…' : 'connecting…';
}

// ---------------------------------------------------------------- task list
let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    const filter = $('#status-filter').value;
    const rows = [...tasks.values()]
      .filter((t) => !filter || (filter === 'active' ? !FINAL.has(statusOf(t)) : statusOf(t) === filter))
      .sort((a, b) => (b.createdAt || '').localeCompare(a.createdAt || ''))
      .slice(0, 200)
      .map((t) => {
        const s = statusOf(t);
        const progress = t.progress || 0;
        const cancel = FINAL.has(s) ? '' : `<button class="cancel" data-cancel="${esc(t.id)}">cancel</button>`;
        return `<tr data-id="${esc(t.id)}" class="${selected && selected.id === t.id ? 'selected' : ''}">
          <td class="id">${esc(t.id.slice(0, 8))}</td><td class="cmd" title="${esc(commandOf(t))}">${esc(commandOf(t))}</td>
          <td><span class="badge ${s}" data-status="${s}">${s.replace('_', ' ')}</span></td>
          <td><div class="bar" title="${progress}% ${esc(t.progressMessage || '')}"><div style="width:${progress}%"></div></div></td>
          <td>${esc(t.agentId || '-')}</td><td>${cancel}</td></tr>`;
      });
    $('#tasks tbody').innerHTML = rows.join('');
    const queued = { critical: 0, high: 0, medium: 0, low: 0 };
    for (const t of tasks.values()) {
      if (statusOf(t) === 'queued') queued[(t.spec.priority || 'PRIORITY_MEDIUM').replace('PRIORITY_', '').toLowerCase()]++;
    }
    $('#queue-depth').textContent = `queued: ${Object.entries(queued).map(([p, n]) => `${p} ${n}`).join(' · ')}`;
    $('#counters').innerHTML = `<span>total <b>${counts.total}</b></span>
      <span>running <b>${[...tasks.values()].filter((t) => ['running', 'dispatched'].includes(statusOf(t))).length}</b></span>
      <span>succeeded <b>${counts.succeeded}</b></span><span>failed <b>${counts.failed}</b></span>`;
    if (selected && tasks.has(selected.id)) {
      const t = tasks.get(selected.id);
      const s = statusOf(t);
      $('#detail-status').textContent = s.replace('_', ' ');
      $('#detail-status').className = `badge ${s}`;
      $('#detail-status').dataset.status = s;
      // Why it waits, or why it ended the way it did.
      const error = (t.exit && t.exit.error) || '';
      $('#detail-reason').textContent = FINAL.has(s)
        ? [t.statusReason, error].filter(Boolean).join(': ')
        : (t.waitingReason || '');
    }
  });
}

function upsert(task) {
  const before = tasks.get(task.id);
  const was = before ? statusOf(before) : null;
  tasks.set(task.id, task);
  const now = statusOf(task);
  if (FINAL.has(now) && was !== now && !(was && FINAL.has(was))) {
    finishedAt.push(Date.now());
    if (now === 'succeeded') counts.succeeded++;
    if (now === 'failed' || now === 'lost' || now === 'timed_out') counts.failed++;
  }
  render();
}

// ---------------------------------------------------------------- agents
let agentsTimer = null;
function refreshAgents() {
  if (agentsTimer) return;
  agentsTimer = setTimeout(async () => {
    agentsTimer = null;
    const r = await fetch('/api/agents');
    if (!r.ok) return;
    const { agents = [] } = await r.json();
    $('#agents tbody').innerHTML = agents.map((a) => `<tr><td>${esc(a.agentId)}</td>
      <td><span class="badge ${a.connected ? 'running' : 'lost'}">${a.connected ? 'connected' : 'offline'}</span></td>
      <td>${a.runningTasks}/${a.slots}</td><td>${Number(a.load1 || 0).toFixed(2)}</td>
      <td>${esc(Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(', '))}</td></tr>`).join('');
  }, 300);
}

// ---------------------------------------------------------------- monitoring
const alerts = new Map();         // id -> Alert, active ones only
const hosts = new Map();          // agent id -> last 60 HostMetrics
const lower = (s, prefix) => String(s || '').replace(prefix, '').toLowerCase();

function renderAlerts() {
  const list = [...alerts.values()].sort((a, b) => (b.createdAt || '').localeCompare(a.createdAt || ''));
  $('#alert-count').textContent = list.length ? `(${list.length} active)` : '';
  $('#alerts').innerHTML = list.length
    ? list.map((a) => {
      const sev = lower(a.severity, 'ALERT_SEVERITY_');
      return `<li data-alert="${esc(a.id)}"><span class="badge ${sev}">${sev}</span>
        <span class="msg" title="${esc(a.message)}">${esc(a.message)}</span>
        <button class="resolve" data-resolve="${esc(a.id)}">resolve</button></li>`;
    }).join('')
    : '<li class="hint">No active alerts.</li>';
}

// Lines of 0-100 values, newest at the right.
function spark(canvas, lines) {
  const ctx = canvas.getContext('2d');
  canvas.width = canvas.clientWidth || 200;
  canvas.height = 28;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const { values, color } of lines) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = ((60 - values.length + i) / 59) * canvas.width;
      const y = canvas.height - (Math.min(100, v) / 100) * (canvas.height - 2) - 1;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

function renderHost(id) {
  const samples = hosts.get(id);
  let row = document.querySelector(`.host[data-agent="${CSS.escape(id)}"]`);
  if (!row) {
    row = document.createElement('div');
    row.className = 'host';
    row.dataset.agent = id;
    row.innerHTML = `<span class="name">${esc(id)}</span><canvas></canvas><span class="cpu"></span><span class="mem"></span>`;
    $('#hosts').appendChild(row);
  }
  const last = samples[samples.length - 1];
  row.querySelector('.cpu').textContent = `cpu ${Number(last.cpuPercent || 0).toFixed(0)}%`;
  row.querySelector('.mem').textContent = `mem ${Number(last.memoryPercent || 0).toFixed(0)}%`;
  spark(row.querySelector('canvas'), [
    { values: samples.map((m) => m.memoryPercent || 0), color: '#3fb950' },
    { values: samples.map((m) => m.cpuPercent || 0), color: '#58a6ff' }]);
}

function addSample(m) {
  const list = hosts.get(m.source) || [];
  list.push(m);
  if (list.length > 60) list.shift();
  hosts.set(m.source, list);
  renderHost(m.source);
}

let servicesTimer = null;
function refreshServices() {
  if (servicesTimer) return;
  servicesTimer = setTimeout(async () => {
    servicesTimer = null;
    const r = await fetch('/api/monitoring/services');
    if (!r.ok) return;
    const { services = [] } = await r.json();
    $('#services tbody').innerHTML = services.map((s) => {
      const health = lower(s.status, 'HEALTH_STATUS_');
      return `<tr data-service="${esc(s.name)}"><td>${esc(s.name)}</td>
        <td><span class="badge ${health}" title="${esc(s.reason || '')}">${health}</span></td>
        <td>${s.uptime ? `${Math.round(parseFloat(s.uptime))}s` : '-'}</td>
        <td>${s.requests || 0}</td><td>${s.errors || 0}</td></tr>`;
    }).join('');
  }, 300);
}

async function loadMonitoring() {
  const [active, latest] = await Promise.all([
    fetch('/api/monitoring/alerts?active=true'), fetch('/api/monitoring/metrics/latest')]);
  if (active.ok) ((await active.json()).alerts || []).forEach((a) => alerts.set(a.id, a));
  if (latest.ok) ((await latest.json()).metrics || []).forEach(addSample);
  renderAlerts();
  refreshServices();
}

// ---------------------------------------------------------------- events
function connectEvents() {
  const types = 'task:created,task:status,task:progress,task:deleted,agent:connected,agent:disconnected,'
    + 'system:metrics,service:health,alert:created,alert:resolved';
  const es = new EventSource(`/api/events?types=${types}`);
  es.onopen = () => setConnection('live');
  es.onerror = () => setConnection('reconnecting');
  es.addEventListener('initial_state', (e) => {
    const { tasks: active = [] } = JSON.parse(e.data);
    active.forEach(upsert);
    refreshAgents();
  });
  es.addEventListener('resync', async () => {
    // The log no longer holds our cursor: reload the state.
    await loadRecent();
  });
  const onTask = (e) => {
    const ev = JSON.parse(e.data);
    if (ev.task && ev.task.id) upsert(ev.task);
  };
  es.addEventListener('task:created', (e) => { counts.total++; onTask(e); });
  es.addEventListener('task:status', (e) => { onTask(e); refreshAgents(); });
  es.addEventListener('task:progress', onTask);
  es.addEventListener('task:deleted', (e) => { tasks.delete(JSON.parse(e.data).taskId); render(); });
  es.addEventListener('agent:connected', refreshAgents);
  es.addEventListener('agent:disconnected', refreshAgents);
  es.addEventListener('system:metrics', (e) => addSample(JSON.parse(e.data).metrics));
  es.addEventListener('service:health', refreshServices);
  es.addEventListener('alert:created', (e) => {
    const { alert } = JSON.parse(e.data);
    alerts.set(alert.id, alert);
    renderAlerts();
  });
  es.addEventListener('alert:resolved', (e) => {
    alerts.delete(JSON.parse(e.data).alert.id);
    renderAlerts();
  });
}

async function loadRecent() {
  const [list, stats] = await Promise.all([fetch('/api/tasks?pageSize=100'), fetch('/api/tasks/stats')]);
  if (list.ok) ((await list.json()).tasks || []).forEach((t) => tasks.set(t.id, t));
  if (stats.ok) {
    const s = await stats.json();
    counts = { total: s.total, succeeded: s.byStatus.succeeded || 0,
               failed: (s.byStatus.failed || 0) + (s.byStatus.lost || 0) + (s.byStatus.timed_out || 0) };
  }
  render();
}

// ---------------------------------------------------------------- output
function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function appendOutput(text, cls) {
  const out = $('#output');
  const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  const span = document.createElement('span');
  if (cls) span.className = cls;
  span.textContent = text;
  out.appendChild(span);
  if (atBottom) out.scrollTop = out.scrollHeight;
}

function follow(id) {
  if (selected) selected.source.close();
  $('#output').innerHTML = '';
  $('#detail-title').textContent = `Output of ${id.slice(0, 8)}`;
  const source = new EventSource(`/api/tasks/${encodeURIComponent(id)}/events`);
  selected = { id, source, next: [0, 0], decoders: [new TextDecoder(), new TextDecoder()] };
  const mine = selected;
  source.addEventListener('initial_state', (e) => upsert(JSON.parse(e.data)));
  source.addEventListener('task:log', (e) => {
    const { output } = JSON.parse(e.data);
    const i = output.stream === 'OUTPUT_STREAM_STDERR' ? 1 : 0;
    const full = b64bytes(output.data || '');
    const offset = Number(output.offset || 0);
    const end = offset + full.length;
    if (end <= mine.next[i]) return;  // Already shown (a replay after reconnect).
    if (offset > mine.next[i]) appendOutput(`\n[${offset - mine.next[i]} bytes not shown]\n`, 'note');
    const bytes = offset < mine.next[i] ? full.slice(mine.next[i] - offset) : full;
    mine.next[i] = end;
    appendOutput(mine.decoders[i].decode(bytes, { stream: true }), i ? 'stderr' : '');
  });
  source.addEventListener('task:status', (e) => {
    const { task } = JSON.parse(e.data);
    upsert(task);
    if (FINAL.has(statusOf(task))) source.close();
  });
  source.addEventListener('resync', () => appendOutput('\n[stream resynchronised]\n', 'note'));
  render();
}

// ---------------------------------------------------------------- chart
function drawChart() {
  const canvas = $('#chart');
  const ctx = canvas.getContext('2d');
  const now = Date.now();
  while (finishedAt.length && finishedAt[0] < now - 60000) finishedAt.shift();
  const buckets = new Array(60).fill(0);
  finishedAt.forEach((t) => { buckets[Math.min(59, Math.floor((now - t) / 1000))]++; });
  const max = Math.max(1, ...buckets);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#58a6ff';
  const w = canvas.width / 60;
  buckets.forEach((n, i) => {
    const h = (n / max) * (canvas.height - 14);
    ctx.fillRect(canvas.width - (i + 1) * w + 1, canvas.height - h, w - 2, h);
  });
  ctx.fillStyle = '#8b98a5';
  ctx.fillText(`max ${max}/s`, 4, 10);
}

// ---------------------------------------------------------------- actions
$('#submit-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const spec = { shell: { command: $('#command').value }, priority: Number($('#priority').value) };
  const target = $('#target').value.trim();
  if (target.includes('=')) {
    spec.selector = Object.fromEntries(target.split(',').map((kv) => kv.split('=').map((s) => s.trim())));
  } else if (target) {
    spec.agentId = target;
  }
  if ($('#timeout').value) spec.timeout = `${Number($('#timeout').value)}s`;
  const r = await fetch('/api/tasks', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(spec) });
  const body = await r.json();
  const err = $('#submit-error');
  if (!r.ok) {
    err.hidden = false;
    err.textContent = `${body.error.message}`;
    return;
  }
  err.hidden = true;
  upsert(body);
  follow(body.id);
});

$('#tasks').addEventListener('click', async (e) => {
  const cancel = e.target.closest('[data-cancel]');
  if (cancel) {
    e.stopPropagation();
    const r = await fetch(`/api/tasks/${encodeURIComponent(cancel.dataset.cancel)}/cancel`, { method: 'POST' });
    if (r.ok) upsert(await r.json());
    return;
  }
  const row = e.target.closest('tr[data-id]');
  if (row) follow(row.dataset.id);
});
$('#status-filter').addEventListener('change', render);

$('#alerts').addEventListener('click', async (e) => {
  const button = e.target.closest('[data-resolve]');
  if (!button) return;
  button.disabled = true;
  const r = await fetch(`/api/monitoring/alerts/${encodeURIComponent(button.dataset.resolve)}/resolve`, { method: 'POST' });
  if (r.ok || r.status === 409) {  // 409: already resolved meanwhile.
    alerts.delete(button.dataset.resolve);
    renderAlerts();
  }
});

loadRecent().then(loadMonitoring).then(connectEvents);
refreshAgents();
setInterval(drawChart, 1000);  // Redraws the local history; fetches nothing.
