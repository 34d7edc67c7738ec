/** Facts about the workspace's disks that the queue protocol depends on. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';

/** Renames are atomic only within one volume: every queue folder must be on the same one. */
export async function assertOneVolume(dirs: string[]): Promise<void> {
  const devices = await Promise.all(dirs.map(async (dir) => ({ dir, dev: (await fs.stat(dir)).dev })));
  const first = devices[0];
  const other = devices.find((d) => d.dev !== first?.dev);
  if (first && other) {
    throw new MetaAgentError(
      'config',
      `${other.dir} is on a different volume than ${first.dir}; all queue folders must be on one volume (a rename between volumes is a copy, not atomic)`,
      { field: 'root' },
    );
  }
}

const NETWORK_FS = new Set(['nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'fuse.sshfs', '9p', 'afs', 'ceph', 'glusterfs', 'fuse.rclone', 'davfs']);

/** Network folders miss OS change events: poll them. */
export async function isNetworkFolder(dir: string): Promise<boolean> {
  const abs = path.resolve(dir);
  if (process.platform === 'win32') return abs.startsWith('\\\\');
  if (process.platform !== 'linux') return false;
  return NETWORK_FS.has(await mountTypeOf(abs));
}

/**
 * Linux file systems whose every write is made through this kernel, so inotify hears it
 * (overlay: a container's own layer). Not fuse, virtiofs, 9p, vboxsf or drvfs: a host or
 * a daemon writes there without a local event.
 */
const LOCAL_FS = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'tmpfs', 'f2fs', 'zfs', 'bcachefs', 'jfs', 'reiserfs', 'nilfs2', 'overlay']);

/** Whether every write into `dir` makes a local inotify event (Linux only): its real path is on a LOCAL_FS mount. */
export async function hearsEveryWrite(dir: string): Promise<boolean> {
  if (process.platform !== 'linux') return false;
  const real = await fs.realpath(dir).catch(() => null);
  return real !== null && LOCAL_FS.has(await mountTypeOf(real));
}

/** The type of the mount holding `abs` ('' when unknown), from /proc/mounts (the longest mount point that holds it). */
async function mountTypeOf(abs: string): Promise<string> {
  const mounts = await fs.readFile('/proc/mounts', 'utf8').catch(() => '');
  let best = { point: '', type: '' };
  for (const line of mounts.split('\n')) {
    const [, point, type] = line.split(' ');
    if (!point || !type) continue;
    const mount = point.replace(/\\040/g, ' ');
    if ((abs === mount || abs.startsWith(mount.endsWith('/') ? mount : `${mount}/`)) && mount.length >= best.point.length) best = { point: mount, type };
  }
  return best.type;
}

/**
 * Network and polled folders wait at least this long for a copied-in file to be quiet:
 * a poll sees a change only every interval (500 ms), and a share reports sizes and times
 * late (SMB caches attributes for about a second).
 */
export const REMOTE_SETTLE_MS = 1500;

/**
 * How long a file copied in (not renamed in) must be unchanged before it is read: the
 * configured `queue.settle_ms` on a local disk, at least REMOTE_SETTLE_MS on a network or
 * polled folder.
 */
export function pickupSettleMs(configuredMs: number, folder: { network: boolean; polled: boolean }): number {
  return folder.network || folder.polled ? Math.max(configuredMs, REMOTE_SETTLE_MS) : configuredMs;
}
