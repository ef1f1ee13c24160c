/** Config values that list HTTP statuses (`retryOn`), parsed and checked for the schema. */
import * as z from "zod/mini";

/** `--retry-on 502,503` or [502, 503]: statuses 400-599, no duplicates. */
export const statusList = z.pipe(
  z.union([z.string(), z.array(z.union([z.string(), z.number()]))]),
  z.transform((v: string | (string | number)[], ctx) => {
    const items = typeof v === "string" ? v.split(",").map((s) => s.trim()).filter(Boolean) : v.map(String);
    const out: number[] = [];
    for (const t of items) {
      const n = /^\d{3}$/.test(t.trim()) ? Number(t) : NaN;
      if (!(n >= 400 && n <= 599)) {
        ctx.issues.push({ code: "custom", message: `"${t}" is not an error status from 400 to 599; write e.g. 502,503`, input: v });
        return z.NEVER;
      }
      if (!out.includes(n)) out.push(n);
    }
    return out;
  }),
);
