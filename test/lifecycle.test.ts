/**
 * The service's lifecycle scope (src/service/lifecycle.ts) on its own: the order of a stop
 * (no new work, start-up first, closers, in-flight work with its grace, abort, put back) and
 * a second stop that ends the grace at once. The service-level proofs (real processes and
 * signals) are in stop.test.ts and watch.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { silentLogger } from '../src/log.ts';
import { Lifecycle } from '../src/service/lifecycle.ts';

const HOUR = 3600_000;

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const scope = (graceMs = HOUR) => new Lifecycle({ log: silentLogger(), graceMs, describe: () => ({}) });

test('stop: no new work, start-up finishes before closers run, in-flight work within the grace is not aborted, then put back', async () => {
  const lifecycle = scope();
  const events: string[] = [];
  const startup = deferred();
  const task = deferred();
  lifecycle.starting(startup.promise);
  lifecycle.addCloser(() => events.push('closer'));
  lifecycle.onStop(async () => void events.push('asked to stop'));
  lifecycle.afterStop(async () => void events.push('put back'));
  lifecycle.signal.addEventListener('abort', () => events.push('aborted'));
  void lifecycle.track(task.promise).then(() => events.push('task done'));
  assert.ok(lifecycle.busy);
  const stopped = lifecycle.stop();
  assert.ok(lifecycle.stopping, 'no new work from the first stop()');
  await Promise.resolve();
  assert.equal(events, ['asked to stop'], 'closers wait for start-up');
  startup.resolve();
  await new Promise((r) => setImmediate(r));
  assert.equal(events, ['asked to stop', 'closer'], 'then the closers run; the task has its grace');
  task.resolve();
  await stopped;
  assert.equal(events, ['asked to stop', 'closer', 'task done', 'aborted', 'put back']);
  assert.not.ok(lifecycle.busy);
  assert.is(lifecycle.stop(), stopped, 'stop() again is the same stop');
});

test('a second stop with now ends the grace at once: the work is aborted, and the stop ends when it has wound down', async () => {
  const lifecycle = scope();
  const work = lifecycle.track(new Promise<void>((resolve) => lifecycle.signal.addEventListener('abort', () => resolve())));
  const stopped = lifecycle.stop();
  await new Promise((r) => setImmediate(r));
  assert.not.ok(lifecycle.signal.aborted, 'the first stop gives the grace (an hour here)');
  await lifecycle.stop({ now: true });
  await stopped;
  await work;
  assert.ok(lifecycle.signal.aborted);
  assert.not.ok(lifecycle.busy);
});

test('nothing in flight: no grace (aborted at once); timers are cleared and none starts once stopping', async () => {
  const lifecycle = scope();
  let ticks = 0;
  lifecycle.every(1, () => ticks++);
  await ticksOfOwnTimer(() => ticks > 0); // positive control: the scope's timer ticks
  await lifecycle.stop();
  assert.ok(lifecycle.signal.aborted, 'aborted without waiting an hour');
  const after = ticks;
  lifecycle.every(1, () => ticks++);
  await ticksOfOwnTimer(() => false, 10); // as long as ten ticks of a timer of our own
  assert.is(ticks, after, 'no timer ticks after the stop');
  let late = false;
  lifecycle.onStop(async () => void (late = true));
  assert.ok(late, 'asked to stop at once when registered after the stop');
});

/** Lets a 1 ms timer of our own tick until `done()` or `max` times (no wall-clock assertion). */
async function ticksOfOwnTimer(done: () => boolean, max = 10_000): Promise<void> {
  for (let i = 0; i < max && !done(); i++) await new Promise((r) => setTimeout(r, 1));
}

test.run();
