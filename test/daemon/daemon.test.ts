// startDaemon / RunningDaemon: daemon.json while listening (0600, removed on close), orderly close
// with a running job (docs/SECURITY.md §R23: the job is cancelled and reported, sockets closed, engine closed), an
// occupied port reported clearly.
import { readFile, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { DaemonInfo } from '../../daemon/config.js';
import { startDaemon } from '../../daemon/daemon.js';
import { silentLogger } from '../../daemon/log.js';
import { CLIENT_HEADER, ImageUploadResponse, PROTOCOL_VERSION } from '../../shared/protocol/index.js';
import { EventClient, FakeEngine, PNG_1X1, send, startTestDaemon } from './server/helpers.js';

describe('startDaemon', () => {
  it('writes daemon.json (0600) once listening and removes it on close', async () => {
    const t = await startTestDaemon();
    const info = DaemonInfo.parse(JSON.parse(await readFile(t.daemon.paths.daemonInfo, 'utf8')));
    expect(info).toEqual({ v: 1, pid: process.pid, port: t.daemon.port, url: t.daemon.url });
    expect((await stat(t.daemon.paths.daemonInfo)).mode & 0o777).toBe(0o600);
    await t.daemon.close();
    await expect(stat(t.daemon.paths.daemonInfo)).rejects.toThrow();
    // Idempotent, and the port no longer accepts connections.
    await t.daemon.close();
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(t.daemon.port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    await t.stop();
  });

  it('close() with a running job: the job is cancelled and reported, then sockets close (1001) and the engine closes', async () => {
    const t = await startTestDaemon();
    t.engine.mode = 'hold';
    const events = EventClient.connect(t.daemon, { Origin: 'null' });
    await events.opened;
    events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token: t.token, clientId: 'closing-client' });
    await events.next((e) => e['type'] === 'welcome');
    const { imageId } = ImageUploadResponse.parse(
      (await send(t.daemon, { method: 'POST', path: '/v1/images', token: t.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json,
    );
    await send(t.daemon, {
      method: 'POST',
      path: '/v1/jobs',
      token: t.token,
      headers: { [CLIENT_HEADER]: 'closing-client' },
      json: { v: PROTOCOL_VERSION, kind: 'render', imageId, jobId: 'job-at-close', edit: { source: 'cat', target: 'dog' } },
    });
    await events.next((e) => e['type'] === 'started');
    await t.daemon.close();
    expect(await events.closed).toBe(1001);
    expect(events.events.filter((e) => e['type'] === 'cancelled' && e['jobId'] === 'job-at-close')).toHaveLength(1);
    expect(t.engine.closed).toBe(true);
    await t.stop();
  });

  it('an occupied port → E_INTERNAL naming the port, with a hint about --port', async () => {
    const t = await startTestDaemon();
    try {
      await expect(startDaemon({ port: t.daemon.port, home: t.home, engine: new FakeEngine(), log: silentLogger })).rejects.toMatchObject({
        code: 'E_INTERNAL',
        message: expect.stringContaining(String(t.daemon.port)),
        hint: expect.stringContaining('--port'),
      });
      // The running daemon is unaffected.
      expect((await send(t.daemon, { path: '/v1/health' })).status).toBe(200);
    } finally {
      await t.stop();
    }
  });
});
