// Hands sharp's output Buffers on as plain Uint8Arrays that own their memory. A Buffer may be a
// view into a larger (pooled) ArrayBuffer, and structured clone (worker IPC with advanced
// serialization) copies a view's whole ArrayBuffer, neighbours included; a view that spans its
// buffer exactly is passed on without copying.
export function ownBytes(data: Uint8Array): Uint8Array {
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
    ? new Uint8Array(data.buffer, 0, data.byteLength)
    : data.slice();
}
