/**
 * What the soak found in the product, and where each fix is guarded. History for the report
 * (docs/soak.md); nothing here excuses a breach: every breach fails the run.
 */
export interface FoundBug {
  id: string;
  /** What went wrong, as the soak saw it. */
  found: string;
  /** The fix (module: what changed). */
  fix: string;
  /** The regression test (file: name) that fails without the fix. */
  test: string;
}

export const FOUND_BUGS: FoundBug[] = [
  {
    id: 'B1',
    found:
      'A full disk for a moment during a cycle aborted it: the task whose report could not be written was not awaited, the rest of the plan was never created, and the cycle report could be lost.',
    fix: "supervisor/cycle.ts: a task whose run threw is awaited (the watcher recovers and re-runs it); the cycle's own writes retry on ENOSPC/EIO (retryWrite in workspace/files.ts).",
    test: 'test/cycle-recovery.test.ts: a disk full for a moment during a cycle',
  },
  {
    id: 'B2',
    found: 'kill -9 of the service during a cycle: no cycle report for that night, ever; its remaining tasks never created; its scheduler lock left behind.',
    fix: "supervisor/journal.ts: a running cycle is journaled; at start the scheduler takes over a dead owner's lock and finishes the cycles of dead processes (create what is missing, await the reports, write the report).",
    test: 'test/cycle-recovery.test.ts: kill -9 during a cycle',
  },
  {
    id: 'B3',
    found: "kill -9 during a gate run and a quick restart: the dead run's gate-* worktree and the gate lock were never removed.",
    fix: 'service/watch.ts start: takes the gate lock (dead owners are taken over) and prunes every gate-* worktree while holding it.',
    test: 'test/gate-crash.test.ts: kill -9 of the service while the gate tests, and a restart at once',
  },
  {
    id: 'B4',
    found:
      'A crash after the gate moved the branch: the restarted gate filed the commit as applied with tests: null (the record lost the proof that it was tested).',
    fix: 'gate/gate.ts: the check results are written beside the snapshot before update-ref; the already-applied path records them.',
    test: 'test/gate-crash.test.ts: kill -9 after the gate moved the branch',
  },
  {
    id: 'B5',
    found: 'The same crash left .meta-agent/gate-snapshots/<sha>.patch behind for good.',
    fix: 'gate/gate.ts: snapshot, checks and redo marker are removed once a decision is filed, on every path.',
    test: 'test/gate-crash.test.ts: kill -9 after the gate moved the branch',
  },
  {
    id: 'B6',
    found: 'Temp files (.<name>.<pid>.<hex>.tmp) of a killed process were never removed.',
    fix: 'queue/recover.ts removeDeadTemps, run by retention at start and hourly: a temp whose pid is dead here and older than lease_stale_s goes.',
    test: 'test/crash-leftovers.test.ts, test/retention.test.ts',
  },
  {
    id: 'B7',
    found: 'Retention never touched reports/cycles/: cycle reports stayed forever.',
    fix: 'queue/retention.ts: reports_days applies to cycle reports by finished_at (archived, deleted only when configured).',
    test: 'test/retention.test.ts: cycle reports ...',
  },
  {
    id: 'B8',
    found: 'A cycle could spend more than supervisor.budget_tokens: the agent checked the budget before a call, so the last call overshot it.',
    fix: 'engines/openai.ts: the agent stops before a call whose re-sent conversation plus a reply would not fit, and caps the reply (max_completion_tokens) at what remains.',
    test: 'test/failures.test.ts: a cycle budget handed to a task is not crossed by its last step',
  },
  {
    id: 'B9',
    found: 'An error while the gate filed its decision (a full disk) crashed the whole service (an un-awaited promise inside try/finally).',
    fix: 'gate/gate.ts: return await; once the branch moved, an error is rethrown for the next run (which finds the commit) instead of becoming a rejection.',
    test: 'test/gate-crash.test.ts: a full disk while the gate files an applied patch',
  },
  {
    id: 'B10',
    found: 'A full disk at the moment of a claim (ledger write) left the task in processing/ under a live lease: nobody ran it until a restart.',
    fix: 'queue/folders.ts claimTask: a claim that cannot be recorded goes back to inbox/ and releases its lease; workspace/lease.ts: a lock whose owner note cannot be written is given back.',
    test: 'test/crash-leftovers.test.ts: a full disk when the claim is recorded',
  },
  {
    id: 'B11',
    found: 'A crash while the gate filed an applied patch (after the move, before result.json) was never finished: a commit with no approval record.',
    fix: 'gate/gate.ts accept: the result is written before the patch moves into applied/, so the next run finishes the filing.',
    test: 'test/gate-crash.test.ts: kill -9 while the gate writes the result of an applied patch',
  },
  {
    id: 'B12',
    found:
      'A crash between dropping the redo task of a conflicting patch and filing the rejection: the redo task was dropped twice (the agent redid the change twice).',
    fix: 'gate/gate.ts dropRedoTaskOnce: a marker published without overwrite before the task is dropped.',
    test: 'test/gate-crash.test.ts: kill -9 between dropping the redo task ... and filing the rejection',
  },
  {
    id: 'B13',
    found:
      'A full disk as a scheduled cycle started crashed the service (unhandled rejection in the timer); at start, `watch` never finished starting but did not exit either.',
    fix: 'supervisor/schedule.ts: catch-up and ticks are guarded and logged; the state write is retried, and the lock released when it still fails.',
    test: 'test/schedule.test.ts: a disk full for a moment as a scheduled cycle starts; a state write that keeps failing',
  },
  {
    id: 'B14',
    found:
      'kill -9 after a worker settled its task but before it released the lease: the lock and owner note stayed in processing/ forever (recovery starts from task files, and the file was gone).',
    fix: 'queue/recover.ts clearOrphanedLeases: a lease without its task file is cleared once its owner is dead or the lock stale.',
    test: 'test/crash-leftovers.test.ts: a worker killed after it settled a task but before it released the lease',
  },
  {
    id: 'B15',
    found: 'The temp files of a process killed just before a restart were too young for the sweep at start, and stayed until the next hourly retention.',
    fix: 'service/watch.ts: one more sweep once they are lease_stale_s old.',
    test: 'test/crash-leftovers.test.ts: the temp of a writer killed just before the start',
  },
  {
    id: 'B16',
    found:
      'Seen while fixing B4 (the soak does not check installed models): kill -9 between the branch move and the artifact install: the retrained model was never installed (the already-applied path skipped the install).',
    fix: 'gate/gate.ts: the already-applied path installs the artifacts; the install is idempotent, so the backup keeps the real previous file.',
    test: 'test/gate-crash.test.ts: kill -9 after the gate moved the branch, before it installed the artifacts',
  },
  {
    id: 'B17',
    found:
      'A gate run killed while git ran in the person\'s repository left .git/HEAD.lock (or index.lock): from then on the person\'s own `git commit` failed with "File exists".',
    fix: "gate/repoOps.ts: the gate notes when it writes into the repository; the next gate run removes the git locks a dead run created after it started (never an older one, which may be the person's).",
    test: "test/gate-crash.test.ts: git locks a killed gate left in the person's repository are removed",
  },
  {
    id: 'B18',
    found:
      'kill -9 in the middle of a move into applied/ (the new name linked, the private one not yet removed): the next run gated the patch again and filed it a second time, as <id>-2, with no test results.',
    fix: 'gate/gate.ts restoreInterrupted: a private name that is a second link of a filed patch is a finished move: the link goes, the sidecar and artifacts follow.',
    test: 'test/gate-crash.test.ts: kill -9 in the middle of the move into applied/',
  },
  {
    id: 'B19',
    found:
      'Tokens spent by an attempt that was killed (or interrupted) were counted nowhere: the re-run started from zero, so a cycle could spend more than its budget without its report showing it.',
    fix: 'run/report.ts, run/runTask.ts: the next run of the task carries what unfinished attempts spent (from the trajectory or the interrupted report); engines/openai.ts estimates its first call from them.',
    test: 'test/failures.test.ts: a run after one that died mid-task carries its spent tokens',
  },
  {
    id: 'B20',
    found:
      'A person dropped a task again; the re-run proposed the same bytes as the patch already applied. The gate rightly did not commit it twice, but filed it with tests: null.',
    fix: "gate/gate.ts readChecks: an already-applied copy takes the test results from the record of its commit's first filing.",
    test: 'test/gate-crash.test.ts: a second proposal identical to an applied patch',
  },
  {
    id: 'B21',
    found:
      "kill -9 right after the gate moved a patch into applied/, before its sidecar followed: the sidecar stayed in approved/ and the run's snapshot in gate-snapshots/ for good.",
    fix: 'gate/leftovers.ts tidyAfterFiledRuns (recovery scan and every gate run): state without a waiting patch is finished: sidecar and artifacts follow the filed patch, the state goes.',
    test: 'test/gate-crash.test.ts: kill -9 after the patch was filed, before its sidecar followed',
  },
  {
    id: 'B22',
    found:
      "kill -9 mid-task, then a full disk while the restarted service recovered it: the task stayed under the recoverer's private name, the resumed cycle did not see it and created it again, and it ran three times (the cycle over its budget).",
    fix: 'queue/recover.ts: a recovery that fails gives the file its name back at once; supervisor/cycle.ts: a resumed cycle also recognises its task under a private name.',
    test: "test/crash-leftovers.test.ts: recovery cut short by a full disk; test/cycle-recovery.test.ts: a resumed cycle whose task is under a recoverer's private name",
  },
];

/** What the BullMQ mode (`--workers N`, docs/soak-bullmq.md) found in the engine's folder host. */
export const FOUND_BUGS_BULLMQ: FoundBug[] = [
  {
    id: 'M1',
    found:
      'Every patch a worker made was rejected by the gate ("no sidecar <id>.patch.json"): the folder host filed the sidecar as <id>.json, and left it in pending/ for good. Seen in the figures of the first 10-night run (0 applied, 24 rejected); the mode now checks it (patch-without-sidecar).',
    fix: 'queue/bullmq/host.ts: the sidecar is filed as <patch>.json, and the report names it so.',
    test: 'test/scaleout.test.ts: 20 tasks, 2 worker processes (the report names <patch>.json and it is there); assertFiledOnce (nothing else in pending/)',
  },
  {
    id: 'M2',
    found:
      'A folder host restarted after a kill adopted the same left task in two overlapping scans (scans overlap when one takes longer than scan_interval_ms): two followers of one run, one failing to file ("the claim was lost"), or the file left to crash recovery while the other took its lease (a second ledger run). Seen in the host\'s log on night 2 of the first run.',
    fix: 'queue/bullmq/host.ts adopt(): one adoption at a time; a second caller waits for the first.',
    test: 'test/scaleout.test.ts: a restarted folder host whose scans overlap adopts a left task once, and files it once (scan_interval_ms 5: failed 3 of 3 runs before the fix)',
  },
];
