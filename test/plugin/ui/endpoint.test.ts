// The daemon address a designer may type in the panel (plugin/ui/endpoint.ts): an origin only, https
// for anything but this machine; and the problem shown when a team endpoint does not answer.
import { describe, expect, it } from 'vitest';
import { DaemonEndpoint } from '../../../shared/protocol/index.js';
import { DaemonUnreachable } from '../../../plugin/ui/daemon-client.js';
import { checkEndpoint, endpointPort, isLocalEndpoint, servedEndpoint } from '../../../plugin/ui/endpoint.js';
import { problemFor } from '../../../plugin/ui/problems.js';

describe('checkEndpoint', () => {
  it.each([
    ['', null],
    ['   ', null],
    ['https://p2pz.studio.example', 'https://p2pz.studio.example'],
    ['https://P2PZ.Studio.Example/', 'https://p2pz.studio.example'],
    ['https://p2pz.studio.example:443', 'https://p2pz.studio.example'],
    ['https://p2pz.studio.example:8443', 'https://p2pz.studio.example:8443'],
    ['http://localhost:7870', 'http://localhost:7870'],
    ['http://127.0.0.1:7871/', 'http://127.0.0.1:7871'],
    ['http://[::1]:7870', 'http://[::1]:7870'],
  ])('accepts %j as %j', (typed, endpoint) => {
    expect(checkEndpoint(typed)).toEqual({ endpoint });
    if (endpoint !== null) expect(DaemonEndpoint.safeParse(endpoint).success).toBe(true);
  });

  it.each([
    ['http://p2pz.studio.example', /needs https: https:\/\/p2pz\.studio\.example\./],
    ['http://192.168.1.5:7870', /needs https/],
    ['http://localhost.evil.example', /needs https/],
    ['https://p2pz.studio.example/v1', /without a path: https:\/\/p2pz\.studio\.example\./],
    ['https://p2pz.studio.example/?x=1', /without a path/],
    ['https://user:pw@p2pz.studio.example', /user name or password/],
    ['ftp://p2pz.studio.example', /must start with https/],
    ['javascript:alert(1)', /must start with https/],
    ['p2pz.studio.example', /such as https:/],
  ])('refuses %j', (typed, problem) => {
    const check = checkEndpoint(typed);
    expect('problem' in check && check.problem).toMatch(problem);
  });

  it('knows the port and whether the endpoint is this machine', () => {
    expect(endpointPort('https://p2pz.studio.example')).toBe(443);
    expect(endpointPort('https://p2pz.studio.example:8443')).toBe(8443);
    expect(endpointPort('http://localhost:7870')).toBe(7870);
    expect(isLocalEndpoint('http://localhost:7870')).toBe(true);
    expect(isLocalEndpoint('https://p2pz.studio.example')).toBe(false);
  });

  it('a page the daemon served talks to its own origin when that is a team endpoint', () => {
    expect(servedEndpoint('https://p2pz.studio.example')).toBe('https://p2pz.studio.example');
    expect(servedEndpoint('https://localhost:7870')).toBe('https://localhost:7870');
    expect(servedEndpoint('http://127.0.0.1:7870')).toBeNull();
    expect(servedEndpoint('http://localhost:7870')).toBeNull();
  });

  it('a team endpoint that does not answer gets no local start command', () => {
    const team = problemFor(new DaemonUnreachable('https://p2pz.studio.example'), 443);
    expect(team.title).toBe('The p2pz endpoint https://p2pz.studio.example did not answer.');
    expect(team.command).toBeNull();
    expect(team.hint).toContain('networkAccess');
    expect(problemFor(new DaemonUnreachable('http://localhost:7870'), 7870).command).toBe('npm start');
  });
});
