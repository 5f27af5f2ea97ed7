// The p2pz protocol: runtime schemas for every HTTP body, WebSocket message and worker IPC message.
// TypeScript types are inferred from these schemas and never written twice.
export * from './version.js';
export * from './errors.js';
export * from './edit.js';
export * from './jobs.js';
export * from './device.js';
export * from './durations.js';
export * from './http.js';
export * from './pairing-code.js';
export * from './events.js';
export * from './preview-frame.js';
export * from './ipc.js';
export * from './plugin.js';
export * from './team.js';
export * from './caption.js';
