/**
 * What must hold after every night, read from the folders, the ledger, the reports and the
 * bot's git history (never from the service's memory). Each check returns breaches; an
 * empty list means the invariant holds.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { poolRoot } from '../src/repo/worktreePool.ts';
import type { Layout } from '../src/workspace/layout.ts';
import type { LedgerEntry } from '../src/queue/ledger.ts';
import { ledgerKey } from '../src/queue/ledger.ts';
import type { CycleReport } from '../src/contract/cycle.ts';
import { sha256 } from './human.ts';

export interface Breach {
  night: number;
  invariant: string;
  detail: string;
}

/** What the harness itself recorded while it drove the service. */
export interface Tracking {
  /** Every task file seen in inbox/ (or dropped by the person): name -> sha256 at first sight. */
  inboxSeen: Map<string, string>;
  /** The person's drops: ledger key -> how many times the same name + content was dropped. */
  humanDrops: Map<string, number>;
  /** sha256 -> how many copies of that content the person dropped. */
  humanDropHashes: Map<string, number>;
  /** Patches seen in patches/pending/: (task@run, see patchKey) -> id. */
  patchesSeen: Map<string, string>;
  /** Patch ids the person moved into approved/. */
  approved: Set<string>;
  /** Commits the person made. */
  humanCommits: Set<string>;
}

export function newTracking(): Tracking {
  return { inboxSeen: new Map(), humanDrops: new Map(), humanDropHashes: new Map(), patchesSeen: new Map(), approved: new Set(), humanCommits: new Set() };
}

export async function names(dir: string, options: { dot?: boolean } = {}): Promise<string[]> {
  const all = await fs.readdir(dir).catch(() => [] as string[]);
  return all.filter((n) => n !== '.gitkeep' && (options.dot || !n.startsWith('.'))).sort();
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

const isTaskFile = (n: string) => n.toLowerCase().endsWith('.md') && !n.endsWith('.error.md') && !n.startsWith('.');

/** Task files (name -> sha256) in each queue folder. */
export async function queueContents(layout: Layout): Promise<Record<'inbox' | 'processing' | 'done' | 'failed', Map<string, string>>> {
  const out = {} as Record<'inbox' | 'processing' | 'done' | 'failed', Map<string, string>>;
  for (const k of ['inbox', 'processing', 'done', 'failed'] as const) {
    const m = new Map<string, string>();
    for (const n of (await names(layout[k])).filter(isTaskFile)) {
      const data = await fs.readFile(path.join(layout[k], n)).catch(() => null);
      if (data) m.set(n, sha256(data));
    }
    out[k] = m;
  }
  return out;
}

/** Every claim the ledger recorded is a file that entered inbox/: add it to what must not be lost. */
export async function trackLedger(layout: Layout, t: Tracking): Promise<void> {
  const dir = path.join(layout.state, 'ledger');
  for (const n of (await names(dir)).filter((x) => x.endsWith('.json'))) {
    const entry = await readJson<LedgerEntry>(path.join(dir, n));
    if (entry && !t.inboxSeen.has(entry.name)) t.inboxSeen.set(entry.name, entry.sha256);
  }
}

/** Nothing lost: every task file that entered inbox/ is in done/, failed/ (with .error.md) or still queued. */
export async function checkNothingLost(night: number, layout: Layout, t: Tracking, cycles: CycleReport[]): Promise<Breach[]> {
  const breaches: Breach[] = [];
  await trackLedger(layout, t);
  const q = await queueContents(layout);
  const found = new Map<string, number>();
  for (const m of Object.values(q)) for (const h of m.values()) found.set(h, (found.get(h) ?? 0) + 1);
  const required = new Map<string, { names: string[]; count: number }>();
  for (const [name, h] of t.inboxSeen) {
    const r = required.get(h) ?? { names: [], count: 0 };
    r.names.push(name);
    r.count = Math.max(r.count, t.humanDropHashes.get(h) ?? 1);
    required.set(h, r);
  }
  for (const [h, r] of required) {
    const have = found.get(h) ?? 0;
    if (have < r.count)
      breaches.push({
        night,
        invariant: 'lost-task',
        detail: `${r.names.join(', ')} (sha256 ${h.slice(0, 12)}): ${r.count} dropped, ${have} found in inbox/processing/done/failed`,
      });
  }
  const all = new Set([...q.inbox.keys(), ...q.processing.keys(), ...q.done.keys(), ...q.failed.keys()]);
  for (const c of cycles) {
    for (const task of c.tasks) {
      if (![...all].some((n) => n === `${task.task_id}.md` || n.startsWith(`${task.task_id}-`))) {
        breaches.push({
          night,
          invariant: 'lost-task',
          detail: `cycle ${c.cycle_id} lists ${task.task_id}, but no ${task.task_id}.md is in inbox/processing/done/failed`,
        });
      }
    }
  }
  const failedNames = await names(layout.failed);
  for (const n of q.failed.keys()) {
    if (!failedNames.includes(`${n}.error.md`))
      breaches.push({ night, invariant: 'failed-without-explanation', detail: `failed/${n} has no ${n}.error.md beside it` });
  }
  return breaches;
}

/**
 * A patch proposal: the task and the run that made it, from its sidecar (next to it, or left
 * behind anywhere in patches/ with the same sha256), or its content when there is none.
 */
export async function patchKey(file: string, layout: Layout): Promise<string | null> {
  const data = await fs.readFile(file).catch(() => null);
  if (!data) return null;
  const h = sha256(data);
  const own = await readJson<{ task_id?: string; run_id?: string }>(`${file}.json`);
  if (own?.task_id && own.run_id) return `${own.task_id}@${own.run_id}`;
  for (const dir of Object.values(layout.patches)) {
    for (const n of (await names(dir)).filter((x) => x.endsWith('.patch.json'))) {
      const sidecar = await readJson<{ task_id?: string; run_id?: string; sha256?: string }>(path.join(dir, n));
      if (sidecar?.task_id && sidecar.run_id && sidecar.sha256 === h) return `${sidecar.task_id}@${sidecar.run_id}`;
    }
  }
  return `sha256:${h.slice(0, 16)}`;
}

/**
 * Every proposal seen in pending/ is in exactly one of pending/, approved/, applied/,
 * rejected/ (a re-run of its task files its own patch beside it and never moves it). A
 * proposal is a (task, run): a task run again after a crash proposes again, legitimately.
 */
export async function checkPatches(night: number, layout: Layout, t: Tracking): Promise<Breach[]> {
  const breaches: Breach[] = [];
  const where = new Map<string, string[]>();
  const add = (k: string, at: string) => where.set(k, [...(where.get(k) ?? []), at]);
  for (const [folder, dir] of Object.entries(layout.patches)) {
    for (const n of (await names(dir, { dot: true })).filter((x) => x.endsWith('.patch'))) {
      const k = await patchKey(path.join(dir, n), layout);
      if (k) add(k, `${folder}/${n}`);
    }
  }
  for (const [k, id] of t.patchesSeen) {
    const at = where.get(k) ?? [];
    if (at.length !== 1) {
      const similar = [...where.entries()]
        .filter(([other]) => (other !== k && other.startsWith(`${id}@`)) || other.startsWith('sha256:'))
        .map(([other, places]) => `${other}: ${places.join(', ')}`);
      breaches.push({
        night,
        invariant: 'patch-location',
        detail: `patch ${id} (${k}) is in ${at.length} places: ${at.join(', ') || 'nowhere'}${similar.length ? ` (other files: ${similar.join('; ')})` : ''}`,
      });
    }
  }
  return breaches;
}

/** Nothing done twice: a ledger entry has more runs than drops only for re-runs after a crash (recovered) or an interruption. */
export async function checkLedger(night: number, layout: Layout, t: Tracking): Promise<Breach[]> {
  const dir = path.join(layout.state, 'ledger');
  const breaches: Breach[] = [];
  for (const n of (await names(dir)).filter((x) => x.endsWith('.json'))) {
    const entry = await readJson<LedgerEntry>(path.join(dir, n));
    if (!entry) continue;
    const drops = t.humanDrops.get(entry.key) ?? 1;
    const reruns = entry.runs.filter((r) => r.recovered || r.reported?.status === 'interrupted').length;
    if (entry.runs.length > drops + reruns) {
      breaches.push({
        night,
        invariant: 'done-twice',
        detail: `${entry.name} ran ${entry.runs.length} times (${drops} drop(s), ${reruns} recovered/interrupted run(s)): ${JSON.stringify(entry.runs.map((r) => ({ run: r.run_id, pid: r.pid, reported: r.reported?.status ?? null, recovered: r.recovered ?? null })))}`,
      });
    }
  }
  return breaches;
}

interface AppliedResult {
  file: string;
  task_id: string;
  decision: string;
  commit: string | null;
  reason: string | null;
  tests: { passed: boolean } | null;
  dry_run: { passed: boolean } | null;
}

export interface MetaCommit {
  hash: string;
  task: string;
  patchSha: string | null;
}

export async function metaCommits(repo: string): Promise<MetaCommit[]> {
  const { stdout } = await execa('git', ['log', 'main', '--format=%H%x1f%B%x1e'], { cwd: repo });
  const out: MetaCommit[] = [];
  for (const record of stdout.split('\x1e')) {
    const [hash, body] = record.trim().split('\x1f');
    if (!hash || !body) continue;
    const task = /^Meta-Agent-Task: (.+)$/m.exec(body)?.[1]?.trim();
    if (!task) continue;
    out.push({ hash: hash.trim(), task, patchSha: /^Meta-Agent-Patch: ([0-9a-f]{64})$/m.exec(body)?.[1] ?? null });
  }
  return out;
}

/** No commit without an approval and a passed gate; no patch committed twice; every "applied" record has its commit. */
export async function checkCommits(night: number, layout: Layout, repo: string, t: Tracking): Promise<Breach[]> {
  const breaches: Breach[] = [];
  const commits = await metaCommits(repo);
  const results: AppliedResult[] = [];
  for (const n of (await names(layout.patches.applied)).filter((x) => x.endsWith('.result.json'))) {
    const r = await readJson<AppliedResult>(path.join(layout.patches.applied, n));
    if (r) results.push({ ...r, file: n });
  }
  const bySha = new Map<string, string[]>();
  for (const c of commits) {
    if (c.patchSha) bySha.set(c.patchSha, [...(bySha.get(c.patchSha) ?? []), c.hash]);
    if (!t.approved.has(c.task))
      breaches.push({
        night,
        invariant: 'commit-without-approval',
        detail: `commit ${c.hash.slice(0, 10)} (Meta-Agent-Task: ${c.task}) was never approved by the person`,
      });
    const records = results.filter((r) => r.commit === c.hash);
    if (!records.length) {
      // Where the committed patch is now (by its sha256), and what the gate said about it.
      const at: string[] = [];
      for (const [folder, dir] of Object.entries(layout.patches)) {
        for (const n of (await names(dir, { dot: true })).filter((x) => x.endsWith('.patch'))) {
          const data = await fs.readFile(path.join(dir, n)).catch(() => null);
          if (data && c.patchSha && sha256(data) === c.patchSha) at.push(`${folder}/${n}`);
        }
      }
      const reason = at.find((a) => a.startsWith('rejected/'))
        ? (
            await fs
              .readFile(path.join(layout.patches.rejected, `${path.basename(at.find((a) => a.startsWith('rejected/'))!, '.patch')}.reason.md`), 'utf8')
              .catch(() => '')
          )
            .split('\n')
            .find((l) => l && !l.startsWith('#'))
        : undefined;
      breaches.push({
        night,
        invariant: 'commit-without-record',
        detail: `commit ${c.hash.slice(0, 10)} (Meta-Agent-Task: ${c.task}) has no patches/applied/*.result.json naming it; the patch is in ${at.join(', ') || 'no patch folder'}${reason ? ` (reason: ${reason.slice(0, 200)})` : ''}`,
      });
      continue;
    }
    // Every record of the commit (a second, identical proposal is filed as already applied) must show it tested.
    for (const record of records) {
      if (record.decision !== 'applied' || record.task_id !== c.task)
        breaches.push({
          night,
          invariant: 'commit-without-record',
          detail: `${record.file}: decision ${record.decision}, task ${record.task_id} for commit ${c.hash.slice(0, 10)} of ${c.task}`,
        });
      const passed = record.tests?.passed === true && record.dry_run?.passed !== false;
      if (!passed) {
        breaches.push({
          night,
          invariant: record.tests === null && /already applied/.test(record.reason ?? '') ? 'commit-test-evidence-lost' : 'commit-untested',
          detail: `commit ${c.hash.slice(0, 10)} (${c.task}): ${record.file} says tests ${record.tests === null ? 'null' : record.tests.passed ? 'passed' : 'FAILED'}, dry run ${record.dry_run === null ? 'null' : record.dry_run.passed ? 'passed' : 'FAILED'}; reason: ${record.reason ?? '-'}`,
        });
      }
    }
  }
  for (const [sha, hashes] of bySha)
    if (hashes.length > 1)
      breaches.push({
        night,
        invariant: 'committed-twice',
        detail: `patch sha256 ${sha.slice(0, 12)} was committed ${hashes.length} times: ${hashes.map((h) => h.slice(0, 10)).join(', ')}`,
      });
  const onMain = new Set(commits.map((c) => c.hash));
  for (const r of results) {
    if (r.decision === 'applied' && (!r.commit || !onMain.has(r.commit)))
      breaches.push({
        night,
        invariant: 'applied-without-commit',
        detail: `${r.file} says applied as ${r.commit ?? 'null'}, which is not a Meta-Agent commit on main`,
      });
  }
  return breaches;
}

export async function cycleReports(layout: Layout): Promise<CycleReport[]> {
  const dir = path.join(layout.reports, 'cycles');
  const out: CycleReport[] = [];
  for (const n of (await names(dir)).filter((x) => x.endsWith('.json'))) {
    const r = await readJson<CycleReport>(path.join(dir, n));
    if (r) out.push(r);
  }
  return out.sort((a, b) => a.started_at.localeCompare(b.started_at));
}

/** The morning: this night's cycle report(s) exist, once per job, and list exactly the tasks the cycle created; the budget held. */
export async function checkCycles(
  night: number,
  layout: Layout,
  expected: Array<{ goal: string; from: Date; to: Date }>,
  maxStepTokens: number,
  served: Map<string, number>,
): Promise<{ breaches: Breach[]; reports: CycleReport[] }> {
  const breaches: Breach[] = [];
  const all = await cycleReports(layout);
  const q = await queueContents(layout);
  const taskFiles = [...q.inbox.keys(), ...q.processing.keys(), ...q.done.keys(), ...q.failed.keys()];
  const mine: CycleReport[] = [];
  for (const e of expected) {
    const matching = all.filter((r) => r.goal === e.goal && Date.parse(r.started_at) >= e.from.getTime() && Date.parse(r.started_at) < e.to.getTime());
    if (matching.length !== 1) {
      breaches.push({
        night,
        invariant: 'cycle-report',
        detail: `${matching.length} cycle report(s) of ${e.goal} started between ${e.from.toISOString()} and ${e.to.toISOString()} (expected 1): ${matching.map((r) => r.cycle_id).join(', ') || 'none'}`,
      });
    }
    for (const r of matching) {
      mine.push(r);
      const listed = r.tasks.map((x) => x.task_id).sort();
      // S<i>_<project>_<cycle id>.md, or with -2, -3 when the name was taken.
      const created = taskFiles
        .filter((n) => n.includes(r.cycle_id))
        .map((n) => n.slice(0, -'.md'.length))
        .map((id) => (id.endsWith(r.cycle_id) ? id : id.replace(/-\d+$/, '')))
        .sort();
      const uniqueCreated = [...new Set(created)];
      if (JSON.stringify(listed) !== JSON.stringify(uniqueCreated)) {
        breaches.push({
          night,
          invariant: 'cycle-report',
          detail: `cycle ${r.cycle_id} lists [${listed.join(', ')}] but created [${uniqueCreated.join(', ')}]`,
        });
      }
      for (const x of r.tasks)
        if (x.status === 'timeout')
          breaches.push({ night, invariant: 'cycle-report', detail: `cycle ${r.cycle_id}: task ${x.task_id} has no report (status timeout): ${x.summary}` });
      // What the model served to the cycle's tasks (every attempt, killed ones too): the real spend.
      const real = r.tasks.reduce((sum, x) => sum + (served.get(x.task_id) ?? 0), 0);
      if (real > r.budget.tokens) {
        breaches.push({
          night,
          invariant: 'budget',
          detail: `cycle ${r.cycle_id}: the model served ${real} tokens to its tasks (every attempt), over its budget of ${r.budget.tokens}; the report says ${r.budget.spent_tokens}; tasks: ${r.tasks.map((x) => `${x.task_id} ${served.get(x.task_id) ?? 0}`).join(', ')}`,
        });
      }
      if (r.budget.spent_tokens > r.budget.tokens) {
        const overshoot = r.budget.spent_tokens - r.budget.tokens;
        breaches.push({
          night,
          invariant: 'budget',
          detail: `cycle ${r.cycle_id} spent ${r.budget.spent_tokens} of ${r.budget.tokens} tokens (over by ${overshoot}; one model step is ${maxStepTokens}); tasks: ${r.tasks.map((x) => `${x.task_id} ${x.tokens}`).join(', ')}`,
        });
      }
    }
  }
  return { breaches, reports: mine };
}

async function walk(dir: string, skip: (rel: string) => boolean, base = dir, out: string[] = []): Promise<string[]> {
  for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, e.name);
    const rel = path.relative(base, full);
    if (skip(rel)) continue;
    out.push(rel + (e.isDirectory() ? '/' : ''));
    if (e.isDirectory() && !e.isSymbolicLink()) await walk(full, skip, base, out);
  }
  return out;
}

/** Once idle: no worktree, no lock, no temp file, no claim left; the person's checkout is clean. */
export async function checkLeftovers(night: number, layout: Layout, repo: string): Promise<Breach[]> {
  const breaches: Breach[] = [];
  // The worktree pool's slots stay between runs by design (reset at the start of each run).
  const list = (await execa('git', ['worktree', 'list', '--porcelain'], { cwd: repo })).stdout
    .split('\n')
    .filter((l) => l.startsWith('worktree ') && !l.startsWith(`worktree ${poolRoot(layout)}${path.sep}`))
    .slice(1);
  if (list.length) breaches.push({ night, invariant: 'leftover-worktree', detail: `git worktree list: ${list.join('; ')}` });
  const wt = await names(layout.worktrees, { dot: true });
  if (wt.length) breaches.push({ night, invariant: 'leftover-worktree', detail: `.meta-agent/worktrees/: ${wt.join(', ')}` });
  const repoRel = path.relative(layout.root, repo);
  const files = await walk(layout.root, (rel) => rel === repoRel || rel.startsWith(`${repoRel}${path.sep}`) || rel.startsWith(path.join('reports', 'archive')));
  const locks = files.filter((f) => /\.lock\/?$/.test(f));
  for (const lock of locks) breaches.push({ night, invariant: 'leftover-lock', detail: lock });
  const temps = files.filter((f) => /\.tmp\/?$/.test(f) || path.basename(f).startsWith('.taken-') || /\.partial$/.test(f));
  for (const f of temps) breaches.push({ night, invariant: 'leftover-temp', detail: f });
  const snapshots = files.filter((f) => f.startsWith(path.join('.meta-agent', 'gate-snapshots') + path.sep) && !f.endsWith('/'));
  for (const f of snapshots) breaches.push({ night, invariant: 'leftover-temp', detail: `gate snapshot ${f}` });
  // Git's own locks in the person's repository: with one left, their next commit fails.
  for (const lock of ['HEAD.lock', 'index.lock', path.join('refs', 'heads', 'main.lock')]) {
    if (await fs.stat(path.join(repo, '.git', lock)).catch(() => null))
      breaches.push({ night, invariant: 'leftover-lock', detail: `${path.join(repo, '.git', lock)} (the person's repository is locked for git)` });
  }
  const processing = await names(layout.processing, { dot: true });
  if (processing.length) breaches.push({ night, invariant: 'leftover-claim', detail: `processing/: ${processing.join(', ')}` });
  const status = (await execa('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: repo })).stdout.trim();
  if (status) breaches.push({ night, invariant: 'checkout-dirty', detail: `git status in the bot's checkout: ${status.split('\n').join('; ')}` });
  return breaches;
}

/** logs/ and reports/ hold nothing older than the retention (by the service's own rules). */
export async function checkRetention(
  night: number,
  layout: Layout,
  retention: { logs_days: number; reports_days: number },
  clockAtRetention: Date,
  retentionFrom = Infinity,
): Promise<Breach[]> {
  const breaches: Breach[] = [];
  const DAY = 86_400_000;
  const now = clockAtRetention.getTime();
  const realToday = new Date().toISOString().slice(0, 10);
  for (const n of await names(layout.logs)) {
    const date = /_(\d{4}-\d{2}-\d{2})\.log$/.exec(n)?.[1];
    if (!date || date === realToday) continue;
    const stat = await fs.stat(path.join(layout.logs, n)).catch(() => null);
    if (!stat || Date.now() - stat.mtimeMs < 3600_000) continue; // in use
    if (Date.parse(`${date}T00:00:00Z`) + DAY <= now - retention.logs_days * DAY)
      breaches.push({ night, invariant: 'retention', detail: `logs/${n} is older than logs_days ${retention.logs_days}` });
  }
  const pending = new Set((await names(layout.patches.pending)).filter((n) => n.endsWith('.patch')).map((n) => n.slice(0, -'.patch'.length)));
  const limit = now - retention.reports_days * DAY;
  for (const n of (await names(layout.reports)).filter((x) => x.endsWith('.json'))) {
    const r = await readJson<{ finished_at?: string }>(path.join(layout.reports, n));
    const finished = Date.parse(r?.finished_at ?? '');
    const id = n.slice(0, -'.json'.length);
    // finished_at is the real time; the simulated clock is days ahead: a run that finished after the
    // retention pass (a task re-run late in the evening) is old by the clock but was never seen by it.
    if (finished >= retentionFrom) continue;
    if (finished < limit && !pending.has(id))
      breaches.push({
        night,
        invariant: 'retention',
        detail: `reports/${n} finished ${r?.finished_at}, older than reports_days ${retention.reports_days} at ${clockAtRetention.toISOString()}`,
      });
  }
  for (const r of await cycleReports(layout)) {
    if (Date.parse(r.finished_at) < limit)
      breaches.push({
        night,
        invariant: 'retention-cycles',
        detail: `reports/cycles/${r.cycle_id}.json finished ${r.finished_at}, older than reports_days ${retention.reports_days} at ${clockAtRetention.toISOString()}`,
      });
  }
  return breaches;
}

/** The bot still passes its tests and dry run at the branch head (every commit went through the gate). */
export async function checkBuildGreen(night: number, repo: string): Promise<Breach[]> {
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1' };
  const tests = await execa('python3', ['-m', 'pytest', '-q', '-p', 'no:cacheprovider'], { cwd: repo, reject: false, env, extendEnv: false, all: true });
  const dry = await execa('python3', ['-m', 'bot.main', '--dry-run'], { cwd: repo, reject: false, env, extendEnv: false, all: true });
  const out: Breach[] = [];
  if (tests.exitCode !== 0) out.push({ night, invariant: 'build-red', detail: `pytest at main exits ${tests.exitCode}: ${String(tests.all).slice(-600)}` });
  if (dry.exitCode !== 0) out.push({ night, invariant: 'build-red', detail: `the dry run at main exits ${dry.exitCode}: ${String(dry.all).slice(-600)}` });
  return out;
}

export { ledgerKey };

// --- the BullMQ mode (soak/cluster.ts) ------------------------------------------------------------

/** A worker kill or SIGTERM, or a Redis restart, and the ledger runs it may make run once more. */
export interface Interruption {
  night: number;
  kind: string;
  runIds: string[];
  /** Their task files. */
  tasks: string[];
  at: number;
}

/**
 * At most one extra run per worker kill or Redis restart: a ledger run (one BullMQ job) was
 * started by workers at most 1 + (the kills and SIGTERMs of a worker running it) + (the
 * Redis restarts while it was in flight) times. A folder-host kill gives no allowance: the
 * restarted host adds the same job id, which BullMQ ignores. (Claims themselves are
 * counted by checkLedger, as in the local mode.)
 */
export function checkWorkerRuns(
  night: number,
  events: ReadonlyArray<{ kind: string; runId: string; job: string; pid: number; taskFile: string; time: string }>,
  interruptions: readonly Interruption[],
): Breach[] {
  const starts = new Map<string, (typeof events)[number][]>();
  for (const e of events) if (e.kind === 'started') starts.set(e.runId, [...(starts.get(e.runId) ?? []), e]);
  const breaches: Breach[] = [];
  for (const [runId, list] of starts) {
    const allowed = interruptions.filter((i) => i.runIds.includes(runId));
    if (list.length > 1 + allowed.length) {
      breaches.push({
        night,
        invariant: 'run-count',
        detail: `run ${runId} of ${list[0]!.taskFile} (job ${list[0]!.job}) started ${list.length} times on workers (${list.map((e) => `pid ${e.pid} at ${e.time}`).join(', ')}); allowed ${1 + allowed.length}: 1 + ${allowed.length} interruption(s)${allowed.length ? ` (${allowed.map((i) => `${i.kind} night ${i.night}`).join(', ')})` : ''}`,
      });
    }
  }
  return breaches;
}

/**
 * Exactly one filed result per claim: no two reports of one ledger run (in reports/, in
 * reports/archive/<id>/<run>/ where a later run moves an earlier one, or expired by retention),
 * a run the ledger says was reported ok (this night) has its report, and a filed patch has
 * the sidecar the gate reads (no rejection for want of one).
 */
export async function checkFiledOnce(night: number, layout: Layout, since: number): Promise<Breach[]> {
  const reports = new Map<string, string[]>();
  const add = async (file: string, rel: string) => {
    const r = await readJson<{ run_id?: string }>(file);
    if (r?.run_id) reports.set(r.run_id, [...(reports.get(r.run_id) ?? []), rel]);
  };
  for (const n of (await names(layout.reports)).filter((x) => x.endsWith('.json'))) await add(path.join(layout.reports, n), `reports/${n}`);
  for (const id of await names(layout.reportArchive)) {
    if (id === 'expired') {
      // Retention's archive: reports/archive/expired/<YYYY-MM>/<id>[.<n>].json.gz.
      for (const month of await names(path.join(layout.reportArchive, id))) {
        // <id>.json.gz, or <id>.json.2.gz when that name was taken.
        for (const n of (await names(path.join(layout.reportArchive, id, month))).filter((x) => /\.json(\.\d+)?\.gz$/.test(x))) {
          const data = await fs.readFile(path.join(layout.reportArchive, id, month, n)).catch(() => null);
          let r: { run_id?: string } | null = null;
          try {
            r = data ? (JSON.parse(gunzipSync(data).toString('utf8')) as { run_id?: string }) : null;
          } catch {
            r = null;
          }
          if (r?.run_id) reports.set(r.run_id, [...(reports.get(r.run_id) ?? []), `reports/archive/expired/${month}/${n}`]);
        }
      }
      continue;
    }
    for (const run of await names(path.join(layout.reportArchive, id))) {
      for (const n of (await names(path.join(layout.reportArchive, id, run))).filter((x) => x.endsWith('.json')))
        await add(path.join(layout.reportArchive, id, run, n), `reports/archive/${id}/${run}/${n}`);
    }
  }
  const breaches: Breach[] = [];
  // A result is filed whole: a patch with its sidecar <id>.patch.json, which the gate reads.
  for (const n of (await names(layout.patches.pending)).filter((x) => x.endsWith('.patch'))) {
    if (!(await fs.stat(path.join(layout.patches.pending, `${n}.json`)).catch(() => null)))
      breaches.push({ night, invariant: 'patch-without-sidecar', detail: `patches/pending/${n} has no ${n}.json` });
  }
  for (const n of (await names(layout.patches.rejected)).filter((x) => x.endsWith('.reason.md'))) {
    const reason = await fs.readFile(path.join(layout.patches.rejected, n), 'utf8').catch(() => '');
    if (/no sidecar/.test(reason))
      breaches.push({ night, invariant: 'patch-without-sidecar', detail: `patches/rejected/${n}: ${reason.split('\n').filter(Boolean)[1] ?? ''}` });
  }
  for (const [runId, files] of reports)
    if (files.length > 1) breaches.push({ night, invariant: 'filed-twice', detail: `run ${runId} has ${files.length} reports: ${files.join(', ')}` });
  // Only this night's runs (reported since `since`, real time): with action: delete, older ones may be gone.
  const dir = path.join(layout.state, 'ledger');
  for (const n of (await names(dir)).filter((x) => x.endsWith('.json'))) {
    const entry = await readJson<LedgerEntry>(path.join(dir, n));
    for (const run of entry?.runs ?? []) {
      if (run.reported?.status !== 'ok' || Date.parse(run.reported.at) < since) continue;
      if (!reports.has(run.run_id))
        breaches.push({
          night,
          invariant: 'filed-result-missing',
          detail: `${entry!.name}: the ledger says run ${run.run_id} was reported ok at ${run.reported.at}, but no report of that run is in reports/`,
        });
    }
  }
  return breaches;
}
