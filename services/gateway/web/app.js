// The taskgrid dashboard: one EventSource for task, run and agent events, one
// per followed task for its output, one for the open fleet run's targets. No
// polling; the browser's own reconnect (with Last-Event-ID) resumes every
// stream without gaps or repeats.
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
// "k=v,k=v" -> { k: v }; null when a pair has no '='.
const selectorOf = (text) => {
  const pairs = text.split(',').map((kv) => kv.trim()).filter(Boolean);
  if (pairs.some((kv) => kv.indexOf('=') < 1)) return null;
  return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')).trim(), kv.slice(kv.indexOf('=') + 1).trim()]));
};
const selectorText = (sel) => Object.entries(sel || {}).map(([k, v]) => `${k}=${v}`).join(',');

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
  const types = 'task:created,task:status,task:progress,task:waiting,task:deleted,run:status,'
    + 'agent:connected,agent:disconnected,system:metrics,service:health,alert:created,alert:resolved';
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
    if (shown) refreshRun(shown);
  });
  const onTask = (e) => {
    const ev = JSON.parse(e.data);
    if (ev.task && ev.task.id) upsert(ev.task);
  };
  es.addEventListener('task:created', (e) => { counts.total++; onTask(e); });
  es.addEventListener('task:status', (e) => { onTask(e); refreshAgents(); });
  es.addEventListener('task:progress', onTask);
  es.addEventListener('task:waiting', onTask);
  es.addEventListener('run:status', (e) => onRunStatus(JSON.parse(e.data).run));
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
  const [list, stats, recentRuns] = await Promise.all([
    fetch('/api/tasks?pageSize=100'), fetch('/api/tasks/stats'), fetch('/api/runs?pageSize=50')]);
  if (list.ok) ((await list.json()).tasks || []).forEach((t) => tasks.set(t.id, t));
  if (recentRuns.ok) ((await recentRuns.json()).runs || []).forEach(onRunStatus);
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

function follow(id, label) {
  if (selected) selected.source.close();
  $('#output').innerHTML = '';
  $('#detail-title').textContent = `Output of ${label || id.slice(0, 8)}`;
  const source = new EventSource(`/api/tasks/${encodeURIComponent(id)}/events`);
  selected = { id, source, next: [0, 0], decoders: [new TextDecoder(), new TextDecoder()] };
  const mine = selected;
  source.addEventListener('initial_state', (e) => upsert(JSON.parse(e.data)));
  source.addEventListener('task:log', (e) => {
    const { output } = JSON.parse(e.data);
    const i = output.stream === 'OUTPUT_STREAM_STDERR' ? 1 : 0;
    const full = b64bytes(output.data || '');
    const offset = Number(output.offset || 0);
    const dropped = Number(output.droppedBytes || 0);
    const end = offset + full.length + dropped;
    if (end <= mine.next[i]) return;  // Already shown (a replay after reconnect).
    const missed = (dropped ? end : offset) - mine.next[i];  // A marker, or a gap.
    if (missed > 0) appendOutput(`\n[${missed} bytes not shown]\n`, 'note');
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
  later(renderRun);  // The followed target is highlighted in the run grid.
}

// ---------------------------------------------------------------- fleet runs
const runs = new Map();           // id -> Run (proto JSON, without target rows)
let shown = null;                 // the open run: { id, run, targets, index, source, tailsFor, fetching }
const ZERO = { targets: 0, waiting: 0, running: 0, succeeded: 0, failed: 0, timedOut: 0, cancelled: 0, lost: 0, skipped: 0 };
const countsOf = (r) => ({ ...ZERO, ...(r.counts || {}) });
const doneOf = (c) => c.succeeded + c.failed + c.timedOut + c.cancelled + c.lost + c.skipped;
const targetStatus = (t) => (t.skipped ? 'skipped' : statusOf(t));
// Cell colour by state: failures of any kind look alike.
const GROUP = { pending: 'waiting', queued: 'waiting', dispatched: 'running', running: 'running',
                succeeded: 'succeeded', failed: 'failed', timed_out: 'failed', lost: 'failed',
                cancelled: 'cancelled', skipped: 'skipped' };
const withoutTargets = ({ targets, ...run }) => run;
const decodeTail = (b64) => (b64 ? new TextDecoder().decode(b64bytes(b64)) : '');
const clock = (ts) => (ts ? new Date(ts).toLocaleTimeString() : '-');

// One rAF per view however many events arrive in a frame.
const scheduled = new Set();
function later(fn) {
  if (scheduled.has(fn)) return;
  scheduled.add(fn);
  requestAnimationFrame(() => { scheduled.delete(fn); fn(); });
}

function renderRuns() {
  const rows = [...runs.values()]
    .sort((a, b) => (b.createdAt || '').localeCompare(a.createdAt || ''))
    .slice(0, 50)
    .map((r) => {
      const s = statusOf(r);
      const c = countsOf(r);
      const failed = c.failed + c.timedOut + c.lost;
      const why = r.waitingReason || (FINAL.has(s) ? r.statusReason || '' : '');
      const command = commandOf({ spec: (r.spec || {}).task });
      return `<tr data-run-id="${esc(r.id)}" class="${shown && shown.id === r.id ? 'selected' : ''}">
        <td class="id">${esc(r.id.slice(0, 8))}</td><td class="cmd" title="${esc(command)}">${esc(command)}</td>
        <td><span class="badge ${s}" data-status="${s}">${s.replace('_', ' ')}</span></td>
        <td class="counts"><span data-count="done">${doneOf(c)}/${c.targets}</span> done${
          [['running', c.running], ['waiting', c.waiting], ['failed', failed]].filter(([, n]) => n)
            .map(([k, n]) => ` · <span data-count="${k}" class="${k === 'failed' ? 'bad' : ''}">${n}</span> ${k}`).join('')}</td>
        <td>${esc(clock(r.createdAt))}</td><td class="why" title="${esc(why)}">${esc(why)}</td></tr>`;
    });
  $('#runs tbody').innerHTML = rows.length ? rows.join('') : '<tr class="hint"><td colspan="6">No runs yet.</td></tr>';
}

function targetCell(t) {
  const s = targetStatus(t);
  const state = s === 'failed' && t.exitCode ? `exit ${t.exitCode}` : s.replace('_', ' ');
  const title = [`${t.agentId}: ${state}`, t.duration, t.reason].filter(Boolean).join(' · ');
  const picked = selected && t.taskId && selected.id === t.taskId ? ' selected' : '';
  return `<div class="target ${GROUP[s] || 'waiting'}${picked}" data-agent="${esc(t.agentId || '')}"
    data-status="${s}" data-task-id="${esc(t.taskId || '')}" title="${esc(title)}">
    <span class="agent">${esc(t.agentId || '?')}</span><span class="state">${esc(state)}</span></div>`;
}

function renderRun() {
  const view = $('#run-view');
  if (!shown) {
    view.hidden = true;
    return;
  }
  const r = shown.run;
  const s = statusOf(r);
  const c = countsOf(r);
  const spec = r.spec || {};
  view.hidden = false;
  view.dataset.runId = shown.id;
  $('#run-title').textContent = `Run ${shown.id.slice(0, 8)}`;
  const badge = $('#run-status');
  badge.textContent = s.replace('_', ' ');
  badge.className = `badge ${s}`;
  badge.dataset.status = s;
  $('#run-cancel').hidden = FINAL.has(s);
  const selector = selectorText((spec.task || {}).selector);
  const limits = [
    r.concurrencyLimit ? `${r.concurrencyLimit} at once` : 'all at once',
    r.errorLimit ? `stops after ${r.errorLimit} failed` : 'no error limit',
  ];
  if (r.offlineDeadline && !FINAL.has(s)) limits.push(`waits for offline agents until ${clock(r.offlineDeadline)}`);
  $('#run-meta').innerHTML = `<span class="cmd">${esc(commandOf({ spec: spec.task }))}</span>
    on <b id="run-selector-shown">${esc(selector || 'every agent')}</b> · ${esc(limits.join(' · '))}`;
  $('#run-counts').innerHTML = [
    ['targets', 'targets', c.targets], ['waiting', 'waiting', c.waiting], ['running', 'running', c.running],
    ['succeeded', 'succeeded', c.succeeded], ['failed', 'failed', c.failed], ['failed', 'timed out', c.timedOut],
    ['failed', 'lost', c.lost], ['cancelled', 'cancelled', c.cancelled], ['skipped', 'skipped', c.skipped],
  ].map(([group, label, n]) => `<span class="count ${group}${n ? '' : ' zero'}" data-count="${label.replace(' ', '_')}">
    <i></i>${label} <b>${n}</b></span>`).join('');
  $('#run-reason').textContent = [r.statusReason, r.waitingReason].filter(Boolean).join(' · ');
  const f = r.firstFailure;
  const failure = $('#run-failure');
  failure.hidden = !f;
  if (f) {
    const fs = statusOf(f);
    const out = decodeTail(f.stdoutTail);
    const err = decodeTail(f.stderrTail);
    const why = f.reason === `exit code ${f.exitCode}` ? '' : f.reason || '';  // Already said.
    failure.dataset.taskId = f.taskId || '';
    failure.dataset.agent = f.agentId || '';
    failure.innerHTML = `<div>first failure: <b>${esc(f.agentId || '?')}</b>
      <span class="badge ${fs}" data-status="${fs}">${fs.replace('_', ' ')}</span>
      ${f.exitCode ? `exit code <b class="exit">${esc(f.exitCode)}</b>` : ''}
      <span class="why">${esc(why)}</span></div>
      ${out || err ? `<pre class="output tail">${esc(out)}<span class="stderr">${esc(err)}</span></pre>` : ''}`;
  }
  $('#run-grid').innerHTML = shown.targets.length
    ? shown.targets.map(targetCell).join('')
    : '<span class="hint">No targets yet.</span>';
}

function reindex(view) {
  view.index = new Map();
  view.targets.forEach((t, i) => { if (t.taskId) view.index.set(t.taskId, i); });
}

// A full snapshot (initial_state, GET or POST): replaces rows and counts.
function applyRun(view, run) {
  if (shown !== view || !run || run.id !== view.id) return;
  view.run = withoutTargets(run);
  if (run.targets) {
    view.targets = run.targets.map((t) => ({ ...t }));
    reindex(view);
  }
  if (run.firstFailure) view.tailsFor = run.firstFailure.taskId;
  runs.set(run.id, withoutTargets(run));
  // Every target of a final run is final: nothing more will come.
  if (FINAL.has(statusOf(run)) && view.source) view.source.close();
  later(renderRun);
  later(renderRuns);
}

async function refreshRun(view) {
  if (view.fetching) {
    view.again = true;
    return;
  }
  view.fetching = true;
  try {
    const r = await fetch(`/api/runs/${encodeURIComponent(view.id)}`);
    if (r.ok) {
      applyRun(view, await r.json());
    } else if (shown === view) {
      const body = await r.json().catch(() => ({}));
      $('#run-reason').textContent = (body.error && body.error.message) || `HTTP ${r.status}`;
    }
  } finally {
    view.fetching = false;
    if (view.again) {
      view.again = false;
      refreshRun(view);
    }
  }
}

// A run:status event (or a listed run): counts and state, no target rows.
function onRunStatus(run) {
  if (!run || !run.id) return;
  const before = runs.get(run.id);
  // Final states are final: an older event replayed after a reconnect.
  if (before && FINAL.has(statusOf(before)) && !FINAL.has(statusOf(run))) return;
  const summary = withoutTargets(run);
  runs.set(run.id, summary);
  later(renderRuns);
  if (!shown || shown.id !== run.id) return;
  const view = shown;
  const f = summary.firstFailure;
  const kept = view.run.firstFailure;
  // Events carry no output tails; keep the ones fetched for this failure.
  if (f && kept && kept.taskId === f.taskId) {
    summary.firstFailure = { ...f, stdoutTail: kept.stdoutTail, stderrTail: kept.stderrTail };
  }
  view.run = summary;
  later(renderRun);
  if (f && view.tailsFor !== f.taskId) {
    view.tailsFor = f.taskId;
    refreshRun(view);  // For the failure's output tails.
  } else if (FINAL.has(statusOf(run))) {
    refreshRun(view);  // Final rows (exit codes, durations); then the stream closes.
  }
}

// task:created, task:status, task:waiting of one of the open run's targets.
function onRunTask(view, e) {
  const { task } = JSON.parse(e.data);
  if (shown !== view || !task || !task.id) return;
  let i = view.index.get(task.id);
  if (i === undefined) {
    const agent = task.agentId || (task.spec || {}).agentId;
    i = view.targets.findIndex((t) => !t.taskId && !t.skipped && t.agentId === agent);
    if (i < 0) i = view.targets.push({ agentId: agent }) - 1;
    view.targets[i].taskId = task.id;
    view.index.set(task.id, i);
  }
  const t = view.targets[i];
  const s = statusOf(task);
  if (FINAL.has(targetStatus(t)) && !FINAL.has(s)) return;  // A replay of an older state.
  const at = Date.parse(task.updatedAt || '');
  if (t.updatedAt && at < t.updatedAt) return;
  t.updatedAt = at;
  t.status = task.status;
  if (task.agentId) t.agentId = task.agentId;
  t.exitCode = (task.exit && task.exit.exitCode) || 0;
  t.reason = FINAL.has(s)
    ? [task.statusReason, task.exit && task.exit.error].filter(Boolean).join(': ')
    : task.waitingReason || '';
  later(renderRun);
}

// Opens the run view; `initial` is the Run when the caller already has it.
function showRun(id, initial) {
  if (shown && shown.source) shown.source.close();
  const view = { id, run: runs.get(id) || { id }, targets: [], index: new Map(), source: null };
  shown = view;
  if (initial) applyRun(view, initial);
  const source = new EventSource(`/api/runs/${encodeURIComponent(id)}/events`);
  view.source = source;
  source.addEventListener('initial_state', (e) => applyRun(view, JSON.parse(e.data)));
  source.addEventListener('run:status', (e) => onRunStatus(JSON.parse(e.data).run));
  for (const type of ['task:created', 'task:status', 'task:waiting']) {
    source.addEventListener(type, (e) => onRunTask(view, e));
  }
  source.addEventListener('resync', () => refreshRun(view));
  // Closed for good (e.g. an unknown run): say why from the REST answer.
  source.onerror = () => { if (source.readyState === EventSource.CLOSED && shown === view) refreshRun(view); };
  if (initial && FINAL.has(statusOf(initial))) source.close();
  later(renderRun);
  later(renderRuns);
}

function closeRun() {
  if (shown && shown.source) shown.source.close();
  shown = null;
  later(renderRun);
  later(renderRuns);
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

$('#run-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const err = $('#run-error');
  const fail = (message) => {
    err.hidden = false;
    err.textContent = message;
  };
  const selector = selectorOf($('#run-selector').value);
  if (!selector) return fail('selector: use k=v pairs separated by commas');
  const task = { shell: { command: $('#run-command').value } };
  if (Object.keys(selector).length) task.selector = selector;
  const spec = { task };
  const concurrency = $('#run-max-concurrency').value.trim();
  const errors = $('#run-max-errors').value.trim();
  if (concurrency) spec.maxConcurrency = concurrency;
  if (errors) spec.maxErrors = errors;
  if ($('#run-include-offline').checked) spec.includeOffline = true;
  const button = $('#run-submit');
  button.disabled = true;
  try {
    const r = await fetch('/api/runs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(spec) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) return fail(body.error ? body.error.message : `HTTP ${r.status}`);
    err.hidden = true;
    showRun(body.id, body);
  } catch (x) {
    fail(String(x));
  } finally {
    button.disabled = false;
  }
});

$('#runs').addEventListener('click', (e) => {
  const row = e.target.closest('tr[data-run-id]');
  if (row) showRun(row.dataset.runId);
});

// A target's output goes to the same detail panel as any task's.
function followTarget(taskId, agent) {
  if (!taskId) return;
  follow(taskId, `${agent || taskId.slice(0, 8)} (run ${shown.id.slice(0, 8)})`);
  later(renderRun);
}
$('#run-grid').addEventListener('click', (e) => {
  const cell = e.target.closest('.target[data-task-id]');
  if (cell) followTarget(cell.dataset.taskId, cell.dataset.agent);
});
$('#run-failure').addEventListener('click', (e) => {
  const box = e.currentTarget;
  if (!e.target.closest('pre')) followTarget(box.dataset.taskId, box.dataset.agent);
});

$('#run-cancel').addEventListener('click', async () => {
  const view = shown;
  const button = $('#run-cancel');
  button.disabled = true;
  try {
    const r = await fetch(`/api/runs/${encodeURIComponent(view.id)}/cancel`, { method: 'POST' });
    if (r.ok) {
      const run = await r.json();
      if (run.targets) applyRun(view, run); else onRunStatus(run);
    } else {
      refreshRun(view);  // 409: it finished meanwhile.
    }
  } finally {
    button.disabled = false;
  }
});
$('#run-close').addEventListener('click', closeRun);

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
