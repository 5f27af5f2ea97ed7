// The `p2pz` subcommands, in the order `p2pz --help` lists them. Add a command by writing its file
// in this folder and listing it here.
import type { CliCommand } from './command.js';
import { directionsCommand } from './directions.js';
import { distillCommand } from './distill.js';
import { editCommand } from './edit.js';
import { modelsCommand } from './models.js';
import { pairCommand } from './pair.js';
import { serveCommand } from './serve.js';
import { tokenCommand } from './token.js';

export const COMMANDS: readonly CliCommand[] = [serveCommand, editCommand, modelsCommand, directionsCommand, distillCommand, pairCommand, tokenCommand];
