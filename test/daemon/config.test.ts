// The daemon's configuration: data directory per platform, listen-address policy (docs/SECURITY.md §R1).
import { describe, expect, it } from 'vitest';
import { checkListenHost, DAEMON_DEFAULTS, defaultHome, homePaths, isLoopbackHost } from '../../daemon/config.js';
import { P2pzError } from '../../shared/protocol/index.js';

describe('defaultHome', () => {
  it('$P2PZ_HOME wins everywhere', () => {
    expect(defaultHome({ P2PZ_HOME: '/data/p2pz', XDG_DATA_HOME: '/x' }, 'linux', '/home/u')).toBe('/data/p2pz');
  });
  it('Linux: $XDG_DATA_HOME/p2pz, else ~/.local/share/p2pz; a relative XDG value is ignored', () => {
    expect(defaultHome({ XDG_DATA_HOME: '/xdg' }, 'linux', '/home/u')).toBe('/xdg/p2pz');
    expect(defaultHome({}, 'linux', '/home/u')).toBe('/home/u/.local/share/p2pz');
    expect(defaultHome({ XDG_DATA_HOME: 'rel/dir' }, 'linux', '/home/u')).toBe('/home/u/.local/share/p2pz');
  });
  it('macOS: ~/Library/Application Support/p2pz', () => {
    expect(defaultHome({}, 'darwin', '/Users/u')).toBe('/Users/u/Library/Application Support/p2pz');
  });
  it('Windows: %LOCALAPPDATA%\\p2pz, else ~\\AppData\\Local\\p2pz', () => {
    expect(defaultHome({ LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, 'win32', 'C:\\Users\\u')).toBe('C:\\Users\\u\\AppData\\Local\\p2pz');
    expect(defaultHome({}, 'win32', 'C:\\Users\\u')).toBe('C:\\Users\\u\\AppData\\Local\\p2pz');
  });
  it('lays out models, uploads, results, caches and the token files inside the home', () => {
    const p = homePaths('/d');
    expect(p).toEqual({
      home: '/d',
      models: '/d/models',
      uploads: '/d/uploads',
      results: '/d/results',
      cache: '/d/cache',
      cliToken: '/d/token',
      tokens: '/d/tokens.json',
      daemonInfo: '/d/daemon.json',
    });
  });
});

describe('listen address (R1)', () => {
  it('defaults to 127.0.0.1 on port 7870', () => {
    expect(DAEMON_DEFAULTS.host).toBe('127.0.0.1');
    expect(DAEMON_DEFAULTS.port).toBe(7870);
    expect(DAEMON_DEFAULTS.allowRemote).toBe(false);
    expect(Object.isFrozen(DAEMON_DEFAULTS)).toBe(true);
  });
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.1.5', false],
    ['example.com', false],
    ['127.0.0.1.example.com', false],
  ])('%s is loopback: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
    if (loopback) expect(() => checkListenHost(host, false)).not.toThrow();
    else {
      expect(() => checkListenHost(host, false)).toThrow(P2pzError);
      expect(() => checkListenHost(host, true)).not.toThrow();
    }
  });
});
