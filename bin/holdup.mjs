#!/usr/bin/env node
// The `holdup` command of the npm package (npm install -g holdup, npx holdup, bunx holdup).
// holdup runs on Deno or Bun, not Node: under Node this finds the Deno binary the package
// brings (the optional dependency @deno/PLATFORM that npm installs for this machine: a plain
// binary, no install script to approve) and runs dist/proxy.js on it, passing arguments,
// signals and the exit status through. Under Bun (bunx) or Deno it runs dist/proxy.js in
// this process.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

const entry = fileURLToPath(new URL("../dist/proxy.js", import.meta.url));

if ("Bun" in globalThis || "Deno" in globalThis) {
  await import(entry);
} else {
  const deno = findDeno();
  // Every permission holdup may use (an installed command, like any other binary); no config
  // or lock file from the current directory: dist/proxy.js imports only node: built-ins.
  const flags = ["--allow-net", "--allow-read", "--allow-env", "--allow-run", "--allow-write", "--allow-sys", "--no-config", "--no-lock", "--unstable-no-legacy-abort"];
  // Its own process group: a Ctrl-C in a terminal reaches holdup once (forwarded from here), not
  // twice (a second SIGINT means "exit now").
  const child = spawn(deno, ["run", ...flags, entry, ...process.argv.slice(2)], { stdio: "inherit", detached: true });
  const forward = (signal) => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];
  for (const s of signals) process.on(s, forward);
  child.on("error", (e) => {
    console.error(`holdup: cannot start Deno (${deno}): ${e.message}`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    if (signal) {
      // Die of the same signal, so a shell or supervisor sees what happened.
      for (const s of signals) process.removeAllListeners(s);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(1), 100).unref();
      return;
    }
    process.exit(code ?? 1);
  });
}

/** Deno from @deno/PLATFORM (as the npm package "deno" finds it), else from the package "deno", else deno on PATH. */
function findDeno() {
  const require = createRequire(import.meta.url);
  const { platform, arch } = process;
  const target = platform === "linux" ? `linux-${arch}-glibc` : `${platform}-${arch}`;
  const exe = platform === "win32" ? "deno.exe" : "deno";
  for (const find of [() => join(dirname(require.resolve(`@deno/${target}/package.json`)), exe), () => require("deno/install_api.cjs").runInstall()]) {
    try {
      const path = find();
      if (existsSync(path)) return path;
    } catch { /* not installed: try the next */ }
  }
  console.error(`holdup: the Deno runtime the package brings (@deno/${target}) is not installed (an unsupported platform, or --omit=optional?); trying deno on PATH`);
  return "deno";
}
