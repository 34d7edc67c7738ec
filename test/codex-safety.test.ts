/**
 * The `codex` preset's safety with the real Codex CLI (installed on demand) against a scripted
 * Responses API: secrets of the service's environment and of the real repository's `.env`
 * never reach the model, even when the model asks Codex's shell for them; a model that stops
 * answering ends the run by `command.idle_timeout_s`.
 *
 * These rely on the command engine's sandbox (bubblewrap: the real repository is not visible
 * to the agent) and on `command.idle_timeout_s`.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTask } from '../src/run/runTask.ts';
import { ReportSchema } from '../src/contract/report.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { makeWorkspace, readJson, repoFingerprint, worktreeCount, writeTask, type TestWorkspace } from './helpers/workspace.ts';
import { assistantMessage, functionCall, startResponsesApi, toolOutputs, type ResponsesApi, type Turn } from './helpers/responsesApi.ts';
import { codexOrSkip, teardownCodexCase } from './helpers/codexCli.ts';

const API_KEY = 'sk-scripted-codex-key-CANARY-7f3a';
const ENV_CANARY = 'env-canary-5d1c9e';
const DOTENV_CANARY = 'dotenv-canary-b84f20';
/** Printed by the shell as `marker-$((6000+1234))`, so only the command's output (not its text) holds it. */
const OUTPUT_MARKER = 'marker-7234';

const TASK = `---
project: bot
type: custom
objective: Document the sizing rules in bot/sizing.py
scope: ["bot/sizing.py"]
---
Add one comment line.
`;

interface Case {
  ws: TestWorkspace;
  api: ResponsesApi;
  before: string;
}

async function setup(
  codex: string,
  script: Turn[] | ((r: any, i: number) => Turn),
  commandExtra: string[] = [],
  llmPatch?: (yaml: string) => string,
): Promise<Case> {
  const api = await startResponsesApi(script);
  try {
    const extra = ['engine: command', 'command:', '  preset: codex', `  program: ${JSON.stringify(codex)}`, '  timeout_s: 240', ...commandExtra].join('\n');
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, OPENAI_API_KEY: API_KEY, EXCHANGE_SECRET: ENV_CANARY, BOT_NOTE: ENV_CANARY };
    let ws = await makeWorkspace({ extra, llmUrl: api.url, env });
    if (llmPatch) {
      const file = path.join(ws.root, 'meta-agent.yaml');
      await fs.writeFile(file, llmPatch(await fs.readFile(file, 'utf8')));
      ws = { ...ws, settings: await loadSettings(ws.root, env) };
    }
    return { ws, api, before: await repoFingerprint(ws.repo) };
  } catch (error) {
    await api.close();
    throw error;
  }
}

const teardown = teardownCodexCase;

test('codex preset: canaries of the service environment and of the real repository .env never reach the model', async () => {
  const codex = await codexOrSkip('codex canaries');
  if (!codex) return;
  let c: Case | undefined;
  try {
    // The real repository's .env (git-ignored) holds a canary.
    c = await setup(codex, (_request, index) => {
      if (index === 0) {
        const repo = c!.ws.repo;
        const cmd = [
          'echo marker-$((6000+1234))',
          'env',
          `cat ${JSON.stringify(path.join(repo, '.env'))}`,
          'cat /proc/$PPID/environ | tr "\\0" "\\n"',
          `printf '# Sizing rules: see position_size.\\n' >> bot/sizing.py`,
        ].join('; ');
        return { items: [functionCall('exec_command', { cmd })] };
      }
      return { items: [assistantMessage('Done.')] };
    });
    await fs.writeFile(path.join(c.ws.repo, '.env'), `EXCHANGE_API_KEY=${DOTENV_CANARY}\n`);
    c.before = await repoFingerprint(c.ws.repo);
    const file = await writeTask(c.ws.settings.layout.inbox, 'codex-canary.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));

    // Positive control: the command ran and its output went to the model (the marker is there).
    const turns = c.api.turns();
    assert.ok(turns.length >= 2, `Codex sent ${turns.length} request(s)`);
    const outputs = toolOutputs(turns[1]!).join('\n');
    assert.ok(outputs.includes(OUTPUT_MARKER), `the shell's output reached the model: ${outputs.slice(0, 500)}`);
    assert.ok(outputs.includes('PATH='), `env ran: ${outputs}`);

    const leaks = c.api.requests.flatMap((request, index) =>
      [ENV_CANARY, DOTENV_CANARY, API_KEY].filter((canary) => request.raw.includes(canary)).map((canary) => `request ${index} carries ${canary}`),
    );
    assert.equal(leaks, []);
    assert.is(report.outcome, 'completed', report.error?.message);
    assert.is(await repoFingerprint(c.ws.repo), c.before);
    assert.is(await worktreeCount(c.ws.repo), 0);
  } finally {
    await teardown(c);
  }
});

test('codex preset: a model that stops answering ends the run by command.idle_timeout_s', async () => {
  const codex = await codexOrSkip('codex idle timeout');
  if (!codex) return;
  let c: Case | undefined;
  try {
    // Codex itself would wait llm.request_timeout_s (600 s) per try: the idle timeout must end it first.
    c = await setup(codex, [{ hang: true }], ['  idle_timeout_s: 5'], (yaml) => yaml.replace('request_timeout_s: 5', 'request_timeout_s: 600'));
    const file = await writeTask(c.ws.settings.layout.inbox, 'codex-idle.md', TASK);
    const result = await runTask(file, { settings: c.ws.settings });
    const report = ReportSchema.parse(await readJson(result.report_path));
    assert.is(report.outcome, 'limit_reached', report.error?.message);
    // Not command.timeout_s (240 s): the message names the idle limit.
    assert.match(report.error?.message ?? '', /idle/);
    assert.ok(c.api.turns().length >= 1, 'Codex did reach the model');
    assert.is(await worktreeCount(c.ws.repo), 0);
  } finally {
    await teardown(c);
  }
});

test.run();
