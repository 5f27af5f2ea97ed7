// Steps of one browser scenario as separate tests that run in order and share the page: a failure
// names its step, and the steps after it fail at once, naming the step that broke the scenario,
// instead of timing out one after the other.
import { it } from 'vitest';

export function scenarioSteps(): (name: string, body: () => Promise<void>) => void {
  let broken: string | null = null;
  return (name, body) =>
    it(name, async () => {
      if (broken !== null) throw new Error(`Not run: the earlier step "${broken}" failed.`);
      try {
        await body();
      } catch (err) {
        broken = name;
        throw err;
      }
    });
}
