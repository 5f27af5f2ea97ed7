// onnxruntime's verbose "Node placements" block (session_state.cc, VerifyEachNodeIsAssignedToAnEp),
// as a count of nodes per execution provider and of the op types left on the CPU. The block, at log
// severity 0, reads:
//   [V:onnxruntime:, session_state.cc:1377 VerifyEachNodeIsAssignedToAnEp] Node placements
//   [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 77
//   [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]   Sum (grad/Sum_8_node)
// or, when one provider took every node, "All nodes placed on [WebGpuExecutionProvider]. Number of nodes: 1".
export interface Placement {
  /** Nodes per provider, by onnxruntime's provider name. */
  readonly perProvider: Record<string, number>;
  /** Op type → count, of the nodes placed on the CPU provider. */
  readonly onCpu: Record<string, number>;
  /** MemcpyToHost + MemcpyFromHost nodes onnxruntime inserted around the fallbacks. */
  readonly copies: number;
}

/** Parses onnxruntime's verbose "Node placements" block (session_state.cc). */
export function parsePlacements(log: string): Placement {
  const perProvider: Record<string, number> = {};
  const onCpu: Record<string, number> = {};
  let copies = 0;
  let current: string | undefined;
  let inBlock = false;
  for (const line of log.split(/\r?\n/)) {
    if (line.includes('Node placements')) {
      inBlock = true;
      continue;
    }
    if (!inBlock) continue;
    const header = /placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (header) {
      current = header[1] as string;
      perProvider[current] = (perProvider[current] ?? 0) + Number(header[2]);
      continue;
    }
    const node = /VerifyEachNodeIsAssignedToAnEp\] {3}(\S+) \(/.exec(line);
    if (node && current) {
      const op = node[1] as string;
      if (op === 'MemcpyToHost' || op === 'MemcpyFromHost') copies++;
      if (current === 'CPUExecutionProvider') onCpu[op] = (onCpu[op] ?? 0) + 1;
      continue;
    }
    if (!line.includes('VerifyEachNodeIsAssignedToAnEp')) inBlock = false;
  }
  return { perProvider, onCpu, copies };
}

