// Free device memory: the CPU's free RAM, or nvidia-smi's memory.free for the first GPU; unknown
// (never a refusal) when nvidia-smi is missing or says something else.
import { describe, expect, it } from 'vitest';
import { freeDeviceMemory, parseNvidiaSmiFree } from '../../../daemon/models/device-memory.js';

describe('freeDeviceMemory', () => {
  it('parses the first GPU of nvidia-smi (MiB)', () => {
    expect(parseNvidiaSmiFree('81559\n1000\n')).toBe(81559 * 1024 * 1024);
    expect(parseNvidiaSmiFree('  24000\r\n')).toBe(24000 * 1024 * 1024);
    expect(parseNvidiaSmiFree('[N/A]\n')).toBeUndefined();
    expect(parseNvidiaSmiFree('')).toBeUndefined();
  });

  it('cpu: free RAM; cuda: nvidia-smi, unknown when it fails', async () => {
    expect(await freeDeviceMemory('cpu', { freemem: () => 123 })).toBe(123);
    expect(await freeDeviceMemory('cuda', { nvidiaSmi: async () => '2048\n' })).toBe(2048 * 2 ** 20);
    expect(await freeDeviceMemory('cuda', { nvidiaSmi: () => Promise.reject(new Error('spawn nvidia-smi ENOENT')) })).toBeUndefined();
  });
});
