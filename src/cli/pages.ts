/** `--pages DIR` on reload: the templates are read again with every reload (not a deploy), before it is in force. */
import type { Config } from "../config/schema.ts";
import type { Control } from "../control/control.ts";
import { loadPages } from "../http/templates.ts";
import type { PageSet } from "../http/pages.ts";

/**
 * Hooks the templates into reloads: every reload (not a deploy) reads them
 * again, before it is put in force; an error refuses it and the old set stays.
 */
export function reloadPagesWith(control: Control, pages: { set: PageSet | null }): void {
  const before = control.prepare;
  control.prepare = (next: Config, trigger: string) => {
    const loaded = trigger.startsWith("deploy") ? { set: pages.set } : loadPages(next.pages);
    if ("errors" in loaded) return loaded;
    const rest = before?.(next, trigger) ?? { notes: [], commit() {} };
    if ("errors" in rest) return rest;
    return {
      notes: rest.notes,
      commit() {
        rest.commit();
        pages.set = loaded.set;
      },
    };
  };
}
