// What the panel says for each obstacle, and the command it offers.
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/errors.js';
import { DaemonUnreachable } from '../../../plugin/ui/daemon-client.js';
import { commandIn, problemFor } from '../../../plugin/ui/problems.js';

describe('problemFor', () => {
  it('gives the start command and the browser permission advice when the daemon does not answer', () => {
    const p = problemFor(new DaemonUnreachable('http://localhost:7870'), 7870);
    expect(p).toMatchObject({ title: 'The p2pz daemon is not running on port 7870.', command: 'npm start', pair: false });
    expect(p.note).toMatch(/Local network access/);
    expect(problemFor(new DaemonUnreachable('http://localhost:7870'), 7870, 'prompt').note).toBe('If your browser asks to let Figma reach apps on this device, choose Allow.');
  });

  it('offers pairing for an unknown or expired token or code', () => {
    expect(problemFor(new P2pzError('E_UNAUTHORIZED'), 7870)).toMatchObject({ pair: true, command: 'p2pz pair' });
    expect(problemFor(new P2pzError('E_PAIRING_INVALID'), 7870)).toMatchObject({ pair: true, command: 'p2pz pair' });
  });

  it('shows the install command for a missing model, from the hint or by default', () => {
    const fromHint = problemFor(new P2pzError('E_MODEL_MISSING', 'No diffusion model is installed.', 'Install one with `p2pz models install stable-diffusion-v1-4`.'), 7870);
    expect(fromHint).toEqual({
      title: 'The model this edit needs is not installed. No diffusion model is installed.',
      hint: 'Install one with p2pz models install stable-diffusion-v1-4.',
      command: 'p2pz models install stable-diffusion-v1-4',
      note: null,
      pair: false,
    });
    expect(problemFor(new P2pzError('E_MODEL_MISSING', undefined, 'Run the full render instead.'), 7870).command).toBe('p2pz models install');
  });

  it('passes other daemon errors through with their hint', () => {
    expect(problemFor(new P2pzError('E_QUEUE_FULL'), 7870)).toEqual({ title: 'Too many edits are waiting already.', hint: 'Wait for the running edits to finish, or cancel some.', command: null, note: null, pair: false });
  });
});

describe('commandIn', () => {
  it('finds the first backticked command', () => {
    expect(commandIn('Run `p2pz pair` or `p2pz serve`.')).toBe('p2pz pair');
    expect(commandIn('No command here.')).toBeNull();
  });
});
