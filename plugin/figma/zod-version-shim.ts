// The sandbox bundle's stand-in for the bare `zod` import (scripts/build.mjs resolves `zod` here for
// dist/plugin/code.js only). The only file of ours that the sandbox reaches and that imports full zod is
// shared/protocol/version.ts, for one `z.literal`. Re-exporting zod/mini's namespace as `z` would keep
// all of zod (a namespace object used as a value cannot be tree-shaken), so only what version.ts
// uses is offered; test/plugin/figma/bundle.test.ts runs the built bundle to catch a missing member.
import { literal } from 'zod/mini';

export const z = { literal };
