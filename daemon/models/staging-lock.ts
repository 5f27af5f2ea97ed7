// One installer per staging folder: `<staging>.lock` is created exclusively and holds the installing
// process's id. A lock whose process is gone (a killed install) is taken over; a live one refuses the
// second install, which would otherwise append to the same partial files.
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { P2pzError } from '../../shared/protocol/index.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of `staging`; resolves with its release. */
export async function lockStaging(staging: string): Promise<() => Promise<void>> {
  const path = `${staging}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
      return async () => {
        await unlink(path).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new P2pzError('E_BAD_REQUEST', 'Another `p2pz models install` is downloading this model right now.', 'Wait for it to finish, or stop it and run the command again.');
      }
      await unlink(path).catch(() => undefined); // stale: its process is gone
    }
  }
  throw new P2pzError('E_BAD_REQUEST', 'The model download folder is locked.', 'Run the command again.');
}
