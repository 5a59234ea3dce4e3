// The dashboard in a real browser (Debian's Chromium through playwright-core)
// against a real gateway, coordinator and agents (browser-agent, and web-1 and
// web-2 labelled role=web) started by run-browser-test.sh, which passes
// GATEWAY_URL and ARTIFACTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const url = process.env.GATEWAY_URL;
const artifacts = process.env.ARTIFACTS || '.';
let browser;
let page;

before(async () => {
  assert.ok(url, 'GATEWAY_URL must be set');
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(15000);
  await page.goto(url);
});

after(async () => {
  if (page) await page.screenshot({ path: `${artifacts}/dashboard.png`, fullPage: true });
  if (browser) await browser.close();
});

test('connects live and lists the agent', async () => {
  await page.waitForSelector('#connection[data-state="live"]');
  await page.waitForSelector('#agents tbody tr:has-text("browser-agent")');
});

test('submitted task streams its output live and succeeds', async () => {
  await page.fill('#command', 'for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2');
  await page.click('#run');
  // The output view follows the new task while it runs.
  await page.waitForSelector('#output:has-text("line 1")');
  await page.waitForSelector('#detail-status[data-status="running"]');
  await page.waitForSelector('#output:has-text("line 3")');
  await page.waitForSelector('#output .stderr:has-text("oops")');
  await page.waitForSelector('#detail-status[data-status="succeeded"]');
  const text = await page.textContent('#output');
  assert.equal(text.match(/line 2/g).length, 1, 'no line shown twice');
  await page.waitForSelector('#tasks tbody tr .badge[data-status="succeeded"]');
});

test('a long task can be cancelled from the list', async () => {
  await page.fill('#command', 'echo waiting; sleep 60');
  await page.click('#run');
  await page.waitForSelector('#detail-status[data-status="running"]');
  await page.click('#tasks tbody tr.selected button.cancel');
  await page.waitForSelector('#detail-status[data-status="cancelled"]');
  await page.waitForSelector('#tasks tbody tr.selected .badge[data-status="cancelled"]');
});

test('bad input shows the coordinator\'s reason', async () => {
  await page.fill('#command', 'true');
  await page.fill('#target', 'no-such-agent');
  await page.click('#run');
  await page.waitForSelector('#submit-error:has-text("no-such-agent")');
  await page.fill('#target', '');
});

test('a container task is listed like any other, saying why it waits', async () => {
  // The browser agent has no Docker daemon: the task queues, and says so.
  const r = await fetch(`${url}/api/tasks`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ docker: { image: 'busybox', command: ['echo', 'from a container'] } }),
  });
  assert.equal(r.status, 201);
  const row = '#tasks tbody tr:has-text("docker run busybox echo from a container")';
  await page.waitForSelector(`${row} .badge[data-status="queued"]`);
  await page.click(row);
  await page.waitForSelector('#detail-reason:has-text("that runs containers (docker=true)")');
});

test('host charts, service health and alerts update live; an alert is resolved from the page', async () => {
  const host = '#hosts .host[data-agent="browser-agent"]';
  await page.waitForSelector(`${host} .cpu:has-text("%")`);
  await page.waitForSelector('#services tr[data-service="agent/browser-agent"] .badge.healthy');
  await page.waitForSelector('#services tr[data-service="coordinator"]');
  // Every agent raises one; the test resolves the browser agent's.
  const alert = '#alerts li:has-text("agent browser-agent process uses")';
  await page.waitForSelector(alert);
  await page.click(`${alert} button.resolve`);
  await page.waitForSelector(alert, { state: 'detached' });
  const r = await fetch(`${url}/api/monitoring/alerts`);
  const { alerts } = await r.json();
  assert.ok(alerts.some((a) => a.rule === 'process_memory' && a.resolvedBy === 'manual'),
    'the coordinator recorded the resolution');
});

// Fills and submits the fleet run form; returns the id of the run it opens.
async function startRun({ command, selector = 'role=web', concurrency = '', errors = '' }) {
  for (const agent of ['web-1', 'web-2']) {
    await page.waitForSelector(`#agents tbody tr:has(td:text-is("${agent}")) .badge.running`);
  }
  const before = await page.getAttribute('#run-view', 'data-run-id');
  await page.fill('#run-command', command);
  await page.fill('#run-selector', selector);
  await page.fill('#run-max-concurrency', concurrency);
  await page.fill('#run-max-errors', errors);
  await page.click('#run-submit');
  await page.waitForFunction((old) => {
    const view = document.querySelector('#run-view');
    return !view.hidden && view.dataset.runId && view.dataset.runId !== old;
  }, before);
  return page.getAttribute('#run-view', 'data-run-id');
}

const grid = '#run-view #run-grid';
const cell = (agent, status) => `${grid} .target[data-agent="${agent}"]${status ? `[data-status="${status}"]` : ''}`;

test('a fleet run from the form shows every target live, one at a time, and follows a target\'s output', async () => {
  const id = await startRun({ command: 'echo hello from $TASKGRID_AGENT_ID; sleep 1', concurrency: '1' });
  await page.waitForSelector(cell('web-1'));
  await page.waitForSelector(cell('web-2'));
  assert.equal(await page.locator(`${grid} .target`).count(), 2, 'one cell per agent matching role=web');
  await page.waitForSelector('#run-selector-shown:text-is("role=web")');
  await page.waitForSelector(`${grid} .target.running`);
  assert.equal(await page.locator(`${grid} .target.running`).count(), 1, 'max concurrency 1');
  await page.waitForSelector(cell('web-1', 'succeeded'));
  await page.waitForSelector(cell('web-2', 'succeeded'));
  await page.waitForSelector('#run-status[data-status="succeeded"]');
  await page.waitForSelector('#run-counts [data-count="succeeded"] b:text-is("2")');
  const row = `#runs tbody tr[data-run-id="${id}"]`;
  await page.waitForSelector(`${row} .badge[data-status="succeeded"]`);
  await page.waitForSelector(`${row} [data-count="done"]:text-is("2/2")`);

  // The second target started only after the first had finished.
  const run = await (await fetch(`${url}/api/runs/${id}`)).json();
  const targets = await Promise.all(run.targets.map(async (t) => (await fetch(`${url}/api/tasks/${t.taskId}`)).json()));
  targets.sort((a, b) => Date.parse(a.dispatchedAt) - Date.parse(b.dispatchedAt));
  assert.ok(Date.parse(targets[1].dispatchedAt) >= Date.parse(targets[0].finishedAt),
    `${targets[1].agentId} was dispatched before ${targets[0].agentId} finished`);

  // A cell opens that target's output in the task detail panel.
  await page.click(cell('web-2'));
  await page.waitForSelector(`${cell('web-2')}.selected`);
  await page.waitForSelector('#output:has-text("hello from web-2")');
  await page.waitForSelector('#detail-status[data-status="succeeded"]');
  assert.ok(!(await page.textContent('#output')).includes('web-1'), 'only the clicked target\'s output');
  await page.locator('#run-view').screenshot({ path: `${artifacts}/run-view.png` });
});

test('a failed fleet run shows red cells and its first failure with its output', async () => {
  const id = await startRun({ command: 'echo boom on $TASKGRID_AGENT_ID >&2; exit 3' });
  await page.waitForSelector(cell('web-1', 'failed'));
  await page.waitForSelector(cell('web-2', 'failed'));
  await page.waitForSelector('#run-status[data-status="failed"]');
  for (const agent of ['web-1', 'web-2']) {
    const colour = await page.$eval(cell(agent), (el) => getComputedStyle(el).borderTopColor);
    assert.equal(colour, 'rgb(248, 81, 73)', `${agent}'s cell is red`);
    assert.match(await page.textContent(cell(agent)), /exit 3/);
  }
  await page.waitForSelector('#run-failure:not([hidden]) .exit:text-is("3")');
  const agent = await page.getAttribute('#run-failure', 'data-agent');
  assert.ok(['web-1', 'web-2'].includes(agent), `first failure names a target, got ${agent}`);
  await page.waitForSelector(`#run-failure .tail .stderr:has-text("boom on ${agent}")`);
  await page.waitForSelector(`#runs tbody tr[data-run-id="${id}"] [data-count="failed"]:text-is("2")`);
  await page.locator('#run-view').screenshot({ path: `${artifacts}/run-view-failed.png` });
});

test('a fleet run stops at max errors: the target not started is cancelled', async () => {
  await startRun({ command: 'exit 3', concurrency: '1', errors: '1' });
  await page.waitForSelector('#run-status[data-status="failed"]');
  await page.waitForSelector(`${grid} .target.failed`);
  await page.waitForSelector(`${grid} .target.cancelled[data-status="cancelled"]`);
  assert.equal(await page.locator(`${grid} .target.failed`).count(), 1, 'one target ran and failed');
  assert.notEqual((await page.textContent('#run-reason')).trim(), '', 'the run says why it stopped');
});

test('a run picked from the list opens with its targets\' final states', async () => {
  const row = '#runs tbody tr[data-run-id]:has(.badge[data-status="succeeded"])';
  const id = await page.getAttribute(row, 'data-run-id');
  await page.click(row);
  await page.waitForSelector(`#run-view[data-run-id="${id}"] #run-status[data-status="succeeded"]`);
  await page.waitForSelector(cell('web-1', 'succeeded'));
  await page.waitForSelector(cell('web-2', 'succeeded'));
  await page.waitForSelector('#run-failure', { state: 'hidden' });
  await page.waitForSelector(`#runs tbody tr.selected[data-run-id="${id}"]`);
});

test('a fleet run matching no agent is refused with the coordinator\'s reason', async () => {
  await page.fill('#run-command', 'true');
  await page.fill('#run-selector', 'role=nowhere');
  await page.click('#run-submit');
  await page.waitForSelector('#run-error:not([hidden])');
  assert.match(await page.textContent('#run-error'), /role=nowhere/, 'the error names the selector');
});
