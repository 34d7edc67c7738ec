/**
 * Whether a file in inbox/ is a task ready to claim. A file is taken once complete:
 * published by rename (createTask, temp+rename), or unchanged for the settle time and
 * parsing to a complete task (a copy in progress), or unchanged for queue.incomplete_grace_s
 * (then it fails). Names the queue never takes are logged once each.
 *
 * "Published by rename" has two proofs. Its ctime after its mtime (it was renamed after its
 * last write) fails for a fast writer: the kernel's timestamp tick is ~4 ms, so a file
 * written and renamed at once has ctime == mtime. The inbox's own events tell (Linux
 * inotify, `fs.watch` on a local disk): a file renamed in makes one "rename" event and no
 * "change", where every write into a file in the folder makes a "change" (copy, cp, Explorer,
 * an editor, a chunked writer). A name that appeared with its bytes already in it and was
 * not written since EVENT_PROOF_MS later, that is the same untouched file after its bytes
 * were read, and that parses to a complete task, was renamed in whole: taken at once, its
 * bytes pinned for the claim (sha256). What this trusts: inotify delivers every event. A
 * queue overflow (16,384 events unread, e.g. a huge build in a watched worktree while the
 * service is stalled) loses events without a word from libuv; a file then written in place
 * whose first part already parses as a complete task could be taken early. Writes through
 * mmap make no event either. Writers that care rename in, which is always safe.
 */
import { promises as fs, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import { MAX_TASK_BYTES, parseTask } from '../contract/task.ts';
import { tempWriterPid } from '../workspace/files.ts';
import { MAX_TASK_NAME_BYTES, safeTaskName } from './folders.ts';

const TEMP_NAME = /^(\.|~\$)|\.(tmp|part|crdownload|swp)$/i;

/** Names the queue never takes: dotfiles, office lock files, partial downloads. */
export function isIgnoredName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/** Why a file's bytes are not a complete task yet (null: they are): what parsing it says. */
function incompleteReason(content: Buffer, name: string): string | null {
  try {
    parseTask(content, name);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** take: claim it (expectSha256: the bytes judged complete); recheckInMs: look again then (a copy may be under way). */
export type PickupVerdict = { take: true; expectSha256?: string } | { take: false; recheckInMs?: number };

const LEAVE: PickupVerdict = { take: false };

/**
 * How long after a name's "rename" event its events are trusted to have said everything:
 * a writer's "change" is queued by the kernel in the same write() that makes its bytes
 * visible, so any write before the stat is heard by then.
 */
export const EVENT_PROOF_MS = 10;

/** What the inbox's events said of a file (only fed where they are complete: see `eventEvidence`). */
export type InboxEvent = 'rename' | 'change';

export class InboxPickup {
  /** Size and mtime when first seen, for the settle time. */
  private readonly seen = new Map<string, { size: number; mtimeMs: number; since: number }>();
  private readonly loggedNonTask = new Set<string>();
  private readonly waitingLogged = new Set<string>();
  private readonly changedAfterClaim = new Set<string>();
  /** The last "rename" event of each name (performance.now()), and the names written ("change") since. */
  private readonly appeared = new Map<string, number>();
  private readonly written = new Set<string>();
  /**
   * Whether `noteEvent` hears every event of inbox/: set by the service for `fs.watch` on a
   * local Linux file system (inotify; volumes.ts hearsEveryWrite). Not for polling, network
   * shares or fuse/virtiofs mounts (writes made elsewhere make no local event), or other
   * platforms' watchers, which coalesce events (untested here).
   */
  eventEvidence = false;

  constructor(
    private readonly inbox: string,
    private readonly log: Logger,
    /** queue.settle_ms, or what the folder's kind needs (volumes.ts pickupSettleMs). */
    public settleMs: number,
    private readonly incompleteGraceMs: number,
  ) {}

  /**
   * Judges `inbox/<name>` now. `skip` is asked again after the file is looked at: a scan and
   * a watcher event can consider one name at the same time, and only the first may take it.
   */
  async judge(name: string, skip: () => boolean): Promise<PickupVerdict> {
    if (!this.isTaskName(name)) return LEAVE;
    const file = path.join(this.inbox, name);
    const stat = await fs.stat(file).catch(() => null);
    if (skip()) return LEAVE;
    if (!stat?.isFile()) {
      this.seen.delete(name);
      this.forgetEvents(name);
      return LEAVE;
    }
    const renamedIn = await this.renamedInByEvents(file, name, stat);
    if (renamedIn && 'take' in renamedIn) return renamedIn;
    if (renamedIn) return this.taken(name, renamedIn.sha256);
    // Renamed in after being written: complete at once (unless it was put back because it
    // changed after a claim: its writer may still be at it).
    const publishedByRename = stat.ctimeMs - stat.mtimeMs > 1 && !this.changedAfterClaim.has(name);
    if (!publishedByRename && this.settleMs > 0) {
      const unsettled = this.settling(name, stat);
      if (unsettled) return unsettled;
    }
    let expectSha256: string | undefined;
    if (!publishedByRename) {
      const checked = await this.completeBytes(file, name, stat);
      if (!checked) return LEAVE;
      expectSha256 = checked.sha256;
    }
    return this.taken(name, expectSha256);
  }

  /** What the inbox's events said of `name` (a "rename": it appeared or left; a "change": it was written). */
  noteEvent(name: string, event: InboxEvent): void {
    if (!this.eventEvidence || isIgnoredName(name) || !name.toLowerCase().endsWith('.md')) return;
    if (event === 'rename') {
      this.appeared.set(name, performance.now());
      this.written.delete(name);
    } else this.written.add(name);
  }

  private taken(name: string, expectSha256: string | undefined): PickupVerdict {
    this.seen.delete(name);
    this.waitingLogged.delete(name);
    this.changedAfterClaim.delete(name);
    this.forgetEvents(name);
    return expectSha256 ? { take: true, expectSha256 } : { take: true };
  }

  private forgetEvents(name: string): void {
    this.appeared.delete(name);
    this.written.delete(name);
  }

  /**
   * The event proof (see the top): `{ sha256 }` when the file was renamed in whole; a verdict
   * to look again once EVENT_PROOF_MS have passed since it appeared; null when the events
   * prove nothing (the settle decides).
   */
  private async renamedInByEvents(file: string, name: string, stat: Stats): Promise<{ sha256: string } | PickupVerdict | null> {
    const appearedAt = this.appeared.get(name);
    const unproven = () => this.written.has(name) || this.changedAfterClaim.has(name);
    if (!this.eventEvidence || appearedAt === undefined || stat.size === 0 || stat.size > MAX_TASK_BYTES || unproven()) return null;
    const wait = appearedAt + EVENT_PROOF_MS - performance.now();
    if (wait > 0) return { take: false, recheckInMs: Math.ceil(wait) };
    const content = await fs.readFile(file).catch(() => null);
    if (!content || content.length !== stat.size || incompleteReason(content, name) !== null) return null;
    // One turn of the event loop after the read: events queued before it are delivered by
    // then. The same file, untouched, must still be there (no event is the only evidence).
    await new Promise((resolve) => setImmediate(resolve));
    const after = await fs.stat(file).catch(() => null);
    const same = after && after.ino === stat.ino && after.size === stat.size && after.mtimeMs === stat.mtimeMs && after.ctimeMs === stat.ctimeMs;
    if (!same || unproven()) return null;
    return { sha256: createHash('sha256').update(content).digest('hex') };
  }

  /** The claim found the file changed or gone: if it comes back, its writer may still be at it. */
  markChangedAfterClaim(name: string): void {
    this.changedAfterClaim.add(name);
  }

  /** Forgets names no longer in inbox/ (`present`), so each is logged again if it comes back. */
  forgetAbsent(present: Set<string>): void {
    for (const n of this.loggedNonTask) if (!present.has(n)) this.loggedNonTask.delete(n);
    // Events of names that left unjudged (claimed while queued, deleted): at worst a name
    // that just arrived loses its event proof and waits the settle.
    for (const n of this.appeared.keys()) if (!present.has(n)) this.forgetEvents(n);
    for (const n of this.written) if (!present.has(n)) this.written.delete(n);
  }

  /** A name that may be a task; other names are logged once (our own temps not at all). */
  private isTaskName(name: string): boolean {
    const { log, loggedNonTask } = this;
    if (isIgnoredName(name)) {
      // Our own temps live for milliseconds; anything else a person may wonder about.
      if (!loggedNonTask.has(name) && tempWriterPid(name) === null && name !== '.gitkeep')
        log.info(
          { file: name },
          'ignored: names starting with "." or "~$" and temp/partial files (.tmp, .part, .crdownload, .swp) are never taken; rename it to take it',
        );
      loggedNonTask.add(name);
      return false;
    }
    if (!name.toLowerCase().endsWith('.md')) {
      if (!loggedNonTask.has(name)) log.warn({ file: name }, 'not a .md task file; left where it is');
      loggedNonTask.add(name);
      return false;
    }
    if (safeTaskName(name) !== name && !loggedNonTask.has(name)) {
      loggedNonTask.add(name);
      log.warn({ file: name, claimed_as: safeTaskName(name) }, `the name is longer than ${MAX_TASK_NAME_BYTES} bytes; it is claimed under a shortened name`);
    }
    return true;
  }

  /** A copy in progress: waits until size and mtime stay put for settleMs. Null: settled. */
  private settling(name: string, stat: { size: number; mtimeMs: number }): PickupVerdict | null {
    const previous = this.seen.get(name);
    if (!previous || previous.size !== stat.size || previous.mtimeMs !== stat.mtimeMs) {
      this.seen.set(name, { size: stat.size, mtimeMs: stat.mtimeMs, since: performance.now() });
      return { take: false, recheckInMs: this.settleMs + 25 };
    }
    return performance.now() - previous.since < this.settleMs ? LEAVE : null;
  }

  /**
   * Quiet is not complete (a writer may stall for minutes): a copied-in file is taken once it
   * parses to a complete task, or once it has not changed for incomplete_grace_s (then it
   * fails). Null: not yet (the next scan looks again).
   */
  private async completeBytes(file: string, name: string, stat: { size: number; mtimeMs: number }): Promise<{ sha256: string } | null> {
    const content = stat.size <= MAX_TASK_BYTES ? await fs.readFile(file).catch(() => null) : Buffer.alloc(0);
    if (!content) return null;
    const incomplete = stat.size <= MAX_TASK_BYTES ? incompleteReason(content, name) : null;
    const age = Date.now() - stat.mtimeMs; // "in the future" (the clock went back): old
    if (incomplete && age >= 0 && age < this.incompleteGraceMs) {
      if (!this.waitingLogged.has(name))
        this.log.info({ file: name, reason: incomplete }, `not a complete task yet (${incomplete}); waiting for its writer (queue.incomplete_grace_s)`);
      this.waitingLogged.add(name);
      return null;
    }
    return { sha256: createHash('sha256').update(content).digest('hex') };
  }
}
