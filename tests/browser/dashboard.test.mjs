// The dashboard in a real browser (Debian's Chromium through playwright-core)
// against a real gateway, coordinator and agent started by
// run-browser-test.sh, which passes GATEWAY_URL and ARTIFACTS.
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
  const alert = '#alerts li:has-text("process uses")';
  await page.waitForSelector(alert);
  await page.click(`${alert} button.resolve`);
  await page.waitForSelector(alert, { state: 'detached' });
  const r = await fetch(`${url}/api/monitoring/alerts`);
  const { alerts } = await r.json();
  assert.ok(alerts.some((a) => a.rule === 'process_memory' && a.resolvedBy === 'manual'),
    'the coordinator recorded the resolution');
});
