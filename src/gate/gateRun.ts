/**
 * What the steps of one gate run share: the patch taken, what was learnt of it so far, the
 * files the run keeps until its decision is filed, and the verdict the steps hand to filing.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { PatchSidecar } from '../contract/patch.ts';
import type { CheckResult } from '../contract/report.ts';
import { readJsonFileOrNull } from '../contract/readJson.ts';
import { toErrorInfo } from '../contract/errors.ts';
import type { Project, Settings } from '../workspace/config.ts';
import type { Redactor } from '../safety/redact.ts';
import type { Artifact } from './artifacts.ts';
import type { PatchRules } from './inspect.ts';

export interface GateResult {
  decision: 'applied' | 'rejected' | 'skipped';
  task_id: string;
  patch: string;
  commit: string | null;
  reason: string | null;
  already_applied: boolean;
  /** Where the patch ended (applied/ or rejected/). */
  moved_to: string | null;
}

/**
 * What a gate run of one patch keeps beside its snapshot until it has filed its decision, so
 * the run after a crash (or after a filing error) can finish it: the checks that passed before
 * the branch moved, and the redo task already dropped for a conflict.
 */
export interface GateStateFiles {
  snapshot: string;
  checks: string;
  redo: string;
}

/** Where a gate run keeps its state (snapshot, checks, redo marker) until its decision is filed. */
export function gateStateDir(settings: Settings): string {
  return path.join(settings.layout.state, 'gate-snapshots');
}

export function gateStateFiles(settings: Settings, sha256: string): GateStateFiles {
  const dir = gateStateDir(settings);
  return { snapshot: path.join(dir, `${sha256}.patch`), checks: path.join(dir, `${sha256}.checks.json`), redo: path.join(dir, `${sha256}.redo.json`) };
}

/** One gate run of one patch. The admission step fills in the sidecar; filing reads all of it. */
export interface GateRun {
  settings: Settings;
  /** The patch under its private name in approved/. */
  taken: string;
  /** Its name in approved/. */
  name: string;
  id: string;
  sha256: string;
  /** The bytes taken (the snapshot tested and committed; the file may be edited meanwhile). */
  bytes: Buffer;
  sidecar: PatchSidecar | null;
  sidecarFile: string | null;
  /** The approved file was re-saved with CRLF and the gate applied it with git's line endings. */
  crlfNormalised: boolean;
  log: Logger;
  /** One per gate run: the checks' output and every reason the gate writes pass through it. */
  redact: Redactor;
  signal?: AbortSignal | undefined;
  state: GateStateFiles;
}

/** A patch the admission step let through: what the later steps apply, test and commit. */
export interface Admission {
  sidecar: PatchSidecar;
  project: Project;
  rules: PatchRules;
  /** The bytes to apply: as taken, or with git's line endings when an editor re-saved the file with CRLF. */
  patch: Buffer;
  /** The files the patch touches. */
  files: string[];
  /** The approved patch differs from the proposed one. */
  edited: boolean;
  artifacts: Artifact[];
}

export interface AppliedVerdict {
  decision: 'applied';
  commit: string;
  branch: string;
  edited: boolean;
  tests: CheckResult | null;
  dry_run: CheckResult | null;
  /** Found its commit on the branch (a crash after the commit, or a copy of an applied patch). */
  alreadyApplied: boolean;
}

export interface RejectedVerdict {
  decision: 'rejected';
  /** Not yet redacted: filing redacts it. */
  reason: string;
  conflicts?: string[];
  follow_up_task?: string | null;
  tests?: CheckResult | null;
  dry_run?: CheckResult | null;
  edited?: boolean;
}

export type Verdict = AppliedVerdict | RejectedVerdict;

export function rejected(reason: string, extra: Omit<RejectedVerdict, 'decision' | 'reason'> = {}): RejectedVerdict {
  return { decision: 'rejected', reason, ...extra };
}

export function isVerdict(value: object): value is Verdict {
  return 'decision' in value;
}

/**
 * A small file the gate wrote for itself (its state, an applied record); null when it is not
 * there. A damaged one (a disk error, a hand edit) is logged and treated as absent, as before
 * schemas: the gate then works without what it said.
 */
export async function readGateFile<S extends z.ZodType>(file: string, schema: S, log?: Logger): Promise<z.infer<S> | null> {
  try {
    return await readJsonFileOrNull(file, schema);
  } catch (error) {
    log?.warn({ file, err: toErrorInfo(error) }, 'a file meta-agent wrote is not usable; the gate goes on without it');
    return null;
  }
}
