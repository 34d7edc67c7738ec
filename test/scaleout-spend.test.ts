/**
 * The tokens of a BullMQ attempt lost with its worker count in the re-run (issue 18, docs/scale-out.md),
 * as an unfinished local attempt's do: a real redis-server on a unix socket, a real `meta-agent
 * watch` folder host and real `meta-agent worker` processes running the openai engine against
 * the scripted model server. The first attempt takes two scripted steps, then waits on a model
 * call that is never answered; the test reads the spend the worker recorded in the job, kills
 * the worker, and lets the next attempt finish.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { execa } from 'execa';
import { makeWorkspace, type TestWorkspace } from './helpers/workspace.ts';
import { finish, startFakeLlm, toolCall, type FakeLlm, type Reply } from './helpers/fakeLlm.ts';
import { killAll, killHard, publish, signal, startMetaAgent, startWatchReady, waitFor, type WatchProc } from './helpers/procs.ts';
import { startRedis } from './helpers/redis.ts';

const STEP1 = { prompt_tokens: 1000, completion_tokens: 100 };
const STEP2 = { prompt_tokens: 2000, completion_tokens: 200 };
const LAST = { prompt_tokens: 500, completion_tokens: 50 };

interface Rig {
  ws: TestWorkspace;
  dir: string;
  socket: string;
  workerRoot: string;
  env: Record<string, string>;
  llm: FakeLlm;
  /** Until set, every model call after the first attempt's two steps is left unanswered. */
  answer: { now: boolean };
  /** Chat calls the model server answered or held. */
  calls: () => number;
  workers: WatchProc[];
  stopRedis(): Promise<void>;
}

async function makeRig(): Promise<Rig> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-spend-'));
  const answer = { now: false };
  // The folder host's doctor asks /models at start: only chat calls are the run's steps.
  let calls = 0;
  const llm = await startFakeLlm((req): Reply => {
    if (!req.path.endsWith('/chat/completions')) return { body: { object: 'list', data: [{ id: 'scripted-model', object: 'model' }] } };
    const i = calls++;
    if (i === 0) return toolCall('read_file', { path: 'README.md' }, { usage: STEP1 });
    if (i === 1) return toolCall('read_file', { path: 'README.md' }, { usage: STEP2 });
    return answer.now ? withUsage(finish('Read it; nothing to change.'), LAST) : { hang: true };
  });
  const common = [
    'tools: {shell: off}',
    'sandbox: none',
    'execution:\n  engine: bullmq\n  lock_s: 2\n  max_stalled: 1',
    'queue:\n  scan_interval_ms: 200\n  settle_ms: 0',
  ];
  const ws = await makeWorkspace({ llmUrl: llm.url, project: '    scope: ["**"]', extra: common.join('\n') });
  const workerRoot = path.join(dir, 'worker-machine');
  await fs.mkdir(workerRoot);
  const llmYaml = ['llm:', '  model: scripted-model', `  base_url: ${llm.url}`, '  max_retries: 0', '  request_timeout_s: 600'];
  await fs.writeFile(
    path.join(workerRoot, 'meta-agent.yaml'),
    `${[...llmYaml, 'projects:', '  bot:', '    repo: ./absent', `    remote: ${JSON.stringify(ws.repo)}`, '    scope: ["**"]', ...common].join('\n')}\n`,
  );
  const redis = await startRedis(path.join(dir, 'redis'));
  const { socket } = redis;
  return {
    ws,
    dir,
    socket,
    workerRoot,
    env: { REDIS_URL: `unix://${socket}`, META_AGENT_LOG: 'json' },
    llm,
    answer,
    calls: () => calls,
    workers: [],
    stopRedis: () => redis.stop(),
  };
}

function withUsage(reply: Reply, usage: typeof LAST): Reply {
  const body = reply.body as { usage: Record<string, unknown> };
  return { ...reply, body: { ...body, usage: { ...body.usage, ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } } };
}

function startWorker(rig: Rig, args: string[] = []): WatchProc {
  const proc = startMetaAgent(['worker', '--root', rig.workerRoot, ...args], rig.env);
  rig.workers.push(proc);
  return proc;
}

async function cleanup(rig: Rig): Promise<void> {
  await Promise.all(rig.workers.map((w) => killHard(w)));
  await killAll();
  await rig.stopRedis().catch(() => undefined);
  await rig.llm.close();
  await rig.ws.cleanup();
  await fs.rm(rig.dir, { recursive: true, force: true });
}

/** The usage the running job's progress records (what the worker wrote after its last step). */
async function recordedSpend(rig: Rig): Promise<{ requests: number; prompt_tokens: number; completion_tokens: number } | null> {
  const queue = new Queue('meta-agent', { connection: { path: rig.socket } });
  try {
    const [job] = await queue.getJobs(['active']);
    return (job?.progress as { usage?: { requests: number; prompt_tokens: number; completion_tokens: number } } | undefined)?.usage ?? null;
  } finally {
    await queue.close();
  }
}

/** The spend the folder host recorded in the task's ledger run. */
async function ledgerSpend(rig: Rig): Promise<{ requests: number } | null> {
  const dir = path.join(rig.ws.settings.layout.state, 'ledger');
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json') && !n.startsWith('.'));
  for (const name of names) {
    const entry = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8'));
    const spent = entry.runs?.[0]?.spent;
    if (spent) return spent;
  }
  return null;
}

const task = `---\nproject: bot\ntype: custom\nobjective: "Read the README"\nscope: ["README.md"]\n---\n\nRead README.md.\n`;

async function lostAttemptCounted(how: 'SIGKILL' | 'SIGTERM' | 'FLUSHALL'): Promise<void> {
  const rig = await makeRig();
  try {
    const { layout } = rig.ws.settings;
    const host = await startWatchReady(rig.ws.root, rig.env);
    // Two at once: after a flush the job added again may come to this worker while its lost run still waits.
    const w1 = startWorker(rig, ['--concurrency', '2']);
    await publish(layout.inbox, 'spend.md', task);
    const outputs = () => [host, ...rig.workers].map((p) => p.output().slice(-3000)).join('\n-----\n');
    await waitFor("the first attempt's two steps recorded in the job", async () => (await recordedSpend(rig))?.requests === 2, 90_000, outputs);
    assert.equal(await recordedSpend(rig), { requests: 2, prompt_tokens: 3000, cached_tokens: 80, completion_tokens: 300, cost_usd: null });
    // Its third call is asked and never answered: the attempt is lost while it waits (on a busy machine the
    // kill could otherwise come before the call, and the count below would be one short).
    await waitFor('the lost attempt to make its third call', () => rig.calls() === 3, 60_000, outputs);
    if (how === 'SIGKILL') await killHard(w1);
    else if (how === 'SIGTERM') {
      signal(w1, 'SIGTERM');
      await w1.exited;
    } else {
      // The folder host records the spend it saw in the ledger run: from there it carries it over the loss.
      await waitFor('the spend in the ledger', async () => (await ledgerSpend(rig))?.requests === 2, 60_000, outputs);
      await execa('redis-cli', ['-s', rig.socket, 'FLUSHALL']);
      await waitFor('the host to add the job again', () => host.output().includes('gone from Redis'), 60_000, outputs);
    }
    rig.answer.now = true;
    const w2 = how === 'FLUSHALL' ? w1 : startWorker(rig);
    await waitFor('the task in done/', () => existsSync(path.join(layout.done, 'spend.md')), 90_000, outputs);
    const report = JSON.parse(await fs.readFile(path.join(layout.reports, 'spend.json'), 'utf8'));
    assert.is(report.status, 'ok', JSON.stringify(report.error));
    // Without the carry: 1 request, 550 tokens (the last attempt only).
    assert.is(report.usage.requests, 3, JSON.stringify(report.usage));
    assert.is(report.usage.prompt_tokens, 3500);
    assert.is(report.usage.completion_tokens, 350);
    assert.match(w2.output(), /an earlier attempt of this job spent tokens; carried/);
    assert.is((await ledgerSpend(rig))?.requests, 3, 'the ledger run records every attempt');
    assert.is(rig.calls(), 4, 'the lost attempt: two steps and a call never answered; the re-run: one step; nothing else');
  } finally {
    await cleanup(rig);
  }
}

test("a worker killed with kill -9 mid-job: the lost attempt's tokens are in the filed report's usage (what the cycle's budget counts)", async () => {
  await lostAttemptCounted('SIGKILL');
});

test("a worker stopped with SIGTERM mid-job: the returned attempt's tokens are in the re-run's usage", async () => {
  await lostAttemptCounted('SIGTERM');
});

test('Redis flushed mid-job: the folder host adds the job again with the spend it last saw, and the re-run counts it', async () => {
  await lostAttemptCounted('FLUSHALL');
});

test.run();
